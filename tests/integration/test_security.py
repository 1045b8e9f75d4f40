"""Access control end to end: SASL/PLAIN and SASL/SCRAM-SHA-256 with confluent-kafka and kafka-python
(good and bad credentials), topic and group ACLs, the pre-authentication gate, inter-broker
authentication, loopback-only listeners and owner-only data directories."""

from __future__ import annotations

import json
import os
import stat
import struct
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException
from kafka.protocol.consumer import FetchRequest
from kafka.protocol.metadata import ApiVersionsRequest, MetadataRequest
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

from tests.conftest import FAST_GROUPS
from workbench import Cluster
from workbench.cluster import ClusterError
from workbench.protocol.blocking_client import WireClient
from workbench.security.sasl import ScramClient, plain_client_token

USERS = {"alice": "alice-pw", "bob": "bob-pw", "admin": "admin-pw"}
ACLS = [
    {"principal": "User:alice", "operation": "Write", "topic": "orders"},
    {"principal": "User:alice", "operation": "Read", "topic": "orders"},
    {"principal": "User:alice", "operation": "Read", "group": "billing"},
    {"principal": "User:bob", "operation": "Read", "topic": "orders"},
    {"principal": "User:bob", "operation": "Read", "group": "bob-", "pattern_type": "prefixed"},
]
MECHANISMS = ["PLAIN", "SCRAM-SHA-256"]


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    with Cluster(
        brokers=3,
        data_dir=tmp_path_factory.mktemp("secured"),
        config=FAST_GROUPS,
        users=USERS,
        acls=ACLS,
        super_users=["User:admin"],
    ) as c:
        admin = c.as_user("admin", "admin-pw")
        admin.create_topic("orders", partitions=3, replication_factor=3)
        admin.create_topic("payroll", partitions=1, replication_factor=3)
        yield c


def _port(c: Cluster) -> int:
    return next(iter(c.brokers.values())).port


def _wire(c: Cluster) -> WireClient:
    return WireClient("127.0.0.1", _port(c))


def _login(w: WireClient, user: str, password: str, mechanism: str = "PLAIN"):
    assert w.request(SaslHandshakeRequest(mechanism=mechanism), 1).error_code == 0
    if mechanism == "PLAIN":
        return w.request(SaslAuthenticateRequest(auth_bytes=plain_client_token(user, password)), 2)
    scram = ScramClient(user, password)
    first = w.request(SaslAuthenticateRequest(auth_bytes=scram.first()), 2)
    final = w.request(SaslAuthenticateRequest(auth_bytes=scram.final(bytes(first.auth_bytes))), 2)
    if final.error_code == 0:
        scram.verify(bytes(final.auth_bytes))
    return final


# -- confluent-kafka -----------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_good_credentials_produce_and_consume(secured, mechanism):
    alice = secured.as_user("alice", "alice-pw")
    value = {"id": uuid.uuid4().hex, "mechanism": mechanism}
    producer = alice.producer(sasl_mechanism=mechanism)
    delivery = producer.send_and_wait("orders", value, key="k")
    assert delivery.offset >= 0
    consumer = alice.consumer("billing", None, sasl_mechanism=mechanism)
    consumer.assign("orders", [delivery.partition], offset=delivery.offset)
    records = consumer.read(1, timeout=20)
    consumer.close()
    assert records and records[0].value == value


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("mallory", "alice-pw")])
def test_confluent_bad_credentials_are_refused(secured, mechanism, user, password):
    admin = secured.as_user(user, password).admin(sasl_mechanism=mechanism)
    with pytest.raises(KafkaException) as info:
        admin.list_topics(timeout=5)
    err = info.value.args[0]
    assert err.code() in (KafkaError._AUTHENTICATION, KafkaError._TRANSPORT, KafkaError._TIMED_OUT), err
    log = (secured.data_dir / "broker-1" / "broker.log").read_text()
    assert "authentication failed" in log


def test_clients_without_credentials_fail_clearly(secured):
    for make in (secured.producer, secured.admin, lambda: secured.consumer("billing", "orders")):
        with pytest.raises(ClusterError, match="sasl_username"):
            make()
    # A client that ignores SASL altogether gets its connection closed (nothing is served).
    from confluent_kafka.admin import AdminClient

    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": secured.bootstrap_servers}).list_topics(timeout=3)


def test_topic_acls(secured):
    alice = secured.as_user("alice", "alice-pw")
    # Metadata lists only what alice may describe (Read/Write imply Describe).
    assert alice.topics() == ["orders"]
    assert "payroll" in secured.as_user("admin", "admin-pw").topics()
    # Write denied on payroll.
    with pytest.raises(Exception, match=r"(?i)authoriz"):
        alice.producer().send_and_wait("payroll", {"x": 1}, timeout=15)
    # bob may read orders but not write it: InitProducerId (idempotence) needs Write somewhere.
    with pytest.raises(Exception, match=r"(?i)authoriz"):
        secured.as_user("bob", "bob-pw").producer(enable_idempotence=False).send_and_wait(
            "orders", {"x": 1}, timeout=15
        )
    # Create and delete need their own ACLs.
    with pytest.raises(ValueError, match=r"(?i)authoriz"):
        alice.create_topic("alice-new")
    with pytest.raises(ValueError, match=r"(?i)authoriz"):
        alice.delete_topic("orders")
    assert "orders" in secured.as_user("admin", "admin-pw").topics()


def test_group_acls(secured):
    producer = secured.as_user("alice", "alice-pw").producer()
    producer.send_and_wait("orders", {"for": "groups"})
    # bob may read the topic but not as group "billing" (only groups starting with "bob-").
    consumer = secured.as_user("bob", "bob-pw").consumer("billing", "orders")
    with pytest.raises(KafkaException) as info:
        for _ in range(30):
            msg = consumer.raw.poll(0.5)
            if msg is not None and msg.error():
                raise KafkaException(msg.error())
    consumer.close()
    assert info.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    consumer = secured.as_user("bob", "bob-pw").consumer("bob-readers", "orders")
    assert consumer.read(1, timeout=20)
    consumer.commit()
    consumer.close()


# -- kafka-python ----------------------------------------------------------------------------------


def _kafka_python_conf(c, mechanism, user, password):
    return {
        "bootstrap_servers": c.bootstrap_servers,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
        "request_timeout_ms": 10000,
    }


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python_good_credentials(secured, mechanism):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    producer = KafkaProducer(**_kafka_python_conf(secured, mechanism, "alice", "alice-pw"))
    value = uuid.uuid4().hex.encode()
    meta = producer.send("orders", value).get(timeout=20)
    producer.close()
    consumer = KafkaConsumer(
        group_id="billing",
        enable_auto_commit=False,
        consumer_timeout_ms=15000,
        **_kafka_python_conf(secured, mechanism, "alice", "alice-pw"),
    )
    tp = TopicPartition("orders", meta.partition)
    consumer.assign([tp])
    consumer.seek(tp, meta.offset)
    got = next(iter(consumer))
    consumer.commit()
    consumer.close()
    assert got.value == value


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python_bad_credentials(secured, mechanism):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as KafkaPythonError

    # kafka-python reports a failed SASL login as a metadata timeout; the broker log names the cause.
    with pytest.raises(KafkaPythonError):
        producer = KafkaProducer(
            max_block_ms=3000, api_version=(3, 0), **_kafka_python_conf(secured, mechanism, "mallory", "nope")
        )
        producer.send("orders", b"x").get(timeout=10)
    logs = "".join((secured.data_dir / f"broker-{b}" / "broker.log").read_text() for b in secured.brokers)
    assert f"authentication failed ({mechanism}, user 'mallory')" in logs


def test_kafka_python_topic_denied(secured):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as KafkaPythonError

    producer = KafkaProducer(max_block_ms=5000, **_kafka_python_conf(secured, "SCRAM-SHA-256", "alice", "alice-pw"))
    with pytest.raises(KafkaPythonError, match=r"(?i)authoriz"):
        producer.send("payroll", b"x").get(timeout=10)
    producer.close()


# -- the wire: gate, handshake versions, inter-broker privileges ------------------------------------


def test_api_versions_advertise_sasl_only_when_enabled(secured, tmp_path):
    w = _wire(secured)
    keys = {k[0] if isinstance(k, tuple) else k.api_key for k in w.request(ApiVersionsRequest(), 0).api_keys}
    assert {17, 36} <= keys
    w.close()
    with Cluster(brokers=1, data_dir=tmp_path / "plain") as plain:
        w = _wire(plain)
        keys = {k.api_key for k in w.request(ApiVersionsRequest(), 0).api_keys}
        assert not {17, 36} & keys
        w.close()


def test_requests_before_authentication_close_the_connection(secured):
    w = _wire(secured)
    assert w.request(ApiVersionsRequest(), 3).error_code == 0  # allowed before authenticating
    w.correlation_id += 1
    req = MetadataRequest(topics=None)
    req.API_VERSION = 1
    req.with_header(correlation_id=w.correlation_id, client_id="x")
    w.send_raw(bytes(req.encode(header=True, framed=True)))
    assert w.is_closed()
    # SaslAuthenticate before SaslHandshake: ILLEGAL_SASL_STATE, then closed.
    w = _wire(secured)
    assert w.request(SaslAuthenticateRequest(auth_bytes=b"\x00a\x00b"), 1).error_code == 34
    assert w.is_closed()
    # An unknown mechanism is refused with the list of enabled ones.
    w = _wire(secured)
    resp = w.request(SaslHandshakeRequest(mechanism="GSSAPI"), 1)
    assert resp.error_code == 33 and set(resp.mechanisms) == set(MECHANISMS)
    assert w.is_closed()


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_wire_login_good_and_bad(secured, mechanism):
    w = _wire(secured)
    assert _login(w, "alice", "alice-pw", mechanism).error_code == 0
    md = w.request(
        MetadataRequest(
            topics=[
                MetadataRequest.MetadataRequestTopic(name="payroll"),
                MetadataRequest.MetadataRequestTopic(name="orders"),
            ],
            allow_auto_topic_creation=False,
        ),
        9,
    )
    errors = {t.name: t.error_code for t in md.topics}
    assert errors == {"orders": 0, "payroll": 29}
    assert w.request(SaslHandshakeRequest(mechanism=mechanism), 1).error_code == 34  # already authenticated
    w = _wire(secured)
    resp = _login(w, "alice", "bad", mechanism)
    assert resp.error_code == 58 and "invalid user name or password" in resp.error_message
    assert w.is_closed()


def test_sasl_handshake_v0_raw_tokens(secured):
    w = _wire(secured)
    assert w.request(SaslHandshakeRequest(mechanism="PLAIN"), 0).error_code == 0
    token = plain_client_token("alice", "alice-pw")
    w.send_raw(struct.pack(">i", len(token)) + token)
    assert w.recv_frame() == b""
    assert w.request(ApiVersionsRequest(), 0).error_code == 0
    assert w.request(MetadataRequest(topics=None), 1).topics  # authenticated: served
    w = _wire(secured)
    w.request(SaslHandshakeRequest(mechanism="PLAIN"), 0)
    token = plain_client_token("alice", "nope")
    w.send_raw(struct.pack(">i", len(token)) + token)
    assert w.is_closed()


def test_inter_broker_privileges_are_refused_to_users(secured):
    # The private controller request (API key 10000) from an authenticated user: closed.
    w = _wire(secured)
    assert _login(w, "alice", "alice-pw").error_code == 0
    payload = json.dumps({"kind": "op", "op": {"op": "delete_topic", "name": "payroll"}}).encode()
    header = struct.pack(">hhih", 10000, 0, 99, -1)
    w.send_raw(struct.pack(">i", len(header) + len(payload)) + header + payload)
    assert w.is_closed()
    assert "payroll" in secured.as_user("admin", "admin-pw").topics()
    # A fetch posing as a follower (replica_id >= 0) is refused.
    w = _wire(secured)
    assert _login(w, "alice", "alice-pw").error_code == 0
    req = FetchRequest(
        replica_id=2,
        max_wait_ms=0,
        min_bytes=1,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        forgotten_topics_data=[],
        rack_id="",
        topics=[
            FetchRequest.FetchTopic(
                topic="orders",
                partitions=[
                    FetchRequest.FetchTopic.FetchPartition(
                        partition=0,
                        current_leader_epoch=-1,
                        fetch_offset=0,
                        last_fetched_epoch=-1,
                        log_start_offset=-1,
                        partition_max_bytes=1 << 20,
                    )
                ],
            )
        ],
    )
    resp = w.request(req, 12)
    assert [p.error_code for t in resp.responses for p in t.partitions] == [29]


def test_replication_works_with_inter_broker_authentication(secured):
    """acks=all on RF=3 only succeeds if followers' fetches (authenticated as User:broker) work."""
    admin = secured.as_user("admin", "admin-pw")
    producer = admin.producer(acks="all")
    for i in range(20):
        producer.send("orders", {"i": i})
    assert producer.flush(30) == 0
    md = admin.admin().list_topics("orders", timeout=10)
    assert all(len(p.isrs) == 3 for p in md.topics["orders"].partitions.values())


# -- listeners and files -----------------------------------------------------------------------------


def _listening(port: int) -> list[str]:
    """Local addresses listening on `port`, from /proc/net/tcp{,6}."""
    found = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(name).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, p = fields[1].split(":")
            if fields[3] == "0A" and int(p, 16) == port:
                found.append(addr)
    return found


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs /proc/net/tcp")
def test_brokers_listen_on_loopback_only(secured, tmp_path):
    with Cluster(brokers=2, data_dir=tmp_path / "plain") as plain:
        for c in (secured, plain):
            for b in c.brokers.values():
                for port in (b.port, b.raft_port):
                    addrs = _listening(port)
                    assert addrs and all(a == "0100007F" for a in addrs), (port, addrs)


def test_data_directories_are_owner_only(secured, tmp_path):
    assert stat.S_IMODE(secured.data_dir.stat().st_mode) == 0o700
    for b in secured.brokers.values():
        broker_dir = secured.data_dir / f"broker-{b.node_id}"
        assert stat.S_IMODE(broker_dir.stat().st_mode) == 0o700
        sec = broker_dir / "security.json"
        assert stat.S_IMODE(sec.stat().st_mode) == 0o600
        text = sec.read_text()
        assert all(pw not in text for pw in USERS.values())  # salted credentials only
        # Nothing secret on the command line, which any local user can read.
        argv = open(f"/proc/{b.pid}/cmdline", "rb").read().decode(errors="replace")
        assert "stored_key" not in argv and "inter_broker_secret" not in argv
        assert json.loads(text)["inter_broker_secret"] not in argv
    # A world-readable data directory of an existing cluster is tightened on open; a temporary one too.
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o755)
    with Cluster(brokers=1, data_dir=loose) as c:
        assert stat.S_IMODE(loose.stat().st_mode) == 0o700
        assert stat.S_IMODE((loose / "broker-1").stat().st_mode) == 0o700
    with Cluster(brokers=1) as c:
        assert stat.S_IMODE(c.data_dir.stat().st_mode) == 0o700


def test_bad_security_arguments(tmp_path):
    with pytest.raises(ValueError, match="need users"):
        Cluster(brokers=1, data_dir=tmp_path / "a", acls=[], start=False)
    with pytest.raises(ValueError, match="reserved"):
        Cluster(brokers=1, data_dir=tmp_path / "b", users={"broker": "x"}, start=False)
    with pytest.raises(ValueError, match="operation"):
        Cluster(
            brokers=1,
            data_dir=tmp_path / "c",
            users={"a": "x"},
            acls=[{"principal": "User:a", "operation": "Eat", "topic": "t"}],
            start=False,
        )
    with pytest.raises(ValueError, match="sasl_mechanisms"):
        Cluster(brokers=1, data_dir=tmp_path / "d", users={"a": "x"}, sasl_mechanisms=["GSSAPI"], start=False)
    with pytest.raises(ValueError, match="config="):
        Cluster(brokers=1, data_dir=tmp_path / "e", config={"acls": []}, start=False)
