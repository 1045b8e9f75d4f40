"""The SQL engine: one in-memory DuckDB database where every topic is a read-only view.

A topic's view is the union of

* its **cache files** (the notebook side's compacted, flattened Parquet, see `cache.py`), and
* its **fresh table** (`wb_fresh."<topic>"`, a native DuckDB table): every record above the
  cache up to the high watermark, read from sealed Parquet files not yet cached and, for the live
  tail that is not sealed yet, fetched over the Kafka protocol.

`refresh()` runs before each query: it asks the brokers for each partition's log start offset
and high watermark (ListOffsets), then appends only the records the fresh table lacks, so a
record acknowledged to a producer is visible to the next query (read-your-writes) and nothing
above the high watermark ever is. A background `Compactor` turns sealed files into large cache
files and trims the fresh table. Retention is followed: cache rows below the log start offset
are dropped.

Threads: `refresh` and compaction mutate state under `_mutex` (taking `_convert_lock` first when
they convert); queries run on per-thread cursors under the read side of `_files`, and cache files
are only deleted under its write side. Other modules take these locks only through the public
methods `converting()`, `reading_files()`, `install_tables()` and `fresh_rows()`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.sql import flatten, latest, typed
from workbench.sql.cache import PartitionCache, SegmentFile, partition_dir, read_sealed
from workbench.sql.errors import ReadOnlyTopicError, SqlError, UnknownTopicError
from workbench.sql.flatten import TopicSchema, quote, sql_literal
from workbench.sql.locks import RWLock
from workbench.sql.wire import RAW_SCHEMA, ClusterMetadata, PartitionInfo, Wire

log = logging.getLogger(__name__)

#: Above this many sealed-but-uncached records a refresh converts them to cache files first
#: (once), instead of loading them into the fresh table.
SYNC_CONVERT_RECORDS = 200_000
#: Parquet written by the cache: zstd, DuckDB's row-group size.
PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880"
EMPTY_CACHED_ROWS = (
    'SELECT NULL::INTEGER AS partition, NULL::BIGINT AS "offset", NULL::TIMESTAMPTZ AS timestamp, '
    "NULL::VARCHAR AS key, NULL::BLOB AS key_bytes, NULL::BLOB AS value_bytes, "
    "NULL::STRUCT(key VARCHAR, value BLOB)[] AS headers LIMIT 0"
)
_WRITE_STATEMENTS = {"INSERT", "UPDATE", "DELETE", "DROP", "ALTER", "CREATE", "COPY", "MERGE_INTO"}

WINDOW_MACROS = """
CREATE OR REPLACE MACRO tumble(ts, size) AS time_bucket(size, ts);
CREATE OR REPLACE MACRO hop(ts, size, slide) AS
    [time_bucket(slide, ts) - i * slide FOR i IN range(0, CAST(ceil(epoch(size) / epoch(slide)) AS BIGINT))];
"""


class SealedSource(Protocol):
    """Where a partition's sealed raw Parquet files are."""

    def directory(self, topic: str, info: PartitionInfo) -> Path | None: ...


class BrokerDirectories:
    """An embedded cluster: the partition leader's directory, or any replica's that exists."""

    #: The brokers write tail files (`workbench.storage.parquet_tail`): the committed records of
    #: each unsealed segment, within a second or so. `refresh` reads them instead of fetching
    #: that range over the wire.
    publishes_tails = True

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def directory(self, topic: str, info: PartitionInfo) -> Path | None:
        leader = self.data_dir / f"broker-{info.leader}" / "topics" / topic / f"partition={info.partition}"
        if info.leader >= 0 and leader.is_dir():
            return leader
        for replica in [
            *info.replicas,
            *sorted(int(p.name[7:]) for p in self.data_dir.glob("broker-*") if p.name[7:].isdigit()),
        ]:
            d = self.data_dir / f"broker-{replica}" / "topics" / topic / f"partition={info.partition}"
            if d.is_dir():
                return d
        return None


@dataclass
class PartitionState:
    info: PartitionInfo
    cache: PartitionCache
    fresh_next: int | None = None  # the fresh table holds this partition's rows below it
    fresh_low: int = 0  # ... and at or above this
    log_start: int = 0
    high_watermark: int = 0
    #: base -> signature (next offset, rows) of the sealed files rows were loaded from (into the
    #: cache or the fresh table), as listed before reading: a file rewritten by the broker's log
    #: cleaner since (another signature, or a cleaned file never loaded over rows fetched live)
    #: makes the rows from its base stale (`SqlEngine._stale_from`).
    loaded: dict[int, tuple[int, int]] = field(default_factory=dict)


@dataclass
class TopicState:
    name: str
    schema: TopicSchema
    partitions: dict[int, PartitionState] = field(default_factory=dict)
    schema_version: int = 0
    fresh_version: int = -1  # schema version the fresh table was built with
    view_files: tuple = ()
    active: bool = False  # queried at least once: the compactor looks after it
    bounds: dict[int, int] = field(default_factory=dict)  # time travel helper: partition -> hw


class SqlEngine:
    """DuckDB over the topics of one cluster; see the module docstring."""

    def broker_data_dir(self) -> Path | None:
        """The embedded cluster's data directory (where brokers publish their files), else None."""
        return self.source.data_dir if isinstance(self.source, BrokerDirectories) else None

    def __init__(
        self,
        bootstrap_servers: str,
        root: Path,
        source: SealedSource,
        materializer=None,
        *,
        compact: bool = True,
        isolation_level: str = "read_committed",
    ) -> None:
        self.wire = Wire(bootstrap_servers, isolation_level)
        self.root = Path(root)
        self.cache_root = self.root / "sql"
        self.cache_root.mkdir(parents=True, exist_ok=True)
        self.catalog_path = self.root / "workbench.duckdb"
        self.source = source
        self.materializer = materializer
        self.db = duckdb.connect()
        self._ddl = self.db.cursor()
        self.database = quote(run(self._ddl, "SELECT current_database()")[0][0])
        # Keep Parquet footers between queries: every query of a topic opens all its cache files,
        # and without the cache it parses each footer again (a one-minute time window over 50 M
        # records in 25 files, a scratch run: 46 -> 26 ms). Safe because no file here or in the
        # brokers' trees is ever rewritten under its name (new content gets a new name), and
        # DuckDB re-reads a footer whose file's mtime changed or is under 10 s old.
        run(self._ddl, "SET parquet_metadata_cache = true")
        run(self._ddl, "CREATE SCHEMA IF NOT EXISTS wb; CREATE SCHEMA IF NOT EXISTS wb_fresh;")
        run(self._ddl, latest.create_schema_sql())  # tables from changelogs (workbench.sql.latest)
        run(self._ddl, typed.create_schema_sql())  # schema-typed views (workbench.sql.typed)
        self.schema_registry_url: str | None = None  # set by the connection (wb.schemas, typed views)
        self._typed = typed.TypedViews(self.cache_root / "typed")  # typed sidecars of cache files
        run(self._ddl, WINDOW_MACROS)
        # Name extraction's own connection: the macros, no data (see `referenced_names`).
        self._parser = duckdb.connect()
        self._parser_lock = threading.Lock()
        run(self._parser, WINDOW_MACROS)
        self._mutex = threading.RLock()
        self._convert_lock = threading.Lock()
        self._files = RWLock()
        self._local = threading.local()
        self._topics: dict[str, TopicState] = {}
        self._metadata: ClusterMetadata | None = None
        self._catalog_signature: tuple | None = None
        self._in_sync = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._compactor = None
        if compact:
            from workbench.sql.compactor import Compactor

            self._compactor = Compactor(self)
            self._compactor.start()

    # ------------------------------------------------------------------ queries
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's DuckDB connection to the engine's database."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self.db.cursor()
        return cur

    def sql(self, query: str, *, cursor: duckdb.DuckDBPyConnection | None = None) -> pd.DataFrame:
        """Refresh what `query` reads, run it, return a DataFrame (empty for statements)."""
        rel = self.execute(query, cursor=cursor, fetch=lambda rel: rel.df())
        return rel if rel is not None else pd.DataFrame()

    def execute(self, query: str, *, cursor=None, fetch=None):
        if not isinstance(query, str) or not query.strip():
            raise SqlError("empty query")
        names = self.referenced_names(query)
        self.check_read_only(query, names)
        self.refresh_for(names, query)
        cur = cursor if cursor is not None else self.cursor()
        with self._files.read():
            try:
                rel = cur.sql(query)
                return fetch(rel) if (fetch is not None and rel is not None) else rel
            except duckdb.Error as exc:
                raise self.explain(exc) from None

    def referenced_names(self, query: str) -> set[str]:
        """Table names a query reads, unquoted ('wb.consumer_lag', 'orders').

        Parsed, not bound: binding fails on what a fresh connection lacks (the `tumble`/`hop`
        macros, `JOIN ... USING` over tables that do not exist yet), which used to yield no names,
        so nothing was refreshed. Per statement: the parse tree (`json_serialize_sql`, SELECT only),
        else DuckDB's `get_table_names` on a connection that has the macros, else the known topic
        and `wb.*` names that appear in the text."""
        try:
            statements = [st.query for st in duckdb.extract_statements(query)]
        except duckdb.Error:
            statements = None  # unparsable: let the query itself report the syntax error
        out: set[str] = set()
        for text in statements if statements is not None else [query]:
            found = self._parsed_names(text) if statements is not None else None
            out |= found if found is not None else self._names_in_text(text)
        return out

    def _parsed_names(self, statement: str) -> set[str] | None:
        with self._parser_lock:
            try:
                tree = json.loads(run(self._parser, "SELECT json_serialize_sql(?)", [statement])[0][0])
            except (duckdb.Error, ValueError, TypeError):
                tree = {"error": True}
            if not tree.get("error"):
                return set(_base_tables(tree))
            try:
                names = self._parser.get_table_names(statement, qualified=True)
            except duckdb.Error:
                return None
        out = set()
        for n in names:
            n = re.sub(r'(?is)\s+AS\s+(?:"(?:[^"]|"")*"|\S+)$', "", n)
            parts = [p.strip('"').replace('""', '"') for p in re.findall(r'"(?:[^"]|"")*"|[^.]+', n)]
            out.add(".".join(parts))
        return out

    def _names_in_text(self, text: str) -> set[str]:
        """The known topics and `wb.*` tables named in a statement's text (a last resort)."""
        from workbench.sql.system_tables import TABLES

        topics = set(self._topics) | set(self._user_topics(self._metadata))
        out = {
            f"wb.{m.group(1).lower()}"
            for m in re.finditer(r'(?i)\bwb\s*\.\s*"?(\w+)"?', text)
            if m.group(1).lower() in TABLES
        }
        for t in topics:
            pattern = re.escape(quote(t))
            if re.fullmatch(r"[A-Za-z_]\w*", t):
                pattern += rf"|(?<![\w.\"']){re.escape(t)}(?![\w\"'])"
            if re.search(pattern, text):
                out.add(t)
        return out

    def refresh_for(self, names: set[str], query: str = "") -> None:
        md = self.metadata(refresh=True)
        topics = self._user_topics(md)
        wanted = [
            t
            for t in topics
            if t in names or f"main.{t}" in names or f"{latest.SCHEMA}.{t}" in names or f"{typed.SCHEMA}.{t}" in names
        ]
        if not names and query:  # nothing found: fall back to the names that appear in the text
            wanted = [t for t in topics if t in self._names_in_text(query)]
        self.refresh(wanted)
        for t in wanted:
            if f"{typed.SCHEMA}.{t}" in names or (not names and re.search(rf"(?i)\b{typed.SCHEMA}\s*\.", query)):
                self.refresh_typed(t)
        system = sorted(n.split(".", 1)[1] for n in names if n.startswith("wb."))
        if system:
            from workbench.sql.system_tables import refresh_system_tables

            refresh_system_tables(self, system)

    def refresh_typed(self, topic: str) -> None:
        """(Re)build ``typed."<topic>"`` from the registry's schemas (`workbench.sql.typed`)."""
        with self._mutex, self._files.read():  # the order refresh and compaction take them
            state = self._topics.get(topic)
            files = [Path(f) for f in state.view_files or ()] if state is not None else None
            try:
                stale = self._typed.refresh(
                    self.db, self._ddl, self.schema_registry_url, topic, files, f"wb_fresh.{quote(topic)}"
                )
            except OSError as exc:  # the registry is unreachable: say so, keep any older view
                raise SqlError(f"typed.{quote(topic)}: the schema registry did not answer ({exc})") from None
        if stale:  # sidecars of replaced cache files: no view names them, no query may be reading them
            with self._files.write():
                for path in stale:
                    path.unlink(missing_ok=True)

    def check_read_only(self, query: str, names: set[str]) -> None:
        topics = set(self._topics) | set(self._user_topics(self._metadata)) if self._metadata else set(self._topics)
        try:
            statements = duckdb.extract_statements(query)
        except duckdb.Error:
            return
        for st in statements:
            kind = st.type.name
            if kind not in _WRITE_STATEMENTS:
                continue
            try:
                targets = {n.split(".")[-1] for n in self.referenced_names(st.query)}
            except duckdb.Error:
                targets = set()
            m = re.match(
                r'(?is)^\s*(?:drop|alter)\s+(?:view|table)\s+(?:if\s+exists\s+)?(?:[\w"]+\.)?'
                r'("(?:[^"]|"")+"|\w+)',
                st.query,
            )
            if m:
                targets.add(m.group(1).strip('"').replace('""', '"'))
            if kind == "COPY" and re.match(r"(?is)^\s*copy\s+\(", st.query):
                continue  # COPY (SELECT ...) TO 'file' only reads
            hit = sorted(targets & topics)
            if kind == "CREATE":  # only the object created counts, not the tables it reads
                m = re.match(
                    r"(?is)^\s*create\s+(?:or\s+replace\s+)?(?:temp\w*\s+)?(?:table|view)\s+"
                    r'(?:if\s+not\s+exists\s+)?(?:[\w"]+\.)?("(?:[^"]|"")+"|\w+)',
                    st.query,
                )
                name = m.group(1).strip('"').replace('""', '"') if m else None
                hit = (
                    [name]
                    if name in topics and not re.match(r"(?is)^\s*create\s+(or\s+replace\s+)?temp", st.query)
                    else []
                )
            if hit:
                raise ReadOnlyTopicError(
                    f"topic table {hit[0]!r} is read-only ({kind} refused): topics are written by producing "
                    f"records, e.g. cluster.producer().send({hit[0]!r}, {{...}}); for scratch work create "
                    f'your own table: CREATE TABLE mine AS SELECT * FROM "{hit[0]}"'
                )

    def explain(self, exc: duckdb.Error) -> SqlError:
        """DuckDB's message, with the topics listed when a table name is unknown."""
        message = str(exc)
        m = re.search(r"Table with name (.+?) does not exist", message)
        if m:
            name = m.group(1)
            topics = self._user_topics(self._metadata) if self._metadata else sorted(self._topics)
            listing = ", ".join(topics) if topics else "(no topics yet)"
            hint = ""
            if any(not re.fullmatch(r"[A-Za-z_]\w*", t) for t in topics):
                hint = ' Names with "-" or "." need double quotes: SELECT * FROM "my-topic".'
            return UnknownTopicError(f"no topic or table named {name!r}. Topics: {listing}.{hint}")
        if message.startswith("Parser Error") and re.search(r'(?<!")\boffset\b(?!")', message.lower()):
            return SqlError(message + '\nHint: OFFSET is an SQL keyword; write the column as "offset".')
        if re.search(r"is not an? table|Cannot (insert|update|delete)", message):
            return ReadOnlyTopicError(f"{message.splitlines()[0]} (topic tables are read-only)")
        return SqlError(message)

    # ------------------------------------------------------------------ metadata and topic set
    def metadata(self, refresh: bool = False) -> ClusterMetadata:
        if refresh or self._metadata is None:
            self._metadata = self.wire.metadata()
            with self._mutex:
                self._sync_topics(self._metadata)
        return self._metadata

    @staticmethod
    def _user_topics(md: ClusterMetadata | None) -> list[str]:
        if md is None:
            return []
        return sorted(t for t in md.partitions if not t.startswith("__") and md.partitions[t])

    def _sync_topics(self, md: ClusterMetadata) -> None:
        self._in_sync = True
        try:
            self._sync_topic_states(md)
        finally:
            self._in_sync = False
        self._maybe_write_catalog()

    def _sync_topic_states(self, md: ClusterMetadata) -> None:
        names = self._user_topics(md)
        for name in names:
            state = self._topics.get(name)
            if state is None:
                state = self._topics[name] = TopicState(name, self._load_schema(name))
                self._create_fresh(state)
            for info in md.partitions[name]:
                ps = state.partitions.get(info.partition)
                if ps is None:
                    cache = PartitionCache(partition_dir(self.cache_root, name, info.partition))
                    state.partitions[info.partition] = PartitionState(info, cache)
                    state.view_files = None  # a new partition's files must join the view
                else:
                    ps.info = info
            self._update_view(state)
        for gone in set(self._topics) - set(names):
            self._drop_topic(gone)

    def _drop_topic(self, name: str) -> None:
        with self._files.write():
            run(
                self._ddl,
                f"{latest.drop_sql(name)} {typed.drop_sql(name)} "
                f"DROP VIEW IF EXISTS main.{quote(name)}; DROP TABLE IF EXISTS wb_fresh.{quote(name)};",
            )
            shutil.rmtree(self.cache_root / "topics" / name, ignore_errors=True)
            shutil.rmtree(self.cache_root / "typed" / name, ignore_errors=True)
        del self._topics[name]
        self._typed.forget(name)

    # ------------------------------------------------------------------ schemas
    def _schema_path(self, topic: str) -> Path:
        return self.cache_root / "topics" / topic / "_schema.json"

    def _load_schema(self, topic: str) -> TopicSchema:
        try:
            return TopicSchema.from_json(json.loads(self._schema_path(topic).read_text()))
        except (OSError, ValueError):
            return TopicSchema()

    def _save_schema(self, state: TopicState) -> None:
        path = self._schema_path(state.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.schema.to_json(), indent=1))
        os.replace(tmp, path)

    def set_schema(self, topic: str, schema: dict | None = None, *, flatten_values: bool = True) -> None:
        """Explicit structure for a topic's JSON values, inference back (`schema=None`), or no
        flattening at all (`flatten_values=False`). Rebuilds that topic's cache."""
        new = TopicSchema(
            flatten=flatten_values,
            explicit=schema is not None,
            structure=flatten.parse_explicit(schema) if schema is not None else {},
        )
        self.metadata(refresh=True)
        if topic not in self._topics:
            raise UnknownTopicError(f"no topic named {topic!r}. Topics: {', '.join(sorted(self._topics))}")
        with self._convert_lock, self._mutex:
            state = self._topics[topic]
            state.schema = new
            state.schema_version += 1
            self._save_schema(state)
            with self._files.write():
                for ps in state.partitions.values():
                    for f in ps.cache.files:
                        f.path.unlink(missing_ok=True)
                    ps.cache.files = []
                    ps.fresh_next = None
                self._create_fresh(state)
                self._update_view(state)

    # ------------------------------------------------------------------ refresh
    def refresh(self, topics: Iterable[str]) -> None:
        """Bring the views of `topics` up to each partition's current high watermark."""
        topics = [t for t in topics if t in self._topics]
        if not topics:
            return
        md = self._metadata
        tps = [(t, info.partition) for t in topics for info in md.partitions.get(t, [])]
        starts = self.wire.list_offsets(tps, "earliest")
        ends = self.wire.list_offsets(tps, "latest")
        sealed: dict[tuple[str, int], list[SegmentFile]] = {}
        heavy: list[tuple[str, int] | None] = []
        invalidations: list[tuple[str, int, int]] = []
        for t, p in tps:
            ps = self._topics[t].partitions.get(p)
            if ps is None:
                continue
            readable = self.sealed_files(t, ps, tails=True)
            sealed[(t, p)] = readable
            files = [f for f in readable if not f.tail]
            stale = self._stale_from(ps, files)
            if stale is not None:
                heavy.append(None)
                invalidations.append((t, p, stale))
            cached_to = max(ps.cache.next or 0, starts[(t, p)])
            if sum(f.rows for f in files if f.next > cached_to) > SYNC_CONVERT_RECORDS:
                heavy.append((t, p))
            cache = ps.cache
            if (cache.files and cache.files[0].base < starts[(t, p)]) or (cache.next or 0) > ends[(t, p)]:
                heavy.append(None)  # retention or a recreated topic: rewrite files without the compactor
        exclusive = self._convert_lock if heavy else contextlib.nullcontext()
        with exclusive:
            for t, p, stale in invalidations:
                self._invalidate_from(self._topics[t], self._topics[t].partitions[p], stale)
            for item in heavy:
                if item is not None:
                    self.convert(*item, log_start=starts[item])
            self._refresh_locked(topics, tps, starts, ends, sealed)

    def _refresh_locked(self, topics, tps, starts, ends, sealed) -> None:
        with self._mutex:
            fetch_ranges: dict[tuple[str, int], tuple[int, int]] = {}
            new_rows: dict[str, list[pa.Table]] = {}
            trims: dict[str, list[tuple[int, int]]] = {}
            for t, p in tps:
                state = self._topics[t]
                ps = state.partitions.get(p)
                if ps is None:
                    continue
                lso, hw = starts[(t, p)], ends[(t, p)]
                if lso < 0 or hw < 0:
                    continue
                if (ps.cache.next or 0) > hw or (ps.fresh_next or 0) > hw:
                    self._reset_partition(state, ps)  # the topic was recreated or truncated
                ps.log_start, ps.high_watermark = lso, hw
                if ps.cache.files and ps.cache.files[0].base < lso:
                    self._apply_retention(state, ps, lso)
                low = max(lso, ps.cache.next or 0)
                if ps.fresh_next is not None and ps.fresh_low < low:
                    trims.setdefault(t, []).append((p, low))
                ps.fresh_low = low
                start = max(low, ps.fresh_next if ps.fresh_next is not None else low)
                if start >= hw:
                    ps.fresh_next = max(start, ps.fresh_next or 0)
                    continue
                from_files, covered = self._read_sealed_range(p, sealed.get((t, p), []), start, hw, ps.loaded)
                if from_files is not None:
                    new_rows.setdefault(t, []).append(from_files)
                if covered < hw:
                    fetch_ranges[(t, p)] = (covered, hw)
                ps.fresh_next = hw
            if fetch_ranges:
                for (t, _p), table in self.wire.fetch(fetch_ranges).items():
                    new_rows.setdefault(t, []).append(table)
            for t in topics:
                state = self._topics[t]
                state.active = True
                self._append_fresh(state, new_rows.get(t, []), trims.get(t, []))
                self._update_view(state)
                if self.materializer is not None:
                    self.materializer.after_refresh(self, state)

    @staticmethod
    def _stale_from(ps: PartitionState, files: list[SegmentFile]) -> int | None:
        """The first offset whose loaded rows a broker-side rewrite (log cleaner) made stale, or None.

        Only rows below what this partition loaded count (the cache's end, the fresh table's end).
        """
        loaded_to = max(ps.cache.next or 0, ps.fresh_next or 0)
        for f in files:
            if f.base >= loaded_to:
                break
            seen = ps.loaded.get(f.base)
            if (seen is None and f.cleaned) or (seen is not None and seen != f.signature):
                return f.base
        return None

    def _invalidate_from(self, state: TopicState, ps: PartitionState, offset: int) -> None:
        """Forget every row of the partition from the cache file holding ``offset`` on (cache
        files past it, the whole fresh table's part): the next refresh reads them again from the
        broker's current files. Caller holds `_convert_lock`."""
        with self._mutex, self._files.write():
            keep = [f for f in ps.cache.files if f.next <= offset]
            for f in ps.cache.files[len(keep) :]:
                f.path.unlink(missing_ok=True)
            ps.cache.files = keep
            run(self._ddl, f"DELETE FROM wb_fresh.{quote(state.name)} WHERE partition = {ps.info.partition}")
            ps.fresh_next = None
            low = ps.cache.next or 0
            ps.loaded = {b: sig for b, sig in ps.loaded.items() if b < low and sig[0] <= low}
            state.view_files = None
            self._update_view(state)
        log.info(
            "%s-%d: rows from offset %d rewritten by the log cleaner; reading them again",
            state.name,
            ps.info.partition,
            offset,
        )

    def sealed_files(self, topic: str, ps: PartitionState, *, tails: bool = False) -> list[SegmentFile]:
        """The partition's sealed files; with ``tails`` (and a source that publishes them), the
        brokers' tail files above them too, which only `refresh` reads (into the fresh table)."""
        directory = self.source.directory(topic, ps.info)
        if directory is None:
            return []
        return read_sealed(directory, tails=tails and getattr(self.source, "publishes_tails", False))

    def _read_sealed_range(
        self,
        partition: int,
        files: list[SegmentFile],
        start: int,
        end: int,
        loaded: dict[int, tuple[int, int]] | None = None,
    ) -> tuple[pa.Table | None, int]:
        """Raw rows [start, end) from the contiguous run of sealed (and tail) files starting at
        `start` (the sealed files' signatures recorded in ``loaded``; a tail's rows count as
        fetched live, since its sealed file replaces it with another signature)."""
        chosen, cur = [], start
        for f in files:
            if f.next <= cur or f.base >= end:
                continue
            if f.base > cur:
                break
            chosen.append(f)
            cur = f.next
        if not chosen:
            return None, start
        covered = min(cur, end)
        paths = ", ".join(sql_literal(str(f.path)) for f in chosen)
        try:
            table = self._ddl.sql(
                f'SELECT CAST({partition} AS INTEGER) AS partition, "offset", timestamp, key, value, headers '
                f'FROM read_parquet([{paths}]) WHERE "offset" >= {start} AND "offset" < {covered} '
                f'ORDER BY "offset"'
            ).arrow()
        except duckdb.IOException:  # removed by retention meanwhile: fetch instead
            return None, start
        if isinstance(table, pa.RecordBatchReader):
            table = table.read_all()
        if loaded is not None:
            loaded.update({f.base: f.signature for f in chosen if not f.tail})
        return table.cast(RAW_SCHEMA), covered

    # ------------------------------------------------------------------ the fresh table
    def _raw_relation(self, state: TopicState) -> str:
        return (
            f'(SELECT partition, "offset", timestamp, key_bytes AS key, value_bytes AS value, headers '
            f"FROM wb_fresh.{quote(state.name)})"
        )

    def _create_fresh(self, state: TopicState, keep_old: bool = False) -> None:
        self._ddl.register("__wb_empty", RAW_SCHEMA.empty_table())
        if keep_old:
            src = f"(SELECT * FROM __wb_empty UNION ALL BY NAME SELECT * FROM {self._raw_relation(state)})"
        else:
            src = "__wb_empty"
        body = flatten.flatten_sql(src, state.schema)
        try:
            run(self._ddl, f"CREATE OR REPLACE TABLE wb_fresh.{quote(state.name)} AS {body}")
        finally:
            self._ddl.unregister("__wb_empty")
        state.fresh_version = state.schema_version
        if not keep_old:
            for ps in state.partitions.values():
                ps.fresh_next = None
        state.view_files = None

    def _append_fresh(self, state: TopicState, tables: list[pa.Table], trims: list[tuple[int, int]]) -> None:
        fresh = f"wb_fresh.{quote(state.name)}"
        for p, low in trims:
            run(self._ddl, f'DELETE FROM {fresh} WHERE partition = {p} AND "offset" < {low}')
        new = pa.concat_tables(tables) if tables else None
        if new is not None and new.num_rows:
            self._ddl.register("__wb_new", new)
            try:
                if state.schema.flatten and not state.schema.explicit:
                    self._infer(state, "__wb_new")
                if state.fresh_version != state.schema_version:
                    self._create_fresh(state, keep_old=True)
                run(self._ddl, f"INSERT INTO {fresh} BY NAME {flatten.flatten_sql('__wb_new', state.schema)}")
            finally:
                self._ddl.unregister("__wb_new")
        elif state.fresh_version != state.schema_version:
            self._create_fresh(state, keep_old=True)

    def _infer(self, state: TopicState, relation: str, con: duckdb.DuckDBPyConnection | None = None) -> None:
        found = flatten.infer_structure(con or self._ddl, relation)
        if found is None:
            return
        merged = flatten.merge(state.schema.structure or None, found)
        if isinstance(merged, dict) and merged != state.schema.structure:
            state.schema.structure = merged
            state.schema_version += 1
            self._save_schema(state)

    def _reset_partition(self, state: TopicState, ps: PartitionState) -> None:
        with self._files.write():
            for f in ps.cache.files:
                f.path.unlink(missing_ok=True)
            ps.cache.files = []
            run(self._ddl, f"DELETE FROM wb_fresh.{quote(state.name)} WHERE partition = {ps.info.partition}")
            ps.fresh_next = None
            ps.loaded.clear()
            state.view_files = None

    def _apply_retention(self, state: TopicState, ps: PartitionState, log_start: int) -> None:
        """Drop cache rows below the log start offset: whole files, or rewrite the one that straddles."""
        keep, drop, add = [], [], []
        for f in ps.cache.files:
            if f.next <= log_start:
                drop.append(f)
            elif f.base < log_start:
                path = ps.cache.path_for(log_start, f.next)
                self._copy(
                    f'SELECT * FROM read_parquet({sql_literal(str(f.path))}) WHERE "offset" >= {log_start}',
                    path,
                )
                drop.append(f)
                new = SegmentFile(path, log_start, f.next, pq.read_metadata(path).num_rows)
                keep.append(new)
                add.append(new)
            else:
                keep.append(f)
        with self._files.write():
            ps.cache.files = keep
            for f in drop:
                f.path.unlink(missing_ok=True)
        state.view_files = None

    # ------------------------------------------------------------------ cache files
    def _copy(self, select: str, path: Path, con: duckdb.DuckDBPyConnection | None = None) -> None:
        tmp = path.with_name(path.name + ".tmp")
        run(con or self._ddl, f"COPY ({select}) TO {sql_literal(str(tmp))} ({PARQUET_OPTIONS})")
        os.replace(tmp, path)

    def convert(
        self,
        topic: str,
        partition: int,
        *,
        log_start: int | None = None,
        min_records: int = 1,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> bool:
        """Flatten the sealed files above a partition's cache into one new cache file. Caller holds
        `_convert_lock`. Returns whether a file was written."""
        state = self._topics.get(topic)
        ps = state.partitions.get(partition) if state else None
        if ps is None:
            return False
        files = self.sealed_files(topic, ps)
        lso = ps.log_start if log_start is None else log_start
        start = max(ps.cache.next if ps.cache.next is not None else 0, lso)
        chosen, cur = [], None
        for f in files:
            if f.next <= start:
                continue
            if cur is not None and f.base > cur:
                break  # a hole (replica change): stop at it, the rest comes later
            chosen.append(f)
            cur = f.next
        if not chosen or sum(f.rows for f in chosen) < min_records:
            return False
        base = max(start, chosen[0].base) if ps.cache.next is None else start
        end = chosen[-1].next
        paths = ", ".join(sql_literal(str(f.path)) for f in chosen)
        con = con or duckdb.connect()
        raw = f'(SELECT "offset", timestamp, key, value, headers FROM read_parquet([{paths}]) WHERE "offset" >= {base})'
        try:
            with self._mutex:
                if state.schema.flatten and not state.schema.explicit:
                    self._infer(state, raw, con)
                schema = TopicSchema(state.schema.flatten, state.schema.explicit, dict(state.schema.structure))
            path = ps.cache.path_for(base, end)
            self._copy(flatten.flatten_sql(raw, schema, partition_expr=str(partition)), path, con)
        except duckdb.IOException:
            return False  # a sealed file vanished (retention); try again next time
        rows = pq.read_metadata(path).num_rows
        self._install(state, ps, [], SegmentFile(path, base, end, rows), sources=chosen)
        return True

    def merge_small(
        self,
        topic: str,
        partition: int,
        *,
        small_rows: int,
        target_rows: int,
        min_files: int,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> bool:
        """Merge runs of small cache files into one. Caller holds `_convert_lock`."""
        state = self._topics.get(topic)
        ps = state.partitions.get(partition) if state else None
        if ps is None:
            return False
        run: list[SegmentFile] = []
        best: list[SegmentFile] = []
        for f in ps.cache.files:
            if f.rows < small_rows and sum(x.rows for x in run) + f.rows <= target_rows:
                run.append(f)
            else:
                if len(run) > len(best):
                    best = run
                run = [f] if f.rows < small_rows else []
        if len(run) > len(best):
            best = run
        if len(best) < min_files:
            return False
        paths = ", ".join(sql_literal(str(f.path)) for f in best)
        path = ps.cache.path_for(best[0].base, best[-1].next)
        con = con or duckdb.connect()
        try:
            self._copy(f'SELECT * FROM read_parquet([{paths}], union_by_name=true) ORDER BY "offset"', path, con)
        except duckdb.IOException:
            return False
        self._install(state, ps, best, SegmentFile(path, best[0].base, best[-1].next, sum(f.rows for f in best)))
        return True

    def _install(
        self,
        state: TopicState,
        ps: PartitionState,
        replaced: list[SegmentFile],
        new: SegmentFile,
        sources: Iterable[SegmentFile] = (),
    ) -> None:
        """Swap cache files and trim the fresh table, atomically for readers (``sources``: the
        sealed files ``new`` was read from, as listed before reading)."""
        with self._mutex:
            gone = {f.path for f in replaced}
            if not gone <= {f.path for f in ps.cache.files}:
                new.path.unlink(missing_ok=True)  # the inputs changed meanwhile
                return
            if not replaced and ps.cache.next is not None and new.base < ps.cache.next:
                new.path.unlink(missing_ok=True)  # someone else got there first
                return
            ps.loaded.update({f.base: f.signature for f in sources})
            files = [f for f in ps.cache.files if f.path not in gone]
            files.append(new)
            files.sort(key=lambda f: f.base)
            with self._files.write():
                ps.cache.files = files
                for f in replaced:
                    if f.path != new.path:
                        f.path.unlink(missing_ok=True)
                nxt = ps.cache.next or 0
                if ps.fresh_next is not None:
                    run(
                        self._ddl,
                        f"DELETE FROM wb_fresh.{quote(state.name)} "
                        f'WHERE partition = {ps.info.partition} AND "offset" < {nxt}',
                    )
                    ps.fresh_next = max(ps.fresh_next, nxt)
                ps.fresh_low = max(ps.fresh_low, nxt)
                state.view_files = None
                self._update_view(state)

    # ------------------------------------------------------------------ views and the catalog
    def _update_view(self, state: TopicState) -> None:
        files = tuple(
            str(f.path)
            for ps in sorted(state.partitions.values(), key=lambda s: s.info.partition)
            for f in ps.cache.files
        )
        if files == state.view_files:
            return
        fresh = f"SELECT * FROM wb_fresh.{quote(state.name)}"
        if files:
            paths = ", ".join(sql_literal(p) for p in files)
            body = f"(SELECT * FROM read_parquet([{paths}], union_by_name=true) UNION ALL BY NAME {fresh})"
        else:
            body = f"({fresh})"
        run(self._ddl, f"CREATE OR REPLACE VIEW main.{quote(state.name)} AS {flatten.present_sql(body)}")
        run(self._ddl, latest.view_sql(state.name))
        state.view_files = files
        if not self._in_sync:
            self._maybe_write_catalog()

    def _maybe_write_catalog(self) -> None:
        """Rewrite the catalog when a topic, its cache files or its flattened schema changed."""
        topics = tuple(
            (
                name,
                state.schema_version,
                tuple(
                    (p, tuple(str(f.path) for f in state.partitions[p].cache.files)) for p in sorted(state.partitions)
                ),
            )
            for name, state in sorted(self._topics.items())
        )
        signature = (*topics, self._iceberg_topics())
        if signature != self._catalog_signature:
            self._write_catalog()
            self._catalog_signature = signature

    def _catalog_view_sql(self, state: TopicState) -> str:
        """A topic in the catalog: its cache files, then (embedded clusters) the brokers' Parquet
        files above what the cache covers, one copy per partition (`workbench.sql.open_views`)."""
        parts, covered = [], []
        files = [str(f.path) for _, ps in sorted(state.partitions.items()) for f in ps.cache.files]
        if files:
            paths = ", ".join(sql_literal(p) for p in files)
            parts.append(f"SELECT * FROM read_parquet([{paths}], union_by_name=true)")
        for p, ps in sorted(state.partitions.items()):
            if ps.cache.next is not None:
                covered.append(f'WHEN {int(p)} THEN "offset" >= {int(ps.cache.next)}')
        data_dir = self.broker_data_dir()
        if data_dir is not None:
            from workbench.sql import open_views

            anchor = open_views.anchor_path(data_dir, state.name)
            if not anchor.exists():  # a glob must match a file even before the brokers wrote one
                anchor.parent.mkdir(parents=True, exist_ok=True)
                self._copy(open_views.EMPTY_RAW_ROWS, anchor)
            above = {p: ps.cache.next for p, ps in state.partitions.items() if ps.cache.next is not None}
            raw = f"({open_views.broker_files_sql(data_dir, state.name, above)})"
            parts.append(flatten.flatten_sql(raw, state.schema))
        local = self.materializer
        if local is not None and hasattr(local, "raw_glob"):
            # `workbench.connect`: the local segments and tail files above what the cache covers
            # (`workbench.sql.materialize`; a tail and the segment that replaces it share a name).
            local.ensure_anchor(state.name)  # a glob must match a file even before the first seal
            where = f"CASE partition {' '.join(covered)} ELSE true END" if covered else "true"
            raw = (
                f"(SELECT * FROM read_parquet({sql_literal(local.raw_glob(state.name))}, hive_partitioning=true, "
                f"union_by_name=true) WHERE {where})"
            )
            parts.append(flatten.flatten_sql(raw, state.schema))
        if not parts:
            parts.append(EMPTY_CACHED_ROWS)
        body = "(" + " UNION ALL BY NAME ".join(f"({q})" for q in parts) + ")"
        return flatten.present_sql(body)

    def _iceberg_topics(self) -> tuple[str, ...]:
        """The topics with an Iceberg table (embedded clusters with ``iceberg_commit_ms``): they get
        a ``typed."<topic>"`` view in the catalog over the table's data files."""
        data_dir = self.broker_data_dir()
        if data_dir is None:
            return ()
        from workbench.open_tables import ANCHOR, iceberg_root, table_location

        root = iceberg_root(data_dir)
        return tuple(n for n in sorted(self._topics) if (table_location(root, n) / "data" / ANCHOR).exists())

    def _write_catalog(self) -> None:
        """`<root>/workbench.duckdb`: a view per topic, for plain DuckDB without the workbench.
        Written whole under a temporary name and renamed: a reader that has it open (even a
        read-write DuckDB shell) keeps its version, the next `connect` gets the new one."""
        tmp = self.catalog_path.with_name(f".{self.catalog_path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            con = duckdb.connect(str(tmp))
            try:
                run(con, WINDOW_MACROS)
                for name, state in sorted(self._topics.items()):
                    run(con, f"CREATE OR REPLACE VIEW {quote(name)} AS {self._catalog_view_sql(state)}")
                iceberg = self._iceberg_topics()
                if iceberg:  # the Iceberg tables' data files, typed columns and all (registry-framed values)
                    from workbench.open_tables import data_files_sql, iceberg_root

                    root = iceberg_root(self.broker_data_dir() or self.root)
                    run(con, typed.create_schema_sql())
                    for name in iceberg:
                        try:  # binding reads the data files' footers: one met mid-rename skips only this view
                            view = f"{typed.SCHEMA}.{quote(name)}"
                            run(con, f"CREATE OR REPLACE VIEW {view} AS {data_files_sql(root, name)}")
                        except duckdb.Error as exc:
                            log.warning("catalog view typed.%s not written: %s", name, exc)
            finally:
                con.close()
            os.replace(tmp, self.catalog_path)
        except (duckdb.Error, OSError) as exc:
            log.warning("catalog %s not updated: %s", self.catalog_path, exc)
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ lifecycle
    # -- the engine's locks, for the compactor, time travel and system tables ----------------------

    def converting(self) -> threading.Lock:
        """Hold while converting or merging a partition's files (`with engine.converting(): ...`):
        one conversion at a time, and `refresh` does not convert meanwhile."""
        return self._convert_lock

    def reading_files(self) -> contextlib.AbstractContextManager[None]:
        """Hold while a query reads cache files (`with engine.reading_files(): ...`): none is
        deleted until it is released."""
        return self._files.read()

    def install_tables(self, schema: str, tables: dict[str, pa.Table]) -> None:
        """Replace `schema.<name>` with each Arrow table, atomically with respect to refreshes."""
        with self._mutex:
            for name, table in tables.items():
                self._ddl.register("__wb_install", table)
                try:
                    run(self._ddl, f"CREATE OR REPLACE TABLE {schema}.{quote(name)} AS SELECT * FROM __wb_install")
                finally:
                    self._ddl.unregister("__wb_install")

    def fresh_rows(self, topic: str, partition: int, start: int, end: int) -> pa.Table:
        """The raw records of `topic` partition `partition` in the fresh table, offsets [start, end)."""
        table = self._ddl.sql(
            f'SELECT "offset", timestamp, key_bytes AS key, value_bytes AS value, headers '
            f'FROM wb_fresh.{quote(topic)} WHERE partition = {int(partition)} AND "offset" >= {int(start)} '
            f'AND "offset" < {int(end)} ORDER BY "offset"'
        ).arrow()
        if isinstance(table, pa.RecordBatchReader):
            table = table.read_all()
        return table

    def topic_states(self) -> dict[str, TopicState]:
        return self._topics

    def close(self) -> None:
        """Stop the compactor (joined), close the clients and the database. Idempotent, thread-safe."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._compactor is not None:
            self._compactor.stop()
        self.wire.close()
        with self._parser_lock:
            self._parser.close()
        try:
            self.db.close()
        except duckdb.Error:
            pass


def run(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    """Execute and fetch everything, so the connection is free for the next statement."""
    return con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()


def _base_tables(node) -> Iterable[str]:
    """Qualified names of the BASE_TABLE references in a `json_serialize_sql` parse tree."""
    if isinstance(node, dict):
        if node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
            schema = node.get("schema_name") or ""
            yield f"{schema}.{node['table_name']}" if schema else node["table_name"]
        for v in node.values():
            yield from _base_tables(v)
    elif isinstance(node, list):
        for v in node:
            yield from _base_tables(v)
