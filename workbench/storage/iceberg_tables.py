"""Each topic as an Apache Iceberg table (issue 17), committed by the converter process.

Where: ``<data_dir>/iceberg/`` of the cluster holds a pyiceberg SQL catalog (``catalog.db``,
SQLite) and one table per topic, ``kafka.<topic>``, located at ``<data_dir>/iceberg/<topic>/``.
Any Iceberg reader opens it (pyiceberg, DuckDB's iceberg extension, Spark, Trino with a JDBC
catalog over the same SQLite file).

What a commit is: the partition **leader**'s broker (one broker per partition, so replicas'
copies are never unioned twice) asks its converter process to publish; the process reads the
records of its Parquet files (sealed and tail files: never above the last stable offset, no
aborted records, see `workbench.storage.parquet_tail`) from the table's published offset on,
writes them once, whole, as an immutable data file ``data/p<partition>-<from>.parquet`` and
commits it with ``add_files`` (no copy). One snapshot per commit; its summary carries
``workbench.partition``, ``workbench.from-offset`` and ``workbench.to-offset`` (exclusive), so an
offset maps to the first snapshot whose ``to-offset`` is above it.

Why a file of its own: the broker's tail files (a segment's chunks, several per segment) are merged
and superseded every few seconds and unlinked after the grace period, and the sealed conversion
supersedes them all; Iceberg data files must never change once referenced. Several tail files per
segment need nothing here: `_read_range` reads the contiguous run of current files from its offset.

Exactly once: a commit starts where the current snapshot says the partition's published records
end (``workbench.next-offsets`` in its summary, every partition's, carried forward); pyiceberg's
commit asserts the branch still points at the snapshot it started from (optimistic concurrency),
so two publishers (a leader change, or the leaders of two partitions of one topic) cannot both
publish a range: the loser reloads and decides again. pyiceberg's own retry of a conflicting
commit is off (``commit.retry.num-retries`` 0): it rebases the same append, with its stale range
and carried-forward offsets, onto the winner's snapshot, and the next commit published the
winner's range again (the race behind the record-twice finding). A crash between writing the data
file and committing leaves the table at its previous snapshot and an unreferenced file named by
its start offset; the next publisher from that offset finds the name taken (``link`` refuses),
and adopts the file if it starts there (failpoint ``iceberg.before_commit``). So commits' data files
never overlap; a merged file covers its members' range exactly. The source files are read with
the Parquet tier's rule (a file starting inside an earlier file's range is superseded: a merge not
finished), each above where the previous one ended, a hole at the published offset publishes
nothing, and a data file whose offsets are not strictly increasing is refused before it is written.

Retention and DeleteRecords (`_apply_retention`): once the log start offset passes a data file's
whole range, a delete snapshot drops the partition's files below it, every older snapshot is
expired and the files are unlinked. Snapshot expiry (`_expire_old_snapshots`) follows Iceberg's
``history.expire.max-snapshot-age-ms`` and ``history.expire.min-snapshots-to-keep`` (5 min, 10: a commit
a second, and every commit rewrites all the snapshots kept), and after each expiry `_sweep_metadata`
unlinks the manifests, manifest lists and metadata JSON files nothing references any more.

Small-file merge (`_maybe_merge`, every tenth of ``merge_age_ms``): a run of consecutive small data
files older than the merge age becomes one file ``data/p<partition>-<from>-<to>-g<seq>.parquet`` in one
Iceberg overwrite snapshot (``workbench.operation=merge``; the same records, offsets unchanged).
The members stay on disk for the older snapshots and are unlinked once the oldest snapshot left
holds the merged file (`_unlink_superseded`); plain Parquet readers of ``data/`` use the rule of
`workbench.open_tables.data_files_sql` (a file inside another's range is left out).

Compacted topics (`_reflect_compaction`): when the broker's log cleaner rewrote files the table
already published, the table's data files overlapping them are rewritten from the log as it is now,
in one overwrite snapshot; the cleaner files reflected are carried forward in every summary.

Typed columns (`_typed`, `workbench.storage.iceberg_typed`): every data file this module writes (a
commit's, a merge's, a compaction rewrite's) carries, for a topic with registry-framed values,
``schema_id``, ``decode_error`` and the value's fields; a file with columns the table lacks is
committed in a transaction that first evolves the schema (``union_by_name``), so an adopted file
from a crash brings its columns too. A merge decodes the rows committed before their schema was
known (neither a schema id nor a decode error).
"""

from __future__ import annotations

import json
import logging
import os
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench._lazy import lazy_module
from workbench.open_tables import (
    ANCHOR,
    NAMESPACE,
    open_catalog,
    table_location,
)
from workbench.storage.failpoints import failpoint
from workbench.storage.parquet_tier import current_files, parse_file_name

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import Table
else:  # imported on first use, in the converter process only
    pa = lazy_module("pyarrow")
    pq = lazy_module("pyarrow.parquet")

log = logging.getLogger(__name__)

NEXT_KEY = b"workbench.next_offset"  # key-value metadata: the offset a file's range ends before
#: One commit reads at most about this many rows (a backlog is published over several commits).
MAX_ROWS_PER_COMMIT = 1_000_000


@cache
def arrow_schema() -> pa.Schema:
    """The Iceberg table's columns: the Parquet tier's, plus the Kafka partition."""
    return pa.schema(
        [
            pa.field("partition", pa.int32(), nullable=False),
            pa.field("offset", pa.int64(), nullable=False),
            pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("key", pa.binary()),
            pa.field("value", pa.binary()),
            pa.field(
                "headers", pa.list_(pa.field("element", pa.struct([("key", pa.string()), ("value", pa.binary())])))
            ),
            pa.field("producer_id", pa.int64(), nullable=False),
            pa.field("producer_epoch", pa.int32(), nullable=False),
            pa.field("sequence", pa.int32(), nullable=False),
            pa.field("batch_base_offset", pa.int64(), nullable=False),
            pa.field("partition_leader_epoch", pa.int32(), nullable=False),
            pa.field("timestamp_type", pa.int32(), nullable=False),
        ]
    )


#: Set on every table, also on one created before (a conflict must reach `publish`).
REQUIRED_PROPERTIES = {
    # pyiceberg (0.12 on) retries a conflicting commit by rebasing the same append onto the new
    # snapshot, summary and all: a commit decided on a stale table (its range, its carried-forward
    # offsets) would land anyway, a range twice. A conflict must reach `publish`, which reloads
    # the table and decides again.
    "commit.retry.num-retries": "0",
}
#: Iceberg's snapshot expiry properties, as Java's ExpireSnapshots reads them: snapshots older
#: than the age go (checked after each commit, applied once the oldest is a tenth over it), the
#: newest ``min-snapshots-to-keep`` always stay. Change them on the table (pyiceberg
#: ``set_properties``); the committer reads them at each commit.
MAX_SNAPSHOT_AGE = "history.expire.max-snapshot-age-ms"
MIN_SNAPSHOTS = "history.expire.min-snapshots-to-keep"
DEFAULT_MAX_SNAPSHOT_AGE_MS = 300_000
DEFAULT_MIN_SNAPSHOTS = 10
TABLE_PROPERTIES = {
    **REQUIRED_PROPERTIES,
    "commit.manifest-merge.enabled": "true",
    # Java's default is 100: with a commit a second the current snapshot named ~80 manifests, each
    # read by every merge's overwrite and file listing (1.5 s a merge); 10 keeps it at 10 or fewer.
    "commit.manifest.min-count-to-merge": "10",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
    MAX_SNAPSHOT_AGE: str(DEFAULT_MAX_SNAPSHOT_AGE_MS),
    MIN_SNAPSHOTS: str(DEFAULT_MIN_SNAPSHOTS),
}


@cache
def _transaction_class() -> type:
    """pyiceberg's ``Transaction`` with its ``table_metadata`` computed once per staged state.

    Why: pyiceberg 0.12 recomputes ``Transaction.table_metadata`` on every access (apply the staged
    updates, then a deep copy of the whole metadata: every snapshot, its summary, the snapshot log),
    and one append reads it about twenty times. So a commit's CPU grew with the snapshots kept: 0.12 s
    at 60 snapshots, 0.47 s at 250 (cProfile: ~80 % in ``copy.deepcopy`` under ``update_table_metadata``;
    ``benchmarks/open_tables_hour.py``). The metadata models are frozen and the staged updates only
    ever grow by a new tuple (``_stage``: ``self._updates += ...``), so the value is the same until the
    base metadata or the updates tuple change: keyed on both objects (held, so their ids are not reused),
    with nothing staged it is the base metadata itself (pyiceberg never mutates it in place), and it
    is not deep-copied (read only, by the snapshot producers of this transaction)."""
    from pyiceberg.table import Transaction
    from pyiceberg.table.update import _apply_table_update, _TableMetadataUpdateContext

    class OnceTransaction(Transaction):
        _memo: tuple[Any, Any, Any] | None = None

        @property
        def table_metadata(self) -> Any:
            base, updates, memo = self._table.metadata, self._updates, self._memo
            if not updates:
                return base  # nothing staged: pyiceberg's answer is a deep copy of it
            if memo is None or memo[0] is not base or memo[1] is not updates:
                # pyiceberg's update_table_metadata without its final deep copy (each update is a
                # model_copy with new lists: the base is never changed). What is committed is not
                # this view: the catalog applies the updates to the metadata it loads, validated.
                context, staged = _TableMetadataUpdateContext(), base
                for update in updates:
                    staged = _apply_table_update(update, staged, context)
                memo = self._memo = (base, updates, staged)
            return memo[2]

    return OnceTransaction


def _transaction(table: Table) -> Any:
    """A transaction on ``table`` (pyiceberg's, with `_transaction_class`'s ``table_metadata``)."""
    return _transaction_class()(table)


def _expire(table: Table, snapshot_ids: list[int]) -> None:
    """Expire these snapshots (pyiceberg's ``ExpireSnapshots``, committed at once): as
    ``table.maintenance.expire_snapshots()``, but on `_transaction`, since ``by_ids`` reads the
    transaction's metadata twice per snapshot id (60 ids: 120 copies of the whole metadata)."""
    from pyiceberg.table.update.snapshot import ExpireSnapshots

    ExpireSnapshots(transaction=_transaction_class()(table, autocommit=True)).by_ids(snapshot_ids).commit()
    failpoint("iceberg.expire_before_sweep")  # a crash here leaves the expired snapshots' files: the next sweep
    _sweep_metadata(table)


#: A metadata file (manifest list, manifest, ``*.metadata.json``) no snapshot or metadata-log entry
#: references is unlinked only once this old: a concurrent committer (the old leader's, during a
#: leader change) writes its manifests and metadata before its commit lands.
METADATA_ORPHAN_GRACE_S = 60.0
#: manifest list path -> the manifests it names (manifest lists never change once written).
_manifest_lists: dict[str, tuple[str, ...]] = {}


def _sweep_metadata(table: Table) -> int:
    """Unlink the table's metadata files nothing references any more: the manifest lists of
    expired snapshots, manifests no snapshot left names, ``*.metadata.json`` files out of the
    metadata log, and what a crashed or conflicting commit left (written, never committed).

    Why: pyiceberg's ``ExpireSnapshots`` only edits the metadata (Java's ``expireSnapshots``
    deletes these files; pyiceberg 0.12 leaves them), so a commit a second left its manifest and
    manifest list on disk for ever, expired or not (7,200 Avro files an hour). pyiceberg
    deletes metadata JSON files dropped from the log (``write.metadata.delete-after-commit.enabled``)
    but not one a crash between the commit and that delete left. Run after ``table`` (its metadata as
    committed) expired snapshots: whatever its snapshots and log name stays, the rest goes once
    `METADATA_ORPHAN_GRACE_S` old; a crash anywhere in here leaves files for the next sweep, never a
    referenced one missing. Answers how many files were unlinked."""
    from pyiceberg.manifest import read_manifest_list

    md = table.metadata
    meta_dir = _local_path(md.location) / "metadata"
    live: set[str] = set()
    for snap in md.snapshots:
        path = str(_local_path(snap.manifest_list))
        manifests = _manifest_lists.get(path)
        if manifests is None:
            try:
                listed = read_manifest_list(table.io.new_input(snap.manifest_list))
                manifests = tuple(str(_local_path(m.manifest_path)) for m in listed)
            except FileNotFoundError:
                return 0  # a snapshot whose list is gone: not ours to judge (a reader would fail too)
            _manifest_lists[path] = manifests
        live.add(path)
        live.update(manifests)
    live.update(str(_local_path(e.metadata_file)) for e in md.metadata_log)
    if table.metadata_location:
        live.add(str(_local_path(table.metadata_location)))
    for stale in [k for k in _manifest_lists if k.startswith(str(meta_dir)) and k not in live]:
        del _manifest_lists[stale]
    old_before = time.time() - METADATA_ORPHAN_GRACE_S
    done = 0
    try:
        entries = list(os.scandir(meta_dir))
    except FileNotFoundError:
        return 0
    for e in entries:
        if not (e.name.endswith(".avro") or e.name.endswith(".metadata.json")) or e.path in live:
            continue
        try:
            if e.stat().st_mtime >= old_before:
                continue  # maybe a concurrent commit's, not landed yet
            os.unlink(e.path)
            done += 1
        except FileNotFoundError:
            pass
    return done


def ensure_anchor(root: Path, topic: str) -> None:
    """A zero-row file in the data directory, so a glob over it matches before the first commit."""
    d = table_location(root, topic) / "data"
    path = d / ANCHOR
    if path.exists():
        return
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{ANCHOR}.{os.getpid()}.tmp"
    pq.write_table(arrow_schema().empty_table(), tmp)
    os.replace(tmp, path)


def _load_or_create(catalog: SqlCatalog, root: Path, topic: str) -> Table:
    from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError, TableAlreadyExistsError

    ident = (NAMESPACE, topic)
    try:
        table = _load_table(catalog, root, topic)
    except NoSuchTableError:
        pass
    else:
        missing = {k: v for k, v in REQUIRED_PROPERTIES.items() if table.properties.get(k) != v}
        if missing:  # a table created before a property was added (or changed by hand)
            table = _transaction(table).set_properties(missing).commit_transaction()
        return table
    try:
        catalog.create_namespace(NAMESPACE)
    except NamespaceAlreadyExistsError:
        pass
    ensure_anchor(root, topic)
    try:
        return catalog.create_table(
            ident,
            schema=arrow_schema(),
            location=f"file://{table_location(root, topic)}",
            properties=TABLE_PROPERTIES,
        )
    except TableAlreadyExistsError:
        return catalog.load_table(ident)


#: (root, topic) -> (metadata location, its metadata) as the last commit round in this process left them.
_metadata: dict[tuple[str, str], tuple[str, Any]] = {}


def _load_table(catalog: SqlCatalog, root: Path, topic: str) -> Table:
    """``catalog.load_table``, without parsing the metadata JSON again when the catalog still points
    at the metadata file the last commit round in this process ended at (a round every second:
    parsing all the snapshots was a tenth of its CPU). A metadata file never changes once written,
    so the same location is the same metadata; any other commit (another publisher, a user's
    ``set_properties``) moved the pointer and the table is loaded afresh. Each call answers a new
    ``Table`` (a commit replaces its metadata: two publishes in one process never share one)."""
    from pyiceberg.catalog.sql import IcebergTables
    from pyiceberg.exceptions import NoSuchTableError
    from pyiceberg.table import Table
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    cached = _metadata.get((str(root), topic))
    if cached is not None:
        with Session(catalog.engine) as session:
            location = session.scalar(
                select(IcebergTables.metadata_location).where(
                    IcebergTables.catalog_name == catalog.name,
                    IcebergTables.table_namespace == NAMESPACE,
                    IcebergTables.table_name == topic,
                )
            )
        if location is None:
            raise NoSuchTableError(f"Table does not exist: {NAMESPACE}.{topic}")
        if location == cached[0]:
            metadata = cached[1]
            io = catalog._load_file_io(metadata.properties, location)
            return Table((NAMESPACE, topic), metadata=metadata, metadata_location=location, io=io, catalog=catalog)
    table = catalog.load_table((NAMESPACE, topic))
    _remember(root, topic, table)
    return table


def _remember(root: Path, topic: str, table: Table) -> None:
    """Keep ``table``'s metadata (as its last commit left it) for the next `_load_table`."""
    if table.metadata_location:
        _metadata[(str(root), topic)] = (table.metadata_location, table.metadata)


def _source_files(directory: Path) -> list[tuple[int, int, Path]]:
    """(base, next, path) of the partition's current Parquet files (sealed and tail), by base
    offset: superseded ones (waiting out their grace period) left out by the tier's rule."""
    out: list[tuple[int, int, int, tuple[int, int, Path]]] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    seen = set()
    for e in entries:
        parsed = parse_file_name(e.name)
        if parsed is None:
            continue
        base, generation = parsed
        try:
            st = e.stat()
            key = (e.path, st.st_ino, st.st_mtime_ns, st.st_size)
            nxt = _next_offsets.get(key)
            if nxt is None:
                nxt = int((pq.read_metadata(e.path).metadata or {}).get(NEXT_KEY, base))
        except (OSError, ValueError):
            continue  # replaced or removed while we looked
        _next_offsets[key] = nxt
        seen.add(key)
        out.append((base, nxt, generation, (base, nxt, Path(e.path))))
    for key in [k for k in _next_offsets if k[0].startswith(str(directory)) and k not in seen]:
        del _next_offsets[key]
    return current_files(out)[0]


#: (path, inode, mtime, size) -> the offset a source file's range ends before: a commit lists a
#: directory of sealed files every second, and their footers never change (an inode is one file).
_next_offsets: dict[tuple[str, int, int, int], int] = {}


def _read_range(directory: Path, start: int | None, log_start: int = 0) -> tuple[int, int, pa.Table | None]:
    """The records from ``start`` (None: nothing published yet) up to the end of the contiguous
    run of files covering it: ``(from, to, table)``; ``table`` None when there is nothing new.

    ``from`` is ``start``, or the log start offset when that is above it (retention or
    DeleteRecords removed records never published; `publish` records the jump). A hole at
    ``from`` (its file not written yet, or being replaced while listed) publishes nothing: the
    range never skips records of the log. Files are read by the rule every reader of the Parquet
    tier applies (`PartitionLog.install_merged`): a file whose range starts inside an earlier
    file's range is superseded (a merge or a cleaner rewrite not finished yet), and each file is
    read only above where the previous one ended, so no offset is read twice."""
    files = _source_files(directory)
    first = max(log_start, start if start is not None else log_start)
    files = [f for f in files if f[1] > first]
    if not files or files[0][0] > first:
        return first, first, None
    tables, end, rows = [], first, 0
    for base, nxt, path in files:
        if base > end:
            break  # a hole (a file not written yet): the rest next time
        if nxt <= end:
            continue  # superseded: an earlier file covers its whole range
        try:
            # Bounded by the range listed: rows past ``nxt`` belong to the next commit (else twice).
            t = pq.read_table(path, filters=[("offset", ">=", end), ("offset", "<", nxt)])
        except (OSError, ValueError):
            break  # replaced (tail -> sealed) or removed while we read: next time
        tables.append(t)
        end = nxt
        rows += t.num_rows
        if rows >= MAX_ROWS_PER_COMMIT:
            break
    if end <= first:
        return first, first, None
    table = pa.concat_tables(tables, promote_options="permissive") if tables else None
    return first, end, table


def _check_once(table: pa.Table, first: int, end: int) -> None:
    """Refuse a data file whose offsets are not strictly increasing inside ``[first, end)``: a
    record twice (or out of its range) must fail the commit, never reach a snapshot."""
    import pyarrow.compute as pc

    offsets = table.column("offset").combine_chunks()
    n = len(offsets)
    if n == 0:
        return
    steps = pc.subtract(offsets.slice(1), offsets.slice(0, n - 1)) if n > 1 else None
    repeated = steps is not None and pc.min(steps).as_py() <= 0
    if offsets[0].as_py() < first or offsets[n - 1].as_py() >= end or repeated:
        raise ValueError(f"data file rows are not each offset once in [{first}, {end})")


#: The batch bookkeeping a consumer does not see: files materialized from a `workbench.connect`
#: cluster (`workbench.sql.materialize`) lack these columns, and their rows say "unknown".
_UNKNOWN_BOOKKEEPING = (
    "producer_id",
    "producer_epoch",
    "sequence",
    "batch_base_offset",
    "partition_leader_epoch",
    "timestamp_type",
)


def _to_iceberg(table: pa.Table, partition: int) -> pa.Table:
    cols = {name: table.column(name) for name in table.column_names}
    cols["partition"] = pa.array([partition] * table.num_rows, pa.int32())
    for name in _UNKNOWN_BOOKKEEPING:
        if name not in cols:
            cols[name] = pa.array([-1] * table.num_rows, pa.int64())
    schema = arrow_schema()
    return pa.table({f.name: cols[f.name].cast(f.type) for f in schema}, schema=schema)


def _typed(table: Table, topic: str, rows: pa.Table, job: dict[str, Any], *, only_undecoded: bool = False) -> pa.Table:
    """``rows`` (the table's base columns) with the typed columns of registry-framed values, when the
    topic has a registered schema (`workbench.storage.iceberg_typed`); unchanged otherwise, and
    unchanged when typing fails for any reason (logged): typing never stops a commit.
    `only_undecoded` (a merge): rows already decoded keep their columns, the others (committed
    before the schema was known) are decoded now."""
    try:
        return _typed_or_raise(table, topic, rows, job, only_undecoded=only_undecoded)
    except Exception:
        log.exception("typed columns of %s left out of this data file", topic)
        return rows


def _typed_or_raise(
    table: Table, topic: str, rows: pa.Table, job: dict[str, Any], *, only_undecoded: bool = False
) -> pa.Table:
    from workbench.storage import iceberg_typed as it

    base = set(arrow_schema().names)
    reserved = base | {it.SCHEMA_ID, it.DECODE_ERROR, *it.KEY_COLUMNS}
    current = table.schema().as_arrow()
    if only_undecoded and not any(n in rows.column_names for n in (it.SCHEMA_ID, it.KEY_SCHEMA_ID)):
        only_undecoded = False  # a data file written before the table was typed: decode all of it
        rows = rows.select(list(arrow_schema().names))
    existing = {f.name: it.iceberg_type(f.type) for f in current if f.name not in reserved}
    typing = None
    todo = _undecoded(rows, "value", it.SCHEMA_ID, it.DECODE_ERROR) if only_undecoded else None
    if todo is not False:
        typing = it.typing_for(
            job.get("bootstrap"), topic, rows.column("value"), existing, reserved, it.SCHEMA_ID in current.names
        )
    key_existing = it.iceberg_type(current.field(it.KEY_TYPED).type) if it.KEY_TYPED in current.names else None
    key_todo = _undecoded(rows, "key", it.KEY_SCHEMA_ID, it.KEY_DECODE_ERROR) if only_undecoded else None
    key_typing = None
    if key_todo is not False:
        key_typing = it.key_typing_for(
            job.get("bootstrap"), topic, rows.column("key"), key_existing, it.KEY_SCHEMA_ID in current.names
        )
    if typing is not None:
        rows = _with_columns(rows, typing.decode(rows.column("value")), todo)
    if key_typing is not None:
        rows = _with_columns(rows, key_typing.decode(rows.column("key")), key_todo)
    return rows


def _undecoded(rows: pa.Table, column: str, id_column: str, error_column: str) -> Any:
    """A merge's rows whose ``column`` (value or key) was not decoded yet (no schema id and no decode
    error: committed before the schema was known) as a boolean mask; False when there is none."""
    import pyarrow.compute as pc

    if id_column not in rows.column_names:
        todo = pc.is_valid(rows.column(column))
    else:
        todo = pc.is_null(rows.column(id_column))
        if error_column in rows.column_names:
            todo = pc.and_(todo, pc.is_null(rows.column(error_column)))
        todo = pc.and_(todo, pc.is_valid(rows.column(column)))
    return todo if pc.any(todo).as_py() else False


def _with_columns(rows: pa.Table, columns: dict[str, pa.Array], todo: Any) -> pa.Table:
    """``rows`` with the decoded ``columns``; with a mask (a merge), only the rows it selects take
    them, the others keep what they had."""
    import pyarrow.compute as pc

    for name, col in columns.items():
        if todo is None:
            rows = rows.append_column(pa.field(name, col.type), col)
        elif name in rows.column_names:
            old = rows.column(name).combine_chunks().cast(col.type)
            merged = pc.if_else(todo, col, old)
            rows = rows.set_column(rows.column_names.index(name), pa.field(name, col.type), merged)
        else:
            rows = rows.append_column(pa.field(name, col.type), pc.if_else(todo, col, pa.nulls(len(col), col.type)))
    return rows


def _typed_columns_to_add(table: Table, path: Path) -> pa.Schema | None:
    """The typed columns of data file `path` the table lacks (or has narrower): what
    ``union_by_name`` must add in the commit's transaction; None when none."""
    from workbench.storage.iceberg_typed import iceberg_type

    have = {f.name: iceberg_type(f.type) for f in table.schema().as_arrow()}
    base = set(arrow_schema().names)
    fields = [
        pa.field(f.name, iceberg_type(f.type))
        for f in pq.read_schema(path)
        if f.name not in base and have.get(f.name) != iceberg_type(f.type)
    ]
    return pa.schema(fields) if fields else None


def _as_data_file(table: pa.Table) -> pa.Table:
    """A merge's or a compaction's rows with the base columns as `arrow_schema` types them (the
    typed columns, if any, as they are)."""
    base = arrow_schema()
    fields = [base.field(f.name) if f.name in base.names else f for f in table.schema]
    return table.cast(pa.schema(fields))


def _write_data_file(path: Path, table: pa.Table, end: int) -> Path:
    """Write ``table`` whole (fsync) and link it to ``path``; an existing file there (a crashed or
    concurrent publisher's) is kept and returned instead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    schema = table.schema.with_metadata({NEXT_KEY: str(end).encode()})
    pq.write_table(table.cast(schema), tmp, compression="zstd")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path


def published_offsets(table: Table) -> dict[int, int]:
    """Where each partition's published records end (exclusive): the current snapshot's
    ``workbench.next-offsets`` (every snapshot carries all partitions' offsets forward, so expiring
    old snapshots loses nothing). Empty before the first commit."""
    snap = table.current_snapshot()
    if snap is None or snap.summary is None:
        return {}
    text = snap.summary.additional_properties.get("workbench.next-offsets", "{}")
    return {int(k): int(v) for k, v in json.loads(text).items()}


REMOVED_FILES = "workbench.removed-files"  # summary of a merge or compaction: the data files it removed
CLEANED_STATE = "workbench.cleaned"  # summary: {partition: {base: [next, rows]}} of cleaner files reflected


def _carried(table: Table) -> dict[str, str]:
    """Summary properties every snapshot carries forward (besides the offsets): the log-cleaner
    files already reflected (`_reflect_compaction`)."""
    snap = table.current_snapshot()
    props = snap.summary.additional_properties if snap is not None and snap.summary is not None else {}
    return {CLEANED_STATE: props[CLEANED_STATE]} if CLEANED_STATE in props else {}


def _data_files(root: Path, topic: str, partition: int) -> list[tuple[int, int, Path]]:
    """(from, next, path) of the partition's data files on disk: ``p<partition>-<from>.parquet``
    (one commit) and ``p<partition>-<from>-<to>.parquet`` (a merge, `_maybe_merge`), by range."""
    d = table_location(root, topic) / "data"
    prefix = f"p{partition:05d}-"
    out: list[tuple[int, int, Path]] = []
    try:
        entries = list(os.scandir(d))
    except FileNotFoundError:
        return out
    for e in entries:
        if not e.name.startswith(prefix) or not e.name.endswith(".parquet"):
            continue
        first = e.name[len(prefix) : -8].split("-")[0]
        if not first.isdigit():
            continue
        try:
            st = e.stat()
            key = (e.path, st.st_ino, st.st_mtime_ns, st.st_size)
            nxt = _next_offsets.get(key)
            if nxt is None:
                nxt = int((pq.read_metadata(e.path).metadata or {})[NEXT_KEY])
                _next_offsets[key] = nxt
        except (OSError, ValueError, KeyError):
            continue
        out.append((int(first), nxt, Path(e.path)))
    return sorted(out, key=lambda f: (f[0], -f[1], -_generation(f[2].name)))


def _generation(name: str) -> int:
    """The ``g<n>`` of a merged or compaction file's name (the table's sequence number it was
    made for; 0 for a commit's file): of two files with the same range, the newer holds the log."""
    stem = name[:-8] if name.endswith(".parquet") else name
    last = stem.rsplit("-", 1)[-1]
    return int(last[1:]) if last.startswith("g") and last[1:].isdigit() else 0


def _rewrite_name(partition: int, first: int, end: int, table: Table) -> str:
    """A merged or compaction file's name: its range and the sequence number its snapshot gets.
    Within one sequence number the table is the same, so a file left by a crash at that name was
    made from the same current files (a merge adopts it)."""
    seq = int(getattr(table.metadata, "last_sequence_number", 0) or 0) + 1
    return f"p{partition:05d}-{first:020d}-{end:020d}-g{seq}.parquet"


def _outermost(files: list[tuple[int, int, Path]]) -> list[tuple[int, int, Path]]:
    """The files not inside another's range (sorted as `_data_files` sorts): a merge's members
    stay on disk, referenced by older snapshots, until those expire (`_unlink_superseded`)."""
    keep, end = [], -1
    for f in files:
        if f[0] >= end:
            keep.append(f)
            end = f[1]
    return keep


def _apply_retention(table: Table, root: Path, topic: str, partition: int, log_start: int) -> int | None:
    """Retention and DeleteRecords in the table: once the log start offset is past a data file's
    whole range, a delete snapshot drops the partition's files below it (whole files, so nothing is
    rewritten: like Kafka's segment-granular retention, records of a file straddling the log start
    stay until the log start passes its end); every older snapshot (they reference the dropped
    files) is expired, and the files are unlinked, so neither time travel nor a glob over the data
    files returns them. Answers the offset below which records were dropped, None if nothing was."""
    from pyiceberg.expressions import And, EqualTo, LessThan, Reference
    from pyiceberg.expressions.literals import literal

    on_disk = _data_files(root, topic, partition)
    gone = [f for f in _outermost(on_disk) if f[1] <= log_start]
    if not gone:
        return None
    below = max(nxt for _, nxt, _ in gone)
    gone = [f for f in on_disk if f[1] <= below]  # with the members of merged files among them
    offsets = published_offsets(table)
    summary = {
        "workbench.operation": "retention",
        "workbench.partition": str(partition),
        "workbench.from-offset": str(offsets.get(partition, below)),
        "workbench.to-offset": str(offsets.get(partition, below)),
        **_carried(table),
        "workbench.deleted-below": str(below),
        "workbench.next-offsets": json.dumps({str(k): v for k, v in sorted(offsets.items())}),
        "workbench.committed-at-ms": str(int(time.time() * 1000)),
    }
    where = And(
        EqualTo(term=Reference("partition"), value=literal(partition)),
        LessThan(term=Reference("offset"), value=literal(below)),
    )
    table.delete(where, snapshot_properties=summary)
    current = table.current_snapshot()
    older = [s.snapshot_id for s in table.snapshots() if current is None or s.snapshot_id != current.snapshot_id]
    if older:
        _expire(table, older)
    for _, _, path in gone:
        path.unlink(missing_ok=True)
    return below


def _expire_old_snapshots(table: Table) -> int:
    """Expire snapshots older than ``history.expire.max-snapshot-age-ms``, keeping the newest
    ``history.expire.min-snapshots-to-keep``; only once the oldest is a tenth past the age, so
    most commits pay nothing for it. Appends only add files: no data file becomes unreferenced.
    Answers how many were expired."""
    props = table.properties
    max_age = int(props.get(MAX_SNAPSHOT_AGE, DEFAULT_MAX_SNAPSHOT_AGE_MS))
    keep = max(1, int(props.get(MIN_SNAPSHOTS, DEFAULT_MIN_SNAPSHOTS)))
    snapshots = sorted(table.snapshots(), key=lambda s: (s.sequence_number or 0, s.timestamp_ms))
    now = int(time.time() * 1000)
    if len(snapshots) <= keep or snapshots[0].timestamp_ms >= now - max_age - max_age // 10:
        return 0
    candidates = [s.snapshot_id for s in snapshots[:-keep] if s.timestamp_ms < now - max_age]
    if candidates:
        _expire(table, candidates)
    return len(candidates)


#: Merged data files hold at most about this many rows; a file this big is never merged again.
MERGE_TARGET_ROWS = 1_000_000
#: (root, topic, partition) -> time.monotonic() of the last merge check (`_maintain`), so a commit
#: every second reads the table's file list only every tenth of the merge age (at most every second).
_last_merge_check: dict[tuple[str, str, int], float] = {}


def _local_path(uri: str) -> Path:
    return Path(uri[len("file://") :] if uri.startswith("file://") else uri)


def _partition_files(table: Table, partition: int, snapshot_id: int | None = None) -> list[Any]:
    """The partition's data files (pyiceberg ``DataFile``) in the current (or a given) snapshot."""
    from pyiceberg.expressions import EqualTo, Reference
    from pyiceberg.expressions.literals import literal

    where = EqualTo(term=Reference("partition"), value=literal(partition))
    scan = table.scan(row_filter=where, snapshot_id=snapshot_id)
    return [task.file for task in scan.plan_files()]


def _current_files(table: Table, root: Path, topic: str, partition: int) -> list[tuple[int, int, Path, Any]]:
    """(first offset, next offset, path, ``DataFile``) of the partition's current data files that are on
    disk, by first offset."""
    on_disk = {str(path): (first, nxt) for first, nxt, path in _data_files(root, topic, partition)}
    current = []
    for data_file in _partition_files(table, partition):
        path = _local_path(data_file.file_path)
        if str(path) in on_disk:
            current.append((*on_disk[str(path)], path, data_file))
    current.sort(key=lambda f: f[0])
    return current


def _maybe_merge(
    table: Table, root: Path, topic: str, partition: int, age_ms: int, min_files: int, job: dict[str, Any] | None = None
) -> dict | None:
    """Merge the partition's oldest run of small data files into one (issue 17: one file per commit
    would be ~3,600 an hour), as one Iceberg ``overwrite`` snapshot that removes the members and
    adds ``p<partition>-<from>-<to>-g<seq>.parquet``: the same records, so every snapshot still holds each
    offset once, and offsets and time travel are unchanged (summary ``workbench.operation=merge``).

    A run is consecutive files (each starting where the previous ended), each older than
    ``age_ms`` and under `MERGE_TARGET_ROWS` rows, together under it, at least ``min_files`` of
    them. The members stay on disk for the older snapshots that reference them; a glob over the
    data files counts each record once by reading only files not inside another's range
    (`workbench.open_tables.data_files_sql`). A crash after writing the merged file leaves it
    unreferenced (the table keeps the members); the next merge of that run adopts it (``link``
    refuses the name, the range is in it). Answers the merge's summary, None if none was due."""
    from pyiceberg.table import _parquet_files_to_data_files

    if age_ms <= 0 or min_files < 2:
        return None
    current = _current_files(table, root, topic, partition)
    old_before = time.time() - age_ms / 1000
    run: list[tuple[int, int, Path, Any]] = []
    rows = 0
    chosen: list[tuple[int, int, Path, Any]] = []
    for f in current:
        n = int(f[3].record_count)
        try:
            old = f[2].stat().st_mtime < old_before
        except OSError:
            old = False
        if not old or n >= MERGE_TARGET_ROWS:
            if len(run) >= min_files:
                chosen = run
                break
            run, rows = [], 0
            continue
        if run and (f[0] != run[-1][1] or rows + n > MERGE_TARGET_ROWS):
            if len(run) >= min_files:
                chosen = run
                break
            run, rows = [], 0
        run.append(f)
        rows += n
    else:
        if len(run) >= min_files:
            chosen = run
    if not chosen:
        return None
    first, end = chosen[0][0], chosen[-1][1]
    path = table_location(root, topic) / "data" / _rewrite_name(partition, first, end, table)
    if not path.exists():
        merged = pa.concat_tables([pq.read_table(f[2]) for f in chosen], promote_options="permissive")
        _check_once(merged, first, end)
        # Rows committed before the topic's schema was known are decoded now (typed topics only).
        merged = _typed(table, topic, merged, job or {}, only_undecoded=True)  # on failure: as the members are
        _write_data_file(path, _as_data_file(merged), end)
    failpoint("iceberg.merge_before_commit")  # a crash here leaves a merged file no snapshot references
    offsets = published_offsets(table)
    summary = {
        "workbench.operation": "merge",
        "workbench.partition": str(partition),
        "workbench.from-offset": str(offsets.get(partition, end)),
        "workbench.to-offset": str(offsets.get(partition, end)),
        **_carried(table),
        "workbench.merged-file": path.name,
        "workbench.merged-from": str(first),
        "workbench.merged-to": str(end),
        "workbench.merged-files": str(len(chosen)),
        REMOVED_FILES: json.dumps([f[2].name for f in chosen]),
        "workbench.next-offsets": json.dumps({str(k): v for k, v in sorted(offsets.items())}),
        "workbench.committed-at-ms": str(int(time.time() * 1000)),
    }
    tx = _transaction(table)
    evolved = _typed_columns_to_add(table, path)
    if evolved is not None:  # typed columns the members did not have (a version registered since)
        with tx.update_schema() as update:
            update.union_by_name(evolved)
    with tx.update_snapshot(snapshot_properties=summary).overwrite() as overwrite:
        for f in chosen:
            overwrite.delete_data_file(f[3])
        for data_file in _parquet_files_to_data_files(tx.table_metadata, [f"file://{path}"], table.io):
            overwrite.append_data_file(data_file)
    tx.commit_transaction()  # CommitFailedException: another commit won; the next check tries again
    failpoint("iceberg.merge_after_commit")
    return summary


#: (path, inode, mtime, size) -> (rows, written by the log cleaner) of a source file.
_source_rows: dict[tuple[str, int, int, int], tuple[int, bool]] = {}


def _cleaned_sources(directory: Path, below: int) -> dict[int, tuple[int, int]] | None:
    """base -> (next, rows) of the partition's current Parquet files the log cleaner wrote, wholly
    below ``below``; None when the listing met a file replaced meanwhile (try again later)."""
    out: dict[int, tuple[int, int]] = {}
    end = -1
    for base, nxt, path in sorted(_source_files(directory), key=lambda f: (f[0], -f[1])):
        if base < end:
            continue  # superseded: a merge not finished
        end = nxt
        if nxt > below:
            break
        try:
            st = path.stat()
            key = (str(path), st.st_ino, st.st_mtime_ns, st.st_size)
            info = _source_rows.get(key)
            if info is None:
                md = pq.read_metadata(path)
                info = (md.num_rows, (md.metadata or {}).get(b"workbench.cleaned") == b"1")
                if len(_source_rows) > 100_000:
                    _source_rows.clear()
                _source_rows[key] = info
        except (OSError, ValueError):
            return None
        if info[1]:
            out[base] = (nxt, info[0])
    return out


def _read_bounded(directory: Path, lo: int, hi: int) -> pa.Table | None:
    """The partition's records in ``[lo, hi)`` as its Parquet files hold them now (the tier's
    superseded rule), None unless contiguous files cover the whole range."""
    tables, end = [], lo
    for base, nxt, path in sorted(_source_files(directory), key=lambda f: (f[0], -f[1])):
        if nxt <= end:
            continue
        if base > end:
            return None  # a hole: retention, or a file being replaced
        try:
            tables.append(pq.read_table(path, filters=[("offset", ">=", end), ("offset", "<", min(nxt, hi))]))
        except (OSError, ValueError):
            return None
        end = nxt
        if end >= hi:
            return pa.concat_tables(tables, promote_options="permissive")
    return None


def _reflect_compaction(
    table: Table, root: Path, topic: str, partition: int, directory: Path, job: dict[str, Any] | None = None
) -> dict | None:
    """Compacted topics (issue 17): when the broker's log cleaner has rewritten files the table
    published before (``workbench.cleaned`` files whose (next, rows) the table has not reflected
    yet), rewrite the table's data files overlapping them from the log as it is now, in one
    Iceberg overwrite snapshot (``workbench.operation=compaction``): the table then holds what the
    log holds, and every snapshot still holds each offset once. The new file is
    ``p<partition>-<from>-<to>-g<seq>.parquet``, covering exactly the files it replaces (a reader of
    the data files prefers it, the newer generation, over a file with the same range). Answers the
    snapshot's summary, None if nothing changed."""
    from pyiceberg.table import _parquet_files_to_data_files

    offsets = published_offsets(table)
    published = offsets.get(partition)
    if published is None:
        return None
    cleaned = _cleaned_sources(directory, published)
    if not cleaned:
        return None
    snap = table.current_snapshot()
    props = snap.summary.additional_properties if snap is not None and snap.summary is not None else {}
    state = json.loads(props.get(CLEANED_STATE, "{}"))
    reflected = state.get(str(partition), {})
    changed = [(b, n) for b, (n, rows) in cleaned.items() if reflected.get(str(b)) != [n, rows]]
    if not changed:
        return None
    lo_c, hi_c = min(b for b, _ in changed), max(n for _, n in changed)
    current = _current_files(table, root, topic, partition)
    overlapping = [f for f in current if f[0] < hi_c and f[1] > lo_c]
    state[str(partition)] = {str(b): [n, rows] for b, (n, rows) in sorted(cleaned.items())}
    summary = {
        "workbench.operation": "compaction",
        "workbench.partition": str(partition),
        "workbench.from-offset": str(published),
        "workbench.to-offset": str(published),
        "workbench.next-offsets": json.dumps({str(k): v for k, v in sorted(offsets.items())}),
        CLEANED_STATE: json.dumps(state, sort_keys=True),
        "workbench.committed-at-ms": str(int(time.time() * 1000)),
    }
    tx = _transaction(table)
    if not overlapping:  # the rewritten range is not in the table (retention): only record it
        with tx.update_snapshot(snapshot_properties=summary).overwrite():
            pass
        tx.commit_transaction()
        return summary
    lo, hi = overlapping[0][0], max(f[1] for f in overlapping)
    rows = _read_bounded(directory, lo, hi)
    if rows is None:
        return None
    _check_once(rows, lo, hi)
    path = table_location(root, topic) / "data" / _rewrite_name(partition, lo, hi, table)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    typed = _typed(table, topic, _to_iceberg(rows, partition), job or {})
    pq.write_table(typed.cast(typed.schema.with_metadata({NEXT_KEY: str(hi).encode()})), tmp, compression="zstd")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)  # a file at this name was left by a crash at this sequence number: unreferenced
    failpoint("iceberg.compaction_before_commit")
    summary.update(
        {
            "workbench.compacted-from": str(lo),
            "workbench.compacted-to": str(hi),
            "workbench.file": path.name,
            REMOVED_FILES: json.dumps([f[2].name for f in overlapping]),
        }
    )
    evolved = _typed_columns_to_add(table, path)
    if evolved is not None:
        with tx.update_schema() as update:
            update.union_by_name(evolved)
    with tx.update_snapshot(snapshot_properties=summary).overwrite() as overwrite:
        for f in overlapping:
            overwrite.delete_data_file(f[3])
        for data_file in _parquet_files_to_data_files(tx.table_metadata, [f"file://{path}"], table.io):
            overwrite.append_data_file(data_file)
    tx.commit_transaction()
    return summary


def _unlink_superseded(table: Table, root: Path, topic: str, partition: int) -> int:
    """Unlink data files no snapshot references any more: a file inside another file's range on
    disk, not in the current snapshot, is a member of a merge (or a file a compaction rewrite
    replaced, or an orphan a wider merge made useless). It was removed by the first merge or
    compaction snapshot that lists it in ``workbench.removed-files``; only snapshots older than that
    one reference it, so it goes once none of those is left (snapshots expire oldest first: if the
    removing snapshot itself is gone, so are all older ones; a file no snapshot lists was never
    committed, an orphan inside a committed file).
    Answers how many files were unlinked."""
    on_disk = _data_files(root, topic, partition)
    outer = _outermost(on_disk)
    inside = [f for f in on_disk if f not in outer]
    if not inside:
        return 0
    snapshots = sorted(table.snapshots(), key=lambda s: (s.sequence_number or 0, s.timestamp_ms))
    if not snapshots:
        return 0
    current = {str(_local_path(d.file_path)) for d in _partition_files(table, partition)}
    removed_by: dict[str, int] = {}  # file name -> sequence number of the snapshot that removed it
    for snap in snapshots:
        props = snap.summary.additional_properties if snap.summary is not None else {}
        for name in json.loads(props.get(REMOVED_FILES, "[]")):
            removed_by.setdefault(name, snap.sequence_number or 0)
    oldest = snapshots[0].sequence_number or 0
    done = 0
    for _first, _nxt, path in inside:
        if str(path) in current:
            continue
        removed_at = removed_by.get(path.name)
        if removed_at is None or oldest >= removed_at:  # its remover expired, or nothing older is left
            path.unlink(missing_ok=True)
            done += 1
    return done


def _maintain(table: Table, root: Path, topic: str, partition: int, job: dict[str, Any]) -> dict[str, Any]:
    """After a commit round: reflect the log cleaner's rewrites (compacted topics: cheap when none,
    the files' footers are cached), and, every tenth of the merge age, merge small files and
    unlink merged members no snapshot references any more."""
    from pyiceberg.exceptions import CommitFailedException

    out: dict[str, Any] = {}
    try:
        if job.get("compacted") and job.get("directory"):
            out["compacted"] = _reflect_compaction(table.refresh(), root, topic, partition, Path(job["directory"]), job)
        age_ms = int(job.get("merge_age_ms", 0))
        key = (str(root), topic, partition)
        now = time.monotonic()
        if age_ms > 0 and now - _last_merge_check.get(key, 0.0) >= max(1.0, age_ms / 10_000):
            _last_merge_check[key] = now
            table = table.refresh()
            out["merged"] = _maybe_merge(table, root, topic, partition, age_ms, int(job.get("merge_min_files", 0)), job)
            out["unlinked"] = _unlink_superseded(table.refresh(), root, topic, partition)
    except CommitFailedException:
        out["conflict"] = True  # met another commit: the next round tries again
    return out


def publish(job: dict[str, Any]) -> dict[str, Any]:
    """Commit the partition's records not yet in its Iceberg table (one snapshot), if any.

    ``job``: ``root`` (the cluster's iceberg directory), ``topic``, ``partition``, ``directory``
    (the partition's Parquet directory on this broker). Answers ``{"ok", "committed",
    "from_offset", "to_offset", "rows", "snapshot_id"}``."""
    from pyiceberg.exceptions import CommitFailedException

    root, topic, partition = Path(job["root"]), job["topic"], int(job["partition"])
    catalog = open_catalog(root)
    for _attempt in range(20):
        try:
            table = _load_or_create(catalog, root, topic)
        except CommitFailedException:
            continue  # its property update met another commit: load again
        offsets = published_offsets(table)
        start = offsets.get(partition)
        log_start = int(job.get("log_start_offset", 0))
        try:
            deleted_below = _apply_retention(table, root, topic, partition, log_start)
        except CommitFailedException:
            continue
        first, end, rows = _read_range(Path(job["directory"]), start, log_start)
        if rows is None or rows.num_rows == 0:
            idle = {
                "ok": True,
                "committed": False,
                "from_offset": first,
                "to_offset": start or first,
                "rows": 0,
                "deleted_below": deleted_below,
                **_maintain(table, root, topic, partition, job),
            }
            _remember(root, topic, table)
            return idle
        _check_once(rows, first, end)
        path = table_location(root, topic) / "data" / f"p{partition:05d}-{first:020d}.parquet"
        if not path.exists():  # else adopted below: a crashed publisher's file of this range
            _write_data_file(path, _typed(table, topic, _to_iceberg(rows, partition), job), end)
        failpoint("iceberg.before_commit")  # a crash here leaves a data file no snapshot references
        meta = pq.read_metadata(path)
        end = int((meta.metadata or {}).get(NEXT_KEY, end))  # an adopted file covers its own range
        summary = {
            **_carried(table),
            "workbench.partition": str(partition),
            "workbench.from-offset": str(first),
            "workbench.to-offset": str(end),
            "workbench.next-offsets": json.dumps({str(k): v for k, v in sorted({**offsets, partition: end}.items())}),
            "workbench.committed-at-ms": str(int(time.time() * 1000)),
        }
        try:
            evolved = _typed_columns_to_add(table, path)
            tx = _transaction(table)
            if evolved is not None:  # new typed columns (a schema, or a version adding fields): in the same commit
                with tx.update_schema() as update:
                    update.union_by_name(evolved)
            tx.add_files([f"file://{path}"], snapshot_properties=summary, check_duplicate_files=False)
            table = tx.commit_transaction()
        except CommitFailedException:
            continue  # another publisher committed meanwhile: reload, re-decide
        try:
            expired = _expire_old_snapshots(table)
        except (CommitFailedException, ValueError):
            expired = 0  # met another commit (or its expiry): the next commit tries again
        maintained = _maintain(table, root, topic, partition, job)
        _remember(root, topic, table)  # as the commit, its expiry and its maintenance left it
        snap = table.current_snapshot()  # add_files leaves the table at the committed metadata
        return {
            **maintained,
            "expired": expired,
            "deleted_below": deleted_below,
            "ok": True,
            "committed": True,
            "from_offset": first,
            "to_offset": end,
            "rows": meta.num_rows,
            "snapshot_id": snap.snapshot_id if snap else None,
        }
    return {"ok": False, "error": f"Iceberg commit for {topic}-{partition} kept conflicting"}
