"""Issue 12: an acknowledgment is a promise, across leader changes, ISR shrinks and restarts.

Each test reproduces one mechanism that lost, duplicated or under-replicated acknowledged
records on the code before its fix (the issue's items 1, 2, 3), with real broker processes,
SIGKILL/SIGSTOP and confluent-kafka idempotent `acks=all` producers.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from tests.conftest import FAST_GROUPS
from tests.integration.test_durability import read_all
from tests.integration.test_replication import partitions_of, wait_until


def create_assigned(cluster, topic: str, replicas: list[int], config: dict[str, str] | None = None) -> None:
    """One partition on `replicas` in that order (the first is the preferred leader)."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replica_assignment=[replicas], config=config or {})]
    )
    futures[topic].result(30)
    wait_until(lambda: len(partitions_of(cluster, topic)) == 1, message="topic visible")
    wait_until(
        lambda: int(partitions_of(cluster, topic).leader.iloc[0]) == replicas[0],
        message=f"broker {replicas[0]} leads",
    )


def segment_bytes(cluster, broker: int, topic: str) -> int:
    directory = Path(cluster.data_dir) / f"broker-{broker}" / "topics" / topic / "partition=0"
    return sum(p.stat().st_size for p in directory.glob("*.log"))


class Deliveries:
    """Delivery reports of one idempotent acks=all producer."""

    def __init__(self, bootstrap: str, **conf) -> None:
        settings = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 0,
            "message.timeout.ms": 60000,
        }
        settings.update(conf)
        self.producer = Producer(settings)
        self.acked: list[tuple[int, bytes]] = []
        self.failed: list[tuple[KafkaError, bytes]] = []

    def produce(self, topic: str, values: list[bytes]) -> None:
        for v in values:
            self.producer.produce(topic, value=v, on_delivery=self._report)
            self.producer.poll(0)

    def _report(self, err, msg) -> None:
        if err:
            self.failed.append((err, msg.value()))
        else:
            self.acked.append((msg.offset(), msg.value()))

    def flush(self, timeout: float) -> int:
        return self.producer.flush(timeout)


def test_leader_change_after_append_answers_possibly_persisted_and_stores_each_record_once(fresh_cluster, topic_name):
    """Item 1: a batch appended by the old leader and replicated to the new one, but not yet
    confirmed by the whole ISR when leadership moves, must be retried with its sequence (and
    deduplicated by the new leader), not re-sent as new records."""
    # Long session and lag timeouts: the SIGSTOPped replica stays in the ISR, so the HW waits.
    config = {**FAST_GROUPS, "broker_session_timeout_ms": 20000, "replica_lag_time_max_ms": 60000}
    cluster = fresh_cluster(3, config=config)
    old_leader, new_leader, stalled = 2, 3, 1
    create_assigned(cluster, topic_name, [old_leader, new_leader, stalled])
    first = Deliveries(cluster.bootstrap_servers)
    first.produce(topic_name, [f"before-{i}".encode() for i in range(20)])
    assert first.flush(30) == 0 and len(first.acked) == 20
    wait_until(lambda: segment_bytes(cluster, stalled, topic_name) == segment_bytes(cluster, old_leader, topic_name))

    stalled_pid = cluster.broker_pids()[stalled]
    os.kill(stalled_pid, signal.SIGSTOP)
    try:
        d = Deliveries(cluster.bootstrap_servers)
        values = [f"v-{i}".encode() for i in range(200)]
        d.produce(topic_name, values)
        # Appended on the old leader and copied to the new one; the stalled replica blocks the HW.
        wait_until(
            lambda: (
                segment_bytes(cluster, new_leader, topic_name) == segment_bytes(cluster, old_leader, topic_name)
                and segment_bytes(cluster, old_leader, topic_name) > segment_bytes(cluster, stalled, topic_name)
            ),
            message="the batches on the old and new leader",
        )
        d.producer.poll(0.5)
        assert not d.acked, "acknowledged before the whole ISR had the batches"
        # Controlled shutdown: leadership moves to `new_leader` while the batches wait for the HW.
        cluster.stop_broker(old_leader)
    finally:
        os.kill(stalled_pid, signal.SIGCONT)
    assert d.flush(60) == 0
    assert not d.failed, d.failed[:3]
    assert sorted(v for _, v in d.acked) == sorted(values)
    stored = [m.value() for m in read_all(cluster.bootstrap_servers, topic_name, 220)]
    counts = collections.Counter(stored)
    duplicates = {v: n for v, n in counts.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} records stored more than once, e.g. {list(duplicates)[:3]}"
    assert set(stored) == set(values) | {v for _, v in first.acked}
    # Each acknowledged offset holds the value it was acknowledged for.
    by_offset = {m.offset(): m.value() for m in read_all(cluster.bootstrap_servers, topic_name, 220)}
    assert all(by_offset.get(off) == v for off, v in d.acked)


def _broker_client(cluster, broker: int):
    from workbench.protocol.blocking_client import WireClient

    return WireClient("127.0.0.1", cluster.brokers[broker].port, timeout=60.0)


def _produce(client, topic: str, batch: bytes, timeout_ms: int = 30000):
    from kafka.protocol.producer import ProduceRequest

    req = ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout_ms=timeout_ms,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=batch)],
            )
        ],
    )
    return client.request(req, 9).responses[0].partition_responses[0]


def test_appended_batch_is_never_answered_not_leader_and_its_retry_is_a_duplicate_on_the_new_leader(
    fresh_cluster, topic_name
):
    """Item 1 on the wire: once the old leader appended the batch, leadership moving away is
    answered REQUEST_TIMED_OUT (possibly persisted), never NOT_LEADER_OR_FOLLOWER; the same
    batch (same producer id, epoch, sequence) sent to the new leader is recognised from the
    replicated producer state and answered with its original offset."""
    from kafka.protocol.producer import InitProducerIdRequest

    from workbench.protocol.blocking_client import make_batch
    from workbench.protocol.errors import ErrorCode

    config = {**FAST_GROUPS, "broker_session_timeout_ms": 20000, "replica_lag_time_max_ms": 60000}
    cluster = fresh_cluster(3, config=config)
    old_leader, new_leader, stalled = 2, 3, 1
    create_assigned(cluster, topic_name, [old_leader, new_leader, stalled])
    client = _broker_client(cluster, old_leader)
    init = client.request(InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000), 1)
    pid, epoch = init.producer_id, init.producer_epoch
    first = _produce(
        client, topic_name, make_batch([b"a", b"b"], producer_id=pid, producer_epoch=epoch, base_sequence=0)
    )
    assert (first.error_code, first.base_offset) == (0, 0)
    wait_until(lambda: segment_bytes(cluster, stalled, topic_name) == segment_bytes(cluster, old_leader, topic_name))

    batch = make_batch([b"c", b"d", b"e"], producer_id=pid, producer_epoch=epoch, base_sequence=2)
    answer: list = []
    stalled_pid = cluster.broker_pids()[stalled]
    os.kill(stalled_pid, signal.SIGSTOP)
    try:
        sender = threading.Thread(target=lambda: answer.append(_produce(client, topic_name, batch)))
        sender.start()
        wait_until(
            lambda: (
                segment_bytes(cluster, new_leader, topic_name) == segment_bytes(cluster, old_leader, topic_name)
                and segment_bytes(cluster, old_leader, topic_name) > segment_bytes(cluster, stalled, topic_name)
            ),
            message="the batch on the old and the new leader",
        )
        assert not answer, "answered before the whole ISR had the batch"
        cluster.stop_broker(old_leader)  # controlled shutdown: leadership moves while the batch waits
        sender.join(30)
    finally:
        os.kill(stalled_pid, signal.SIGCONT)
    assert answer, "the old leader never answered"
    assert answer[0].error_code != ErrorCode.NOT_LEADER_OR_FOLLOWER, "an appended batch was answered 'not written'"
    assert answer[0].error_code in (ErrorCode.REQUEST_TIMED_OUT, ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND)
    # The producer's retry, to the new leader: the same batch, recognised as already written.
    wait_until(lambda: int(partitions_of(cluster, topic_name).leader.iloc[0]) == new_leader, message="new leader")
    retry_client = _broker_client(cluster, new_leader)
    retry = _produce(retry_client, topic_name, batch)
    assert (retry.error_code, retry.base_offset) == (0, 2)
    stored = [m.value() for m in read_all(cluster.bootstrap_servers, topic_name, 5)]
    assert stored == [b"a", b"b", b"c", b"d", b"e"]


def test_acks_all_waiting_when_the_isr_shrinks_below_min_insync_is_not_acknowledged(fresh_cluster, topic_name):
    """Item 2: batches already waiting for replication when the only follower stalls must not be
    acknowledged once the controller shrinks the ISR to the leader alone (the HW then follows
    one copy): min.insync.replicas=2 is checked again at the answer."""
    cluster = fresh_cluster(3)
    leader, follower = 2, 3
    create_assigned(cluster, topic_name, [leader, follower], {"min.insync.replicas": "2"})
    warm = Deliveries(cluster.bootstrap_servers)
    warm.produce(topic_name, [b"warm"])
    assert warm.flush(30) == 0 and len(warm.acked) == 1
    follower_pid = cluster.broker_pids()[follower]
    os.kill(follower_pid, signal.SIGSTOP)
    try:
        d = Deliveries(cluster.bootstrap_servers, **{"message.timeout.ms": 8000})
        d.produce(topic_name, [f"v-{i}".encode() for i in range(50)])
        # The follower misses its session timeout: fenced, out of the ISR; the HW follows the leader.
        wait_until(lambda: list(partitions_of(cluster, topic_name).isr.iloc[0]) == [leader], message="ISR == [leader]")
        remaining = d.flush(30)
    finally:
        os.kill(follower_pid, signal.SIGCONT)
    assert remaining == 0
    assert not d.acked, f"{len(d.acked)} records acknowledged with one in-sync copy (min.insync.replicas=2)"
    assert len(d.failed) == 50
    codes = {err.code() for err, _ in d.failed}
    assert codes & {
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError._MSG_TIMED_OUT,
    }


def cut_active_segment_tail(cluster, broker: int, topic: str, keep: float = 0.5) -> int:
    """Simulated page-cache loss: the active segment of `broker`'s replica loses its tail
    (cut mid-batch, as a torn write would). Returns the bytes removed."""
    directory = Path(cluster.data_dir) / f"broker-{broker}" / "topics" / topic / "partition=0"
    active = max(directory.glob("*.log"), key=lambda p: int(p.stem))
    size = active.stat().st_size
    with open(active, "r+b") as f:
        f.truncate(int(size * keep))
    return size - int(size * keep)


def test_fast_restart_after_losing_the_tail_is_out_of_the_isr_and_never_elected(fresh_cluster, topic_name):
    """Item 3: a follower SIGKILLed, whose active segment loses its unflushed tail, restarts
    within the session timeout; then the leader dies. The restarted replica is a new
    incarnation (broker epoch): out of the ISR until it catches up, so the election picks the
    replica that has every acknowledged record, and nothing acknowledged is lost."""
    # A session timeout far longer than a restart: the fast restart is never noticed as a death.
    config = {**FAST_GROUPS, "broker_session_timeout_ms": 5000}
    cluster = fresh_cluster(3, config=config)
    leader, restarted, healthy = 2, 3, 1  # `restarted` comes first in replica order after the leader
    create_assigned(cluster, topic_name, [leader, restarted, healthy])
    d = Deliveries(cluster.bootstrap_servers, **{"linger.ms": 5})
    values = [f"v-{i:05d}".encode() for i in range(3000)]
    d.produce(topic_name, values)
    assert d.flush(60) == 0 and len(d.acked) == len(values)
    wait_until(
        lambda: segment_bytes(cluster, restarted, topic_name) == segment_bytes(cluster, leader, topic_name),
        message="the follower has the whole log",
    )
    cluster.kill_broker(restarted)
    assert cut_active_segment_tail(cluster, restarted, topic_name) > 0
    cluster.kill_broker(leader)
    cluster.restart_broker(restarted)  # quorum: `restarted` + `healthy`
    wait_until(
        lambda: int(partitions_of(cluster, topic_name).leader.iloc[0]) not in (leader, -1),
        timeout=30,
        message="a new leader",
    )
    cluster.restart_broker(leader)
    stored = {m.value() for m in read_all(cluster.bootstrap_servers, topic_name, len(values), timeout=30)}
    lost = set(values) - stored
    assert not lost, f"{len(lost)} acknowledged records lost (e.g. {sorted(lost)[:3]})"
    # The restarted replica catches up and rejoins the ISR.
    wait_until(
        lambda: sorted(partitions_of(cluster, topic_name).isr.iloc[0]) == [1, 2, 3],
        timeout=30,
        message="full ISR again",
    )


def _first_offsets(cluster, topic: str, expected: int) -> list[int]:
    return sorted(m.offset() for m in read_all(cluster.bootstrap_servers, topic, expected, timeout=20))


def test_delete_records_reaches_every_replica_and_survives_leader_changes_and_restarts(fresh_cluster, topic_name):
    """Item 8: DeleteRecords moves the log start offset on the followers too (from the Fetch
    response's log_start_offset, checkpointed), so a new leader, or a restarted one, never
    serves the deleted records again."""
    from confluent_kafka import TopicPartition as TP

    cluster = fresh_cluster(3)
    create_assigned(cluster, topic_name, [2, 3, 1])
    d = Deliveries(cluster.bootstrap_servers)
    d.produce(topic_name, [f"v-{i}".encode() for i in range(100)])
    assert d.flush(30) == 0 and len(d.acked) == 100
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    [future] = admin.delete_records([TP(topic_name, 0, 60)], operation_timeout=10).values()
    assert future.result(15).low_watermark == 60
    assert _first_offsets(cluster, topic_name, 40) == list(range(60, 100))

    cluster.kill_broker(2)  # a new leader (3) that must already know the log starts at 60
    wait_until(lambda: int(partitions_of(cluster, topic_name).leader.iloc[0]) == 3, message="broker 3 leads")
    assert _first_offsets(cluster, topic_name, 40) == list(range(60, 100))

    cluster.restart_broker(2)
    cluster.kill_broker(3)  # broker 1 (or 2, once back in the ISR) leads, after a restart of 2
    wait_until(lambda: int(partitions_of(cluster, topic_name).leader.iloc[0]) in (1, 2), message="a new leader")
    assert _first_offsets(cluster, topic_name, 40) == list(range(60, 100))
    cluster.restart_broker(3)
    cluster.kill_broker(1)
    wait_until(lambda: int(partitions_of(cluster, topic_name).leader.iloc[0]) in (2, 3), timeout=30, message="leader")
    assert _first_offsets(cluster, topic_name, 40) == list(range(60, 100))


def test_a_leader_whose_log_dir_fails_hands_its_leadership_to_a_healthy_replica(fresh_cluster, topic_name):
    """Item 6 (KIP-112): the leader's writes start failing (a file size limit: EFBIG, as a full
    disk gives ENOSPC); it marks its log directory offline and tells the controller, which moves
    the leadership to an in-sync replica, so producers carry on; preferred-leader election does
    not move it back while the directory is offline."""
    import resource

    cluster = fresh_cluster(3)
    sick, successor = 2, 3
    create_assigned(cluster, topic_name, [sick, successor, 1], {"min.insync.replicas": "2"})
    warm = Deliveries(cluster.bootstrap_servers)
    warm.produce(topic_name, [b"warm"])
    assert warm.flush(30) == 0
    broker_dir = Path(cluster.data_dir) / f"broker-{sick}"
    largest = max(p.stat().st_size for p in broker_dir.rglob("*") if p.is_file())
    limit = largest + 256 * 1024
    resource.prlimit(cluster.broker_pids()[sick], resource.RLIMIT_FSIZE, (limit, limit))

    d = Deliveries(cluster.bootstrap_servers, **{"linger.ms": 5})
    values = [f"{i:06d}".encode() + b"x" * 1024 for i in range(1000)]  # ~1 MB: past the limit
    d.produce(topic_name, values)
    assert d.flush(90) == 0
    assert not d.failed, d.failed[:3]
    assert len(d.acked) == len(values)
    row = partitions_of(cluster, topic_name).iloc[0]
    assert int(row.leader) != sick and sick not in list(row.isr)
    cluster.rebalance_leaders()
    assert int(partitions_of(cluster, topic_name).leader.iloc[0]) != sick
    stored = {m.value() for m in read_all(cluster.bootstrap_servers, topic_name, len(values) + 1)}
    assert set(values) <= stored
    log_text = (broker_dir / "broker.log").read_text()
    assert "log directory" in log_text and "offline" in log_text
    # describe() shows it: the replica is offline, because of its log directory.
    wait_until(
        lambda: partitions_of(cluster, topic_name).replica_states.iloc[0].get(sick) == "log dir offline",
        message="describe() shows the offline log directory",
    )
    assert sick in partitions_of(cluster, topic_name).offline_replicas.iloc[0]


NO_PARQUET = {  # keep sealed segments raw, so the test knows which file holds which offsets
    "parquet_quiet_ms": 600000,
    "parquet_max_backlog_segments": 100000,
    "parquet_max_delay_ms": 600000,
}


def flip_byte_in_sealed_segment(cluster, broker: int, topic: str, which: int = 2) -> Path:
    directory = Path(cluster.data_dir) / f"broker-{broker}" / "topics" / topic / "partition=0"
    sealed = sorted(directory.glob("*.log"), key=lambda p: int(p.stem))[:-1]
    target = sealed[min(which, len(sealed) - 1)]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


def test_a_replica_with_a_damaged_segment_refetches_it_before_it_leads_again(fresh_cluster, topic_name):
    """Item 4: a damaged sealed segment found at recovery leaves no hole: the replica truncates
    to the damage and re-fetches from a healthy replica, rejoins the ISR only once caught up,
    and consumers reading from it as preferred leader again see every record."""
    cluster = fresh_cluster(3, config={**FAST_GROUPS, **NO_PARQUET})
    damaged = 2
    create_assigned(cluster, topic_name, [damaged, 3, 1], {"segment.bytes": "16384"})
    d = Deliveries(cluster.bootstrap_servers, **{"linger.ms": 2, "batch.size": 4096})
    values = [f"v-{i:05d}-".encode() + b"p" * 80 for i in range(3000)]
    d.produce(topic_name, values)
    assert d.flush(60) == 0 and not d.failed, d.failed[:2]
    assert d.flush(60) == 0 and len(d.acked) == len(values)
    wait_until(lambda: segment_bytes(cluster, 3, topic_name) == segment_bytes(cluster, damaged, topic_name))
    cluster.stop_broker(damaged)
    flip_byte_in_sealed_segment(cluster, damaged, topic_name)
    cluster.restart_broker(damaged)
    wait_until(
        lambda: sorted(partitions_of(cluster, topic_name).isr.iloc[0]) == [1, 2, 3],
        timeout=30,
        message="the damaged replica back in the ISR",
    )
    cluster.rebalance_leaders()
    wait_until(lambda: int(partitions_of(cluster, topic_name).leader.iloc[0]) == damaged, message="preferred leader")
    stored = {m.value() for m in read_all(cluster.bootstrap_servers, topic_name, len(values), timeout=30)}
    missing = set(values) - stored
    assert not missing, f"{len(missing)} acknowledged records missing, e.g. {sorted(missing)[:2]}"
    log_text = (Path(cluster.data_dir) / f"broker-{damaged}" / "broker.log").read_text()
    assert "re-fetching it from a healthy replica" in log_text


def test_damage_with_no_healthy_replica_is_reported_lost_not_skipped_silently(fresh_cluster, topic_name):
    """Item 4, the other half: with no other copy, the damaged range cannot be repaired; the
    broker log and describe() say which offsets are lost."""
    cluster = fresh_cluster(3, config={**FAST_GROUPS, **NO_PARQUET})
    create_assigned(cluster, topic_name, [2], {"segment.bytes": "16384"})
    d = Deliveries(cluster.bootstrap_servers, **{"linger.ms": 2, "batch.size": 4096})
    d.produce(topic_name, [f"v-{i:05d}-".encode() + b"p" * 80 for i in range(1000)])
    assert d.flush(60) == 0 and not d.failed
    cluster.stop_broker(2)
    flip_byte_in_sealed_segment(cluster, 2, topic_name)
    cluster.restart_broker(2)
    wait_until(
        lambda: "lost" in partitions_of(cluster, topic_name).replica_states.iloc[0].get(2, ""),
        message="describe() reports the lost range",
    )
    state = partitions_of(cluster, topic_name).replica_states.iloc[0][2]
    assert state.startswith("damaged range ") and "lost (no healthy replica)" in state
    log_text = (Path(cluster.data_dir) / "broker-2" / "broker.log").read_text()
    assert "are LOST" in log_text


def poll_metadata_until(port: int, stop: threading.Event) -> int:
    """Send Metadata v0 requests (all topics) to 127.0.0.1:`port` as fast as it answers until
    `stop` is set, reconnecting while the broker is down: a client's metadata poll. Returns the
    number of answers."""
    import socket
    import struct

    client_id = b"poller"
    body = struct.pack(">hhih", 3, 0, 0, len(client_id)) + client_id + struct.pack(">i", 0)
    request = struct.pack(">i", len(body)) + body
    answered = 0
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
                while not stop.is_set():
                    s.sendall(request)
                    (size,) = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))
                    s.recv(size, socket.MSG_WAITALL)
                    answered += 1
        except (OSError, struct.error):
            stop.wait(0.005)
    return answered


def test_a_killed_leader_with_a_damaged_segment_asked_for_metadata_while_it_starts_refetches_it(
    fresh_cluster, topic_name
):
    """Item 4 under a fast restart of a SIGKILLed leader: Metadata requests answered while the
    restarted broker waits for its registration must not open its logs against the image of its
    previous incarnation (still leader, in the ISR). On the code before the fix they did: the
    damaged range was judged "LOST (no other in-sync replica)" instead of re-fetched, the replica
    rejoined the ISR with the hole, and consumers reading from it skipped acknowledged records
    (the chaos harness's corrupt-segment-leader nemesis, seed 12: 1,173 lost writes)."""
    cluster = fresh_cluster(3, config={**FAST_GROUPS, **NO_PARQUET})
    damaged = 2
    create_assigned(cluster, topic_name, [damaged, 3, 1], {"segment.bytes": "16384"})
    d = Deliveries(cluster.bootstrap_servers, **{"linger.ms": 2, "batch.size": 4096})
    values = [f"v-{i:05d}-".encode() + b"p" * 80 for i in range(3000)]
    d.produce(topic_name, values)
    assert d.flush(60) == 0 and not d.failed, d.failed[:2]
    assert len(d.acked) == len(values)
    wait_until(lambda: segment_bytes(cluster, 3, topic_name) == segment_bytes(cluster, damaged, topic_name))
    port = cluster.brokers[damaged].port
    cluster.kill_broker(damaged)  # no controlled shutdown: the image still has it leading
    flip_byte_in_sealed_segment(cluster, damaged, topic_name)
    stop = threading.Event()
    answered: list[int] = []
    poller = threading.Thread(target=lambda: answered.append(poll_metadata_until(port, stop)), daemon=True)
    poller.start()
    try:
        cluster.restart_broker(damaged)
    finally:
        stop.set()
        poller.join(10)
    assert answered and answered[0] > 0, "the poller never reached the restarted broker"
    wait_until(
        lambda: sorted(partitions_of(cluster, topic_name).isr.iloc[0]) == [1, 2, 3],
        timeout=30,
        message="the damaged replica back in the ISR",
    )
    cluster.rebalance_leaders()
    wait_until(lambda: int(partitions_of(cluster, topic_name).leader.iloc[0]) == damaged, message="preferred leader")
    stored = {m.value() for m in read_all(cluster.bootstrap_servers, topic_name, len(values), timeout=30)}
    missing = set(values) - stored
    assert not missing, f"{len(missing)} acknowledged records missing, e.g. {sorted(missing)[:2]}"
    log_text = (Path(cluster.data_dir) / f"broker-{damaged}" / "broker.log").read_text()
    assert "are LOST" not in log_text
    assert "re-fetching it from a healthy replica" in log_text


def test_a_gap_left_by_a_batch_the_leader_refused_is_answered_retriable_not_out_of_order(fresh_cluster, topic_name):
    """Item 1's second path to duplicates: batch R1 is refused unwritten (NOT_ENOUGH_REPLICAS:
    the ISR is below min.insync.replicas), the ISR recovers, and R2, already in flight, arrives
    with a sequence gap. OUT_OF_ORDER_SEQUENCE_NUMBER there makes librdkafka bump the producer
    epoch and re-send every unacknowledged batch on every partition under new sequences,
    duplicating any that were possibly persisted (librdkafka #4953). The leader answers R2
    NOT_ENOUGH_REPLICAS (retriable, not written) instead; the in-order retry of both succeeds,
    and a gap nothing explains is still OUT_OF_ORDER_SEQUENCE_NUMBER."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    from kafka.protocol.producer import InitProducerIdRequest

    from workbench.protocol.blocking_client import make_batch
    from workbench.protocol.errors import ErrorCode

    cluster = fresh_cluster(1)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(30)
    client = _broker_client(cluster, 1)

    def min_insync(n: int) -> None:
        entry = ConfigEntry("min.insync.replicas", str(n), incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name, incremental_configs=[entry])
        admin.incremental_alter_configs([resource])[resource].result(timeout=20)
        expect = ErrorCode.NONE if n == 1 else ErrorCode.NOT_ENOUGH_REPLICAS
        wait_until(lambda: _produce(client, topic_name, make_batch([b"probe"])).error_code == expect)

    init = client.request(InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000), 1)
    pid, epoch = init.producer_id, init.producer_epoch

    def batch(seq: int, value: bytes) -> bytes:
        return make_batch([value], producer_id=pid, producer_epoch=epoch, base_sequence=seq)

    assert _produce(client, topic_name, batch(0, b"r0")).error_code == ErrorCode.NONE
    min_insync(2)
    r1 = _produce(client, topic_name, batch(1, b"r1"))
    assert r1.error_code == ErrorCode.NOT_ENOUGH_REPLICAS  # refused, not written
    min_insync(1)
    r2 = _produce(client, topic_name, batch(2, b"r2"))  # was in flight behind R1: a gap now
    assert r2.error_code != ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, "librdkafka would bump its epoch here"
    assert r2.error_code == ErrorCode.NOT_ENOUGH_REPLICAS, r2
    # The producer's in-order retry: R1, then R2, same epoch, same sequences.
    assert _produce(client, topic_name, batch(1, b"r1")).error_code == ErrorCode.NONE
    assert _produce(client, topic_name, batch(2, b"r2")).error_code == ErrorCode.NONE
    # A gap no refusal explains (sequences the producer believes written are missing) is still fatal.
    assert _produce(client, topic_name, batch(7, b"r7")).error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    stored = [m.value() for m in read_all(cluster.bootstrap_servers, topic_name, 5)]
    assert [v for v in stored if v != b"probe"] == [b"r0", b"r1", b"r2"]


def _txn_id_coordinated_by(cluster, broker: int) -> str:
    from tests.integration.test_transactions import transaction_coordinator

    for i in range(200):
        txn_id = f"tx-on-{broker}-{i}"
        if transaction_coordinator(cluster.bootstrap_servers, txn_id) == broker:
            return txn_id
    raise AssertionError(f"no transactional id among 200 is coordinated by broker {broker}")


def test_a_commit_marker_is_not_written_on_a_leader_alone_in_its_isr(fresh_cluster, topic_name):
    """A transaction marker is an acks=all write: below min.insync.replicas it is refused (and
    retried by the coordinator) like a client's batch. Before, a leader alone in its ISR wrote
    it and the coordinator completed the transaction; a power loss on that leader (its unflushed
    tail cut) then took the marker back, nobody re-sent it, and the committed records stayed in
    an open transaction for ever (read_committed stuck below them: the commit was lost)."""
    from tests.integration.test_transactions import read_all as read_isolated
    from tests.integration.test_transactions import txn_producer, values

    cluster = fresh_cluster(3)
    leader, follower = 2, 3
    # flush.ms: nothing fsynced on its own while the test runs, so the cut below is the page cache lost.
    create_assigned(cluster, topic_name, [leader, follower], {"min.insync.replicas": "2", "flush.ms": "600000"})
    txn_id = _txn_id_coordinated_by(cluster, 1)
    p = txn_producer(cluster.bootstrap_servers, txn_id, **{"transaction.timeout.ms": 120000})
    p.begin_transaction()
    sent = [b"t-%d" % i for i in range(5)]
    for v in sent:
        p.produce(topic_name, value=v, partition=0)
    assert p.flush(30) == 0  # acknowledged with both replicas in sync
    before_commit = segment_bytes(cluster, leader, topic_name)
    follower_pid = cluster.broker_pids()[follower]
    os.kill(follower_pid, signal.SIGSTOP)
    try:
        wait_until(lambda: list(partitions_of(cluster, topic_name).isr.iloc[0]) == [leader], message="ISR == [leader]")
        p.commit_transaction(60)  # the decision is durable at the coordinator (broker 1)
        time.sleep(2)  # the coordinator's marker attempts meanwhile
        # Power loss on the leader: whatever it appended since the commit began was only in its page cache.
        cluster.kill_broker(leader)
        directory = Path(cluster.data_dir) / f"broker-{leader}" / "topics" / topic_name / "partition=0"
        active = max(directory.glob("*.log"), key=lambda f: int(f.stem))
        grown = segment_bytes(cluster, leader, topic_name) - before_commit
        assert grown >= 0
        with open(active, "r+b") as f:
            f.truncate(active.stat().st_size - grown)
        cluster.restart_broker(leader)
    finally:
        os.kill(follower_pid, signal.SIGCONT)
    got = values(read_isolated(cluster.bootstrap_servers, topic_name, 1, "read_committed", len(sent), timeout=60))
    state = partitions_of(cluster, topic_name)[["leader", "isr", "high_watermark", "log_end_offset"]]
    raw = values(read_isolated(cluster.bootstrap_servers, topic_name, 1, "read_uncommitted", len(sent), timeout=5))
    assert got == sent, f"read_committed after the leader's power loss: {got}; uncommitted {raw}; {state.to_dict()}"


def test_a_commit_decision_is_not_acknowledged_from_one_copy_of_the_transaction_log(fresh_cluster, topic_name):
    """`__transaction_state` has min.insync.replicas one below its replication factor (3 -> 2,
    Kafka's transaction.state.log.min.isr), and the coordinator's own writes check it as a
    client's acks=all batch does. Before (min.insync.replicas=1), with both followers of the
    id's partition stalled, EndTxn's PrepareCommit was acknowledged by the coordinator alone:
    the commit lived in one page cache. Now the commit waits (retriable) until a second copy
    exists, then succeeds."""
    from tests.integration.test_transactions import read_all as read_isolated
    from tests.integration.test_transactions import transaction_coordinator, txn_producer, values
    from workbench.broker.transaction_log import TRANSACTION_STATE_TOPIC, partition_for_transactional_id

    def internal_partitions(cluster):
        frame = cluster.describe(internal=True).partitions
        return frame[frame.topic == TRANSACTION_STATE_TOPIC]

    cluster = fresh_cluster(5)  # five voters: two stalled brokers leave the metadata quorum a majority
    txn_id = f"tx-{topic_name}"
    coordinator = transaction_coordinator(cluster.bootstrap_servers, txn_id)  # creates __transaction_state
    wait_until(
        lambda: len(internal_partitions(cluster)) > 0 and (internal_partitions(cluster).leader >= 0).all(),
        message="__transaction_state visible with leaders",
    )
    state = internal_partitions(cluster)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    resource = ConfigResource(ConfigResource.Type.TOPIC, TRANSACTION_STATE_TOPIC)
    assert admin.describe_configs([resource])[resource].result(30)["min.insync.replicas"].value == "2"
    index = partition_for_transactional_id(txn_id, len(state))
    row = state[state.partition == index].iloc[0]
    assert int(row.leader) == coordinator
    followers = [int(b) for b in row.replicas if int(b) != coordinator]
    create_assigned(cluster, topic_name, [coordinator])
    p = txn_producer(cluster.bootstrap_servers, txn_id, **{"transaction.timeout.ms": 120000})
    p.begin_transaction()
    sent = [b"c-%d" % i for i in range(3)]
    for v in sent:
        p.produce(topic_name, value=v, partition=0)
    assert p.flush(30) == 0
    pids = [cluster.broker_pids()[f] for f in followers]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(
            lambda: list(internal_partitions(cluster).set_index("partition").isr[index]) == [coordinator],
            timeout=60,
            message="the transaction log partition's ISR == [coordinator]",
        )
        with pytest.raises(KafkaException) as refused:
            p.commit_transaction(10)
        assert refused.value.args[0].retriable() or refused.value.args[0].code() == KafkaError._TIMED_OUT
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    p.commit_transaction(60)  # a second copy again: the same commit goes through
    got = values(read_isolated(cluster.bootstrap_servers, topic_name, 1, "read_committed", len(sent), timeout=60))
    assert got == sent
