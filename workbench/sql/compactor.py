"""Background compaction on the notebook side: sealed files -> large flattened cache files.

Brokers seal small segments (a topic with a small `segment.bytes`, or a quiet one rolled by
`segment.ms`) and a scan of thousands of tiny files is slow. Every `INTERVAL_S` the compactor
converts each active partition's new sealed files into one cache file, then merges runs of small
cache files into files of up to `TARGET_ROWS`. The brokers' files are never modified.
"""

from __future__ import annotations

import logging
import threading
import time

import duckdb

log = logging.getLogger(__name__)

INTERVAL_S = 1.0
#: Convert sealed files once this many records wait, or once the oldest has waited MAX_WAIT_S.
MIN_CONVERT_RECORDS = 20_000
MAX_WAIT_S = 3.0
#: Cache files below SMALL_ROWS are merged, MIN_FILES at a time at least, up to TARGET_ROWS.
SMALL_ROWS = 250_000
TARGET_ROWS = 2_000_000
MIN_FILES = 8


class Compactor(threading.Thread):
    """A daemon thread serving one `SqlEngine`; `stop()` ends it."""

    def __init__(self, engine) -> None:
        super().__init__(name="workbench-sql-compactor", daemon=True)
        self.engine = engine
        self._stop_event = threading.Event()
        self._waiting_since: dict[tuple[str, int], float] = {}

    def run(self) -> None:
        con = duckdb.connect()
        con.execute("SET threads = 1").fetchall()  # leave the cores to queries and brokers
        while not self._stop_event.wait(INTERVAL_S):
            try:
                self.pass_once(con)
            except Exception:  # keep compacting; the next pass retries
                log.exception("compaction pass failed")
        con.close()

    def pass_once(self, con: duckdb.DuckDBPyConnection | None = None) -> int:
        """One pass over every active partition; returns how many files were written."""
        engine = self.engine
        written = 0
        for name, state in list(engine.topic_states().items()):
            if not state.active:
                continue
            for p, ps in list(state.partitions.items()):
                if self._stop_event.is_set():
                    return written
                with engine.converting():
                    files = engine.sealed_files(name, ps)
                    start = max(ps.cache.next or 0, ps.log_start)
                    waiting = sum(f.rows for f in files if f.next > start)
                    key = (name, p)
                    if waiting:
                        since = self._waiting_since.setdefault(key, time.monotonic())
                        due = waiting >= MIN_CONVERT_RECORDS or time.monotonic() - since >= MAX_WAIT_S
                        if due and engine.convert(name, p, con=con):
                            written += 1
                            self._waiting_since.pop(key, None)
                    if engine.merge_small(
                        name, p, small_rows=SMALL_ROWS, target_rows=TARGET_ROWS, min_files=MIN_FILES, con=con
                    ):
                        written += 1
        return written

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=30)
