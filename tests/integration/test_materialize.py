"""Issue 17, point 4: a `workbench.connect` cluster's topics as open tables on local disk.

`connection.materialize(topic)` keeps the topic in ``<sql_data_dir>`` while the notebook runs:
plain DuckDB in another process, over ``<sql_data_dir>/workbench.duckdb``, counts what the cluster
holds within a few intervals, and never counts a record twice while tail files are rewritten and
replaced by sealed segments.
"""

from __future__ import annotations

import json

import pytest

import workbench
from tests.support import plain_duckdb, wait_until

DEADLINE_S = 60  # a failure bound, not a speed claim
#: Partitions of the tight-loop reader test: each refresh rewrites one tail per partition.
PARTITIONS = 6


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def test_materialized_topic_is_fresh_in_plain_duckdb_and_each_record_counts_once(cluster, topic_name, tmp_path):
    cluster.create_topic(topic_name, partitions=2, replication_factor=1)
    producer = cluster.producer()
    for i in range(300):
        producer.send(topic_name, {"i": i}, partition=i % 2)
    producer.flush()
    remote = workbench.connect(cluster.bootstrap_servers)
    remote.sql_data_dir = tmp_path / "local"
    try:
        remote.sql_engine.materializer.seal_records = 200  # seals happen during the test
        keeper = remote.materialize(topic_name, interval=0.3)
        query = f'SELECT count(*), count(DISTINCT (partition, "offset")), coalesce(sum(i), 0) FROM {q(topic_name)}'
        # The first files are written before materialize() returns.
        assert plain_duckdb(keeper.catalog, query) == (300, 300, sum(range(300)))
        total = 300
        for _round in range(4):  # each round crosses a seal in one partition or both
            for i in range(total, total + 150):
                producer.send(topic_name, {"i": i}, partition=i % 2)
            producer.flush()
            total += 150
            n, distinct, _ = plain_duckdb(keeper.catalog, query)
            assert n == distinct <= total  # never a record twice, never one the cluster lacks
        got = wait_until(
            lambda: (r := plain_duckdb(keeper.catalog, query))[0] == total and r,
            timeout=DEADLINE_S,
            interval=0.3,
            message="plain DuckDB over the materialized catalog to count every record",
        )
        assert got == (total, total, sum(range(total)))
        local = tmp_path / "local" / "broker-local" / "topics" / topic_name
        sealed = [f for f in local.glob("partition=*/*.parquet") if f.stem.isdigit()]
        assert len(sealed) >= 4  # seals replaced tails; the rest are the current tails
        assert keeper.error is None and keeper.samples > 1 and keeper.latest[1][topic_name] == total
        keeper.stop()
        wait_until(lambda: not keeper.running, timeout=10)
    finally:
        remote.close_sql()
    # A new session resumes from the sealed files and sees the same table.
    again = workbench.connect(cluster.bootstrap_servers)
    again.sql_data_dir = tmp_path / "local"
    try:
        assert again.sql(f"SELECT count(*) n FROM {q(topic_name)}")["n"][0] == total
    finally:
        again.close_sql()


def test_materialize_refuses_what_it_cannot_do_and_names_the_argument(cluster, topic_name, tmp_path):
    with pytest.raises(ValueError, match=r"workbench\.connect"):
        cluster.materialize(topic_name)
    cluster.create_topic(topic_name, partitions=1)
    remote = workbench.connect(cluster.bootstrap_servers)
    remote.sql_data_dir = tmp_path / "local"
    try:
        with pytest.raises(ValueError, match="no such topic: not-a-topic"):
            remote.materialize("not-a-topic")
        with pytest.raises(ValueError, match="interval"):
            remote.materialize(topic_name, interval=0)
        with pytest.raises(ValueError, match="topics must be topic names"):
            remote.materialize(123)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="iceberg must be True or False"):
            remote.materialize(topic_name, iceberg="yes")  # type: ignore[arg-type]
    finally:
        remote.close_sql()


def test_materialized_topic_is_also_an_iceberg_table_each_snapshot_a_prefix_of_the_log(cluster, topic_name, tmp_path):
    """Point 4 with Iceberg: ``materialize(..., iceberg=True)`` commits each refresh to
    ``kafka.<topic>`` under ``<sql_data_dir>/iceberg`` with the brokers' committer; pyiceberg reads
    every record once, and each snapshot's offsets say exactly which prefix it holds."""
    cluster.create_topic(topic_name, partitions=2, replication_factor=1)
    producer = cluster.producer()
    for i in range(200):
        producer.send(topic_name, {"i": i}, partition=i % 2)
    producer.flush()
    remote = workbench.connect(cluster.bootstrap_servers)
    remote.sql_data_dir = tmp_path / "local"
    try:
        remote.sql_engine.materializer.seal_records = 150
        keeper = remote.materialize(topic_name, interval=0.3, iceberg=True)
        total = 200
        for _round in range(3):
            for i in range(total, total + 120):
                producer.send(topic_name, {"i": i}, partition=i % 2)
            producer.flush()
            total += 120

        def scanned():
            table = remote.iceberg_table(topic_name)
            rows = table.scan().to_arrow()
            return rows.num_rows == total and (table, rows)

        table, rows = wait_until(
            scanned, timeout=DEADLINE_S, interval=0.3, message="the Iceberg table to hold every record"
        )
        pairs = set(zip(rows.column("partition").to_pylist(), rows.column("offset").to_pylist(), strict=True))
        assert len(pairs) == total  # each record once
        assert pairs == {(p, o) for p in (0, 1) for o in range(total // 2)}
        assert keeper.error is None
        snapshots = table.snapshots()
        assert len(snapshots) >= 2
        for snap in snapshots[-3:]:  # each snapshot: exactly the prefix its summary names, per partition
            props = snap.summary.additional_properties
            ends = {int(k): int(v) for k, v in json.loads(props["workbench.next-offsets"]).items()}
            at = table.scan(snapshot_id=snap.snapshot_id).to_arrow()
            got = set(zip(at.column("partition").to_pylist(), at.column("offset").to_pylist(), strict=True))
            assert got == {(p, o) for p, end in ends.items() for o in range(end)}
        keeper.stop()
    finally:
        remote.close_sql()


READER = r"""
import json, sys, time
import duckdb
catalog, topic, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
con = duckdb.connect(catalog, read_only=True)
t = '"' + topic + '"'
# count, distinct (partition, offset), and the sum over partitions of max offset + 1: equal when each
# partition's records are a prefix of its log, each once
sql = (f'SELECT coalesce(sum(n), 0), coalesce(sum(d), 0), coalesce(sum(m + 1), 0) FROM ('
       f'SELECT count(*) n, count(DISTINCT "offset") d, max("offset") m FROM {t} GROUP BY partition)')
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        print(json.dumps({"row": list(con.execute(sql).fetchone())}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
"""


def test_plain_duckdb_never_fails_while_the_materializer_rewrites_tails_and_seals(cluster, topic_name, tmp_path):
    """Point 3 for `workbench.connect`: while the keeper rewrites a tail every 0.1 s and seals every
    ~1.5 s, every answer of a plain-DuckDB reader in a tight loop is a prefix of the log, each record
    once, never going back, and no query fails."""
    import subprocess
    import sys
    import threading
    import time

    from confluent_kafka import Producer

    cluster.create_topic(topic_name, partitions=PARTITIONS, replication_factor=1)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 5})
    p.produce(topic_name, value=b'{"i": -1}', partition=0)
    assert p.flush(30) == 0
    remote = workbench.connect(cluster.bootstrap_servers)
    remote.sql_data_dir = tmp_path / "local"
    stop = threading.Event()
    sent = [1]

    def produce() -> None:
        i = 0
        while not stop.is_set():
            for _ in range(100):  # ~2,000 records/s
                p.produce(topic_name, value=b'{"i": %d, "pad": "%s"}' % (i, b"x" * 64), partition=i % PARTITIONS)
                i += 1
            p.poll(0)
            sent[0] = i + 1
            time.sleep(0.05)
        p.flush(30)

    writer = threading.Thread(target=produce, daemon=True)
    try:
        remote.sql_engine.materializer.seal_records = 3_000  # a seal every ~1.5 s, tails between
        keeper = remote.materialize(topic_name, interval=0.1)
        writer.start()
        out = subprocess.run(
            [sys.executable, "-c", READER, str(keeper.catalog), topic_name, "20"],
            capture_output=True,
            text=True,
            timeout=140,
            check=False,
        )
        stop.set()
        writer.join(60)
        assert out.returncode == 0, out.stderr
        results = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        errors = [r for r in results if "error" in r]
        assert not errors, f"{len(errors)} of {len(results)} queries failed, first: {errors[:3]}"
        rows = [r["row"] for r in results]
        assert len(rows) >= 20, f"only {len(rows)} queries ran: nothing was tested"
        bad = [row for row in rows if not row[0] == row[1] == row[2]]
        assert not bad, f"{len(bad)} of {len(rows)} answers not a prefix of each log once each, first: {bad[:5]}"
        counts = [n for n, _d, _p in rows]
        assert counts == sorted(counts), f"the count went back: {counts}"
        assert counts[-1] > counts[0] + 5_000, f"the files hardly grew while read: {counts[0]}..{counts[-1]}"
        want = sent[0]
        wait_until(
            lambda: plain_duckdb(keeper.catalog, f'SELECT count(*) FROM "{topic_name}"') == (want,),
            timeout=DEADLINE_S,
            interval=0.3,
            message="plain DuckDB over the materialized catalog to count every record",
        )
        keeper.stop()
    finally:
        stop.set()
        remote.close_sql()
