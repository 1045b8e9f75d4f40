"""`SqlPanel`: a query box over the SQL layer (every topic a table, `wb.*` system tables),
the result as a table with its elapsed time, readable errors, a history of queries, and a
live toggle that re-runs the query whenever a partition it reads gets new records
(`conn.watch`).
"""

from __future__ import annotations

import time
from datetime import datetime

import ipywidgets as widgets
import pandas as pd

from workbench.widgets._live import LivePanel, connection_closed, hold, message, short_error, start_sql
from workbench.widgets._render import frame_html
from workbench.widgets._style import primary_button

DEFAULT_QUERY = "SELECT * FROM wb.topics"
HISTORY = 50
SHOWN_ROWS = 500


class SqlPanel(LivePanel):
    """Run SQL against the cluster's topics; optionally live."""

    css_class = "workbench-sql"

    def __init__(self, conn, query: str = DEFAULT_QUERY, *, every: str | float = "1s") -> None:
        super().__init__(conn)
        self.every = every
        self.result: pd.DataFrame | None = None
        self.error_message = ""
        self._watch = None
        self._watch_query = ""
        self._history: list[str] = []
        self._watch_error_shown = ""

        self.query = widgets.Textarea(
            value=query,
            placeholder="SELECT ... FROM <topic>",
            layout=widgets.Layout(width="100%", height="110px"),
        )
        self.query.add_class("workbench-sql-query")
        self.run_button = primary_button(description="Run", icon="play")
        self.run_button.add_class("workbench-sql-run")
        self.live = widgets.ToggleButton(
            value=False,
            description="live",
            icon="refresh",
            tooltip="re-run whenever the topics it reads get new records",
        )
        self.elapsed = widgets.HTML()
        self.error = widgets.HTML()
        self.error.add_class("workbench-sql-error")
        self.status = widgets.HTML()
        self.output = widgets.HTML()
        self.output.add_class("workbench-sql-result")
        self.output.layout = widgets.Layout(width="100%", overflow="hidden")  # one scroller: the table's own
        self.history = widgets.Select(options=[], rows=5, layout=widgets.Layout(width="auto", max_width="100%"))
        self.history.add_class("workbench-sql-history")
        self.children = [
            self.query,
            widgets.HBox([self.run_button, self.live, self.elapsed, self.status]),
            self.error,
            self.output,
            widgets.HTML("<b>History</b>"),
            self.history,
        ]
        self.run_button.on_click(lambda _b: self.run())
        self.live.observe(self._on_live, "value")
        self.history.observe(self._on_history, "value")
        start_sql(conn)
        self._poller = self._loop("sql-live", self._step, 0.25, on_error=self._show_error, on_closed=self._stop_watch)

    # ------------------------------------------------------------------ running
    def run(self, query: str | None = None) -> pd.DataFrame | None:
        """Run the query in the box (or `query`, which then fills the box); returns the result,
        or None after showing the error."""
        if query is not None:
            self.query.value = query
        text = self.query.value.strip()
        if not text:
            self._show_error(ValueError("type a query first, e.g. SELECT * FROM wb.topics"))
            return None
        self._remember(text)
        if self.live.value:
            self._start_watch(text)
        started = time.monotonic()
        try:
            frame = self.conn.sql(text)
        except Exception as exc:
            self._show_error(exc, time.monotonic() - started)
            return None
        self._show(frame, time.monotonic() - started)
        return frame

    def _status_widget(self):
        return self.status

    def _show(self, frame: pd.DataFrame, seconds: float | None = None, live: bool = False) -> None:
        self.result, self.error_message = frame, ""
        table = frame_html(frame, max_rows=SHOWN_ROWS, css_class="workbench-sql-rows", empty="(no rows)")
        timing = f"{seconds * 1000:.0f} ms · " if seconds is not None else ""
        note = f"{timing}{len(frame)} rows" + (f" · live, updated {datetime.now():%H:%M:%S}" if live else "")
        if self._closed or connection_closed(self.conn):
            return
        with hold(self.output, self.error, self.elapsed):
            self.output.value = table
            self.error.value = ""
            self.elapsed.value = message(note, "info")

    def _show_error(self, exc: BaseException, seconds: float | None = None) -> None:
        text = short_error(exc)
        self.error_message = text
        timing = f"failed after {seconds * 1000:.0f} ms" if seconds is not None else "failed"
        if connection_closed(self.conn):
            self._show_stopped()
        # The old result goes: under an error it would look like this query's answer.
        self.result = None
        with hold(self.error, self.elapsed, self.output):
            self.output.value = ""
            self.error.value = message(text)
            self.elapsed.value = message(timing, "error")

    def _remember(self, text: str) -> None:
        self._history = [text, *[q for q in self._history if q != text][: HISTORY - 1]]
        options = [(q if len(q) <= 100 else q[:97] + "…").replace("\n", " ") for q in self._history]
        with hold(self.history):
            self._updating_history = True
            try:
                self.history.options = list(zip(options, self._history, strict=False))
                self.history.value = text
            finally:
                self._updating_history = False

    @property
    def queries(self) -> list[str]:
        """The history, newest first."""
        return list(self._history)

    def _on_history(self, change) -> None:
        if getattr(self, "_updating_history", False) or not change["new"]:
            return
        self.query.value = change["new"]

    # ------------------------------------------------------------------ live
    def _on_live(self, change) -> None:
        if change["new"]:
            text = self.query.value.strip()
            if text:
                self._remember(text)
                self._start_watch(text)
        else:
            self._stop_watch()

    def _start_watch(self, text: str) -> None:
        if self._watch is not None and self._watch_query == text and self._watch.running:
            return
        self._stop_watch()
        if connection_closed(self.conn):
            return
        try:
            self._watch = self.conn.watch(text, every=self.every, display=False)
        except Exception as exc:
            self._show_error(exc)
            self.live.value = False
            return
        self._watch_query = text
        self._poller.start()
        self._poller.resume()

    def _stop_watch(self) -> None:
        self._poller.pause()
        if self._watch is not None:
            self._watch.stop()
            self._watch = None

    def _step(self) -> None:
        watch = self._watch
        if watch is None:
            return
        try:
            frame = watch.next(timeout=0.25)
        except TimeoutError:
            if watch.error is not None and self._watch_error_shown != str(watch.error):
                self._watch_error_shown = str(watch.error)
                self._show_error(watch.error)
            return
        self._watch_error_shown = ""
        self._show(frame, live=True)

    def _stop_threads(self) -> None:
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        super()._stop_threads()
