"""Issue 17: topics as open tables that any engine reads without the workbench.

* ``<data_dir>/workbench.duckdb``, opened read-only by plain DuckDB in another process, counts
  what `cluster.sql` counts once the freshness bound has passed;
* each topic is an Iceberg table (pyiceberg, SQLite catalog in ``<data_dir>/iceberg``): one
  snapshot per commit, whose summary carries the offset range it added, so a snapshot is a
  prefix of the partition's log; each record once even with RF=3 (only the leader publishes);
  never an open or aborted transaction's record; consistent after the broker is killed.
"""

from __future__ import annotations

import json
import threading
import time

import duckdb
import pytest
from confluent_kafka import Producer
from pyiceberg.exceptions import NoSuchTableError

from tests.conftest import FAST_GROUPS
from tests.support import plain_duckdb, wait_until
from workbench import Cluster

#: Iceberg tables are opt-in (`iceberg_commit_ms`, 0 by default): these tests turn them on.
ICEBERG = {**FAST_GROUPS, "iceberg_commit_ms": 1000}

DEADLINE_S = 90  # a failure bound, not a speed claim (benchmarks/open_tables.py measures)


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def iceberg_offsets(cluster, topic: str, snapshot_id: int | None = None) -> list[tuple[int, int]]:
    """(partition, offset) of every row of the topic's Iceberg table (or of one snapshot)."""
    try:
        table = cluster.iceberg_table(topic)
    except NoSuchTableError:
        return []
    if table.current_snapshot() is None:
        return []
    rows = table.scan(snapshot_id=snapshot_id, selected_fields=("partition", "offset")).to_arrow()
    return sorted(zip(rows.column("partition").to_pylist(), rows.column("offset").to_pylist(), strict=True))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The module's three brokers, with Iceberg commits on."""
    with Cluster(brokers=3, data_dir=tmp_path_factory.mktemp("cluster"), config=ICEBERG) as c:
        yield c


def test_plain_duckdb_catalog_sees_what_cluster_sql_sees(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=3, replication_factor=3)  # 16 MiB segments: nothing seals
    producer = cluster.producer()
    for i in range(1500):
        producer.send(topic_name, {"i": i, "kind": "odd" if i % 2 else "even"})
    producer.flush()
    seen = cluster.sql(f"SELECT count(*) n, sum(i) s FROM {q(topic_name)}")
    assert (seen["n"][0], seen["s"][0]) == (1500, sum(range(1500)))
    catalog = cluster.data_dir / "workbench.duckdb"
    query = f'SELECT count(*), count(DISTINCT (partition, "offset")), sum(i) FROM {q(topic_name)}'
    got = wait_until(
        lambda: (r := plain_duckdb(catalog, query))[0] >= 1500 and r,
        timeout=DEADLINE_S,
        interval=0.5,
        message="plain DuckDB over workbench.duckdb to count every record",
    )
    assert got == (1500, 1500, sum(range(1500)))  # each record once, flattened columns typed

    # More records later: the catalog file is not rewritten for them, its views read the new files.
    for i in range(1500, 2000):
        producer.send(topic_name, {"i": i, "kind": "x"})
    producer.flush()
    got = wait_until(lambda: (r := plain_duckdb(catalog, query))[0] >= 2000 and r, timeout=DEADLINE_S, interval=0.5)
    assert got == (2000, 2000, sum(range(2000)))
    assert cluster.sql(f"SELECT count(*) n FROM {q(topic_name)}")["n"][0] == 2000


def test_iceberg_snapshots_are_prefixes_of_the_log_with_each_record_once(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=2, replication_factor=3)
    # idempotent: a retried batch must not add a second copy to the log (the test counts offsets)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 5, "enable.idempotence": True})
    total = 0
    for _round in range(3):  # three rounds, each committed before the next: several commits per partition
        for i in range(400):
            p.produce(topic_name, value=f"v{total + i}".encode(), partition=i % 2)
        total += 400
        assert p.flush(15) == 0
        offsets = wait_until(
            lambda n=total: len(o := iceberg_offsets(cluster, topic_name)) >= n and o, timeout=DEADLINE_S, interval=0.5
        )
    assert offsets == sorted((part, o) for part in (0, 1) for o in range(total // 2))  # RF=3: once each

    table = cluster.iceberg_table(topic_name)
    snapshots = table.snapshots()
    reached = {0: 0, 1: 0}
    for snap in snapshots:  # in commit order: contiguous ranges, each from where the last ended
        props = snap.summary.additional_properties
        part, lo, hi = (int(props[k]) for k in ("workbench.partition", "workbench.from-offset", "workbench.to-offset"))
        assert lo == reached[part] and hi > lo, (snap.snapshot_id, props, reached)
        reached[part] = hi
        carried = {int(k): v for k, v in json.loads(props["workbench.next-offsets"]).items()}
        assert carried == {k: v for k, v in reached.items() if v}  # every partition's offset, carried forward
        # time travel: the snapshot is exactly the prefixes published so far
        assert iceberg_offsets(cluster, topic_name, snap.snapshot_id) == sorted(
            (q_, o) for q_, end in reached.items() for o in range(end)
        )
    assert reached == {0: total // 2, 1: total // 2}
    assert len(snapshots) >= 6  # a commit per partition per round at least: the mapping was exercised


def test_iceberg_never_holds_open_or_aborted_transactions(cluster, topic_name):
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
    txp.flush(15)
    for i in range(3):
        plain.produce(topic_name, value=f"after{i}".encode(), partition=0)
    assert plain.flush(15) == 0

    def values() -> list[str]:
        try:
            table = cluster.iceberg_table(topic_name)
        except NoSuchTableError:
            return []
        if table.current_snapshot() is None:
            return []
        return sorted(v.decode() for v in table.scan(selected_fields=("value",)).to_arrow().column("value").to_pylist())

    wait_until(lambda: len(values()) >= 10, timeout=DEADLINE_S, interval=0.5)
    time.sleep(3)  # several commit rounds: none may publish past the last stable offset
    assert values() == sorted(f"before{i}" for i in range(10))
    txp.commit_transaction(30)
    wait_until(lambda: len(values()) >= 20, timeout=DEADLINE_S, interval=0.5)
    assert values() == sorted(
        [f"before{i}" for i in range(10)] + [f"open{i}" for i in range(7)] + [f"after{i}" for i in range(3)]
    )


def test_iceberg_table_is_consistent_after_the_broker_is_killed_mid_traffic(fresh_cluster, topic_name):
    c = fresh_cluster(brokers=1, config=ICEBERG)
    c.start()
    c.create_topic(topic_name, partitions=1, replication_factor=1)
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all", "linger.ms": 5})
    acked: set[int] = set()
    stop = threading.Event()

    def on_delivery(err, msg) -> None:
        if err is None:
            acked.add(msg.offset())

    def produce() -> None:
        i = 0
        while not stop.is_set():
            try:
                p.produce(topic_name, value=f"r{i}".encode(), partition=0, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0.002)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    wait_until(lambda: len(iceberg_offsets(c, topic_name)) > 0, timeout=DEADLINE_S, interval=0.2)
    time.sleep(1.7)  # commits are happening: the kill lands at an arbitrary point of one
    [node] = list(c.brokers)
    c.kill_broker(node)
    stop.set()
    t.join(10)
    before = iceberg_offsets(c, topic_name)  # the table as the crash left it
    assert before == [(0, o) for o in range(len(before))]  # a prefix, each record once
    c.restart_broker(node)
    p2 = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all"})
    for i in range(200):
        p2.produce(topic_name, value=f"after{i}".encode(), partition=0, on_delivery=on_delivery)
    assert p2.flush(30) == 0
    top = max(acked)
    after = wait_until(
        lambda: (o := iceberg_offsets(c, topic_name)) and o[-1][1] >= top and o, timeout=DEADLINE_S, interval=0.5
    )
    offsets = [o for _, o in after]
    assert offsets == sorted(set(offsets)), "a record was published twice"
    assert acked <= set(offsets), "an acknowledged record is missing from the table"
    assert after[: len(before)] == before  # history was not rewritten
    # the data files never overlap: a glob over them counts each record once too
    from workbench.open_tables import data_glob, iceberg_root

    files = data_glob(iceberg_root(c.data_dir), topic_name)
    n, distinct = (
        duckdb.connect()
        .execute(f"""SELECT count(*), count(DISTINCT "offset") FROM read_parquet('{files}')""")
        .fetchone()
    )
    assert n == distinct == len(offsets)


def test_a_new_leader_continues_the_table_without_publishing_twice(fresh_cluster, topic_name):
    c = fresh_cluster(3, config=ICEBERG)
    c.create_topic(topic_name, partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "enable.idempotence": True})
    for i in range(500):
        p.produce(topic_name, value=f"a{i}".encode(), partition=0)
    assert p.flush(30) == 0
    wait_until(lambda: len(iceberg_offsets(c, topic_name)) >= 500, timeout=DEADLINE_S, interval=0.5)
    frame = c.describe().partitions
    victim = int(frame[frame.topic == topic_name].leader.iloc[0])
    c.kill_broker(victim)
    wait_until(
        lambda: (
            (f := c.describe().partitions) is not None
            and victim not in set(f[f.topic == topic_name].leader)
            and int(f[f.topic == topic_name].leader.iloc[0]) >= 0
        ),
        timeout=30,
        message="a new leader",
    )
    p2 = Producer({"bootstrap.servers": c.bootstrap_servers, "enable.idempotence": True})
    for i in range(500):
        p2.produce(topic_name, value=f"b{i}".encode(), partition=0)
    assert p2.flush(30) == 0
    offsets = wait_until(
        lambda: len(o := iceberg_offsets(c, topic_name)) >= 1000 and o, timeout=DEADLINE_S, interval=0.5
    )
    assert offsets == [(0, o) for o in range(1000)]  # the new leader went on from the old one's offset
    table = c.iceberg_table(topic_name)
    values = sorted(table.scan(selected_fields=("value",)).to_arrow().column("value").to_pylist())
    assert values == sorted([f"a{i}".encode() for i in range(500)] + [f"b{i}".encode() for i in range(500)])


def test_a_broker_killed_between_writing_a_data_file_and_committing_it_never_duplicates(
    fresh_cluster, topic_name, monkeypatch
):
    """The committer exits (as kill -9 leaves it) after its data file is linked and before the
    snapshot is committed (failpoint ``iceberg.before_commit``), then the broker itself is killed
    and restarted: the table adopts the orphaned file and holds each record once."""
    from workbench.open_tables import data_glob, iceberg_root
    from workbench.storage.failpoints import ENV, EXIT_ENV

    monkeypatch.setenv(ENV, "iceberg.before_commit")
    monkeypatch.setenv(EXIT_ENV, "1")
    c = fresh_cluster(brokers=1, config=ICEBERG)
    c.start()
    c.create_topic(topic_name, partitions=1, replication_factor=1)
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all", "enable.idempotence": True})
    for i in range(300):
        p.produce(topic_name, value=f"a{i}".encode(), partition=0)
    assert p.flush(30) == 0
    data = iceberg_root(c.data_dir) / topic_name / "data"
    [orphan] = wait_until(
        lambda: list(data.glob("p00000-*.parquet")), timeout=DEADLINE_S, interval=0.2, message="a data file written"
    )
    time.sleep(2)  # more commit attempts, each dying at the same point
    assert iceberg_offsets(c, topic_name) == []  # no snapshot references it
    files = data_glob(iceberg_root(c.data_dir), topic_name)
    count = f"""SELECT count(*), count(DISTINCT "offset") FROM read_parquet('{files}')"""
    n, distinct = duckdb.connect().execute(count).fetchone()
    assert n == distinct > 0  # a reader of the glob sees the orphan's records once, a moment early
    [node] = list(c.brokers)
    c.kill_broker(node)
    monkeypatch.delenv(ENV)
    monkeypatch.delenv(EXIT_ENV)
    c.restart_broker(node)
    p2 = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all"})
    for i in range(200):
        p2.produce(topic_name, value=f"b{i}".encode(), partition=0)
    assert p2.flush(30) == 0
    offsets = wait_until(
        lambda: len(o := iceberg_offsets(c, topic_name)) >= 500 and o, timeout=DEADLINE_S, interval=0.5
    )
    assert offsets == [(0, o) for o in range(500)]  # each record once
    first = c.iceberg_table(topic_name).snapshots()[0].summary.additional_properties
    assert first["workbench.from-offset"] == "0"
    assert orphan.name == f"p00000-{0:020d}.parquet" and orphan.exists()  # adopted, not rewritten
    n, distinct = duckdb.connect().execute(count).fetchone()
    assert n == distinct == 500  # data files never overlap


def test_delete_records_drops_the_records_from_the_iceberg_table_and_its_history(fresh_cluster, topic_name):
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    from workbench.open_tables import data_glob, iceberg_root

    c = fresh_cluster(brokers=1, config=ICEBERG)
    c.start()
    c.create_topic(topic_name, partitions=1, replication_factor=1)
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all", "enable.idempotence": True})
    for rnd in range(3):  # three rounds, each committed before the next: at least three data files
        for i in range(100):
            p.produce(topic_name, value=f"r{rnd}-{i}".encode(), partition=0)
        assert p.flush(30) == 0
        wait_until(lambda n=100 * (rnd + 1): len(iceberg_offsets(c, topic_name)) >= n, timeout=DEADLINE_S, interval=0.5)
    table = c.iceberg_table(topic_name)
    ends = sorted(int(s.summary.additional_properties["workbench.to-offset"]) for s in table.snapshots())
    below = max(e for e in ends if e <= 200)  # a data file boundary: files are dropped whole
    admin = AdminClient({"bootstrap.servers": c.bootstrap_servers})
    tp = TopicPartition(topic_name, 0, below)
    assert admin.delete_records([tp])[tp].result(30).low_watermark == below
    offsets = wait_until(
        lambda: (o := iceberg_offsets(c, topic_name)) and o[0][1] >= below and o, timeout=DEADLINE_S, interval=0.5
    )
    assert offsets == [(0, o) for o in range(below, 300)]  # pyiceberg no longer returns deleted records
    table = c.iceberg_table(topic_name)
    for snap in table.snapshots():  # nor does time travel: the history that held them was expired
        assert min(o for _, o in iceberg_offsets(c, topic_name, snap.snapshot_id)) >= below
    files = data_glob(iceberg_root(c.data_dir), topic_name)
    n, low = duckdb.connect().execute(f"""SELECT count(*), min("offset") FROM read_parquet('{files}')""").fetchone()
    assert (n, low) == (300 - below, below)  # the dropped data files are gone from disk too
    for i in range(50):  # the table goes on from where it was
        p.produce(topic_name, value=f"after{i}".encode(), partition=0)
    assert p.flush(30) == 0
    offsets = wait_until(lambda: len(o := iceberg_offsets(c, topic_name)) >= 350 - below and o, timeout=DEADLINE_S)
    assert offsets == [(0, o) for o in range(below, 350)]
