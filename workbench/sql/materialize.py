"""For `workbench.connect`: topics consumed into local Parquet, in the brokers' own layout.

A cluster the workbench did not start has no Parquet files we can read, so the engine fetches
records over the Kafka protocol (assign + fetch, never a group join or commit) into its fresh
table, and `LocalSegments` seals every `SEAL_RECORDS` of them into
``<root>/broker-local/topics/<topic>/partition=<p>/<base_offset:020d>.parquet`` (raw columns,
``workbench.next_offset`` metadata, temporary name then rename), exactly what a broker's Parquet
tier would hold. From there the compactor builds the flattened cache as for an embedded cluster,
and the next session resumes from the last sealed offset instead of consuming again.
Segments below a partition's log start offset are deleted, following the cluster's retention.

**Fresh files while the notebook runs** (`connection.materialize(...)`, issue 17): a keeper thread
(`Materialization`, a `PeriodicSampler`) refreshes the chosen topics every `interval` seconds, and
each refresh rewrites one **tail file** per partition holding the rows above its last sealed
segment: ``<base_offset:020d>.parquet`` marked ``workbench.tail=1``, the brokers' convention
(`workbench.storage.parquet_tail`). The seal that follows replaces the tail under the same name in
one rename, so a reader of the directory never sees a record twice nor misses one; readers of
sealed segments (the compactor, the next session) skip tails. The ``workbench.duckdb`` catalog's
views read these files above what the compacted cache covers, so plain DuckDB over the catalog
trails the cluster by about `interval` plus one fetch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from workbench.sql.cache import _TAIL_KEY, read_sealed
from workbench.sql.sampler import PeriodicSampler
from workbench.sql.wire import RAW_SCHEMA, PartitionInfo

SEAL_RECORDS = 50_000
LOCAL_BROKER = "broker-local"


class LocalSegments:
    """The sealed source and the materializer of a `workbench.connect` connection."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        #: Seal a segment once this many records are above the last one.
        self.seal_records = SEAL_RECORDS
        #: Write tail files on each refresh (turned on by `Materialization`).
        self.tails = False
        # partition directory -> (tail file, its end offset) as this process last wrote it
        self._tails_written: dict[Path, tuple[Path, int]] = {}

    def topic_directory(self, topic: str) -> Path:
        return self.root / LOCAL_BROKER / "topics" / topic

    def anchor(self, topic: str) -> Path:
        """A zero-row raw file under partition 0, so a glob over the topic matches before any seal."""
        return self.topic_directory(topic) / "partition=0" / ANCHOR

    def ensure_anchor(self, topic: str) -> None:
        anchor = self.anchor(topic)
        if anchor.exists():
            return
        anchor.parent.mkdir(parents=True, exist_ok=True)
        empty = pa.schema([f for f in RAW_SCHEMA if f.name != "partition"]).empty_table()  # hive gives partition
        tmp = anchor.with_name(anchor.name + ".tmp")
        pq.write_table(empty, tmp)
        os.replace(tmp, anchor)

    def raw_glob(self, topic: str) -> str:
        """Every sealed segment and tail file of the topic (and its anchor), hive-partitioned."""
        return str(self.topic_directory(topic) / "partition=*" / "*.parquet")

    def directory(self, topic: str, info: PartitionInfo) -> Path:
        return self.root / LOCAL_BROKER / "topics" / topic / f"partition={info.partition}"

    def after_refresh(self, engine, state, seal_records: int | None = None) -> None:
        """Seal the fresh rows above each partition's local segments once there are enough, and
        (when `tails` is on) rewrite each partition's tail file with the rest."""
        seal_records = self.seal_records if seal_records is None else seal_records
        for p, ps in state.partitions.items():
            directory = self.directory(state.name, ps.info)
            files = read_sealed(directory)
            sealed: set[str] = set()
            for f in files:
                if f.next <= ps.log_start:
                    f.path.unlink(missing_ok=True)
                else:
                    sealed.add(f.path.name)
            sealed_to = max(files[-1].next, ps.log_start) if files else ps.log_start
            tail: Path | None = None
            if ps.fresh_next is not None and ps.fresh_next - sealed_to >= seal_records:
                table = engine.fresh_rows(state.name, p, sealed_to, ps.fresh_next)
                if table.num_rows:
                    segment = write_segment(directory, table, table["offset"][0].as_py(), ps.fresh_next)
                    sealed.add(segment.name)
                    sealed_to = ps.fresh_next
            elif self.tails and ps.fresh_next is not None and ps.fresh_next > sealed_to:
                tail = self._write_tail(engine, state.name, p, directory, sealed_to, ps.fresh_next)
            if self.tails:
                _remove_stale_tails(directory, sealed, tail)

    def _write_tail(self, engine, topic: str, partition: int, directory: Path, start: int, end: int) -> Path | None:
        written = self._tails_written.get(directory)
        if written is not None and written[1] == end and written[0].exists():
            return written[0]  # unchanged since the last rewrite: no query, no write
        table = engine.fresh_rows(topic, partition, start, end)
        if not table.num_rows:
            return None
        base = table["offset"][0].as_py()
        path = directory / f"{base:020d}.parquet"
        directory.mkdir(parents=True, exist_ok=True)
        table = table.replace_schema_metadata(
            {"workbench.base_offset": str(base), "workbench.next_offset": str(end), _TAIL_KEY.decode(): "1"}
        )
        tmp = path.with_name(path.name + ".tail.tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
        self._tails_written[directory] = (path, end)
        return path


ANCHOR = "_anchor.parquet"


def _remove_stale_tails(directory: Path, sealed: set[str], keep: Path | None) -> None:
    """Delete tail files other than `keep`: a tail whose rows a seal or the log start left behind
    would otherwise be read next to the file that now holds them."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        stale = name.endswith(".parquet") and name[:-8].isdigit() and name not in sealed
        if stale and (keep is None or name != keep.name):
            (directory / name).unlink(missing_ok=True)


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


class Materialization(PeriodicSampler):
    """A `workbench.connect` connection's topics kept on local disk while the notebook runs.

    Started by `connection.materialize(...)`: every `interval` seconds it refreshes the topics
    (fetching what is new, sealing, rewriting tail files) so that ``<sql_data_dir>/workbench.duckdb``
    and the Parquet files under ``broker-local/`` trail the cluster by about one interval. `stop()`
    ends it (so does closing the connection's SQL); the files stay for the next session.
    """

    thread_name = "workbench-materialize"

    def __init__(self, engine, *, interval: float = 2.0, span: float = 0.0) -> None:
        super().__init__(engine, interval=interval, span=span)
        #: The topics kept fresh; empty means every topic of the cluster (internal ones excepted).
        self.topics: set[str] = set()
        #: (unix time, {topic: summed high watermark}) of the last refresh, or None before one.
        self.latest: tuple[float, dict[str, int]] | None = None
        #: Also commit each refresh to an Iceberg table per topic (``materialize(..., iceberg=True)``).
        self.iceberg = False
        #: (topic, partition) -> the offset its Iceberg table is published to, as the last commit said.
        self._published: dict[tuple[str, int], int] = {}
        self._last_merge_round = 0.0

    def start(self) -> Materialization:
        with self._lock:
            if self._stop.is_set() and not self.running:  # stopped before: materialize() again restarts it
                self._stop.clear()
                self._thread = None
        return super().start()

    @property
    def catalog(self) -> Path:
        """The DuckDB catalog plain DuckDB opens (``duckdb -readonly <catalog>``)."""
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the connection's SQL engine is closed")
        return engine.catalog_path

    def sample(self, engine=None) -> dict[str, int]:
        engine = engine or self._engine()
        if engine is None:
            raise RuntimeError("the connection's SQL engine is closed")
        try:
            md = engine.metadata(refresh=True)  # new topics, and the partitions `refresh` reads
            names = self.topics or set(engine._user_topics(md))
            engine.refresh(names)
        except Exception as exc:
            self.error = exc
            raise
        hw = {
            t: sum(ps.high_watermark or 0 for ps in state.partitions.values())
            for t, state in engine.topic_states().items()
            if t in names
        }
        if self.iceberg and isinstance(engine.materializer, LocalSegments):
            self._publish_iceberg(engine, engine.materializer, names)
        with self._lock:
            self.latest = (time.time(), hw)
            self._recorded()
        return hw

    def _publish_iceberg(self, engine, local: LocalSegments, names: set[str]) -> None:
        """Commit what each partition's local files hold above its table (one snapshot per partition
        with news), with the brokers' own committer (`workbench.storage.iceberg_tables.publish`): the
        same table layout, offsets in every snapshot, small-file merges and retention as an embedded
        cluster's tables. Runs in this keeper's thread, after the refresh that wrote the files."""
        from workbench.open_tables import iceberg_root
        from workbench.storage.iceberg_tables import publish

        now = time.monotonic()
        merge_round = now - self._last_merge_round >= 60.0  # let idle partitions' small files merge too
        for topic in sorted(names):
            state = engine.topic_states().get(topic)
            if state is None:
                continue
            for index, ps in sorted(state.partitions.items()):
                directory = local.topic_directory(topic) / f"partition={index}"
                tp = (topic, index)
                caught_up = self._published.get(tp, -1) >= (ps.high_watermark or 0)
                if not directory.is_dir() or (caught_up and not merge_round):
                    continue
                answer = publish(
                    {
                        "iceberg": True,
                        "root": str(iceberg_root(local.root)),
                        "topic": topic,
                        "partition": index,
                        "directory": str(directory),
                        "log_start_offset": ps.log_start,
                        "merge_age_ms": 60_000,
                        "merge_min_files": 10,
                        "compacted": False,
                        "bootstrap": engine.wire.bootstrap_servers,  # `_schemas`: typed columns
                    }
                )
                self._published[tp] = int(answer.get("to_offset") or self._published.get(tp, -1))
        if merge_round:
            self._last_merge_round = now

    def stop(self) -> None:
        super().stop()
        engine = self._engine()
        if engine is not None and isinstance(engine.materializer, LocalSegments):
            engine.materializer.tails = False
