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
