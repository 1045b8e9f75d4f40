"""For `workbench.connect`: topics consumed into local Parquet, in the brokers' own layout.

A cluster the workbench did not start has no Parquet files we can read, so the engine fetches
records over the Kafka protocol (assign + fetch, never a group join or commit) into its fresh
table, and `LocalSegments` seals every `SEAL_RECORDS` of them into
``<root>/broker-local/topics/<topic>/partition=<p>/<base_offset:020d>.parquet`` (raw columns,
``workbench.next_offset`` metadata, temporary name then rename), exactly what a broker's Parquet
tier would hold. From there the compactor builds the flattened cache as for an embedded cluster,
and the next session resumes from the last sealed offset instead of consuming again.
Segments below a partition's log start offset are deleted, following the cluster's retention.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from workbench.sql.cache import read_sealed
from workbench.sql.wire import PartitionInfo

SEAL_RECORDS = 50_000
LOCAL_BROKER = "broker-local"


class LocalSegments:
    """The sealed source and the materializer of a `workbench.connect` connection."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def directory(self, topic: str, info: PartitionInfo) -> Path:
        return self.root / LOCAL_BROKER / "topics" / topic / f"partition={info.partition}"

    def after_refresh(self, engine, state, seal_records: int | None = None) -> None:
        """Seal the fresh rows above each partition's local segments once there are enough."""
        seal_records = SEAL_RECORDS if seal_records is None else seal_records
        for p, ps in state.partitions.items():
            directory = self.directory(state.name, ps.info)
            files = read_sealed(directory)
            for f in files:
                if f.next <= ps.log_start:
                    f.path.unlink(missing_ok=True)
            sealed_to = max(files[-1].next, ps.log_start) if files else ps.log_start
            if ps.fresh_next is None or ps.fresh_next - sealed_to < seal_records:
                continue
            table = engine.fresh_rows(state.name, p, sealed_to, ps.fresh_next)
            if not table.num_rows:
                continue
            write_segment(directory, table, table["offset"][0].as_py(), ps.fresh_next)


def write_segment(directory: Path, table: pa.Table, base: int, next_offset: int) -> Path:
    """One raw segment file covering [base, next_offset), written to a temporary name and renamed."""
    directory.mkdir(parents=True, exist_ok=True)
    table = table.replace_schema_metadata(
        {"workbench.base_offset": str(base), "workbench.next_offset": str(next_offset)}
    )
    path = directory / f"{base:020d}.parquet"
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return path
