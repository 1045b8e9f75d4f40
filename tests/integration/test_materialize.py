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
