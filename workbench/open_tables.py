"""Where an embedded cluster's open tables are (issue 17): one definition for both sides.

The brokers' converter processes commit each topic to an Apache Iceberg table
(`workbench.storage.iceberg_tables`); the notebook side (`Cluster.iceberg_catalog()`, the
``workbench.duckdb`` catalog of `workbench.sql.engine`) only reads what they published. Both
find it here: ``<data_dir>/iceberg/catalog.db`` (a pyiceberg SQL catalog on SQLite), tables
``kafka.<topic>`` located at ``<data_dir>/iceberg/<topic>/``, data files under its ``data/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog

NAMESPACE = "kafka"
CATALOG_NAME = "workbench"
#: A zero-row file in each table's data directory, so a glob over it matches before the first commit.
ANCHOR = "_anchor.parquet"


def iceberg_root(data_dir: Path) -> Path:
    return Path(data_dir) / "iceberg"


def table_location(root: Path, topic: str) -> Path:
    return Path(root) / topic


def data_glob(root: Path, topic: str) -> str:
    """The table's data files (and its zero-row anchor), for plain Parquet readers. Data files
    never overlap (`workbench.storage.iceberg_tables`), so a glob counts each record once."""
    return str(table_location(root, topic) / "data" / "*.parquet")


def open_catalog(root: Path) -> SqlCatalog:
    """The pyiceberg SQL catalog in ``root`` (``catalog.db``, created on first use)."""
    from pyiceberg.catalog.sql import SqlCatalog

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return SqlCatalog(CATALOG_NAME, uri=f"sqlite:///{root / 'catalog.db'}", warehouse=f"file://{root}")


def data_files_sql(root: Path, topic: str) -> str:
    """SQL over the table's data files for a plain Parquet reader (no Iceberg library): each
    record once, also while a merge's members are still on disk beside the merged file (they stay
    for the older snapshots until those expire). A file whose offset range (``p<partition>-<from>``
    in its name, ``workbench.next_offset`` in its footer) lies inside another file's range of the
    same partition is left out (of two with the same range, the older ``g<n>``); the rest never
    overlap. May include a data file linked a moment
    before its commit (records of the log's committed prefix, never twice). An Iceberg reader
    (pyiceberg, `Cluster.iceberg_table`) reads the current snapshot's files instead.

    The file list is named first in ``FROM``: DuckDB lists the two globs as it binds, in that order,
    so the rows' listing is the newer one and holds every file chosen (the other order could choose
    a merged file the rows' listing did not have yet, and skip its members: records missing)."""
    glob = data_glob(root, topic).replace("'", "''")
    return f"""
WITH files AS (
    SELECT file_name AS f,
        TRY_CAST(regexp_extract(file_name, '/p([0-9]+)-[0-9]+(-[0-9]+-g[0-9]+)?[.]parquet$', 1) AS INTEGER)
            AS partition,
        TRY_CAST(regexp_extract(file_name, '/p[0-9]+-([0-9]+)(-[0-9]+-g[0-9]+)?[.]parquet$', 1) AS BIGINT) AS first,
        coalesce(TRY_CAST(regexp_extract(file_name, '-g([0-9]+)[.]parquet$', 1) AS BIGINT), 0) AS generation,
        TRY_CAST(decode(value) AS BIGINT) AS next
    FROM parquet_kv_metadata('{glob}')
    WHERE decode(key) = 'workbench.next_offset'
), outermost AS (
    SELECT f FROM files
    WHERE partition IS NOT NULL AND first IS NOT NULL
    QUALIFY first >= coalesce(max(next) OVER (PARTITION BY partition ORDER BY first, next DESC, generation DESC
                                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), first)
)
SELECT d.* EXCLUDE (filename) FROM outermost o
JOIN read_parquet('{glob}', filename = true, union_by_name = true) d ON d.filename = o.f
"""
