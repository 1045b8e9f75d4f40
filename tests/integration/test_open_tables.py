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
        if props.get("workbench.operation") == "merge":  # small files merged: the same records
            assert iceberg_offsets(cluster, topic_name, snap.snapshot_id) == sorted(
                (q_, o) for q_, end in reached.items() for o in range(end)
            )
            continue
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


#: Merges after a second, three files at least: a few seconds of traffic exercise them.
MERGING = {**ICEBERG, "iceberg_merge_age_ms": 1000, "iceberg_merge_min_files": 3}


def current_files(cluster, topic: str) -> list[str]:
    from pathlib import Path

    from workbench.storage.iceberg_tables import _partition_files

    return sorted(Path(f.file_path).name for f in _partition_files(cluster.iceberg_table(topic), 0))


def glob_counts(cluster, topic: str) -> tuple[int, int]:
    """count(*), distinct offsets by the documented rule for plain Parquet readers of the data files."""
    from workbench.open_tables import data_files_sql, iceberg_root

    sql = data_files_sql(iceberg_root(cluster.data_dir), topic)
    return duckdb.connect().execute(f'SELECT count(*), count(DISTINCT "offset") FROM ({sql})').fetchone()


def produce_rounds(c, topic: str, rounds: int, per_round: int = 50) -> int:
    """Rounds of records, each committed to Iceberg before the next: a data file per round."""
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all", "enable.idempotence": True})
    total = len(iceberg_offsets(c, topic))
    for _ in range(rounds):
        for i in range(per_round):
            p.produce(topic, value=f"v{total + i}".encode(), partition=0)
        assert p.flush(30) == 0
        total += per_round
        wait_until(lambda n=total: len(iceberg_offsets(c, topic)) >= n, timeout=DEADLINE_S, interval=0.3)
    return total


def test_small_data_files_are_merged_and_readers_count_each_record_once_throughout(fresh_cluster, topic_name):
    c = fresh_cluster(brokers=1, config=MERGING)
    c.start()
    c.create_topic(topic_name, partitions=1, replication_factor=1)
    problems: list[str] = []
    stop = threading.Event()

    def check() -> None:  # readers during the merges: pyiceberg and the data-file glob rule
        while not stop.is_set():
            offsets = [o for _, o in iceberg_offsets(c, topic_name)]
            if offsets != list(range(len(offsets))):
                problems.append(f"pyiceberg: not each offset once ({len(offsets)} rows)")
            n, distinct = glob_counts(c, topic_name) if offsets else (0, 0)
            if n != distinct:
                problems.append(f"glob rule: {n} rows, {distinct} offsets")
            time.sleep(0.2)

    total = produce_rounds(c, topic_name, rounds=6)
    t = threading.Thread(target=check, daemon=True)
    t.start()
    try:
        total = produce_rounds(c, topic_name, rounds=4) if total else total
        table = wait_until(
            lambda: (
                (tb := c.iceberg_table(topic_name))
                and any(s.summary.additional_properties.get("workbench.operation") == "merge" for s in tb.snapshots())
                and tb
            ),
            timeout=DEADLINE_S,
            interval=0.5,
            message="a merge snapshot",
        )
        time.sleep(1)
    finally:
        stop.set()
        t.join(30)
    assert problems == []
    assert iceberg_offsets(c, topic_name) == [(0, o) for o in range(total)]
    assert glob_counts(c, topic_name) == (total, total)
    commits = [s for s in table.snapshots() if "workbench.operation" not in s.summary.additional_properties]
    assert len(current_files(c, topic_name)) < len(commits)  # fewer files than commits
    assert any("-" in name[len("p00000-") :] for name in current_files(c, topic_name))  # a merged file


def test_a_broker_killed_mid_merge_leaves_a_consistent_table(fresh_cluster, topic_name, monkeypatch):
    """The committer exits (as kill -9 leaves it) after writing a merged file and before its
    snapshot (failpoint ``iceberg.merge_before_commit``), then the broker is killed and restarted:
    the table held each record once throughout and the merge completes afterwards."""
    from workbench.storage.failpoints import ENV, EXIT_ENV

    monkeypatch.setenv(ENV, "iceberg.merge_before_commit")
    monkeypatch.setenv(EXIT_ENV, "1")
    c = fresh_cluster(brokers=1, config=MERGING)
    c.start()
    c.create_topic(topic_name, partitions=1, replication_factor=1)
    total = produce_rounds(c, topic_name, rounds=5)
    data = iceberg_root_of(c) / topic_name / "data"
    wait_until(lambda: list(data.glob("p00000-*-*.parquet")), timeout=DEADLINE_S, interval=0.3, message="merged")
    time.sleep(2)  # more rounds, each dying at the same point (a longer run each time: more files are old)
    orphans = {p.name for p in data.glob("p00000-*-*.parquet")}
    assert not orphans & set(current_files(c, topic_name))  # no snapshot references them
    assert iceberg_offsets(c, topic_name) == [(0, o) for o in range(total)]
    assert glob_counts(c, topic_name) == (total, total)  # the rule reads each record once beside them
    [node] = list(c.brokers)
    c.kill_broker(node)
    monkeypatch.delenv(ENV)
    monkeypatch.delenv(EXIT_ENV)
    c.restart_broker(node)
    total = produce_rounds(c, topic_name, rounds=1)
    wait_until(
        lambda: any("-" in n[len("p00000-") :] for n in current_files(c, topic_name)),
        timeout=DEADLINE_S,
        interval=0.5,
        message="a merge committed after the restart",
    )
    assert iceberg_offsets(c, topic_name) == [(0, o) for o in range(total)]
    assert glob_counts(c, topic_name) == (total, total)


def iceberg_root_of(c):
    from workbench.open_tables import iceberg_root

    return iceberg_root(c.data_dir)


def test_the_iceberg_table_of_a_compacted_topic_holds_what_the_cleaned_log_holds(fresh_cluster, topic_name):
    from tests.integration.test_log_compaction import COMPACT, read_confluent, wait_cleaned

    c = fresh_cluster(brokers=1, config={**ICEBERG, "log_cleaner_backoff_ms": 200})
    c.start()
    c.create_topic(topic_name, partitions=1, replication_factor=1, config=COMPACT)
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "linger.ms": 5, "acks": "all"})
    for rnd in range(12):
        for k in range(25):
            p.produce(topic_name, key=b"key-%02d" % k, value=b"v%d-%d" % (k, rnd) * 8, partition=0)
        assert p.flush(30) == 0
        # each round in the table before the next: its data files hold versions the cleaner removes later
        wait_until(lambda n=25 * (rnd + 1): iceberg_top(c, topic_name) >= n, timeout=DEADLINE_S, interval=0.3)
    end = 12 * 25
    wait_cleaned(c, topic_name, end, replicas=1)

    def log_offsets() -> list[int]:
        return [o for o, _, _ in read_confluent(c.bootstrap_servers, topic_name, end)]

    def reflected():
        want = log_offsets()
        got = [o for _, o in iceberg_offsets(c, topic_name)]
        return got == want and got

    got = wait_until(reflected, timeout=DEADLINE_S, interval=1.0, message="the table to hold what the log holds")
    assert len(got) < end  # the cleaner removed old versions and the table followed
    assert len(got) >= 25  # the latest version of every key is kept
    table = c.iceberg_table(topic_name)
    rows = table.scan(selected_fields=("offset", "key", "value")).to_arrow().sort_by("offset").to_pylist()
    latest = {r["key"]: r["value"] for r in rows}  # in offset order: the last version of each key wins
    assert latest == {b"key-%02d" % k: b"v%d-%d" % (k, 11) * 8 for k in range(25)}
    ops = [s.summary.additional_properties.get("workbench.operation") for s in table.snapshots()]
    assert "compaction" in ops
    assert glob_counts(c, topic_name) == (len(got), len(got))  # the replaced data files are skipped by the rule


def iceberg_top(c, topic: str) -> int:
    """Where the table's published records of partition 0 end (0 before the first commit)."""
    from workbench.storage.iceberg_tables import published_offsets

    try:
        return published_offsets(c.iceberg_table(topic)).get(0, 0)
    except NoSuchTableError:
        return 0
