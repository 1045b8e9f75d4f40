"""`cluster.duckdb`: a DuckDB connection that refreshes the topics a query names first."""

from __future__ import annotations

from typing import Any


class RefreshingConnection:
    """Wraps this thread's cursor of the engine's database; anything else is DuckDB's own API."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.raw = engine.cursor()

    def sql(self, query: str, *args: Any, **kwargs: Any):
        return (
            self._engine.execute(query, cursor=self.raw)
            if not (args or kwargs)
            else self._run("sql", query, *args, **kwargs)
        )

    query = sql

    def execute(self, query: str, *args: Any, **kwargs: Any):
        return self._run("execute", query, *args, **kwargs)

    def _run(self, method: str, query: str, *args: Any, **kwargs: Any):
        engine = self._engine
        names = engine.referenced_names(query)
        engine.check_read_only(query, names)
        engine.refresh_for(names, query)
        return getattr(self.raw, method)(query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    def __repr__(self) -> str:
        return f"<workbench DuckDB connection over {self._engine.wire.bootstrap_servers}>"
