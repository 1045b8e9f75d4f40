"""Time travel: topics as they were at an offset or at a moment.

    cluster.as_of(timestamp="2024-05-01 12:00:00+00").sql("SELECT count(*) FROM orders")
    cluster.as_of(offset=999).sql(...)                 # every partition up to offset 999 included
    cluster.as_of(offset={0: 120, 1: 98}).sql(...)     # per partition (others: nothing)

`timestamp` means "the records that had been appended by then": per partition, every record
before the first offset whose timestamp is later (ListOffsets by timestamp, Kafka's
`offsetsForTimes`), so a late record with an old timestamp stays out, as in the log.
The topic views are shadowed by temporary views in a connection of the snapshot's own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

from workbench.sql.engine import run
from workbench.sql.flatten import quote


def to_millis(value: Any) -> int:
    """A datetime, pandas Timestamp, ISO string or epoch milliseconds -> epoch milliseconds (UTC
    for naive values)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.value // 1_000_000)


class AsOf:
    """A read-only snapshot of the topics; `.sql(query)` like `cluster.sql`."""

    def __init__(self, engine, *, offset: int | dict | None = None, timestamp: Any = None) -> None:
        if (offset is None) == (timestamp is None):
            raise ValueError("as_of() needs exactly one of offset= or timestamp=")
        self.engine = engine
        self.offset = offset
        self.timestamp_ms = to_millis(timestamp) if timestamp is not None else None
        self._cursor = engine.db.cursor()

    def _bounds(self, topic: str) -> dict[int, int]:
        """partition -> first offset NOT included."""
        md = self.engine.metadata()
        parts = [p.partition for p in md.partitions.get(topic, [])]
        if self.timestamp_ms is not None:
            found = self.engine.wire.list_offsets([(topic, p) for p in parts], self.timestamp_ms + 1)
            state = self.engine.topic_states()[topic]
            return {p: (off if off >= 0 else state.partitions[p].high_watermark) for (_, p), off in found.items()}
        if isinstance(self.offset, dict):
            return {int(p): int(o) + 1 for p, o in self.offset.items()}
        return {p: int(self.offset) + 1 for p in parts}

    def sql(self, query: str) -> pd.DataFrame:
        engine = self.engine
        names = engine.referenced_names(query)
        engine.check_read_only(query, names)
        engine.refresh_for(names, query)
        for topic in engine.topic_states():
            if topic in names or f"main.{topic}" in names:
                bounds = self._bounds(topic)
                cases = " ".join(f"WHEN {p} THEN {b}" for p, b in sorted(bounds.items()))
                cond = f'"offset" < CASE partition {cases} ELSE 0 END' if cases else "false"
                run(
                    self._cursor,
                    f"CREATE OR REPLACE TEMP VIEW {quote(topic)} AS "
                    f"SELECT * FROM {engine.database}.main.{quote(topic)} WHERE {cond}",
                )
        with engine.reading_files():
            try:
                rel = self._cursor.sql(query)
                return rel.df() if rel is not None else pd.DataFrame()
            except duckdb.Error as exc:
                raise engine.explain(exc) from None

    def __repr__(self) -> str:
        what = (
            f"offset={self.offset!r}"
            if self.offset is not None
            else f"timestamp={datetime.fromtimestamp(self.timestamp_ms / 1000).isoformat()}"
        )
        return f"<as_of {what}>"
