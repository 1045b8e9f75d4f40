"""A logical segment: one offset range held by a raw segment, a Parquet file, or both.

A sealed raw segment and the Parquet file converted from it share a base
offset; while both exist the segment is "hot" (raw bytes serve fetches fast,
Parquet serves SQL). Retention, size accounting, gap reporting and timestamp
lookups work on these ranges, whichever tier holds them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from workbench.storage.parquet_tier import ParquetSegment
from workbench.storage.segment import LogSegment


@dataclass(slots=True)
class LogicalSegment:
    """Offsets [base_offset, next_offset); ``size`` is the raw size when a raw copy exists."""

    base_offset: int
    next_offset: int
    max_timestamp: int
    size: int
    raw: LogSegment | None
    parquet: ParquetSegment | None


def logical_segments(raw: Iterable[LogSegment], parquet: Iterable[ParquetSegment]) -> list[LogicalSegment]:
    """The union of both tiers by base offset, oldest first (the raw copy wins for size and end)."""
    by_base: dict[int, LogicalSegment] = {}
    for p in parquet:
        by_base[p.base_offset] = LogicalSegment(p.base_offset, p.next_offset, p.max_timestamp, p.size, None, p)
    for s in raw:
        entry = by_base.get(s.base_offset)
        if entry is None:
            by_base[s.base_offset] = LogicalSegment(s.base_offset, s.next_offset, s.max_timestamp, s.size, s, None)
        else:
            entry.raw, entry.size, entry.next_offset = s, s.size, s.next_offset
            entry.max_timestamp = max(entry.max_timestamp, s.max_timestamp)
    return sorted(by_base.values(), key=lambda x: x.base_offset)
