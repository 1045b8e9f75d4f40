"""Compacted topics with real clients: consumers from the beginning see exactly the latest value per key.

Tombstones come from kcat (``-Z``: an empty value is sent as NULL); updates from confluent-kafka;
the compacted topic is read back with confluent-kafka and kafka-python, after the log cleaner ran
on every replica, after a leader change and after a restart of every broker.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as CKTopicPartition
from kafka import KafkaConsumer, TopicPartition

from tests.conftest import FAST_GROUPS, require_tool
from workbench.storage.log_cleaner import CLEANER_STATE_FILE

#: Small segments that roll quickly, and a cleaner that wakes often: cleaning happens within seconds.
COMPACT = {
    "cleanup.policy": "compact",
    "segment.bytes": "2048",
    "segment.ms": "300",
    "min.cleanable.dirty.ratio": "0.01",
    "workbench.hot.segments": "1",
}
CLUSTER_CONFIG = {**FAST_GROUPS, "log_cleaner_backoff_ms": 200}


def cleaner_states(data_dir: Path, topic: str) -> dict[int, dict]:
    """broker id -> its cleaner state of ``topic``-0 (from the file each broker publishes)."""
    out = {}
    for path in data_dir.glob(f"broker-*/{CLEANER_STATE_FILE}"):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for st in doc:
            if st["topic"] == topic and st["partition"] == 0:
                out[int(path.parent.name.split("-")[1])] = st
    return out


def wait_cleaned(cluster, topic: str, end: int, replicas: int, timeout: float = 60.0) -> dict[int, dict]:
    """Until every replica's cleaner has cleaned up to ``end`` (the log's end: the active segment empty)."""
    deadline = time.monotonic() + timeout
    states: dict[int, dict] = {}
    while time.monotonic() < deadline:
        states = cleaner_states(cluster.data_dir, topic)
        if len(states) == replicas and all(st["first_dirty_offset"] >= end for st in states.values()):
            return states
        time.sleep(0.2)
    raise AssertionError(f"not cleaned up to {end} on {replicas} replicas: {states}")


def read_confluent(bootstrap: str, topic: str, end: int) -> list[tuple[int, bytes | None, bytes | None]]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    out: list[tuple[int, bytes | None, bytes | None]] = []
    try:
        c.assign([CKTopicPartition(topic, 0, OFFSET_BEGINNING)])  # no group: only the partition leader matters
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                if out and out[-1][0] >= end - 1:
                    break
                continue
            if m.error():
                raise KafkaException(m.error())
            out.append((m.offset(), m.key(), m.value()))
            if m.offset() >= end - 1:
                break
    finally:
        c.close()
    return out


def read_kafka_python(bootstrap: str, topic: str, end: int) -> list[tuple[int, bytes | None, bytes | None]]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    out: list[tuple[int, bytes | None, bytes | None]] = []
    try:
        tp = TopicPartition(topic, 0)
        deadline = time.monotonic() + 30
        while not c.partitions_for_topic(topic) and time.monotonic() < deadline:  # metadata first
            time.sleep(0.1)
        c.assign([tp])
        c.seek_to_beginning(tp)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out or out[-1][0] < end - 1):
            for records in c.poll(timeout_ms=1000).values():
                out += [(r.offset, r.key, r.value) for r in records]
    finally:
        c.close()
    return out


def test_consumers_of_a_compacted_topic_get_the_latest_value_per_key(fresh_cluster, topic_name):
    kcat = require_tool("kcat")
    cluster = fresh_cluster(3, config=CLUSTER_CONFIG)
    cluster.create_topic(topic_name, partitions=1, replication_factor=3, config=COMPACT)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 5, "acks": "all"})
    latest: dict[bytes, tuple[int, bytes | None]] = {}

    def delivered(err, msg) -> None:
        assert err is None, err
        latest[msg.key()] = (msg.offset(), msg.value())

    for rnd in range(12):
        for k in range(25):
            producer.produce(
                topic_name, key=b"key-%02d" % k, value=b"v%d-%d" % (k, rnd) * 8, partition=0, on_delivery=delivered
            )
            producer.poll(0)
        producer.flush(30)
    # Deletes of five keys as tombstones, from kcat (-Z: the empty value after ':' is a NULL value).
    subprocess.run(
        [kcat, "-b", cluster.bootstrap_servers, "-P", "-t", topic_name, "-p", "0", "-K:", "-Z"],
        input=b"".join(b"key-%02d:\n" % k for k in range(0, 25, 5)),
        check=True,
        timeout=60,
    )
    assert producer.flush(30) == 0

    # The end offset and the tombstones' offsets, as a consumer reads them before any cleaning.
    end = 12 * 25 + 5
    before = read_confluent(cluster.bootstrap_servers, topic_name, end)
    assert len(before) >= len(latest)
    for offset, key, value in before:
        if offset >= 12 * 25:
            assert value is None  # kcat -Z sent NULL, not b""
            latest[key] = (offset, None)
    expected = sorted((offset, key, value) for key, (offset, value) in latest.items())
    assert len(expected) == 25

    states = wait_cleaned(cluster, topic_name, end, replicas=3)
    assert all(st["records_removed"] > 0 and st["record_bytes_removed"] > 0 for st in states.values()), states

    assert read_confluent(cluster.bootstrap_servers, topic_name, end) == expected
    assert read_kafka_python(cluster.bootstrap_servers, topic_name, end) == expected

    # A leader change: the new leader compacted on its own and serves the same records.
    leader = int(cluster.describe().partitions.query("topic == @topic_name").leader.iloc[0])
    cluster.kill_broker(leader)
    deadline = time.monotonic() + 30
    rows = None
    while time.monotonic() < deadline:  # a new leader, and its high watermark back at the end
        rows = cluster.describe().partitions.query("topic == @topic_name")
        if int(rows.leader.iloc[0]) not in (leader, -1) and rows.high_watermark.iloc[0] == end:
            break
        time.sleep(0.2)
    got = read_confluent(cluster.bootstrap_servers, topic_name, end)
    assert got == expected, (rows.to_dict("records") if rows is not None else None, got[:3])
    assert read_kafka_python(cluster.bootstrap_servers, topic_name, end) == expected

    # Every broker restarted: the compacted files and the cleaner checkpoints survive.
    for bid in sorted(cluster.brokers):
        if cluster.brokers[bid].alive:
            cluster.stop_broker(bid)
    cluster.start()
    assert read_confluent(cluster.bootstrap_servers, topic_name, end) == expected
    assert read_kafka_python(cluster.bootstrap_servers, topic_name, end) == expected


def test_an_idempotent_producer_continues_after_its_batches_were_cleaned_away(fresh_cluster, topic_name):
    """Kafka keeps producer state across cleaned ranges (snapshots, and the last batch of each
    producer): an idempotent producer whose batches the cleaner removed, on every replica, keeps
    producing after every broker was killed (-9) and restarted: no OUT_OF_ORDER_SEQUENCE_NUMBER (fatal
    for librdkafka), no error, and each of its new records is in the log exactly once."""
    cluster = fresh_cluster(3, config=CLUSTER_CONFIG)
    cluster.create_topic(topic_name, partitions=1, replication_factor=3, config=COMPACT)
    conf = {
        "bootstrap.servers": cluster.bootstrap_servers,
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": 120_000,
    }
    errors: list = []
    acked: list[tuple[bytes, bytes, int]] = []

    def delivered(err, msg) -> None:
        if err is not None:
            errors.append(err)
        else:
            acked.append((msg.key(), msg.value(), msg.offset()))

    def client_error(err) -> None:
        # A connection refused by a broker being killed and restarted is librdkafka telling, not
        # failing (CI saw one `_TRANSPORT` here); anything fatal, or any other error, counts.
        if err.fatal() or err.code() not in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
            errors.append(err)

    conf["error_cb"] = client_error
    p = Producer(conf)
    for rnd in range(3):  # three batches of the producer under test
        for k in range(20):
            p.produce(topic_name, key=b"key-%02d" % k, value=b"p%d" % rnd * 30, partition=0, on_delivery=delivered)
        assert p.flush(30) == 0
    q = Producer(conf)
    for rnd in range(8):  # another producer overwrites every key: the first one's batches go
        for k in range(20):
            q.produce(topic_name, key=b"key-%02d" % k, value=b"q%d" % rnd * 30, partition=0, on_delivery=delivered)
        assert q.flush(30) == 0
        time.sleep(0.4)  # segment.ms: a few segments roll
    end = 11 * 20
    wait_cleaned(cluster, topic_name, end, replicas=3)
    assert not [r for r in read_confluent(cluster.bootstrap_servers, topic_name, end) if r[2][:1] == b"p"]

    for bid in sorted(cluster.brokers):  # kill -9 and restart, one broker at a time (leaders move)
        cluster.kill_broker(bid)
        cluster.start()
    for k in range(20):  # the same producer (same producer id, its sequences go on)
        p.produce(topic_name, key=b"new-%02d" % k, value=b"after", partition=0, on_delivery=delivered)
    assert p.flush(120) == 0
    assert not errors, errors
    rows = read_confluent(cluster.bootstrap_servers, topic_name, end + 20)
    new = [key for _, key, value in rows if value == b"after"]
    assert sorted(new) == [b"new-%02d" % k for k in range(20)]  # each exactly once


def test_a_broker_killed_in_the_middle_of_a_merge_recovers_to_one_copy_of_each_record(
    fresh_cluster, topic_name, monkeypatch
):
    """The broker process exits (as kill -9 would leave it) right after renaming a merged file over
    its first member and before deleting the others: while it is down a reader of its files sees
    each offset once, and after the restart consumers get exactly the latest value per key."""
    import duckdb

    from workbench.sql.cache import read_sealed
    from workbench.storage.failpoints import ENV, EXIT_ENV, EXIT_STATUS

    monkeypatch.setenv(ENV, "cleaner.after_rename")
    monkeypatch.setenv(EXIT_ENV, "1")
    cluster = fresh_cluster(1, config=CLUSTER_CONFIG)
    # The dirty ratio alone does not promise a last pass: after the restart the dirty part can be one
    # small segment beside a clean part of merged Parquet files many times its size (ratio 0.05 seen
    # in CI), which Kafka's cleaner, too, leaves until more is written. max.compaction.lag.ms bounds
    # how long a dirty segment waits, so the latest value per key arrives within the test's minute.
    config = {
        **COMPACT,
        "segment.bytes": str(1 << 20),
        "min.cleanable.dirty.ratio": "0.5",
        "max.compaction.lag.ms": "2000",
    }
    cluster.create_topic(topic_name, partitions=1, replication_factor=1, config=config)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 5})
    latest: dict[bytes, tuple[int, bytes | None]] = {}

    def delivered(err, msg) -> None:
        assert err is None, err
        latest[msg.key()] = (msg.offset(), msg.value())

    for rnd in range(8):  # segments roll by segment.ms between rounds
        for k in range(10):
            producer.produce(topic_name, key=b"key-%d" % k, value=b"v%d" % rnd, partition=0, on_delivery=delivered)
        remaining, deadline = producer.flush(0.5), time.monotonic() + 30
        while remaining and cluster.brokers[1].alive and time.monotonic() < deadline:
            remaining = producer.flush(0.5)  # not 30 s in one go: the broker may be gone already
        if not cluster.brokers[1].alive:
            # The failpoint struck during this round: its unacknowledged records stay queued in the
            # producer and are delivered (and recorded by `delivered`) after the restart.
            break
        assert remaining == 0
        time.sleep(0.5)
    deadline = time.monotonic() + 60
    while cluster.brokers[1].alive and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not cluster.brokers[1].alive, "the cleaner never reached the failpoint"
    assert cluster.brokers[1].process.returncode == EXIT_STATUS
    directory = cluster.data_dir / "broker-1" / "topics" / topic_name / "partition=0"
    files = read_sealed(directory)
    paths = ",".join(f"'{f.path}'" for f in files)
    seen = [o for (o,) in duckdb.sql(f'select "offset" from read_parquet([{paths}])').fetchall()]
    assert len(seen) == len(set(seen)), "a reader saw a merged range twice"
    assert len(list(directory.glob("*.parquet"))) > len(files)  # the superseded members are still there

    monkeypatch.delenv(ENV)
    monkeypatch.delenv(EXIT_ENV)
    cluster.start()
    # Recovery hands the superseded members to the grace period (a reader may have listed them):
    # still on disk, never read twice.
    again = ",".join(f"'{f.path}'" for f in read_sealed(directory))
    seen = [o for (o,) in duckdb.sql(f'select "offset" from read_parquet([{again}])').fetchall()]
    assert len(seen) == len(set(seen)), "after recovery a reader saw a merged range twice"
    # A new key (an update of an old one would leave its older value in the dirty part until a later pass).
    producer.produce(topic_name, key=b"key-new", value=b"after", partition=0, on_delivery=delivered)
    assert producer.flush(30) == 0
    end = latest[b"key-new"][0] + 1
    expected = sorted((offset, key, value) for key, (offset, value) in latest.items())
    deadline = time.monotonic() + 60
    got = None
    while time.monotonic() < deadline:
        got = read_confluent(cluster.bootstrap_servers, topic_name, end)
        if got == expected:
            break
        time.sleep(1)
    assert got == expected, cleaner_states(cluster.data_dir, topic_name)
