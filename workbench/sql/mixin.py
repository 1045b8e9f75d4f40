"""`SqlMixin`: the SQL API of `Cluster` and `workbench.connect(...)` connections.

    cluster.sql("SELECT type, count(*) FROM orders GROUP BY type")   # -> pandas.DataFrame
    cluster.duckdb.sql("SELECT * FROM orders").df()                  # DuckDB's own API
    cluster.as_of(timestamp="2024-05-01 12:00").sql("SELECT count(*) FROM orders")
    cluster.watch("SELECT count(*) FROM orders", every="1s")         # live-updating result
    cluster.sql_schema("orders", {"id": "BIGINT", "amount": "DOUBLE"})

An embedded `Cluster` reads its brokers' Parquet files (the partition leader's copy) and fetches
the unsealed tail over the Kafka protocol; a connection made with `workbench.connect` has no broker
files to read, so it consumes the topics it queries into a local directory in the same layout
(`sql_data_dir`, default `~/.cache/workbench/<hash of the bootstrap string>`), never committing.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.embedded import connection_closed, is_embedded

_registry: list[weakref.ref] = []
_registry_lock = threading.Lock()


def latest_connection():
    """The most recently created connection that is still alive (for the `%%sql` magic)."""
    with _registry_lock:
        for ref in reversed(_registry):
            obj = ref()
            if obj is not None:
                return obj
    return None


def default_cache_dir(bootstrap_servers: str) -> Path:
    from workbench.sql.cache_dirs import cache_base

    base = cache_base()
    digest = hashlib.sha1(bootstrap_servers.encode()).hexdigest()[:12]
    return base / digest


class SqlMixin:
    """SQL over topics: `sql`, `duckdb`, `as_of`, `watch`, `sql_schema`. The engine starts lazily."""

    _sql_engine = None
    #: Where a `workbench.connect` connection materializes topics; set before the first query.
    sql_data_dir: Path | None = None
    #: "read_committed" (KIP-98): SQL, the browser and `watch()` see committed records only, never
    #: past the last stable offset. "read_uncommitted" also shows records of open and aborted
    #: transactions that are still in the live tail (the Parquet tier never holds aborted records).
    #: Set before the first query.
    sql_isolation_level: str = "read_committed"

    def __new__(cls, *args: Any, **kwargs: Any):
        obj = super().__new__(cls)
        obj._sql_lock = threading.RLock()
        obj._sql_watches = weakref.WeakSet()
        with _registry_lock:
            _registry[:] = [r for r in _registry if r() is not None]
            _registry.append(weakref.ref(obj))
        return obj

    def _sql_guard(self) -> threading.RLock:
        lock = self.__dict__.get("_sql_lock")
        if lock is None:  # made without __new__ (copy, unpickling): one lock, set once
            with _registry_lock:
                lock = self.__dict__.setdefault("_sql_lock", threading.RLock())
        return lock

    # ------------------------------------------------------------------ the engine
    @property
    def sql_engine(self):
        """The `workbench.sql.engine.SqlEngine` behind this connection (started on first use, once:
        threads asking at the same time share one engine)."""
        engine = self._sql_engine
        if engine is not None:
            return engine
        with self._sql_guard():
            if self._sql_engine is not None:
                return self._sql_engine
            if connection_closed(self):  # a stopped Cluster: no engine (and no threads) again
                from workbench.sql.errors import SqlError

                raise SqlError("the cluster is stopped; SQL needs running brokers")
            from workbench.sql.engine import BrokerDirectories, SqlEngine
            from workbench.sql.materialize import LocalSegments

            if is_embedded(self):  # the brokers' own Parquet files are local: read them in place
                data_dir = Path(self.data_dir)
                engine = SqlEngine(
                    self.bootstrap_servers,
                    data_dir,
                    BrokerDirectories(data_dir),
                    isolation_level=self.sql_isolation_level,
                )
            else:
                root = Path(self.sql_data_dir or default_cache_dir(self.bootstrap_servers))
                if not self.sql_data_dir:
                    from workbench.sql.cache_dirs import mark_in_use, prune_cache

                    self._sql_cache_lock = mark_in_use(root)  # held while this connection lives
                    prune_cache()  # directories of clusters not queried for a week
                local = LocalSegments(root)
                engine = SqlEngine(
                    self.bootstrap_servers, root, local, materializer=local, isolation_level=self.sql_isolation_level
                )
            engine.schema_registry_url = getattr(self, "schema_registry_url", None)  # for wb.schemas
            weakref.finalize(self, engine.close)
            self._sql_engine = engine
            return engine

    def materialize(self, *topics: str, interval: float = 2.0, iceberg: bool = False):
        """Keep `topics` (all topics when none are named) on local disk while the notebook runs:
        Parquet files under ``<sql_data_dir>/broker-local/`` and a DuckDB catalog,
        ``<sql_data_dir>/workbench.duckdb``, that plain DuckDB opens without the workbench
        (``duckdb -readonly``), trailing the cluster by about `interval` seconds. With
        ``iceberg=True`` each refresh is also committed to an Apache Iceberg table per topic,
        ``kafka.<topic>`` in ``<sql_data_dir>/iceberg/catalog.db`` (`iceberg_catalog()`), the same
        tables an embedded cluster's brokers commit. For clusters the workbench did not start
        (`workbench.connect`); a `Cluster`'s brokers publish their own files.
        Returns the running `Materialization` (``.stop()``, ``.catalog``, ``.error``, ``.latest``);
        calling again adds topics to it."""
        if is_embedded(self):
            raise ValueError(
                "materialize() is for clusters the workbench did not start (workbench.connect): this "
                "cluster's brokers write the Parquet files and workbench.duckdb in its data_dir themselves"
            )
        for t in topics:
            if not isinstance(t, str) or not t:
                raise ValueError(f"topics must be topic names (non-empty strings), not {t!r}")
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not 0.1 <= interval <= 3600:
            raise ValueError(f"interval must be a number of seconds between 0.1 and 3600, not {interval!r}")
        if not isinstance(iceberg, bool):
            raise ValueError(f"iceberg must be True or False, not {iceberg!r}")
        from workbench.sql.materialize import LocalSegments, Materialization

        engine = self.sql_engine
        known = set(engine._user_topics(engine.metadata(refresh=True)))
        unknown = sorted(set(topics) - known)
        if unknown:
            raise ValueError(f"no such topic: {', '.join(unknown)} (the cluster has {len(known)} topics)")
        keeper = Materialization.of(engine, start=False)
        keeper.topics.update(topics)
        keeper.interval = float(interval)
        keeper.iceberg = keeper.iceberg or iceberg
        if isinstance(engine.materializer, LocalSegments):
            engine.materializer.tails = True
        keeper.sample(engine)  # the first files before returning: the catalog is readable at once
        keeper.start()
        return keeper

    def iceberg_catalog(self):
        """The pyiceberg catalog of this cluster's topics (issue 17): ``kafka.<topic>`` tables in a
        SQLite catalog, ``<data_dir>/iceberg`` for a `Cluster` (committed by the partition leaders
        about every ``iceberg_commit_ms``), ``<sql_data_dir>/iceberg`` for `workbench.connect`
        (committed by ``materialize(..., iceberg=True)``). ``.load_table(("kafka", "orders"))
        .scan().to_arrow()``; each snapshot's summary has ``workbench.partition``,
        ``workbench.from-offset`` and ``workbench.to-offset``."""
        from workbench.open_tables import iceberg_root, open_catalog

        if is_embedded(self):
            return open_catalog(iceberg_root(Path(self.data_dir)))
        return open_catalog(iceberg_root(Path(self.sql_data_dir or default_cache_dir(self.bootstrap_servers))))

    def iceberg_table(self, topic: str):
        """``topic``'s Iceberg table (`iceberg_catalog`); it exists once a first record was committed."""
        from workbench.open_tables import NAMESPACE

        return self.iceberg_catalog().load_table((NAMESPACE, topic))

    def close_sql(self) -> None:
        """Stop the SQL engine's threads (compactor, watches) and clients; the cache stays on disk
        for next time. Idempotent; a later query starts a new engine (unless the cluster stopped)."""
        with self._sql_guard():
            engine, self._sql_engine = self._sql_engine, None
            watches = list(self.__dict__.get("_sql_watches", ()))
        for w in watches:
            w.stop()
        if engine is not None:
            engine.close()

    def sql(self, query: str) -> pd.DataFrame:
        """Run a DuckDB query in which every topic is a table; returns a pandas DataFrame.

        Records acknowledged before the call are included (read-your-writes); only records at or
        below each partition's high watermark appear, and (read_committed, `sql_isolation_level`)
        only committed ones, below the last stable offset. Errors raise `workbench.sql.SqlError`."""
        return self.sql_engine.sql(query)

    def table(self, topic: str) -> pd.DataFrame:
        """The topic read as a changelog: the latest value per key, tombstones (NULL values) applied,
        live tail included, in partition and offset order, whether or not the topic is compacted.
        In SQL it is the view ``latest."<topic>"``; `watch` it for a changing table
        (``cluster.watch('SELECT * FROM latest."orders"')``). See `workbench.sql.latest`."""
        from workbench.sql.latest import table_query

        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a topic name (a non-empty string), not {topic!r}")
        return self.sql(table_query(topic))

    @property
    def duckdb(self):
        """A DuckDB connection in which every topic is a view; `.sql()`/`.execute()` refresh the
        topics a query names first. `.raw` is the plain `duckdb.DuckDBPyConnection`."""
        from workbench.sql.connection import RefreshingConnection

        return RefreshingConnection(self.sql_engine)

    def sql_schema(self, topic: str, schema: dict | None = None, *, flatten: bool = True) -> None:
        """Fix the columns flattened from a topic's JSON values (`{"field": "DUCKDB TYPE", ...}`,
        nested dicts for STRUCTs), go back to inference (`schema=None`), or turn flattening off
        (`flatten=False`: only partition, offset, timestamp, key, value, headers)."""
        self.sql_engine.set_schema(topic, schema, flatten_values=flatten)

    def as_of(self, *, offset: int | dict | None = None, timestamp: Any = None):
        """Topics as they were at an offset or a moment; see `workbench.sql.timetravel.AsOf`."""
        from workbench.sql.timetravel import AsOf

        return AsOf(self.sql_engine, offset=offset, timestamp=timestamp)

    def watch(self, query: str, every: str | float = "1s", *, display: bool = True, max_results: int = 100):
        """Re-run `query` whenever data arrives (checked `every` interval) in a background thread.
        Iterate it for DataFrames, show it in a notebook, `.stop()` it."""
        from workbench.sql.watch import Watch

        w = Watch(self, query, every=every, display=display, max_results=max_results)
        with self._sql_guard():
            self.__dict__.setdefault("_sql_watches", weakref.WeakSet()).add(w)
        return w
