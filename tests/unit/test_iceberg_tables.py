"""`workbench.storage.iceberg_tables.publish` alone (no broker): a commit per call with new
records, none without, and a crash between writing a data file and committing it leaves a file
the next publisher adopts instead of writing an overlapping one."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from workbench.open_tables import NAMESPACE, data_glob, open_catalog
from workbench.storage import iceberg_tables, parquet_tier


def tier_rows(lo: int, hi: int) -> pa.Table:
    n = hi - lo
    schema = parquet_tier.schema()
    return pa.table(
        {
            "offset": pa.array(range(lo, hi), pa.int64()),
            "timestamp": pa.array([1_700_000_000_000 + i for i in range(lo, hi)], pa.timestamp("ms", tz="UTC")),
            "key": pa.array([None] * n, pa.binary()),
            "value": pa.array([b"v%d" % i for i in range(lo, hi)], pa.binary()),
            "headers": pa.array([[]] * n, schema.field("headers").type),
            "producer_id": pa.array([-1] * n, pa.int64()),
            "producer_epoch": pa.array([-1] * n, pa.int16()),
            "sequence": pa.array([-1] * n, pa.int32()),
            "batch_base_offset": pa.array([lo] * n, pa.int64()),
            "partition_leader_epoch": pa.array([0] * n, pa.int32()),
            "timestamp_type": pa.array([0] * n, pa.int8()),
        },
        schema=schema,
    )


def write_source(directory, lo: int, hi: int) -> None:
    """A partition's Parquet file (a tail growing in place, as the broker writes it)."""
    parquet_tier.write_table_file(directory / f"{0:020d}.parquet", 0, hi, tier_rows(0, hi), 0, topic="t")


def test_each_publish_commits_only_new_records_once(tmp_path):
    source = tmp_path / "broker-1" / "topics" / "t" / "partition=0"
    source.mkdir(parents=True)
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    write_source(source, 0, 100)
    first = iceberg_tables.publish(job)
    assert (first["committed"], first["from_offset"], first["to_offset"], first["rows"]) == (True, 0, 100, 100)
    assert iceberg_tables.publish(job)["committed"] is False  # nothing new: no snapshot
    write_source(source, 0, 150)
    second = iceberg_tables.publish(job)
    assert (second["from_offset"], second["to_offset"], second["rows"]) == (100, 150, 50)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert len(table.snapshots()) == 2
    assert sorted(table.scan().to_arrow().column("offset").to_pylist()) == list(range(150))
    old = table.scan(snapshot_id=table.snapshots()[0].snapshot_id).to_arrow()
    assert sorted(old.column("offset").to_pylist()) == list(range(100))


def test_a_file_left_by_a_crash_before_the_commit_is_adopted_not_duplicated(tmp_path):
    source = tmp_path / "partition=0"
    source.mkdir()
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    write_source(source, 0, 80)
    iceberg_tables.publish(job)
    write_source(source, 0, 120)
    # A publisher wrote [80, 120) and died before committing it.
    orphan = root / "t" / "data" / f"p{0:05d}-{80:020d}.parquet"
    rows = iceberg_tables._read_range(source, 80)[2]
    iceberg_tables._write_data_file(orphan, iceberg_tables._to_iceberg(rows, 0), 120)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert sorted(table.scan().to_arrow().column("offset").to_pylist()) == list(range(80))  # still consistent
    write_source(source, 0, 130)  # the log grew meanwhile
    answer = iceberg_tables.publish(job)
    assert (answer["from_offset"], answer["to_offset"]) == (80, 120)  # the orphan's range, adopted
    answer = iceberg_tables.publish(job)
    assert (answer["from_offset"], answer["to_offset"]) == (120, 130)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert sorted(table.scan().to_arrow().column("offset").to_pylist()) == list(range(130))
    n = pq.ParquetDataset([str(p) for p in (root / "t" / "data").glob("p*.parquet")]).read().num_rows
    assert n == 130  # data files never overlap
    assert data_glob(root, "t").endswith("*.parquet")
