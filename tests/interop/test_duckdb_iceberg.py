"""Issue 17: a topic's Iceberg table read by an Iceberg implementation nobody here wrote.

DuckDB's own `iceberg` extension (C++, duckdb/duckdb-iceberg), in a venv of its own
(`tests/interop/duckdb_iceberg/requirements.txt`: DuckDB 1.5.5 and the extension's PyPI wheels, so
nothing is downloaded from extensions.duckdb.org; `.ci/run` builds it) reads the table's metadata
file with ``iceberg_scan``: the current snapshot holds each record once, exactly what `cluster.sql`
and pyiceberg hold; **every snapshot** read with ``snapshot_from_id`` holds exactly the records
`cluster.as_of(offset=...)` returns for the offsets that snapshot's summary names (so Iceberg time
travel and `as_of` agree), also across small-file merges (overwrite snapshots) and a DeleteRecords
(a delete snapshot). Without the venv the test skips, and fails under WORKBENCH_REQUIRE_ALL=1.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.integration.test_open_tables import DEADLINE_S, MERGING, iceberg_offsets
from tests.support import wait_until

HERE = Path(__file__).parent / "duckdb_iceberg"
PYTHON = Path(os.environ.get("WORKBENCH_DUCKDB_ICEBERG_PYTHON", HERE / ".venv" / "bin" / "python"))


@pytest.fixture(scope="module")
def duckdb_iceberg() -> Path:
    if not PYTHON.exists():
        message = (
            f"DuckDB's iceberg extension is not installed (python3 -m venv {HERE}/.venv && "
            f"{HERE}/.venv/bin/pip install -r {HERE}/requirements.txt)"
        )
        if os.environ.get("WORKBENCH_REQUIRE_ALL") == "1":
            pytest.fail(message + "; WORKBENCH_REQUIRE_ALL=1 turns this skip into a failure")
        pytest.skip(message)
    return PYTHON


def duckdb_read(python: Path, queries: list[str]) -> list[list[list]]:
    run = subprocess.run(
        [str(python), str(HERE / "read.py"), json.dumps(queries)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["version"] == "1.5.5"
    return found["results"]


def snapshot_offsets(snap) -> dict[int, int]:
    """partition -> the first offset NOT in the snapshot, from its summary."""
    return {int(p): int(n) for p, n in json.loads(snap.summary.additional_properties["workbench.next-offsets"]).items()}


def partition_file_ends(table, partition: int) -> list[int]:
    """Where each current data file of `partition` ends (exclusive), in order."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ends = []
    for task in table.scan().plan_files():
        rows = pq.read_table(task.file.file_path.removeprefix("file://"), columns=["partition", "offset"])
        if pc.min(rows["partition"]).as_py() == partition:
            ends.append(pc.max(rows["offset"]).as_py() + 1)
    return sorted(ends)


def test_duckdbs_iceberg_extension_reads_every_snapshot_as_as_of_reads_its_offsets(
    fresh_cluster, topic_name, duckdb_iceberg
):
    c = fresh_cluster(brokers=1, config=MERGING)
    c.start()
    c.create_topic(topic_name, partitions=2, replication_factor=1)
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all", "enable.idempotence": True})
    total = 0
    for _round in range(5):  # five rounds, each committed before the next: several snapshots, then merges
        for i in range(60):
            p.produce(topic_name, value=json.dumps({"i": total + i}).encode(), partition=i % 2)
        assert p.flush(30) == 0
        total += 60
        wait_until(lambda n=total: len(iceberg_offsets(c, topic_name)) >= n, timeout=DEADLINE_S, interval=0.5)
    wait_until(  # a merge: an overwrite snapshot rewrote small files (merge age 1 s, 3 files)
        lambda: any(
            s.summary.additional_properties.get("workbench.operation") == "merge"
            for s in c.iceberg_table(topic_name).snapshots()
        ),
        timeout=DEADLINE_S,
        interval=0.5,
        message="a small-file merge snapshot",
    )
    # Every snapshot: DuckDB's reader, pyiceberg and cluster.as_of of the snapshot's offsets agree.
    table = c.iceberg_table(topic_name)
    location = table.metadata_location
    snaps = [s for s in table.snapshots() if "workbench.next-offsets" in s.summary.additional_properties]
    assert len(snaps) >= 3
    queries = [
        f"SELECT partition, \"offset\" FROM iceberg_scan('{location}', snapshot_from_id={s.snapshot_id}) ORDER BY 1, 2"
        for s in snaps
    ]
    operations = set()
    for snap, rows in zip(snaps, duckdb_read(duckdb_iceberg, queries), strict=True):
        operations.add(snap.summary.additional_properties.get("workbench.operation", "append"))
        ends_at = snapshot_offsets(snap)
        as_of = c.as_of(offset={p: n - 1 for p, n in ends_at.items()}).sql(
            f'SELECT partition, "offset" FROM "{topic_name}" ORDER BY 1, 2'
        )
        got = [tuple(r) for r in rows]
        assert got == sorted(iceberg_offsets(c, topic_name, snap.snapshot_id)), snap.snapshot_id
        assert got == [(int(a), int(b)) for a, b in as_of.itertuples(index=False)], snap.snapshot_id
    assert {"append", "merge"} <= operations

    # DeleteRecords below a data-file boundary of partition 0 (files are dropped whole): a delete
    # snapshot, and the history that held the deleted records expired, for DuckDB's reader too.
    admin = AdminClient({"bootstrap.servers": c.bootstrap_servers})
    below = 0
    for _attempt in range(5):
        for i in range(20):  # one more data file after the merged ones, so records stay above the cut
            p.produce(topic_name, value=json.dumps({"i": total + i}).encode(), partition=0)
        assert p.flush(30) == 0
        total += 20
        wait_until(lambda n=total: len(iceberg_offsets(c, topic_name)) >= n, timeout=DEADLINE_S, interval=0.5)
        ends = [e for e in partition_file_ends(c.iceberg_table(topic_name), 0) if e > below]
        assert len(ends) >= 2
        below = ends[0]
        tp = TopicPartition(topic_name, 0, below)
        assert admin.delete_records([tp])[tp].result(30).low_watermark == below

        # A small-file merge that started before the new log start reached the converter can take
        # this boundary into a larger file (the first file was small too: merge age 1 s, 3 files),
        # and a file straddling the log start stays whole until the log start passes its end (as
        # Kafka's segment-granular retention): then cut again at the merged file's end (CI saw
        # the wait for the delete snapshot run out once).
        def settled(cut=below) -> str | None:
            if min(o for part, o in iceberg_offsets(c, topic_name) if part == 0) >= cut:
                return "deleted"
            return None if cut in partition_file_ends(c.iceberg_table(topic_name), 0) else "merged"

        if wait_until(settled, timeout=DEADLINE_S, interval=0.5, message="the delete snapshot") == "deleted":
            break
    else:
        raise AssertionError("each of five cuts was merged away before its delete snapshot")
    table = c.iceberg_table(topic_name)
    location = table.metadata_location
    current, snapshot_ids = duckdb_read(
        duckdb_iceberg,
        [
            f"""SELECT partition, "offset" FROM iceberg_scan('{location}') ORDER BY 1, 2""",
            f"SELECT snapshot_id FROM iceberg_snapshots('{location}') ORDER BY 1",
        ],
    )
    want = sorted(iceberg_offsets(c, topic_name))
    assert [tuple(r) for r in current] == want  # each record once, what pyiceberg and cluster.sql hold
    assert len(want) == total - below and min(o for part, o in want if part == 0) == below
    from_sql = c.sql(f'SELECT partition, "offset" FROM "{topic_name}" ORDER BY 1, 2')
    assert [(int(a), int(b)) for a, b in from_sql.itertuples(index=False)] == want
    assert sorted(r[0] for r in snapshot_ids) == sorted(s.snapshot_id for s in table.snapshots())


def test_duckdbs_iceberg_extension_reads_the_typed_columns_of_registry_framed_records(
    fresh_cluster, topic_name, duckdb_iceberg
):
    """Avro keys and values typed from the registry (structs, decimals, timestamps, dates, UUIDs, lists,
    enums: `workbench.storage.iceberg_typed`) as DuckDB's reader sees them."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from tests.integration.test_open_tables_typed import ORDER_KEY, V1, order

    c = fresh_cluster(brokers=1, config=MERGING, schema_registry=True)
    c.start()
    client = SchemaRegistryClient({"url": c.schema_registry_url})
    vctx = SerializationContext(topic_name, MessageField.VALUE)
    kctx = SerializationContext(topic_name, MessageField.KEY)
    values, keys = AvroSerializer(client, json.dumps(V1)), AvroSerializer(client, json.dumps(ORDER_KEY))
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "enable.idempotence": True})
    for i in range(4):
        p.produce(topic_name, key=keys({"region": "eu", "id": i}, kctx), value=values(order(i), vctx))
    assert p.flush(30) == 0
    wait_until(lambda: len(iceberg_offsets(c, topic_name)) >= 4, timeout=DEADLINE_S, interval=0.5)
    location = c.iceberg_table(topic_name).metadata_location
    (rows,) = duckdb_read(
        duckdb_iceberg,
        [
            'SELECT "offset", key_typed, id, CAST("at" AS VARCHAR), CAST(price AS VARCHAR), ref, '
            f"CAST(\"day\" AS VARCHAR), tags, buyer, status FROM iceberg_scan('{location}') ORDER BY 1"
        ],
    )
    assert rows[2] == [
        2,
        {"region": "eu", "id": 2},
        2,
        "2024-05-01 12:00:02+00",
        "2.25",
        "00000000-0000-0000-0000-000000000002",
        "2024-05-03",
        ["a", "2"],
        {"name": "b2"},
        "NEW",
    ]
    assert [r[0] for r in rows] == [0, 1, 2, 3]
