"""KIP-890 part 1 with real broker processes: a partition leader verifies a transactional write
with the transaction coordinator before appending it, so a write to a partition the transaction
never added, or a late write after the transaction ended, is refused and opens no (hanging)
transaction that would hold back the partition's last stable offset.

The writes are raw Produce requests (the codec over a socket): no real client sends a
transactional batch to a partition it did not add, which is the point of the defence. That real
clients still work is tests/integration/test_transactions.py."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import FAST_GROUPS
from tests.support import wait_until
from workbench import Cluster
from workbench.broker.apis import ApiKey
from workbench.protocol.blocking_client import WireClient, make_batch
from workbench.protocol.codec import REQUEST_CLASSES, build

INVALID_TXN_STATE = 48
COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE = 14, 15
READ_UNCOMMITTED, READ_COMMITTED = 0, 1


def ask(client: WireClient, key: int, version: int, body: dict):
    return client.request(build(REQUEST_CLASSES[key], body), version)


class Txn:
    """A transactional id driven by hand: its coordinator, producer id and epoch."""

    def __init__(self, cluster: Cluster, txn_id: str) -> None:
        self.cluster, self.txn_id = cluster, txn_id
        self.coordinator_id = coordinator_of(cluster, txn_id)
        self.tc = client_of(cluster, self.coordinator_id)
        body = {"transactional_id": txn_id, "transaction_timeout_ms": 60000}

        def initialized():  # the first of a fresh cluster may meet a loading coordinator: retry, as clients do
            r = ask(self.tc, ApiKey.INIT_PRODUCER_ID, 4, body)
            assert r.error_code in (0, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE), r
            return r if r.error_code == 0 else None

        init = wait_until(initialized, timeout=30, message=f"InitProducerId for {txn_id}")
        self.pid, self.epoch = init.producer_id, init.producer_epoch
        self.leaders: dict[int, WireClient] = {}

    def add(self, topic: str, partition: int) -> None:
        body = {
            "v3_and_below_transactional_id": self.txn_id,
            "v3_and_below_producer_id": self.pid,
            "v3_and_below_producer_epoch": self.epoch,
            "v3_and_below_topics": [{"name": topic, "partitions": [partition]}],
        }
        resp = ask(self.tc, ApiKey.ADD_PARTITIONS_TO_TXN, 3, body)
        codes = [r.partition_error_code for t in resp.results_by_topic_v3_and_below for r in t.results_by_partition]
        assert codes == [0]

    def end(self, commit: bool) -> None:
        body = {"transactional_id": self.txn_id, "producer_id": self.pid, "producer_epoch": self.epoch}
        resp = ask(self.tc, ApiKey.END_TXN, 3, {**body, "committed": commit})
        assert resp.error_code == 0, resp

    def produce(self, topic: str, partition: int, sequence: int, value: bytes) -> int:
        """The error code of a transactional Produce (v9, acks=all) of one record to the leader."""
        leader = leader_of(self.cluster, topic, partition)
        c = self.leaders.get(leader) or self.leaders.setdefault(leader, client_of(self.cluster, leader))
        batch = make_batch(
            [value], producer_id=self.pid, producer_epoch=self.epoch, base_sequence=sequence, transactional=True
        )
        body = {
            "transactional_id": self.txn_id,
            "acks": -1,
            "timeout_ms": 10000,
            "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": batch}]}],
        }
        resp = ask(c, ApiKey.PRODUCE, 9, body)
        return resp.responses[0].partition_responses[0].error_code

    def close(self) -> None:
        for c in (self.tc, *self.leaders.values()):
            c.close()


def metadata(cluster: Cluster, topic: str):
    c = WireClient.to(cluster.bootstrap_servers)
    try:
        return ask(c, ApiKey.METADATA, 1, {"topics": [{"name": topic}]})
    finally:
        c.close()


def leader_of(cluster: Cluster, topic: str, partition: int) -> int:
    md = metadata(cluster, topic)
    return next(p.leader_id for p in md.topics[0].partitions if p.partition_index == partition)


def client_of(cluster: Cluster, node_id: int) -> WireClient:
    c = WireClient.to(cluster.bootstrap_servers)
    try:
        md = ask(c, ApiKey.METADATA, 1, {"topics": []})
    finally:
        c.close()
    b = next(b for b in md.brokers if b.node_id == node_id)
    return WireClient(b.host, b.port)


def coordinator_of(cluster: Cluster, txn_id: str) -> int:
    c = WireClient.to(cluster.bootstrap_servers)
    try:
        resp = ask(c, ApiKey.FIND_COORDINATOR, 3, {"key": txn_id, "key_type": 1})
    finally:
        c.close()
    assert resp.error_code == 0, resp
    return resp.node_id


def offsets(cluster: Cluster, topic: str, partition: int) -> tuple[int, int]:
    """(high watermark, last stable offset): ListOffsets latest, read_uncommitted and read_committed."""
    c = client_of(cluster, leader_of(cluster, topic, partition))
    try:
        out = []
        for isolation in (READ_UNCOMMITTED, READ_COMMITTED):
            body = {
                "replica_id": -1,
                "isolation_level": isolation,
                "topics": [{"name": topic, "partitions": [{"partition_index": partition, "timestamp": -1}]}],
            }
            p = ask(c, ApiKey.LIST_OFFSETS, 5, body).topics[0].partitions[0]
            assert p.error_code == 0, p
            out.append(p.offset)
        return out[0], out[1]
    finally:
        c.close()


def open_transactions(cluster: Cluster, topic: str, partition: int) -> dict[int, int]:
    """producer id -> first offset of its open transaction at the partition (DescribeProducers)."""
    c = client_of(cluster, leader_of(cluster, topic, partition))
    try:
        resp = ask(c, ApiKey.DESCRIBE_PRODUCERS, 0, {"topics": [{"name": topic, "partition_indexes": [partition]}]})
    finally:
        c.close()
    (p,) = resp.topics[0].partitions
    assert p.error_code == 0
    return {a.producer_id: a.current_txn_start_offset for a in p.active_producers if a.current_txn_start_offset >= 0}


def txn_id_coordinated_by(cluster: Cluster, want, prefix: str) -> str:
    """A transactional id whose coordinator satisfies ``want(node_id)``."""
    for i in range(200):
        txn_id = f"{prefix}-{i}"
        if want(coordinator_of(cluster, txn_id)):
            return txn_id
    raise AssertionError("no transactional id with the wanted coordinator")


@pytest.mark.parametrize("where", ["coordinator-elsewhere", "coordinator-is-the-leader"])
def test_write_to_a_partition_not_in_the_transaction_is_refused(cluster: Cluster, where: str) -> None:
    """A transactional batch for a partition the transaction never added: INVALID_TXN_STATE, and
    the partition keeps no open transaction (its LSO stays at the high watermark). A partition
    that was added takes the same producer's batch. Both when the leader asks another broker
    (AddPartitionsToTxn v4, VerifyOnly) and when it coordinates the id itself."""
    topic = f"verify-{where}-{uuid.uuid4().hex[:6]}"
    cluster.create_topic(topic, partitions=3)
    leaders = {p: leader_of(cluster, topic, p) for p in range(3)}
    stray = 2
    if where == "coordinator-elsewhere":
        txn_id = txn_id_coordinated_by(cluster, lambda n: n != leaders[stray], topic)
    else:
        txn_id = txn_id_coordinated_by(cluster, lambda n: n == leaders[stray], topic)
    txn = Txn(cluster, txn_id)
    try:
        txn.add(topic, 0)
        assert txn.produce(topic, 0, 0, b"in-the-transaction") == 0
        assert txn.produce(topic, stray, 0, b"never-added") == INVALID_TXN_STATE
        assert open_transactions(cluster, topic, stray) == {}
        hw, lso = offsets(cluster, topic, stray)
        assert (hw, lso) == (0, 0)
        assert txn.pid in open_transactions(cluster, topic, 0)  # the added partition's is open
        txn.end(commit=True)
    finally:
        txn.close()


def test_a_late_write_after_the_abort_cannot_hang_the_partition(cluster: Cluster) -> None:
    """The hanging transaction KIP-890 is named for: the producer aborts (same epoch), then a
    write of that transaction arrives late. Without verification it opens a transaction no marker
    will close, and read_committed readers stop at it for good; with it, it is refused."""
    topic = f"verify-late-{uuid.uuid4().hex[:6]}"
    cluster.create_topic(topic, partitions=1)
    txn = Txn(cluster, f"{topic}-tx")
    try:
        txn.add(topic, 0)
        assert txn.produce(topic, 0, 0, b"aborted") == 0
        txn.end(commit=False)  # EndTxn answers once the abort marker is written
        hw, lso = offsets(cluster, topic, 0)
        assert hw == lso == 2  # the record and the marker
        assert txn.produce(topic, 0, 1, b"late") == INVALID_TXN_STATE
        assert open_transactions(cluster, topic, 0) == {}
        assert offsets(cluster, topic, 0) == (2, 2)
        # The producer's next transaction goes on as usual.
        txn.add(topic, 0)
        assert txn.produce(topic, 0, 1, b"next") == 0
        txn.end(commit=True)
        assert offsets(cluster, topic, 0) == (4, 4)
    finally:
        txn.close()


def test_verification_off_takes_the_producer_at_its_word(fresh_cluster) -> None:
    """transaction.partition.verification.enable=false (Kafka's switch): the write to a partition
    never added is appended and hangs the partition (the LSO stays at it), as before Kafka 3.6."""
    cluster = fresh_cluster(
        brokers=1, config={**FAST_GROUPS, "transaction_partition_verification_enable": False}
    ).start()
    topic = "verify-off"
    cluster.create_topic(topic, partitions=2, replication_factor=1)
    txn = Txn(cluster, "verify-off-tx")
    try:
        txn.add(topic, 0)
        assert txn.produce(topic, 1, 0, b"never-added") == 0
        assert txn.pid in open_transactions(cluster, topic, 1)
        assert offsets(cluster, topic, 1) == (1, 0)
    finally:
        txn.close()


def test_offsets_committed_outside_the_transaction_are_refused(cluster: Cluster) -> None:
    """TxnOffsetCommit is verified too (Kafka 3.6): before AddOffsetsToTxn put the group's
    `__consumer_offsets` partition in the transaction, the offsets are refused with
    INVALID_TXN_STATE and open no transaction there; after it, they are taken."""
    from tests.support import wait_until
    from workbench.broker.group_offsets import partition_for

    topic = f"verify-offsets-{uuid.uuid4().hex[:6]}"
    cluster.create_topic(topic, partitions=1)
    group = f"{topic}-group"
    txn = Txn(cluster, f"{topic}-tx")
    c = WireClient.to(cluster.bootstrap_servers)
    try:
        found = wait_until(
            lambda: (r := ask(c, ApiKey.FIND_COORDINATOR, 3, {"key": group, "key_type": 0})).error_code == 0 and r,
            timeout=30,
        )
    finally:
        c.close()
    gc = client_of(cluster, found.node_id)
    offsets_partition = partition_for(group, 10)  # offsets_topic_num_partitions
    body = {
        "transactional_id": txn.txn_id,
        "group_id": group,
        "producer_id": txn.pid,
        "producer_epoch": txn.epoch,
        "topics": [{"name": topic, "partitions": [{"partition_index": 0, "committed_offset": 1}]}],
    }

    def commit() -> int:
        resp = ask(gc, ApiKey.TXN_OFFSET_COMMIT, 3, body)
        return resp.topics[0].partitions[0].error_code

    try:
        assert wait_until(lambda: (code := commit()) not in (14, 15, 16) and code, timeout=30) == INVALID_TXN_STATE
        assert txn.pid not in open_transactions(cluster, "__consumer_offsets", offsets_partition)
        add = {"transactional_id": txn.txn_id, "producer_id": txn.pid, "producer_epoch": txn.epoch, "group_id": group}
        assert ask(txn.tc, ApiKey.ADD_OFFSETS_TO_TXN, 3, add).error_code == 0
        assert commit() == 0
        assert txn.pid in open_transactions(cluster, "__consumer_offsets", offsets_partition)
        txn.end(commit=True)
    finally:
        gc.close()
        txn.close()
