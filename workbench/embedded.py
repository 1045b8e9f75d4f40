"""What "an embedded cluster" means on the notebook side, declared once.

A connection is either a `workbench.Cluster` (broker processes this kernel started: it can kill
and restart them, and their Parquet files are in its `data_dir`) or a plain `KafkaConnection`
to a cluster started elsewhere (`workbench.connect`). Widgets and the SQL layer must not tell
the two apart by class or by probing attributes: they ask `is_embedded(conn)` and, for the
things only an embedded cluster can do, use the `EmbeddedCluster` members.

Declared here, below `cluster.py` and `client.py`, so that widgets and `sql/` need not import
`workbench.cluster` (which imports the client, which builds widgets) to ask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, TypeGuard, runtime_checkable


@runtime_checkable
class EmbeddedCluster(Protocol):
    """The members an embedded cluster has beyond a `KafkaConnection` (`workbench.Cluster`)."""

    #: Always True on an embedded cluster; the flag `is_embedded` reads.
    embedded: bool
    #: Where the brokers' data directories (and so their Parquet files) live.
    data_dir: Path

    @property
    def stopped(self) -> bool:
        """True once `stop()` ran: widgets and watches end their threads."""
        ...

    def kill_broker(self, node_id: int) -> None: ...

    def restart_broker(self, node_id: int) -> None: ...


def is_embedded(conn: Any) -> TypeGuard[EmbeddedCluster]:
    """True for a cluster whose brokers this process runs (`workbench.Cluster`)."""
    return getattr(type(conn), "embedded", False) is True


def connection_closed(conn: Any) -> bool:
    """True once an embedded cluster has been stopped (a `workbench.connect` connection never closes)."""
    return is_embedded(conn) and bool(conn.stopped)
