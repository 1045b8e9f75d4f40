"""The Parquet tier of one partition: its files, reads from them, and conversion jobs.

Kafka's tiered storage splits this role between RemoteLogManager (copy sealed
segments to the tier, serve reads of offsets only the tier still holds) and the
remote segment metadata; here the tier is local Parquet files
(`workbench.storage.parquet_tier` is the file format, one `ParquetSegment` per
file). `ParquetLog` keeps the files of one partition sorted by base offset:

* reads of offsets below the first raw segment, re-encoded as uncompressed
  batches from the rows (`read`), and the ListOffsets timestamp lookup;
* truncation (replication) and deletion (retention) of files;
* conversion: `ConversionJob` describes a sealed raw segment to convert as it
  was when the job was made; the file written for it is adopted with
  `install`, or discarded when the log changed meanwhile (the façade checks).

Not thread-safe on its own: the façade (`PartitionLog`) calls it under its lock,
except `write_for` (decode/encode), which runs outside it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench._lazy import lazy_module
from workbench.protocol.control_records import gap_batch
from workbench.protocol.records import HEADER_SIZE, build_batches, iter_batch_headers
from workbench.storage.parquet_tier import ParquetSegment, TableCache, truncate_segment, write_segment
from workbench.storage.segment import LogSegment

np = lazy_module("numpy")
pc = lazy_module("pyarrow.compute")

#: Estimated encoding overhead per record when sizing fetches served from Parquet.
RECORD_OVERHEAD_ESTIMATE = 24


@dataclass(frozen=True, slots=True)
class ConversionJob:
    """A sealed segment to turn into Parquet, as it was when the job was made."""

    segment: LogSegment
    size: int
    next_offset: int
    generation: int


class ParquetLog:
    """The Parquet files of one partition, oldest first, and the last one read (cached)."""

    def __init__(self, directory: Path, segments: list[ParquetSegment], *, topic: str = "", partition: int = 0) -> None:
        self.directory = directory
        self.segments = sorted(segments, key=lambda p: p.base_offset)
        self.topic = topic
        self.partition = partition
        self._cache = TableCache()

    def files(self) -> list[Path]:
        return [p.path for p in self.segments]

    def base_offsets(self) -> set[int]:
        return {p.base_offset for p in self.segments}

    # -- reads ---------------------------------------------------------------------------

    def read(
        self,
        offset: int,
        max_bytes: int,
        upper: int,
        raw_start: int,
        *,
        fill_gaps: bool = False,
        epoch_at: Callable[[int], int] | None = None,
    ) -> bytes:
        """Batches re-encoded from the first file holding a record at/after ``offset``.

        Only files below ``raw_start`` (offsets a raw segment holds are read raw)
        and below ``upper`` are considered; ``b""`` when none has such a record.
        Raises an ArrowException when a page fails its checksum.

        ``fill_gaps`` (a follower's fetch): offsets inside a file's span that hold no row
        (transaction markers and aborted records, never written as rows) come back as
        `gap_batch` control batches, so the batches are contiguous from ``offset`` (or from
        the batch holding it) and a follower of a non-compacted topic can copy them. A
        range no file spans (a quarantined file) is never filled: the follower refuses it
        as before. ``epoch_at(offset)`` gives a filler its partition leader epoch.
        """
        i = bisect.bisect_right([p.next_offset for p in self.segments], offset)
        for p in self.segments[i:]:
            if p.base_offset >= raw_start or p.base_offset >= upper:
                break
            start = max(offset, p.base_offset)
            data = self._read_file(p, start, max_bytes, upper)
            if fill_gaps and (data or start == offset):
                data = _fill_gaps(data, start, min(p.next_offset, upper, raw_start), epoch_at)
            if data:
                return data
        return b""

    def _read_file(self, p: ParquetSegment, offset: int, max_bytes: int, upper: int) -> bytes:
        table, offsets, bbo = self._cache.get(p)
        n = len(offsets)
        i = int(np.searchsorted(offsets, offset, "left"))
        if i >= n:
            return b""
        start = int(np.searchsorted(bbo, bbo[i], "left"))
        stop = int(np.searchsorted(offsets, upper, "left"))
        if start < stop < n and bbo[stop] == bbo[stop - 1]:  # the last batch must end below the bound
            stop = int(np.searchsorted(bbo, bbo[stop - 1], "left"))
        if stop <= start:
            return b""
        first_end = int(np.searchsorted(bbo, bbo[start], "right"))
        # Encode only about as many rows as max_bytes can hold, cut at a batch boundary.
        window = min(stop, max(first_end, start + max_bytes // RECORD_OVERHEAD_ESTIMATE + 1))
        part = table.slice(start, window - start)
        sizes = (
            pc.fill_null(pc.binary_length(part.column("key")), 0).to_numpy()
            + pc.fill_null(pc.binary_length(part.column("value")), 0).to_numpy()
            + RECORD_OVERHEAD_ESTIMATE
        )
        end = start + int(np.searchsorted(np.cumsum(sizes), max_bytes - HEADER_SIZE, "right"))
        end = min(window, end)
        if end < n and end > start and bbo[end] == bbo[end - 1]:
            end = int(np.searchsorted(bbo, bbo[end - 1], "left"))
        end = max(end, first_end)  # KIP-74: at least one whole batch
        data = build_batches(table.slice(start, end - start))
        if len(data) > max_bytes:  # the estimate was low: trim to whole batches (keep one)
            cut = 0
            for h in iter_batch_headers(data):
                if cut and h.end > max_bytes:
                    break
                cut = h.end
            data = data[:cut]
        return data

    def offset_for_timestamp(
        self, p: ParquetSegment, timestamp_ms: int, lso: int, upper: int
    ) -> tuple[int, int] | None:
        """(offset, timestamp) of the first row of ``p`` in [lso, upper) with timestamp >= ``timestamp_ms``."""
        table, offsets, _ = self._cache.get(p)
        ts = table.column("timestamp").cast("int64").to_numpy()
        hits = np.flatnonzero((ts >= timestamp_ms) & (offsets >= lso) & (offsets < upper))
        if not len(hits):
            return None
        return int(offsets[hits[0]]), int(ts[hits[0]])

    def max_timestamp(self, p: ParquetSegment, lso: int, upper: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the row of ``p`` in [lso, upper) with the largest timestamp (the
        first on ties), KIP-734."""
        table, offsets, _ = self._cache.get(p)
        ts = table.column("timestamp").cast("int64").to_numpy()
        rows = np.flatnonzero((offsets >= lso) & (offsets < upper))
        if not len(rows):
            return None
        i = rows[int(np.argmax(ts[rows]))]
        return int(offsets[i]), int(ts[i])

    def batch_boundary_at_or_below(self, offset: int) -> int | None:
        """``offset``, or the base offset of the batch holding it; None when no file holds it."""
        for p in reversed(self.segments):
            if p.base_offset <= offset < p.next_offset:
                _table, offsets, bbo = self._cache.get(p)
                i = int(np.searchsorted(offsets, offset, "left"))
                if i < len(offsets) and int(bbo[i]) < offset:
                    return int(bbo[i])
                return offset
        return None

    # -- truncation and deletion -----------------------------------------------------------

    def truncate_to(self, cut: int, raw_bases: set[int]) -> None:
        """Drop every record at/after ``cut`` (a batch boundary).

        Files starting at/after it are deleted; one straddling it is deleted when
        a raw copy exists (``raw_bases``: it is converted again once sealed and
        below the HW), else rewritten to the batches below it. Newest first, so
        that a crash part way leaves the files of a prefix of the offsets, never a
        hole between a rewritten file and a later one still present.
        """
        for p in reversed([p for p in self.segments if p.next_offset > cut]):
            self.segments.remove(p)
            self._cache.invalidate(p.path)
            if p.base_offset >= cut or p.base_offset in raw_bases:
                p.path.unlink(missing_ok=True)
            else:
                pseg = truncate_segment(p, cut, topic=self.topic, partition=self.partition)
                bisect.insort(self.segments, pseg, key=lambda x: x.base_offset)

    def delete_all(self) -> None:
        for p in self.segments:
            p.path.unlink(missing_ok=True)
        self.segments = []
        self._cache.invalidate()

    def delete_segment(self, p: ParquetSegment) -> None:
        self.forget_segment(p)
        p.path.unlink(missing_ok=True)

    def forget_segment(self, p: ParquetSegment) -> None:
        """Drop ``p`` from the tier, leaving its file (the caller unlinks it after a grace period)."""
        self.segments.remove(p)
        self._cache.invalidate(p.path)

    def invalidate_cache(self) -> None:
        self._cache.invalidate()

    # -- conversion -------------------------------------------------------------------------

    def pending(self, sealed: Sequence[LogSegment], hw: int, generation: int) -> list[ConversionJob]:
        """Jobs for the ``sealed`` raw segments wholly below ``hw`` without a file yet, oldest first."""
        have = self.base_offsets()
        return [
            ConversionJob(s, s.size, s.next_offset, generation)
            for s in sealed
            if s.base_offset not in have and s.next_offset <= hw and s.size
        ]

    def conversion_request(self, job: ConversionJob) -> dict[str, Any]:
        """``job`` as the converter process's request (`workbench.storage.converter`)."""
        return {
            "segment": str(job.segment.log_path),
            "size": job.size,
            "directory": str(self.directory),
            "base_offset": job.segment.base_offset,
            "next_offset": job.next_offset,
            "topic": self.topic,
            "partition": self.partition,
        }

    def write_for(
        self,
        job: ConversionJob,
        data: bytes,
        *,
        aborted: list[tuple[int, int, int]] | None = None,
        name: str | None = None,
    ) -> ParquetSegment:
        """Write the file for ``job`` from the segment's bytes ``data`` (in this process), without
        the records of ``aborted`` transactions ``(producer id, first, last offset)``, as ``name``."""
        return write_segment(
            self.directory,
            job.segment.base_offset,
            job.next_offset,
            data,
            topic=self.topic,
            partition=self.partition,
            aborted=aborted,
            name=name,
        )

    def install(self, pseg: ParquetSegment) -> bool:
        """Adopt ``pseg`` unless a file with its base offset is already installed."""
        if any(p.base_offset == pseg.base_offset for p in self.segments):
            return False
        bisect.insort(self.segments, pseg, key=lambda p: p.base_offset)
        return True


def _fill_gaps(data: bytes, start: int, span_end: int, epoch_at: Callable[[int], int] | None) -> bytes:
    """``data`` (batches re-encoded from one file) with a `gap_batch` before each batch that
    starts after where the previous one (or ``start``) ended; with no batch at all, one filler
    for ``[start, span_end)`` (the file's span, no further)."""
    out = bytearray()
    expected = start
    for h in iter_batch_headers(data):
        if h.base_offset > expected:
            out += _filler(expected, h.base_offset, h.base_timestamp, epoch_at)
        out += data[h.position : h.end]
        expected = max(expected, h.next_offset)
    if not data and span_end > start:
        out += _filler(start, span_end, 0, epoch_at)
    return bytes(out)


def _filler(base: int, end: int, timestamp_ms: int, epoch_at: Callable[[int], int] | None) -> bytes:
    return gap_batch(base, end, leader_epoch=epoch_at(base) if epoch_at else -1, timestamp_ms=timestamp_ms)
