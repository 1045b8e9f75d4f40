"""SASL PLAIN (RFC 4616) and SCRAM-SHA-256 (RFC 5802, RFC 7677) as I/O-free state machines.

A server mechanism is fed the client's tokens one at a time (`step(token) ->
reply`) and either finishes (`complete`, `username`) or raises
`SaslAuthenticationError`. Nothing here touches a socket, so every rule is
testable with byte strings; `workbench.broker.server` carries the tokens in
SaslHandshake/SaslAuthenticate frames (or raw, after SaslHandshake v0).

Brokers hold only salted SCRAM credentials (`credentials.scram_credential`):
PLAIN recomputes StoredKey from the password it receives, SCRAM checks the
client's proof against it. An unknown user gets a made-up salt (derived from a
per-process secret, so it is stable) and fails at the proof, exactly like a
wrong password: the exchange does not reveal which user names exist.

Not implemented: SASLprep normalisation of user names and passwords (names are
restricted to ASCII by `credentials.validate_username`), channel binding
(`p=` gs2 flag, refused), Kafka's delegation-token extension (`tokenauth`, refused).
"""

from __future__ import annotations

import base64
import hmac
import os

from workbench.security.credentials import (
    BROKER_USER,
    ITERATIONS,
    b64,
    h,
    hmac_sha256,
    keys_from_salted,
    salted_password,
    scram_credential,
    unb64,
    verify_password,
)

PLAIN = "PLAIN"
SCRAM_SHA_256 = "SCRAM-SHA-256"
MECHANISMS = (PLAIN, SCRAM_SHA_256)
MAX_TOKEN_BYTES = 8192


class SaslAuthenticationError(Exception):
    """Authentication failed; the message is safe to send to the client."""


def _fail(detail: str = "") -> SaslAuthenticationError:
    # One message for every credential failure, as Kafka does; `detail` only for malformed exchanges.
    return SaslAuthenticationError(detail or "Authentication failed: invalid user name or password")


class CredentialStore:
    """User name -> salted SCRAM credential, plus the brokers' own identity."""

    def __init__(self, credentials: dict[str, dict] | None = None, broker_secret: str | None = None) -> None:
        self._credentials = dict(credentials or {})
        if broker_secret:
            self._credentials[BROKER_USER] = scram_credential(broker_secret)
        self._fake_key = os.urandom(32)
        self._dummy = scram_credential(os.urandom(16).hex())

    def get(self, username: str) -> dict | None:
        return self._credentials.get(username)

    def fake(self, username: str) -> dict:
        """A stable, unusable credential for an unknown user (no user enumeration)."""
        salt = hmac_sha256(self._fake_key, username.encode("utf-8"))[:24]
        return {
            "salt": b64(salt),
            "iterations": ITERATIONS,
            "stored_key": b64(os.urandom(32)),
            "server_key": b64(os.urandom(32)),
            "fake": True,
        }

    @property
    def dummy(self) -> dict:
        return self._dummy


class PlainServer:
    """RFC 4616: one message `[authzid] NUL authcid NUL passwd`; the reply is empty."""

    mechanism = PLAIN

    def __init__(self, store: CredentialStore) -> None:
        self.store = store
        self.complete = False
        self.username: str | None = None

    def step(self, token: bytes) -> bytes:
        if self.complete:
            raise _fail("PLAIN takes exactly one message")
        if len(token) > MAX_TOKEN_BYTES:
            raise _fail("PLAIN message too long")
        parts = token.split(b"\x00")
        if len(parts) != 3:
            raise _fail("malformed PLAIN message: expected authzid NUL authcid NUL passwd")
        try:
            authzid, authcid, passwd = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            raise _fail("malformed PLAIN message: not UTF-8") from None
        if not authcid or not passwd:
            raise _fail("malformed PLAIN message: empty user name or password")
        if authzid and authzid != authcid:
            raise _fail("authorization id must be empty or equal to the user name")
        self.username = authcid  # who tried (for the log); authenticated only once `complete`
        credential = self.store.get(authcid)
        ok = verify_password(credential or self.store.dummy, passwd)  # same work either way
        if credential is None or not ok:
            raise _fail()
        self.complete = True
        return b""


def _scram_name(text: str) -> str:
    """Decode `saslname` (RFC 5802 5.1): =2C is ',', =3D is '=', any other '=' is an error."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "=":
            code = text[i + 1 : i + 3]
            if code == "2C":
                out.append(",")
            elif code == "3D":
                out.append("=")
            else:
                raise _fail("malformed SCRAM user name")
            i += 3
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _attributes(message: str) -> list[tuple[str, str]]:
    pairs = []
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise _fail("malformed SCRAM message")
        pairs.append((part[0], part[2:]))
    return pairs


class ScramServer:
    """RFC 5802 server: client-first -> server-first, client-final -> server-final."""

    mechanism = SCRAM_SHA_256

    def __init__(self, store: CredentialStore) -> None:
        self.store = store
        self.complete = False
        self.username: str | None = None
        self._state = "first"
        self._credential: dict | None = None
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""

    def step(self, token: bytes) -> bytes:
        if len(token) > MAX_TOKEN_BYTES:
            raise _fail("SCRAM message too long")
        try:
            message = token.decode("utf-8")
        except UnicodeDecodeError:
            raise _fail("malformed SCRAM message: not UTF-8") from None
        if self._state == "first":
            return self._client_first(message)
        if self._state == "final":
            return self._client_final(message)
        raise _fail("SCRAM exchange already finished")

    def _client_first(self, message: str) -> bytes:
        # gs2-header: gs2-cbind-flag "," [ authzid ] "," ; then client-first-message-bare
        fields = message.split(",", 2)
        if len(fields) != 3:
            raise _fail("malformed SCRAM client-first message")
        flag, authzid, bare = fields
        if flag not in ("n", "y"):
            raise _fail("SCRAM channel binding is not supported")
        attrs = _attributes(bare)
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r" or not attrs[1][1]:
            raise _fail("malformed SCRAM client-first message")
        if attrs[0][0] == "m" or any(k == "m" for k, _ in attrs):
            raise _fail("SCRAM mandatory extensions are not supported")
        if any(k == "t" or v.startswith("tokenauth") for k, v in attrs[2:]):
            raise _fail("delegation tokens are not supported")
        username = _scram_name(attrs[0][1])
        if authzid and (not authzid.startswith("a=") or _scram_name(authzid[2:]) != username):
            raise _fail("authorization id must be empty or equal to the user name")
        client_nonce = attrs[1][1]
        if any(ord(c) < 0x21 or ord(c) > 0x7E or c == "," for c in client_nonce):
            raise _fail("malformed SCRAM nonce")
        self.username = username
        self._credential = self.store.get(username) or self.store.fake(username)
        self._gs2_header = f"{flag},{authzid},"
        self._client_first_bare = bare
        self._nonce = client_nonce + base64.b64encode(os.urandom(24)).decode("ascii").replace(",", ".")
        self._server_first = f"r={self._nonce},s={self._credential['salt']},i={int(self._credential['iterations'])}"
        self._state = "final"
        return self._server_first.encode("ascii")

    def _client_final(self, message: str) -> bytes:
        self._state = "done"
        attrs = _attributes(message)
        if len(attrs) < 3 or attrs[0][0] != "c" or attrs[1][0] != "r" or attrs[-1][0] != "p":
            raise _fail("malformed SCRAM client-final message")
        try:
            binding = base64.b64decode(attrs[0][1], validate=True).decode("utf-8")
            proof = unb64(attrs[-1][1])
        except Exception:
            raise _fail("malformed SCRAM client-final message") from None
        if binding != self._gs2_header:
            raise _fail("SCRAM channel binding does not match the client-first message")
        if attrs[1][1] != self._nonce:
            raise _fail("SCRAM nonce does not match")
        without_proof = message[: message.rindex(",p=")]
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        credential = self._credential
        assert credential is not None
        stored_key = unb64(credential["stored_key"])
        signature = hmac_sha256(stored_key, auth_message)
        if len(proof) != len(signature):
            raise _fail()
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=False))
        if not hmac.compare_digest(h(client_key), stored_key) or credential.get("fake"):
            raise _fail()
        server_signature = hmac_sha256(unb64(credential["server_key"]), auth_message)
        self.complete = True
        return f"v={b64(server_signature)}".encode("ascii")


class SaslServerFactory:
    """The listener's SASL settings: enabled mechanisms and the credential store."""

    def __init__(self, mechanisms: list[str], store: CredentialStore) -> None:
        unknown = [m for m in mechanisms if m not in MECHANISMS]
        if unknown:
            raise ValueError(f"unsupported SASL mechanisms {unknown}; choose from {list(MECHANISMS)}")
        self.mechanisms = list(mechanisms)
        self.store = store

    def create(self, mechanism: str) -> PlainServer | ScramServer | None:
        if mechanism not in self.mechanisms:
            return None
        return PlainServer(self.store) if mechanism == PLAIN else ScramServer(self.store)


# -- the client side (brokers' own connections, and tests) ----------------------------------------


def plain_client_token(username: str, password: str) -> bytes:
    return b"\x00" + username.encode("utf-8") + b"\x00" + password.encode("utf-8")


class ScramClient:
    """RFC 5802 client: `first()`, `final(server_first)`, `verify(server_final)`."""

    def __init__(self, username: str, password: str, nonce: str | None = None) -> None:
        self.username, self.password = username, password
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode("ascii").replace(",", ".")
        name = username.replace("=", "=3D").replace(",", "=2C")
        self._first_bare = f"n={name},r={self.nonce}"
        self._server_signature = b""

    def first(self) -> bytes:
        return ("n,," + self._first_bare).encode("utf-8")

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode("utf-8")
        attrs = dict(_attributes(text))
        nonce, salt, iterations = attrs["r"], unb64(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self.nonce) or iterations < ITERATIONS:
            raise SaslAuthenticationError("bad SCRAM server-first message")
        without_proof = f"c={b64(b'n,,')},r={nonce}"
        auth_message = f"{self._first_bare},{text},{without_proof}".encode()
        client_key, stored_key, server_key = keys_from_salted(salted_password(self.password, salt, iterations))
        signature = hmac_sha256(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=False))
        self._server_signature = hmac_sha256(server_key, auth_message)
        return f"{without_proof},p={b64(proof)}".encode("ascii")

    def verify(self, server_final: bytes) -> None:
        attrs = dict(_attributes(server_final.decode("utf-8")))
        if "e" in attrs or not hmac.compare_digest(unb64(attrs.get("v", "")), self._server_signature):
            raise SaslAuthenticationError("the broker's SCRAM signature does not verify")
