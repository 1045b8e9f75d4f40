"""SASL PLAIN and SCRAM-SHA-256 server state machines, byte strings in and out (no sockets)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from workbench.security.authorizer import Authorizer
from workbench.security.credentials import build_credentials, scram_credential, verify_password
from workbench.security.sasl import (
    CredentialStore,
    PlainServer,
    SaslAuthenticationError,
    SaslServerFactory,
    ScramClient,
    ScramServer,
    plain_client_token,
)


@pytest.fixture(scope="module")
def store():
    creds = build_credentials({"alice": "wonderland"})
    creds["bob,=x"] = scram_credential("builder")  # not a name Cluster accepts, but SCRAM must escape it
    return CredentialStore(creds, broker_secret="s3cret")


def test_credentials_are_salted_not_plaintext():
    a, b = scram_credential("pw"), scram_credential("pw")
    assert a["salt"] != b["salt"] and a["stored_key"] != b["stored_key"]
    assert "pw" not in repr(a) and a["iterations"] == 4096
    assert verify_password(a, "pw") and not verify_password(a, "pW")


def test_rfc7677_test_vector():
    """RFC 7677 section 3: user 'user', password 'pencil'."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    cred = scram_credential("pencil", salt=salt)
    server = ScramServer(CredentialStore({"user": cred}))
    first = server.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    nonce = first.decode().split(",")[0][2:]
    assert nonce.startswith("rOprNGfwEbeRWgbNEkqO") and f"s={cred['salt']},i=4096".encode() in first
    client = ScramClient("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    client.first()
    final = client.final(first)
    client.verify(server.step(final))
    assert server.complete and server.username == "user"
    # With the RFC's own server nonce, the client proof matches the RFC's.
    rfc_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    rfc_final = ScramClient("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO").final(rfc_first)
    assert rfc_final.endswith(b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")


def test_plain_good_and_bad(store):
    s = PlainServer(store)
    assert s.step(plain_client_token("alice", "wonderland")) == b""
    assert s.complete and s.username == "alice"
    for token in (
        plain_client_token("alice", "nope"),
        plain_client_token("mallory", "wonderland"),
        b"alice\x00wonderland",
        b"x\x00alice\x00wonderland",
        b"\x00alice\x00",
        b"\xff\x00\xfe\x00a",
        b"\x00" * 10000,
    ):
        with pytest.raises(SaslAuthenticationError):
            PlainServer(store).step(token)
    assert PlainServer(store).step(b"alice\x00alice\x00wonderland") == b""  # authzid == authcid is fine
    with pytest.raises(SaslAuthenticationError):
        s.step(plain_client_token("alice", "wonderland"))  # one message only


def _scram(store, user, password):
    server, client = ScramServer(store), ScramClient(user, password)
    first = server.step(client.first())
    reply = server.step(client.final(first))
    client.verify(reply)
    return server


def test_scram_good(store):
    server = _scram(store, "alice", "wonderland")
    assert server.complete and server.username == "alice"
    assert _scram(store, "bob,=x", "builder").username == "bob,=x"  # saslname escaping
    assert _scram(store, "broker", "s3cret").username == "broker"


@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("nobody", "wonderland")])
def test_scram_bad_password_or_unknown_user_fail_alike(store, user, password):
    server, client = ScramServer(store), ScramClient(user, password)
    first = server.step(client.first())
    assert first.startswith(b"r=") and b",s=" in first  # an unknown user still gets a salt
    with pytest.raises(SaslAuthenticationError, match="invalid user name or password"):
        server.step(client.final(first))
    assert not server.complete


def test_unknown_user_salt_is_stable(store):
    a = ScramServer(store).step(b"n,,n=ghost,r=abc").split(b",")[1]
    b = ScramServer(store).step(b"n,,n=ghost,r=def").split(b",")[1]
    assert a == b


@pytest.mark.parametrize(
    "message",
    [
        b"p=tls-unique,,n=alice,r=abc",
        b"n,,r=abc,n=alice",
        b"n,,n=alice",
        b"garbage",
        b"n,,n=al=ZZice,r=abc",
        b"n,a=bob,n=alice,r=abc",
        b"n,,n=alice,r=abc,tokenauth=true",
        b"\xff\xfe",
        b"n,,n=alice,r=a b",
    ],
)
def test_scram_malformed_client_first(store, message):
    with pytest.raises(SaslAuthenticationError):
        ScramServer(store).step(message)


def test_scram_tampered_final(store):
    server, client = ScramServer(store), ScramClient("alice", "wonderland")
    first = server.step(client.first())
    final = client.final(first)
    for bad in (
        final.replace(b"c=biws", b"c=eSws"),
        final.replace(b"r=", b"r=X"),
        final[:-4] + b"AAA=",
        final.split(b",p=")[0] + b",p=" + base64.b64encode(b"short"),
        b"c=biws",
    ):
        s2 = ScramServer(store)
        s2.step(client.first())
        with pytest.raises(SaslAuthenticationError):
            s2.step(bad)
    # A replay against a different server nonce fails too.
    with pytest.raises(SaslAuthenticationError):
        s3 = ScramServer(store)
        s3.step(client.first())
        s3.step(final)
    server.step(final)
    with pytest.raises(SaslAuthenticationError):
        server.step(final)  # no third message


def test_client_rejects_a_forged_server_signature(store):
    server, client = ScramServer(store), ScramClient("alice", "wonderland")
    server.step(client.first())
    with pytest.raises(SaslAuthenticationError):
        client.verify(b"v=" + base64.b64encode(hmac.new(b"k", b"m", hashlib.sha256).digest()))


def test_user_names_are_validated():
    for bad in ("", "broker", "a b", "a,b", "x" * 200):
        with pytest.raises(ValueError):
            build_credentials({bad: "pw"})
    with pytest.raises(ValueError):
        build_credentials({"alice": ""})


def test_factory_only_creates_enabled_mechanisms(store):
    f = SaslServerFactory(["SCRAM-SHA-256"], store)
    assert isinstance(f.create("SCRAM-SHA-256"), ScramServer)
    assert f.create("PLAIN") is None and f.create("GSSAPI") is None
    with pytest.raises(ValueError):
        SaslServerFactory(["OAUTHBEARER"], store)


def test_authorizer_rules():
    az = Authorizer(
        [
            {"principal": "User:alice", "operation": "Read", "topic": "orders"},
            {"principal": "User:alice", "operation": "Write", "topic": "logs-", "pattern_type": "prefixed"},
            {"principal": "User:*", "operation": "Describe", "topic": "public"},
            {"principal": "User:bob", "operation": "All", "topic": "*"},
            {"principal": "User:bob", "operation": "Write", "topic": "orders", "permission": "Deny"},
            {"principal": "User:ops", "operation": "Create", "cluster": True},
            {"principal": "User:alice", "operation": "Read", "group": "billing"},
        ],
        super_users=["User:admin"],
    )
    ok = az.authorize
    assert ok("User:alice", "Read", "topic", "orders") and ok("User:alice", "Describe", "topic", "orders")
    assert not ok("User:alice", "Write", "topic", "orders") and not ok("User:alice", "Read", "topic", "other")
    assert ok("User:alice", "Write", "topic", "logs-app") and not ok("User:alice", "Write", "topic", "log")
    assert ok("User:carol", "Describe", "topic", "public") and not ok("User:carol", "Read", "topic", "public")
    assert ok("User:bob", "Delete", "topic", "x") and not ok("User:bob", "Write", "topic", "orders")
    assert ok("User:bob", "Read", "topic", "orders")
    assert az.can_create_topic("User:ops", "anything") and not az.can_create_topic("User:alice", "orders")
    assert ok("User:alice", "Read", "group", "billing") and not ok("User:alice", "Read", "group", "other")
    assert ok("User:admin", "Alter", "cluster") and ok("User:broker", "ClusterAction", "cluster")
    assert not ok("User:ANONYMOUS", "Describe", "topic", "orders")
    assert Authorizer(None).authorize("User:anyone", "Write", "topic", "x")  # no ACLs: no authorizer
    for bad in (
        {"principal": "alice", "operation": "Read", "topic": "t"},
        {"principal": "User:a", "operation": "Eat", "topic": "t"},
        {"principal": "User:a", "operation": "Read"},
        {"principal": "User:a", "operation": "Read", "topic": "t", "group": "g"},
        {"principal": "User:a", "operation": "Read", "topic": "t", "extra": 1},
    ):
        with pytest.raises(ValueError):
            Authorizer([bad])
