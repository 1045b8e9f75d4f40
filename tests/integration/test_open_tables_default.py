"""Issue 17 with default settings (no Iceberg committer): plain DuckDB over ``workbench.duckdb``
sees fresh records from the brokers' own Parquet files, each once, never past the last stable
offset, without `cluster.sql` running again after it wrote the catalog."""

from __future__ import annotations

import time

from confluent_kafka import Producer

from tests.support import plain_duckdb, wait_until

DEADLINE_S = 90  # a failure bound, not a speed claim (benchmarks/open_tables.py measures)


# No re-run of a "torn" read any more: brokers never replace a file under a listed name and unlink
# superseded files only after a grace period (tests/integration/test_open_tables_concurrent_reads.py).


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def create_rf3(cluster, topic: str, partitions: int, config: dict | None = None) -> None:
    """`Cluster` returns once each broker serves, a moment before the controller may have every
    registration: retry while it counts fewer than three brokers."""

    def attempt() -> bool:
        try:
            cluster.create_topic(topic, partitions=partitions, replication_factor=3, config=config)
        except ValueError as exc:
            if "available broker" not in str(exc):
                raise
            return False
        return True

    wait_until(attempt, timeout=30, interval=0.5, message="three registered brokers")


def test_plain_duckdb_sees_fresh_records_with_default_settings(cluster, topic_name):
    create_rf3(cluster, topic_name, partitions=3)  # 16 MiB segments: nothing seals
    catalog = cluster.data_dir / "workbench.duckdb"
    assert cluster.sql(f"SELECT count(*) n FROM {q(topic_name)}")["n"][0] == 0  # writes the catalog
    # no broker file yet (the catalog's anchor keeps the glob matching): the view binds, empty
    assert plain_duckdb(catalog, f"SELECT count(*) FROM {q(topic_name)}") == (0,)
    assert not (cluster.data_dir / "iceberg" / "catalog.db").exists()  # Iceberg is off by default

    producer = cluster.producer()
    for i in range(500):
        producer.send(topic_name, {"i": i})
    producer.flush()
    assert cluster.sql(f"SELECT sum(i) s FROM {q(topic_name)}")["s"][0] == sum(range(500))  # column i inferred
    for i in range(500, 2000):
        producer.send(topic_name, {"i": i})
    producer.flush()
    query = f'SELECT count(*), count(DISTINCT (partition, "offset")), sum(i) FROM {q(topic_name)}'
    # No cluster.sql from here on: only the brokers' files change.
    got = wait_until(
        lambda: (r := plain_duckdb(catalog, query))[0] >= 2000 and r,
        timeout=DEADLINE_S,
        interval=0.5,
        message="plain DuckDB over workbench.duckdb to see every record",
    )
    assert got == (2000, 2000, sum(range(2000)))  # RF=3: three copies on disk, each record once
    per_partition = (
        "SELECT list((partition, n, top) ORDER BY partition) FROM "
        f'(SELECT partition, count(*) n, max("offset") top FROM {q(topic_name)} GROUP BY ALL)'
    )
    [rows] = plain_duckdb(catalog, per_partition)
    ends = cluster.sql(
        f"SELECT partition, high_watermark FROM wb.partitions WHERE topic = '{topic_name}' ORDER BY partition"
    )
    hw = dict(zip(ends["partition"], ends["high_watermark"], strict=True))
    for p, n, top in rows:
        assert n == top + 1 == hw[p]  # the partition's whole committed log, nothing above the HW


def test_plain_duckdb_never_sees_an_open_transaction(cluster, topic_name):
    create_rf3(cluster, topic_name, partitions=1)
    catalog = cluster.data_dir / "workbench.duckdb"
    plain = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    for i in range(10):
        plain.produce(topic_name, value=f'{{"i": {i}}}'.encode(), partition=0)
    assert plain.flush(15) == 0
    cluster.sql(f"SELECT count(*) FROM {q(topic_name)}")  # the topic is in the catalog
    txp = Producer({"bootstrap.servers": cluster.bootstrap_servers, "transactional.id": f"tx-{topic_name}"})
    txp.init_transactions(30)
    txp.begin_transaction()
    for i in range(5):
        txp.produce(topic_name, value=f'{{"i": {100 + i}}}'.encode(), partition=0)
    txp.flush(15)
    txp.abort_transaction(30)
    txp.begin_transaction()
    for i in range(7):
        txp.produce(topic_name, value=f'{{"i": {200 + i}}}'.encode(), partition=0)
    txp.flush(15)
    for i in range(3):
        plain.produce(topic_name, value=f'{{"i": {300 + i}}}'.encode(), partition=0)
    assert plain.flush(15) == 0
    query = f"SELECT list(i ORDER BY i) FROM {q(topic_name)}"
    wait_until(lambda: len(plain_duckdb(catalog, query)[0] or []) >= 10, timeout=DEADLINE_S, interval=0.5)
    time.sleep(3)  # several tail rewrites: none may publish past the last stable offset
    assert plain_duckdb(catalog, query)[0] == list(range(10))
    txp.commit_transaction(30)
    want = list(range(10)) + list(range(200, 207)) + list(range(300, 303))
    got = wait_until(
        lambda: (r := plain_duckdb(catalog, query)[0]) and len(r) >= 20 and r, timeout=DEADLINE_S, interval=0.5
    )
    assert got == want  # committed records in, the aborted ones never


def test_plain_duckdb_reads_one_complete_copy_after_the_leader_dies(fresh_cluster, topic_name):
    c = fresh_cluster(3)
    create_rf3(c, topic_name, partitions=1)
    catalog = c.data_dir / "workbench.duckdb"
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all", "enable.idempotence": True})
    for i in range(300):
        p.produce(topic_name, value=f'{{"i": {i}}}'.encode(), partition=0)
    assert p.flush(30) == 0
    assert c.sql(f"SELECT sum(i) s FROM {q(topic_name)}")["s"][0] == sum(range(300))  # writes the catalog
    query = f'SELECT count(*), count(DISTINCT "offset"), sum(i) FROM {q(topic_name)}'
    wait_until(lambda: plain_duckdb(catalog, query)[0] >= 300, timeout=DEADLINE_S, interval=0.5)
    frame = c.describe().partitions
    victim = int(frame[frame.topic == topic_name].leader.iloc[0])
    c.kill_broker(victim)  # its files stay on disk, stale from now on
    p2 = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all", "enable.idempotence": True})
    for i in range(300, 700):
        p2.produce(topic_name, value=f'{{"i": {i}}}'.encode(), partition=0)
    assert p2.flush(60) == 0
    got = wait_until(lambda: (r := plain_duckdb(catalog, query))[0] >= 700 and r, timeout=DEADLINE_S, interval=0.5)
    assert got == (700, 700, sum(range(700)))  # a surviving replica's copy, whole, never two copies


def test_plain_duckdb_counts_each_record_once_while_log_cleaners_rewrite_the_copies(fresh_cluster, topic_name):
    from tests.integration.test_log_compaction import COMPACT, wait_cleaned

    c = fresh_cluster(3, config={"log_cleaner_backoff_ms": 200})
    create_rf3(c, topic_name, partitions=1, config=COMPACT)
    catalog = c.data_dir / "workbench.duckdb"
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "linger.ms": 5, "acks": "all"})
    query = f'SELECT count(*), count(DISTINCT "offset"), count(DISTINCT key) FROM {q(topic_name)}'
    seen = []
    for rnd in range(12):
        for k in range(25):
            p.produce(topic_name, key=b"key-%02d" % k, value=b'{"round": %d}' % rnd, partition=0)
        assert p.flush(30) == 0
        if rnd == 0:
            assert c.sql(f"SELECT max(round) r FROM {q(topic_name)}")["r"][0] == 0  # catalog, column round
        seen.append(plain_duckdb(catalog, query))  # while the cleaners merge and rewrite files
    wait_cleaned(c, topic_name, 12 * 25, replicas=3)
    final = wait_until(lambda: (r := plain_duckdb(catalog, query))[2] == 25 and r, timeout=DEADLINE_S, interval=0.5)
    seen.append(final)
    assert all(n == distinct for n, distinct, _ in seen), seen  # never a record twice
    assert final[0] < 12 * 25  # old versions cleaned away
    latest = f'SELECT key, arg_max(round, "offset") AS r FROM {q(topic_name)} GROUP BY key'
    assert plain_duckdb(catalog, f"SELECT count(*), min(r), max(r) FROM ({latest})") == (25, 11, 11)
