"""Every (API, version) the broker advertises, spoken on the wire once.

Client tests exercise the versions their clients pick (usually the highest);
this sweep sends a small valid request at *every* advertised version, from
the lowest to the highest, and checks that the answer decodes at that version
and reports no error. `workbench/broker/api_ledger.toml` names it for every
range, beside the client tests.
"""

from __future__ import annotations

import time
import uuid

import pytest
from kafka.record.legacy_records import LegacyRecordBatchBuilder

from workbench.broker.apis import SUPPORTED_APIS, ApiKey
from workbench.protocol.blocking_client import WireClient, make_batch
from workbench.protocol.codec import REQUEST_CLASSES, build

TOPIC = 2  # DescribeConfigs resource type


def _errors(obj) -> list[int]:
    """Every error_code anywhere in a decoded response."""
    found = []
    struct = getattr(type(obj), "_struct", None)
    if struct is None:
        return found
    for name, field in struct.fields.items():
        value = getattr(obj, name, None)
        if name == "error_code" and value is not None:
            found.append(value)
        elif field.is_struct_array() and value:
            for item in value:
                found += _errors(item)
        elif field.is_struct() and value is not None:
            found += _errors(value)
    return found


class Sweep:
    """A 1-partition topic with records, a leader connection and a way to send any request."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.topic = f"sweep-{uuid.uuid4().hex[:8]}"
        cluster.create_topic(self.topic, partitions=1)
        any_broker = WireClient.to(cluster.bootstrap_servers)
        md = self.ask(any_broker, ApiKey.METADATA, 1, {"topics": [{"name": self.topic}]})
        leader = md.topics[0].partitions[0].leader_id
        host = next(b for b in md.brokers if b.node_id == leader)
        any_broker.close()
        self.leader = WireClient(host.host, host.port)
        # acks=all: the answer then means the high watermark covers the records, so a Fetch at any
        # version sees them at once (acks=1 answered before the followers had them; CI once fetched
        # high_watermark 0 at v0 right after it)
        self.ask(self.leader, ApiKey.PRODUCE, 9, self.produce_body(make_batch([b"a", b"b", b"c"]), acks=-1))

    @staticmethod
    def ask(client: WireClient, key: int, version: int, body: dict, allowed=(0,)):
        resp = client.request(build(REQUEST_CLASSES[key], body), version)
        bad = [e for e in _errors(resp) if e not in allowed]
        assert not bad, f"api {key} v{version}: errors {bad} in {resp}"
        return resp

    def produce_body(self, records: bytes, acks: int = 1) -> dict:
        return {
            "acks": acks,
            "timeout_ms": 5000,
            "topic_data": [{"name": self.topic, "partition_data": [{"index": 0, "records": records}]}],
        }

    def coordinator(self, group: str) -> WireClient:
        c = WireClient.to(self.cluster.bootstrap_servers)
        fc = self.ask(c, ApiKey.FIND_COORDINATOR, 0, {"key": group})
        c.close()
        return WireClient(fc.host, fc.port)

    def commit(self, c: WireClient, group: str, version: int = 2) -> None:
        body = {
            "group_id": group,
            "generation_id_or_member_epoch": -1,
            "member_id": "",
            "topics": [{"name": self.topic, "partitions": [{"partition_index": 0, "committed_offset": 1}]}],
        }
        # A coordinator still loading its offsets partition (created on the first FindCoordinator)
        # answers COORDINATOR_NOT_AVAILABLE / LOAD_IN_PROGRESS / NOT_COORDINATOR: clients retry those.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            resp = c.request(build(REQUEST_CLASSES[ApiKey.OFFSET_COMMIT], body), version)
            if not set(_errors(resp)) & {14, 15, 16}:
                break
            time.sleep(0.2)
        self.ask(c, ApiKey.OFFSET_COMMIT, version, body)


@pytest.fixture(scope="module")
def sweep(cluster):
    s = Sweep(cluster)
    yield s
    s.leader.close()


def _versions(key: int) -> list[int]:
    lo, hi = SUPPORTED_APIS[key]
    return list(range(lo, hi + 1))


def _legacy(magic: int) -> bytes:
    b = LegacyRecordBatchBuilder(magic=magic, compression_type=0, batch_size=1 << 20)
    b.append(0, timestamp=1_600_000_000_000, key=None, value=b"old")
    return bytes(b.build())


@pytest.mark.parametrize("version", _versions(ApiKey.PRODUCE))
def test_produce(sweep, version):
    records = _legacy(0 if version < 2 else 1) if version < 3 else make_batch([b"new"])
    resp = sweep.ask(sweep.leader, ApiKey.PRODUCE, version, sweep.produce_body(records))
    assert resp.responses[0].partition_responses[0].base_offset >= 3


@pytest.mark.parametrize("version", _versions(ApiKey.FETCH))
def test_fetch(sweep, version):
    body = {
        "replica_id": -1,
        "max_wait_ms": 10,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "topics": [
            {
                "topic": sweep.topic,
                "partitions": [{"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}],
            }
        ],
    }
    resp = sweep.ask(sweep.leader, ApiKey.FETCH, version, body)
    part = resp.responses[0].partitions[0]
    assert part.high_watermark >= 3 and len(part.records) > 0


@pytest.mark.parametrize("version", _versions(ApiKey.LIST_OFFSETS))
def test_list_offsets(sweep, version):
    body = {
        "replica_id": -1,
        "topics": [
            {"name": sweep.topic, "partitions": [{"partition_index": 0, "timestamp": -1, "max_num_offsets": 1}]}
        ],
    }
    part = sweep.ask(sweep.leader, ApiKey.LIST_OFFSETS, version, body).topics[0].partitions[0]
    assert (part.old_style_offsets[0] if version == 0 else part.offset) >= 3


@pytest.mark.parametrize("version", _versions(ApiKey.METADATA))
def test_metadata(sweep, version):
    body = {"topics": [{"name": sweep.topic}], "allow_auto_topic_creation": False}
    resp = sweep.ask(sweep.leader, ApiKey.METADATA, version, body)
    assert [t.name for t in resp.topics] == [sweep.topic] and resp.brokers


@pytest.mark.parametrize("version", _versions(ApiKey.API_VERSIONS))
def test_api_versions(sweep, version):
    body = {"client_software_name": "sweep", "client_software_version": "1"}
    resp = sweep.ask(sweep.leader, ApiKey.API_VERSIONS, version, body)
    assert {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys} == SUPPORTED_APIS


@pytest.mark.parametrize("version", _versions(ApiKey.OFFSET_COMMIT))
def test_offset_commit(sweep, version):
    group = f"sweep-oc-{version}-{uuid.uuid4().hex[:6]}"
    c = sweep.coordinator(group)
    sweep.commit(c, group, version)
    c.close()


@pytest.mark.parametrize("version", _versions(ApiKey.OFFSET_FETCH))
def test_offset_fetch(sweep, version):
    group = f"sweep-of-{version}-{uuid.uuid4().hex[:6]}"
    c = sweep.coordinator(group)
    sweep.commit(c, group)
    topics = [{"name": sweep.topic, "partition_indexes": [0]}]
    body = (
        {"groups": [{"group_id": group, "topics": topics}]} if version >= 8 else {"group_id": group, "topics": topics}
    )
    resp = sweep.ask(c, ApiKey.OFFSET_FETCH, version, body)
    parts = resp.groups[0].topics[0].partitions if version >= 8 else resp.topics[0].partitions
    assert parts[0].committed_offset == 1
    c.close()


@pytest.mark.parametrize("version", _versions(ApiKey.FIND_COORDINATOR))
def test_find_coordinator(sweep, version):
    body = {"key": "g", "key_type": 0, "coordinator_keys": ["g"]}
    resp = sweep.ask(sweep.leader, ApiKey.FIND_COORDINATOR, version, body)
    assert (resp.coordinators[0].port if version >= 4 else resp.port) > 0


@pytest.mark.parametrize("version", _versions(ApiKey.JOIN_GROUP))
def test_classic_group_round(sweep, version):
    """JoinGroup at `version`, then SyncGroup, Heartbeat, DescribeGroups, LeaveGroup at the nearest version
    they have; every version of those four is covered by some round."""
    group = f"sweep-jg-{version}-{uuid.uuid4().hex[:6]}"
    c = sweep.coordinator(group)
    join = {
        "group_id": group,
        "session_timeout_ms": 10000,
        "rebalance_timeout_ms": 10000,
        "member_id": "",
        "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": b""}],
    }
    resp = sweep.ask(c, ApiKey.JOIN_GROUP, version, join, allowed=(0, 79))  # 79: MEMBER_ID_REQUIRED (v4+)
    if resp.error_code == 79:
        join["member_id"] = resp.member_id
        resp = sweep.ask(c, ApiKey.JOIN_GROUP, version, join)
    member, generation = resp.member_id, resp.generation_id

    def near(key: int) -> int:
        lo, hi = SUPPORTED_APIS[key]
        return max(lo, min(hi, version))

    sync = {
        "group_id": group,
        "generation_id": generation,
        "member_id": member,
        "protocol_type": "consumer",
        "protocol_name": "range",
        "assignments": [{"member_id": member, "assignment": b""}],
    }
    sweep.ask(c, ApiKey.SYNC_GROUP, near(ApiKey.SYNC_GROUP), sync)
    hb = {"group_id": group, "generation_id": generation, "member_id": member}
    sweep.ask(c, ApiKey.HEARTBEAT, near(ApiKey.HEARTBEAT), hb)
    described = sweep.ask(c, ApiKey.DESCRIBE_GROUPS, near(ApiKey.DESCRIBE_GROUPS), {"groups": [group]})
    assert [m.member_id for m in described.groups[0].members] == [member]
    leave = {"group_id": group, "member_id": member, "members": [{"member_id": member}]}
    sweep.ask(c, ApiKey.LEAVE_GROUP, near(ApiKey.LEAVE_GROUP), leave)
    c.close()


@pytest.mark.parametrize("version", _versions(ApiKey.LIST_GROUPS))
def test_list_groups(sweep, version):
    sweep.ask(sweep.leader, ApiKey.LIST_GROUPS, version, {"states_filter": []})


@pytest.mark.parametrize("version", _versions(ApiKey.CREATE_TOPICS))
def test_create_and_delete_topics(sweep, version):
    """CreateTopics at `version`, DeleteTopics at the nearest version it has (covering all of them)."""
    name = f"sweep-ct-{version}-{uuid.uuid4().hex[:6]}"
    c = WireClient.to(sweep.cluster.bootstrap_servers)
    create = {
        "topics": [{"name": name, "num_partitions": 1, "replication_factor": 1, "assignments": [], "configs": []}],
        "timeout_ms": 10000,
    }
    sweep.ask(c, ApiKey.CREATE_TOPICS, version, create)
    lo, hi = SUPPORTED_APIS[ApiKey.DELETE_TOPICS]
    dv = max(lo, min(hi, version))
    delete = {"topics": [{"name": name}], "topic_names": [name], "timeout_ms": 10000}
    sweep.ask(c, ApiKey.DELETE_TOPICS, dv, delete)
    c.close()


@pytest.mark.parametrize("version", _versions(ApiKey.DELETE_RECORDS))
def test_delete_records(sweep, version):
    body = {"topics": [{"name": sweep.topic, "partitions": [{"partition_index": 0, "offset": 1}]}], "timeout_ms": 5000}
    resp = sweep.ask(sweep.leader, ApiKey.DELETE_RECORDS, version, body)
    assert resp.topics[0].partitions[0].low_watermark >= 1


@pytest.mark.parametrize("version", _versions(ApiKey.INIT_PRODUCER_ID))
def test_init_producer_id(sweep, version):
    body = {"transactional_id": None, "transaction_timeout_ms": 60000, "producer_id": -1, "producer_epoch": -1}
    assert sweep.ask(sweep.leader, ApiKey.INIT_PRODUCER_ID, version, body).producer_id >= 0


@pytest.mark.parametrize("version", _versions(ApiKey.DESCRIBE_CONFIGS))
def test_describe_configs(sweep, version):
    body = {"resources": [{"resource_type": TOPIC, "resource_name": sweep.topic, "configuration_keys": None}]}
    resp = sweep.ask(sweep.leader, ApiKey.DESCRIBE_CONFIGS, version, body)
    assert "retention.ms" in {e.name for e in resp.results[0].configs}


@pytest.mark.parametrize("version", _versions(ApiKey.ALTER_CONFIGS))
def test_alter_configs(sweep, version):
    body = {
        "resources": [
            {
                "resource_type": TOPIC,
                "resource_name": sweep.topic,
                "configs": [{"name": "retention.ms", "value": "86400000"}],
            }
        ],
        "validate_only": False,
    }
    sweep.ask(WireClient.to(sweep.cluster.bootstrap_servers), ApiKey.ALTER_CONFIGS, version, body)


@pytest.mark.parametrize("version", _versions(ApiKey.INCREMENTAL_ALTER_CONFIGS))
def test_incremental_alter_configs(sweep, version):
    body = {
        "resources": [
            {
                "resource_type": TOPIC,
                "resource_name": sweep.topic,
                "configs": [{"name": "retention.ms", "config_operation": 0, "value": "86400000"}],
            }
        ],
        "validate_only": False,
    }
    sweep.ask(WireClient.to(sweep.cluster.bootstrap_servers), ApiKey.INCREMENTAL_ALTER_CONFIGS, version, body)


@pytest.mark.parametrize("version", _versions(ApiKey.CREATE_PARTITIONS))
def test_create_partitions(sweep, version):
    name = f"sweep-cp-{version}-{uuid.uuid4().hex[:6]}"
    sweep.cluster.create_topic(name, partitions=1)
    body = {"topics": [{"name": name, "count": 2, "assignments": None}], "timeout_ms": 10000, "validate_only": False}
    sweep.ask(WireClient.to(sweep.cluster.bootstrap_servers), ApiKey.CREATE_PARTITIONS, version, body)


@pytest.mark.parametrize("version", _versions(ApiKey.DELETE_GROUPS))
def test_delete_groups(sweep, version):
    group = f"sweep-dg-{version}-{uuid.uuid4().hex[:6]}"
    c = sweep.coordinator(group)
    sweep.commit(c, group)
    sweep.ask(c, ApiKey.DELETE_GROUPS, version, {"groups_names": [group]})
    c.close()


@pytest.mark.parametrize("version", _versions(ApiKey.OFFSET_DELETE))
def test_offset_delete(sweep, version):
    group = f"sweep-od-{version}-{uuid.uuid4().hex[:6]}"
    c = sweep.coordinator(group)
    sweep.commit(c, group)
    body = {"group_id": group, "topics": [{"name": sweep.topic, "partitions": [{"partition_index": 0}]}]}
    sweep.ask(c, ApiKey.OFFSET_DELETE, version, body)
    c.close()


@pytest.mark.parametrize("version", _versions(ApiKey.ELECT_LEADERS))
def test_elect_leaders(sweep, version):
    body = {"election_type": 0, "topic_partitions": [{"topic": sweep.topic, "partitions": [0]}], "timeout_ms": 10000}
    # ELECTION_NOT_NEEDED (84): the preferred replica already leads, which is the usual answer.
    sweep.ask(WireClient.to(sweep.cluster.bootstrap_servers), ApiKey.ELECT_LEADERS, version, body, allowed=(0, 84))


@pytest.mark.parametrize("version", _versions(ApiKey.DESCRIBE_CLUSTER))
def test_describe_cluster(sweep, version):
    resp = sweep.ask(sweep.leader, ApiKey.DESCRIBE_CLUSTER, version, {"include_cluster_authorized_operations": False})
    assert len(resp.brokers) == 3


def _txn_coordinator(sweep, txn_id: str) -> WireClient:
    c = WireClient.to(sweep.cluster.bootstrap_servers)
    fc = sweep.ask(c, ApiKey.FIND_COORDINATOR, 1, {"key": txn_id, "key_type": 1})
    c.close()
    return WireClient(fc.host, fc.port)


@pytest.mark.parametrize("version", _versions(ApiKey.END_TXN))
def test_transaction_round(sweep, version):
    """InitProducerId (transactional), AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and
    EndTxn at `version` (their client ranges are the same: 0-3; AddPartitionsToTxn v4+ is
    broker-to-broker, `test_add_partitions_to_txn_verify_only`)."""
    client_versions = _versions(ApiKey.ADD_PARTITIONS_TO_TXN)[:4]
    assert client_versions == _versions(ApiKey.ADD_OFFSETS_TO_TXN) == _versions(ApiKey.END_TXN)
    assert _versions(ApiKey.TXN_OFFSET_COMMIT) == _versions(ApiKey.END_TXN)
    txn_id, group = f"sweep-txn-{uuid.uuid4().hex[:6]}", f"sweep-txn-group-{uuid.uuid4().hex[:6]}"
    tc = _txn_coordinator(sweep, txn_id)
    gc = sweep.coordinator(group)
    try:
        init = sweep.ask(tc, ApiKey.INIT_PRODUCER_ID, 4, {"transactional_id": txn_id, "transaction_timeout_ms": 60000})
        pid, epoch = init.producer_id, init.producer_epoch
        topics = [{"name": sweep.topic, "partitions": [0]}]
        add = {
            "v3_and_below_transactional_id": txn_id,
            "v3_and_below_producer_id": pid,
            "v3_and_below_producer_epoch": epoch,
            "v3_and_below_topics": topics,
        }
        sweep.ask(tc, ApiKey.ADD_PARTITIONS_TO_TXN, version, add)
        offsets = {"transactional_id": txn_id, "producer_id": pid, "producer_epoch": epoch, "group_id": group}
        sweep.ask(tc, ApiKey.ADD_OFFSETS_TO_TXN, version, offsets)
        commit = {
            **offsets,
            "topics": [
                {
                    "name": sweep.topic,
                    "partitions": [{"partition_index": 0, "committed_offset": 1, "committed_metadata": ""}],
                }
            ],
        }
        sweep.ask(gc, ApiKey.TXN_OFFSET_COMMIT, version, commit)
        end = {"transactional_id": txn_id, "producer_id": pid, "producer_epoch": epoch, "committed": True}
        sweep.ask(tc, ApiKey.END_TXN, version, end)
    finally:
        tc.close()
        gc.close()


@pytest.mark.parametrize("version", [v for v in _versions(ApiKey.ADD_PARTITIONS_TO_TXN) if v >= 4])
def test_add_partitions_to_txn_verify_only(sweep, version):
    """AddPartitionsToTxn v4+ with VerifyOnly (KIP-890 part 1, what a partition leader asks the
    coordinator): NONE for a partition in the ongoing transaction, INVALID_TXN_STATE (48) for one
    that is not, PRODUCER_FENCED (90) for an old epoch, INVALID_PRODUCER_ID_MAPPING (49) for another
    producer id; nothing is added."""
    txn_id = f"sweep-verify-{uuid.uuid4().hex[:6]}"
    other = f"{sweep.topic}-other"
    sweep.cluster.create_topic(other, partitions=1)
    tc = _txn_coordinator(sweep, txn_id)
    try:
        init = sweep.ask(tc, ApiKey.INIT_PRODUCER_ID, 4, {"transactional_id": txn_id, "transaction_timeout_ms": 60000})
        pid, epoch = init.producer_id, init.producer_epoch
        add = {
            "v3_and_below_transactional_id": txn_id,
            "v3_and_below_producer_id": pid,
            "v3_and_below_producer_epoch": epoch,
            "v3_and_below_topics": [{"name": sweep.topic, "partitions": [0]}],
        }
        sweep.ask(tc, ApiKey.ADD_PARTITIONS_TO_TXN, 3, add)

        def verify(producer_id: int, producer_epoch: int) -> dict:
            body = {
                "transactions": [
                    {
                        "transactional_id": txn_id,
                        "producer_id": producer_id,
                        "producer_epoch": producer_epoch,
                        "verify_only": True,
                        "topics": [{"name": sweep.topic, "partitions": [0]}, {"name": other, "partitions": [0]}],
                    }
                ]
            }
            resp = sweep.ask(tc, ApiKey.ADD_PARTITIONS_TO_TXN, version, body, allowed=(0, 48, 49, 90))
            assert resp.error_code == 0
            (txn,) = resp.results_by_transaction
            assert txn.transactional_id == txn_id
            return {
                (t.name, r.partition_index): r.partition_error_code
                for t in txn.topic_results
                for r in t.results_by_partition
            }

        assert verify(pid, epoch) == {(sweep.topic, 0): 0, (other, 0): 48}
        assert verify(pid, epoch) == {(sweep.topic, 0): 0, (other, 0): 48}  # verifying added nothing
        assert set(verify(pid, epoch - 1 if epoch > 0 else epoch + 1).values()) == {90}
        assert set(verify(pid + 1_000_000, epoch).values()) == {49}
        end = {"transactional_id": txn_id, "producer_id": pid, "producer_epoch": epoch, "committed": False}
        sweep.ask(tc, ApiKey.END_TXN, 3, end)
    finally:
        tc.close()


@pytest.mark.parametrize("version", _versions(ApiKey.WRITE_TXN_MARKERS))
def test_write_txn_markers(sweep, version):
    topic = f"sweep-markers-{uuid.uuid4().hex[:6]}"
    sweep.cluster.create_topic(topic, partitions=1, replication_factor=1)
    c = WireClient.to(sweep.cluster.bootstrap_servers)
    md = sweep.ask(c, ApiKey.METADATA, 1, {"topics": [{"name": topic}]})
    c.close()
    leader = next(b for b in md.brokers if b.node_id == md.topics[0].partitions[0].leader_id)
    client = WireClient(leader.host, leader.port)
    body = {
        "markers": [
            {
                "producer_id": 4242,
                "producer_epoch": 0,
                "transaction_result": False,
                "topics": [{"name": topic, "partition_indexes": [0]}],
                "coordinator_epoch": 0,
            }
        ]
    }
    try:
        resp = sweep.ask(client, ApiKey.WRITE_TXN_MARKERS, version, body)
    finally:
        client.close()
    assert resp.markers[0].topics[0].partitions[0].error_code == 0


@pytest.mark.parametrize("version", _versions(ApiKey.LIST_TRANSACTIONS))
def test_list_and_describe_transactions(sweep, version):
    assert _versions(ApiKey.DESCRIBE_TRANSACTIONS) == _versions(ApiKey.LIST_TRANSACTIONS)
    resp = sweep.ask(sweep.leader, ApiKey.LIST_TRANSACTIONS, version, {"state_filters": [], "producer_id_filters": []})
    assert resp.unknown_state_filters == []
    described = sweep.ask(
        sweep.leader, ApiKey.DESCRIBE_TRANSACTIONS, version, {"transactional_ids": ["none"]}, allowed=(0, 16, 105)
    )
    assert len(described.transaction_states) == 1


@pytest.mark.parametrize("version", _versions(ApiKey.DESCRIBE_PRODUCERS))
def test_describe_producers(sweep, version):
    body = {"topics": [{"name": sweep.topic, "partition_indexes": [0]}]}
    resp = sweep.ask(sweep.leader, ApiKey.DESCRIBE_PRODUCERS, version, body)
    assert resp.topics[0].partitions[0].partition_index == 0


@pytest.mark.parametrize("version", _versions(ApiKey.CONSUMER_GROUP_HEARTBEAT))
def test_consumer_group_heartbeat_and_describe(sweep, version):
    """KIP-848: join (epoch 0) gets epoch 1 and the whole topic; describe shows it; epoch -1 leaves."""
    group = f"sweep-cg-{version}-{uuid.uuid4().hex[:6]}"
    c = sweep.coordinator(group)
    try:
        member = uuid.uuid4().hex
        joined = sweep.ask(
            c,
            ApiKey.CONSUMER_GROUP_HEARTBEAT,
            version,
            {
                "group_id": group,
                "member_id": member,
                "member_epoch": 0,
                "rebalance_timeout_ms": 30000,
                "subscribed_topic_names": [sweep.topic],
                "topic_partitions": [],
            },
        )
        assert joined.member_epoch == 1 and joined.member_id == member
        assert [list(tp.partitions) for tp in joined.assignment.topic_partitions] == [[0]]
        for v in _versions(ApiKey.CONSUMER_GROUP_DESCRIBE):
            described = sweep.ask(c, ApiKey.CONSUMER_GROUP_DESCRIBE, v, {"group_ids": [group]}).groups[0]
            assert described.group_state == "Stable" and [m.member_id for m in described.members] == [member]
            assert described.members[0].assignment.topic_partitions[0].topic_name == sweep.topic
        left = sweep.ask(
            c, ApiKey.CONSUMER_GROUP_HEARTBEAT, version, {"group_id": group, "member_id": member, "member_epoch": -1}
        )
        assert left.member_epoch == -1
    finally:
        c.close()


def test_the_sweep_covers_every_advertised_api():
    """A new API in SUPPORTED_APIS needs a sweep test here (and a ledger entry)."""
    swept = {
        ApiKey.PRODUCE, ApiKey.FETCH, ApiKey.LIST_OFFSETS, ApiKey.METADATA, ApiKey.API_VERSIONS,
        ApiKey.OFFSET_COMMIT, ApiKey.OFFSET_FETCH, ApiKey.FIND_COORDINATOR, ApiKey.JOIN_GROUP,
        ApiKey.SYNC_GROUP, ApiKey.HEARTBEAT, ApiKey.DESCRIBE_GROUPS, ApiKey.LEAVE_GROUP, ApiKey.LIST_GROUPS,
        ApiKey.CREATE_TOPICS, ApiKey.DELETE_TOPICS, ApiKey.DELETE_RECORDS, ApiKey.INIT_PRODUCER_ID,
        ApiKey.DESCRIBE_CONFIGS, ApiKey.ALTER_CONFIGS, ApiKey.INCREMENTAL_ALTER_CONFIGS,
        ApiKey.CREATE_PARTITIONS, ApiKey.DELETE_GROUPS, ApiKey.OFFSET_DELETE, ApiKey.ELECT_LEADERS,
        ApiKey.DESCRIBE_CLUSTER, ApiKey.ADD_PARTITIONS_TO_TXN, ApiKey.ADD_OFFSETS_TO_TXN, ApiKey.END_TXN,
        ApiKey.WRITE_TXN_MARKERS, ApiKey.TXN_OFFSET_COMMIT, ApiKey.DESCRIBE_PRODUCERS,
        ApiKey.DESCRIBE_TRANSACTIONS, ApiKey.LIST_TRANSACTIONS,
        ApiKey.CONSUMER_GROUP_HEARTBEAT, ApiKey.CONSUMER_GROUP_DESCRIBE,
    }  # fmt: skip
    # KIP-932: each has one advertised version, sent by confluent-kafka's ShareConsumer (or, for the
    # three offsets APIs, by the codec) in tests/integration/test_share_groups.py, as the ledger says.
    swept |= {
        ApiKey.SHARE_GROUP_HEARTBEAT, ApiKey.SHARE_GROUP_DESCRIBE, ApiKey.SHARE_FETCH, ApiKey.SHARE_ACKNOWLEDGE,
        ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS, ApiKey.ALTER_SHARE_GROUP_OFFSETS, ApiKey.DELETE_SHARE_GROUP_OFFSETS,
    }  # fmt: skip
    for key in (ApiKey.SHARE_GROUP_HEARTBEAT, ApiKey.SHARE_FETCH, ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS):
        assert len(_versions(key)) == 1, f"{key!r} gained a version: sweep it here"
    assert set(SUPPORTED_APIS) <= swept, f"not swept: {sorted(set(SUPPORTED_APIS) - swept)}"
