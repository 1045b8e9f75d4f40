"""Issue 17: records below the LSO reach the on-disk Parquet dataset without a segment seal.

Plain DuckDB over the files (no workbench code on the reading side, only the documented rule as
SQL text, `workbench.sql.open_views.broker_files_sql`) must see every acknowledged record within
seconds, never a record twice (a newer tail, and later the sealed file, supersede a tail under new
names; the old one stays for the grace period), never an open or aborted transaction's record, and
the same after a broker crash.
"""

from __future__ import annotations

import time

import duckdb
import pyarrow.parquet as pq
from confluent_kafka import Consumer, Producer

from tests.support import wait_until
from workbench.sql.cache import read_sealed
from workbench.sql.open_views import broker_files_sql

DEADLINE_S = 60  # a failure bound, not a speed claim (benchmarks/lakehouse_freshness.py measures)


def _rule(cluster, topic: str) -> str:
    """The brokers' files of ``topic`` by the documented rule (one copy per partition, per base
    offset the widest file, no superseded file), as plain DuckDB SQL."""
    return f"({broker_files_sql(cluster.data_dir, topic, {})})"


def _stats(cluster, topic: str) -> tuple[int, int, int, int]:
    """(rows, distinct offsets, max offset, files) as plain DuckDB sees the dataset."""
    files = list(cluster.data_dir.glob(f"broker-*/topics/{topic}/partition=*/*.parquet"))
    if not files:
        return 0, 0, -1, 0
    con = duckdb.connect()
    try:
        rows, distinct, top = con.execute(
            f"""select count(*), count(distinct "offset"), coalesce(max("offset"), -1) from {_rule(cluster, topic)}"""
        ).fetchone()
    finally:
        con.close()
    return rows, distinct, top, len(files)


def _high_watermark(cluster, topic: str) -> int:
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": f"hw-{topic}"})
    try:
        from confluent_kafka import TopicPartition

        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        c.close()


def _wait_for_rows(cluster, topic: str, n: int) -> tuple[int, int, int, int]:
    deadline = time.monotonic() + DEADLINE_S
    seen = (0, 0, -1, 0)
    while time.monotonic() < deadline:
        seen = _stats(cluster, topic)
        rows, distinct, _top, _files = seen
        assert rows == distinct, f"a record is in the dataset twice: {seen}"
        if rows >= n:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"only {seen[0]} of {n} acknowledged records reached Parquet: {seen}")


def test_unsealed_records_reach_parquet_without_a_seal(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1, replication_factor=1)  # 16 MiB segments: no seal
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 5})
    for i in range(2000):
        p.produce(topic_name, key=f"k{i}".encode(), value=f'{{"n": {i}}}'.encode(), partition=0)
    assert p.flush(15) == 0
    rows, distinct, top, _files = _wait_for_rows(cluster, topic_name, 2000)
    assert (rows, distinct, top) == (2000, 2000, 1999)
    assert top < _high_watermark(cluster, topic_name)
    assert list(cluster.data_dir.glob(f"broker-*/topics/{topic_name}/partition=0/*.log"))  # still raw, unsealed
    values = duckdb.sql(f"""select decode(value) from {_rule(cluster, topic_name)} where "offset" = 1234""").fetchall()
    assert values == [('{"n": 1234}',)]


def test_tail_files_give_way_to_sealed_files_without_double_counting(cluster, topic_name):
    # Small segments: seals happen while tails are written; every poll must count each offset once.
    cluster.create_topic(topic_name, partitions=1, replication_factor=1, config={"segment.bytes": "65536"})
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 5})
    total = 0
    for _round in range(30):  # at least 6 rounds, and on until a seal's file has replaced a tail
        for i in range(1500):
            p.produce(topic_name, value=f"v{total + i}".encode() * 4, partition=0)
        total += 1500
        assert p.flush(15) == 0
        seen = _stats(cluster, topic_name)
        assert seen[0] == seen[1] and seen[2] < total, seen
        if _round >= 5 and _sealed_files(cluster, topic_name):
            break
    rows, distinct, top, _files = _wait_for_rows(cluster, topic_name, total)
    assert (rows, distinct, top) == (total, total, total - 1)
    assert _sealed_files(cluster, topic_name), "no segment was sealed and converted: nothing was tested"


def _sealed_files(cluster, topic: str) -> list:
    """The partition's Parquet files that are sealed conversions (not tails)."""
    out = []
    for f in cluster.data_dir.glob(f"broker-*/topics/{topic}/partition=*/*.parquet"):
        try:
            meta = pq.read_metadata(f).metadata or {}
        except (OSError, ValueError):
            continue  # replaced while we looked
        if meta.get(b"workbench.tail") != b"1":
            out.append(f)
    return out


def test_open_and_aborted_transactions_stay_out_of_the_files(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    plain = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    for i in range(10):
        plain.produce(topic_name, value=f"before{i}".encode(), partition=0)
    assert plain.flush(15) == 0

    txp = Producer({"bootstrap.servers": cluster.bootstrap_servers, "transactional.id": f"tx-{topic_name}"})
    txp.init_transactions(30)
    txp.begin_transaction()
    for i in range(5):
        txp.produce(topic_name, value=f"aborted{i}".encode(), partition=0)
    txp.flush(15)
    txp.abort_transaction(30)
    txp.begin_transaction()
    for i in range(7):
        txp.produce(topic_name, value=f"open{i}".encode(), partition=0)
    txp.flush(15)  # acknowledged, but the transaction is open: the LSO stays below it
    # records after the open transaction are below the HW but above the LSO: not published yet
    for i in range(3):
        plain.produce(topic_name, value=f"after{i}".encode(), partition=0)
    assert plain.flush(15) == 0

    _wait_for_rows(cluster, topic_name, 10)
    time.sleep(3)  # several tail rounds: none may publish past the LSO
    values = {v for (v,) in duckdb.sql(f"select decode(value) from {_rule(cluster, topic_name)}").fetchall()}
    assert values == {f"before{i}" for i in range(10)}

    txp.commit_transaction(30)
    _wait_for_rows(cluster, topic_name, 20)
    values = sorted(v for (v,) in duckdb.sql(f"select decode(value) from {_rule(cluster, topic_name)}").fetchall())
    assert values == sorted(
        [f"before{i}" for i in range(10)] + [f"open{i}" for i in range(7)] + [f"after{i}" for i in range(3)]
    )
    assert not any(v.startswith("aborted") for v in values)


def test_tail_files_after_a_broker_crash(fresh_cluster, topic_name):
    c = fresh_cluster(brokers=1)
    c.start()
    c.create_topic(topic_name, partitions=1, replication_factor=1)
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all"})
    for i in range(1000):
        p.produce(topic_name, value=f"a{i}".encode(), partition=0)
    assert p.flush(15) == 0
    _wait_for_rows(c, topic_name, 1000)
    [node] = list(c.brokers)
    c.kill_broker(node)
    rows, distinct, top, _ = _stats(c, topic_name)  # whole files only, each a committed prefix
    assert rows == distinct and top < 1000
    c.restart_broker(node)
    for i in range(500):
        p.produce(topic_name, value=f"b{i}".encode(), partition=0)
    assert p.flush(30) == 0
    rows, distinct, top, _ = _wait_for_rows(c, topic_name, 1500)
    assert (rows, distinct, top) == (1500, 1500, 1499)


def _tail_rows(cluster, topic: str, broker: int) -> int:
    """Rows of the current files in `broker`'s copy of partition 0 (0 when it has none)."""
    return sum(
        f.rows
        for f in read_sealed(cluster.data_dir / f"broker-{broker}" / "topics" / topic / "partition=0", tails=True)
    )


def _leader(cluster, topic: str) -> int:
    return cluster.admin().list_topics(topic, timeout=10).topics[topic].partitions[0].leader


def test_only_the_leader_writes_tail_files(fresh_cluster, topic_name):
    # Issue 19: readers take the leader's directory; followers rewriting their own tails every
    # second tripled the converters' CPU at RF=3 for files nobody read.
    c = fresh_cluster(brokers=3)
    c.start()
    c.create_topic(topic_name, partitions=1, replication_factor=3)
    wait_until(lambda: len(c.admin().list_topics(topic_name).topics[topic_name].partitions[0].isrs) == 3)
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all"})
    for i in range(1000):
        p.produce(topic_name, value=f"a{i}".encode(), partition=0)
    assert p.flush(15) == 0
    leader = _leader(c, topic_name)
    wait_until(lambda: _tail_rows(c, topic_name, leader) == 1000, timeout=DEADLINE_S, message="the leader's tail")
    time.sleep(3)  # several tail rounds (parquet_tail_ms 1000): a follower writing tails would have by now
    followers = sorted(set(c.brokers) - {leader})
    assert [_tail_rows(c, topic_name, b) for b in followers] == [0, 0]
    # The new leader writes its own tail (every record, the old leader's included) once it leads.
    c.kill_broker(leader)
    # One Metadata answer per try: two calls may reach two brokers, and one still naming the killed
    # leader made `new_leader` the old one (CI retried this test on 2 December).
    new_leader = wait_until(lambda: (b := _leader(c, topic_name)) in followers and b, timeout=30)
    for i in range(500):
        p.produce(topic_name, value=f"b{i}".encode(), partition=0)
    assert p.flush(30) == 0
    wait_until(lambda: _tail_rows(c, topic_name, new_leader) == 1500, timeout=DEADLINE_S, message="the new tail")
