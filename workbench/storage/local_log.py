"""The raw segments of one partition, oldest first (Kafka's LocalLog).

The last segment is the active one: appends go there, and it rolls (a new
segment starts at the log end) by size, by age (segment.ms) or before a
relative offset would overflow the index format. Sealed segments stay until
retention, DeleteRecords or the Parquet tier (beyond ``hot_segments``) drops
them. Reads are byte slices of whole batches.

What this class does not know: offsets below its first segment (the Parquet
tier's), the high watermark, producer state and leader epochs. The façade
(`workbench.storage.log.PartitionLog`, Kafka's UnifiedLog) combines them.
Not thread-safe on its own: every call is made under the façade's lock.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from workbench.protocol.records import BatchHeader
from workbench.storage.config import LogConfig
from workbench.storage.segment import MAX_RELATIVE_OFFSET, LogSegment

log = logging.getLogger(__name__)


class LocalLog:
    """An ordered, never empty list of raw `LogSegment`s in one directory."""

    def __init__(self, directory: Path, config: LogConfig, segments: list[LogSegment]) -> None:
        self.directory = directory
        self.config = config
        self.segments = segments
        if not self.segments:
            raise ValueError("a LocalLog needs at least one (active) segment")

    # -- offsets -------------------------------------------------------------------------

    @property
    def active_segment(self) -> LogSegment:
        return self.segments[-1]

    @property
    def sealed_segments(self) -> list[LogSegment]:
        return self.segments[:-1]

    @property
    def base_offset(self) -> int:
        """The first offset a raw segment holds (below it, only the Parquet tier may)."""
        return self.segments[0].base_offset

    @property
    def log_end_offset(self) -> int:
        return self.segments[-1].next_offset

    def base_offsets(self) -> set[int]:
        return {s.base_offset for s in self.segments}

    def __contains__(self, segment: object) -> bool:
        return segment in self.segments

    def _new_segment(self, base_offset: int) -> LogSegment:
        return LogSegment(self.directory, base_offset, self.config.index_interval_bytes)

    # -- append and roll --------------------------------------------------------------------

    def should_roll(self, size: int, last_offset: int, now_ms: int) -> bool:
        """Whether appending ``size`` bytes ending at ``last_offset`` needs a new segment first."""
        seg = self.segments[-1]
        return bool(seg.size) and (
            seg.size + size > self.config.segment_bytes
            or (seg.created_ms is not None and now_ms - seg.created_ms >= self.config.segment_ms)
            or last_offset - seg.base_offset > MAX_RELATIVE_OFFSET
        )

    def is_past_segment_ms(self, now_ms: int) -> bool:
        """The active segment holds data and is older than segment.ms (a periodic roll is due)."""
        seg = self.segments[-1]
        return bool(seg.size) and seg.created_ms is not None and now_ms - seg.created_ms >= self.config.segment_ms

    def roll(self) -> LogSegment:
        """Seal the active segment (indexes written) and start a new one at the log end."""
        old = self.segments[-1]
        old.write_indexes()
        new = self._new_segment(old.next_offset)
        self.segments.append(new)
        log.debug("%s: rolled to segment %d", self.directory, new.base_offset)
        return new

    def batches_that_fit(self, seg: LogSegment, headers: Sequence[BatchHeader], i: int) -> int:
        """End (exclusive) of the run of ``headers`` from ``i`` that ``seg`` holds in one write.

        ``headers[i]`` always goes (the caller rolled for it); the next ones while
        they fit in segment.bytes and in the index's relative-offset range.
        """
        room = self.config.segment_bytes - seg.size
        j, size = i + 1, headers[i].size
        while (
            j < len(headers)
            and size + headers[j].size <= room
            and headers[j].last_offset - seg.base_offset <= MAX_RELATIVE_OFFSET
        ):
            size += headers[j].size
            j += 1
        return j

    # -- read ------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, upper: int) -> memoryview | None:
        """Whole batches from the raw segment holding ``offset`` (or the next one), below ``upper``."""
        i = max(bisect.bisect_right([s.base_offset for s in self.segments], offset) - 1, 0)
        for seg in self.segments[i:]:
            if seg.base_offset >= upper:
                break
            data = seg.read(max(offset, seg.base_offset), max_bytes, upper)
            if data is not None:
                return data
        return None

    def batch_boundary_at_or_below(self, offset: int) -> int | None:
        """``offset``, or the base offset of the raw batch holding it; None below the first segment."""
        for seg in reversed(self.segments):
            if seg.base_offset <= offset:
                if offset < seg.next_offset:
                    h = seg.find_batch(offset)
                    if h is not None and h.base_offset < offset:
                        return h.base_offset
                return offset
        return None

    # -- truncation and deletion -------------------------------------------------------------

    def truncate_to(self, cut: int) -> None:
        """Delete segments starting at/after ``cut`` (a batch boundary), cut the one holding it.

        The segment holding ``cut`` becomes the active one (indexes rebuilt and
        written); when none is left, a new empty one starts at ``cut``. The two
        steps are also available apart (`remove_from`, `finish_truncation`) for a
        caller that must change other files between them.
        """
        self.remove_from(cut)
        self.finish_truncation(cut)

    def remove_from(self, cut: int) -> None:
        """First step of a truncation: delete segments at/after ``cut``, cut the one holding it.

        May leave no segment at all: `finish_truncation` must follow under the same lock.
        """
        while self.segments and self.segments[-1].base_offset >= cut:
            self.segments.pop().delete()
        if self.segments and self.segments[-1].next_offset > cut:
            self.segments[-1].truncate_to(cut)

    def finish_truncation(self, cut: int) -> None:
        """Second step: a new empty active segment at ``cut`` if none is left; the active one's indexes written."""
        if not self.segments:
            self.segments.append(self._new_segment(cut))
        self.segments[-1].write_indexes()

    def truncate_fully(self, offset: int) -> None:
        """Delete every segment; restart empty at ``offset``."""
        for seg in self.segments:
            seg.delete()
        self.segments = [self._new_segment(offset)]

    def delete_segment(self, seg: LogSegment) -> None:
        """Remove one sealed segment (retention, DeleteRecords, a cold segment now in Parquet)."""
        self.segments.remove(seg)
        seg.delete()

    # -- durability and lifecycle --------------------------------------------------------------

    def take_dirty_fds(self) -> list[int]:
        """Dup'ed descriptors of the segments written since the last flush (fsync them, then close).

        Dup'ed so the fsync can run outside the façade's lock while a roll or
        retention closes the segment itself.
        """
        fds = []
        for seg in self.segments:
            if seg.dirty:
                seg.dirty = False
                fds.append(os.dup(seg.fd))
        return fds

    def set_config(self, config: LogConfig) -> None:
        self.config = config
        for seg in self.segments:
            seg.index_interval_bytes = config.index_interval_bytes

    def flush(self) -> None:
        """fsync every dirty segment (in the caller's thread)."""
        for seg in self.segments:
            seg.flush()

    def close(self) -> None:
        for seg in self.segments:
            seg.close()
