"""`cluster.watch(sql, every="1s")`: a query re-evaluated as data arrives.

A daemon thread checks, every `every`, whether any topic the query reads has a new high
watermark (or the query reads `wb.*` system tables, which always change) and re-runs it then.
In a notebook the watch displays itself as a table that updates in place (an IPython display
handle); from Python, iterate it for each new DataFrame. `stop()` ends the thread.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterator
from typing import Self

import pandas as pd

from workbench.sql.errors import SqlError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_interval(every: str | float) -> float:
    """ "500ms", "1s", "2m", "1h" or seconds as a number."""
    if isinstance(every, int | float) and not isinstance(every, bool):
        seconds = float(every)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)?\s*", str(every))
        if not m:
            raise ValueError(f'every must look like "500ms", "1s", "2m" or be seconds, not {every!r}')
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds < 0.05:
        raise ValueError("every must be at least 50ms")
    return seconds


class Watch:
    """A running streaming query. Iterable (yields DataFrames), displayable, stoppable."""

    def __init__(
        self,
        connection,
        query: str,
        *,
        every: str | float = "1s",
        display: bool = True,
        max_results: int = 100,
    ) -> None:
        self.query = query
        self.interval = parse_interval(every)
        self.latest: pd.DataFrame | None = None
        self.error: SqlError | None = None
        self.updates = 0
        self._connection = connection
        self._engine = connection.sql_engine
        self._results: queue.Queue = queue.Queue(maxsize=max_results)
        self._stop = threading.Event()
        self._handle = None
        self._want_display = display
        self._engine.metadata()  # the topic names, should the query have to be matched as text
        names = self._engine.referenced_names(query)
        self._system = any(n.startswith("wb.") for n in names)
        self._topics = names
        self._last_marks: dict | None = None
        self._thread = threading.Thread(target=self._run, name="workbench-sql-watch", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the loop
    def _marks(self) -> dict | None:
        engine = self._engine
        md = engine.metadata(refresh=True)
        tps = [
            (t, p.partition)
            for t in md.partitions
            if t in self._topics or f"main.{t}" in self._topics or f"latest.{t}" in self._topics
            for p in md.partitions[t]
        ]
        return engine.wire.list_offsets(tps, "latest") if tps else {}

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                marks = self._marks()
                if self._system or marks != self._last_marks or self.latest is None:
                    df = self._engine.sql(self.query, cursor=self._cursor())
                    self._last_marks = marks
                    self._publish(df)
                self.error = None
            except SqlError as exc:
                self.error = exc
            except Exception as exc:
                self.error = SqlError(str(exc))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _cursor(self):
        if not hasattr(self, "_cur"):
            self._cur = self._engine.db.cursor()
        return self._cur

    def _publish(self, df: pd.DataFrame) -> None:
        self.latest = df
        self.updates += 1
        try:
            self._results.put_nowait(df)
        except queue.Full:  # nobody iterates: keep the newest
            try:
                self._results.get_nowait()
            except queue.Empty:
                pass
            self._results.put_nowait(df)
        if self._handle is not None:
            self._handle.update(df)

    # ------------------------------------------------------------------ Python side
    def __iter__(self) -> Iterator[pd.DataFrame]:
        """Each new result as it comes, until `stop()`."""
        while not self._stop.is_set() or not self._results.empty():
            try:
                yield self._results.get(timeout=0.1)
            except queue.Empty:
                continue

    def next(self, timeout: float = 10.0) -> pd.DataFrame:
        """The next new result (waits up to `timeout` seconds)."""
        try:
            return self._results.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no new result within {timeout}s") from None

    def request_stop(self) -> None:
        """Ask the loop to end after the query it is running, without waiting for it."""
        self._stop.set()

    def stop(self) -> None:
        """Stop re-evaluating; the thread ends within one interval."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=max(15.0, self.interval * 2))

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ notebook side
    def _ipython_display_(self) -> None:
        from IPython.display import display

        shown = self.latest if self.latest is not None else pd.DataFrame()
        if self._handle is None:
            self._handle = display(shown, display_id=True)
        else:
            self._handle.display(shown)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Watch {state} every {self.interval:g}s, {self.updates} updates: {self.query!r}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
