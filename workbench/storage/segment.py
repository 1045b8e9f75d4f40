"""One log segment: a ``.log`` file of record batches plus its sparse indexes.

Mirrors Kafka's LogSegment / OffsetIndex / TimeIndex. File formats match
Kafka's: ``<base_offset:020d>.index`` holds 8-byte entries (4-byte offset
relative to the segment base, 4-byte file position) every
``index_interval_bytes``; ``.timeindex`` holds 12-byte entries (8-byte
timestamp, 4-byte relative offset). Entries are kept in memory and written out
when the segment is sealed or closed; an active segment's indexes are always
rebuilt by the recovery scan, so they never need to be written per append.

Index semantics (as Kafka): an offset-index entry maps the *last* offset of a
batch to that batch's position; a time-index entry maps the largest timestamp
seen so far to the last offset of the batch where it was recorded.
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.records import (
    HEADER,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MIN_BATCH_LENGTH,
    BatchHeader,
    batch_crc_ok,
    decode_records,
    iter_batch_headers,
)

log = logging.getLogger(__name__)

_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")
#: Recovery and conversion read segment files in chunks of this size.
SCAN_CHUNK_BYTES = 8 * 1024 * 1024
#: Relative offsets are int32 in the index formats; roll before overflowing.
MAX_RELATIVE_OFFSET = 0x7FFFFFFF


def segment_name(base_offset: int, suffix: str) -> str:
    return f"{base_offset:020d}{suffix}"


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class OffsetIndex:
    """Sparse map from offset to file position; in memory, Kafka's file format on disk."""

    def __init__(self, path: Path, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.offsets: list[int] = []
        self.positions: list[int] = []

    def append(self, offset: int, position: int) -> None:
        self.offsets.append(offset)
        self.positions.append(position)

    def lookup(self, offset: int) -> int:
        """Position of the last indexed batch whose last offset is <= ``offset`` (0 if none)."""
        i = bisect.bisect_right(self.offsets, offset)
        return self.positions[i - 1] if i else 0

    def truncate_from_position(self, position: int) -> None:
        i = bisect.bisect_left(self.positions, position)
        del self.offsets[i:], self.positions[i:]

    def clear(self) -> None:
        self.offsets.clear()
        self.positions.clear()

    def write(self) -> None:
        base = self.base_offset
        data = b"".join(_OFFSET_ENTRY.pack(o - base, p) for o, p in zip(self.offsets, self.positions, strict=False))
        _write_atomically(self.path, data)

    def load(self, log_size: int) -> bool:
        """Read the file; False (and empty) when missing or inconsistent."""
        self.clear()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return False
        if len(data) % _OFFSET_ENTRY.size:
            return False
        last_off = last_pos = -1
        for rel, pos in _OFFSET_ENTRY.iter_unpack(data):
            if rel < 0 or rel <= last_off - self.base_offset or pos <= last_pos or pos >= log_size:
                self.clear()
                return False
            last_off, last_pos = self.base_offset + rel, pos
            self.append(last_off, pos)
        return True


class TimeIndex:
    """Sparse map from max-timestamp-so-far to offset (Kafka's TimeIndex)."""

    def __init__(self, path: Path, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.timestamps: list[int] = []
        self.offsets: list[int] = []

    def maybe_append(self, timestamp: int, offset: int) -> None:
        if not self.timestamps or timestamp > self.timestamps[-1]:
            self.timestamps.append(timestamp)
            self.offsets.append(offset)

    def lookup(self, timestamp: int) -> int:
        """An offset at or before the first record with time >= ``timestamp`` (base offset if unknown).

        An entry (T, o) says every record up to offset o has time <= T; the last
        entry with T < timestamp therefore bounds the answer from below.
        """
        i = bisect.bisect_left(self.timestamps, timestamp)
        return self.offsets[i - 1] if i else self.base_offset

    def truncate_from_offset(self, offset: int) -> None:
        keep = [(t, o) for t, o in zip(self.timestamps, self.offsets, strict=False) if o < offset]
        self.timestamps = [t for t, _ in keep]
        self.offsets = [o for _, o in keep]

    def clear(self) -> None:
        self.timestamps.clear()
        self.offsets.clear()

    @property
    def last_timestamp(self) -> int:
        return self.timestamps[-1] if self.timestamps else -1

    def write(self) -> None:
        base = self.base_offset
        data = b"".join(_TIME_ENTRY.pack(t, o - base) for t, o in zip(self.timestamps, self.offsets, strict=False))
        _write_atomically(self.path, data)

    def load(self) -> bool:
        self.clear()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return False
        if len(data) % _TIME_ENTRY.size:
            return False
        for ts, rel in _TIME_ENTRY.iter_unpack(data):
            if rel < 0 or (
                self.timestamps and (ts <= self.timestamps[-1] or rel + self.base_offset < self.offsets[-1])
            ):
                self.clear()
                return False
            self.timestamps.append(ts)
            self.offsets.append(self.base_offset + rel)
        return True


#: Recently appended batches whose positions a segment remembers (see `LogSegment.find_batch`).
RECENT_BATCHES = 256


class LogSegment:
    """A ``.log`` file holding whole batches for offsets [base_offset, next_offset)."""

    def __init__(self, directory: Path, base_offset: int, index_interval_bytes: int, *, lazy: bool = False) -> None:
        """Open (or create) the segment's ``.log`` file.

        ``lazy``: the caller knows the file does not exist and that recovery would start an
        empty segment at the same base offset without it (a new partition, or a log whose raw
        segments all went to the Parquet tier): the file is then created by the first write,
        so a partition nobody writes to costs no file (10,000 new partitions, issue 19).
        """
        self.directory = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        self.log_path = directory / segment_name(base_offset, ".log")
        self.offset_index = OffsetIndex(directory / segment_name(base_offset, ".index"), base_offset)
        self.time_index = TimeIndex(directory / segment_name(base_offset, ".timeindex"), base_offset)
        #: The file is not created yet (see ``lazy``); `fd` creates it.
        self._lazy = lazy
        self._fd = -1
        self.size = 0
        if not lazy:
            self._fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            self.size = os.fstat(self._fd).st_size
        self.next_offset = base_offset
        # (last offset, position) of recently appended batches: followers and consumers fetch near
        # the log end, and this finds their batch without scanning headers from the index entry.
        self._recent_last: list[int] = []
        self._recent_pos: list[int] = []
        self.max_timestamp = -1
        self.created_ms: int | None = None  # wall time of the first append (segment.ms rolls)
        self.dirty = False  # written since the last fsync
        self._bytes_since_index = 0

    def __repr__(self) -> str:
        return f"LogSegment({self.base_offset}..{self.next_offset}, {self.size} bytes)"

    @property
    def fd(self) -> int:
        """The ``.log`` file's descriptor, the file created now if it was lazy; -1 once closed."""
        if self._lazy:
            self._fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            self._lazy = False
        return self._fd

    @property
    def on_disk(self) -> bool:
        """Whether the ``.log`` file exists (False for a lazy segment not written yet)."""
        return not self._lazy

    # -- writing -----------------------------------------------------------------

    def append(
        self,
        data: bytes | bytearray | memoryview,
        headers: list[BatchHeader],
        base_offsets: list[int],
        now_ms: int,
    ) -> None:
        """Append whole batches with one write.

        ``headers`` are positioned relative to ``data``; ``base_offsets`` are the
        offsets assigned to them (the headers may predate the assignment).

        On an OSError nothing stays visible: the file is truncated back and the error re-raised.
        """
        start = self.size
        view = memoryview(data)
        written = 0
        try:
            fd = self.fd  # creates a lazy segment's file
            while written < len(view):
                written += os.write(fd, view[written:])
        except OSError:
            if self._fd < 0:  # the file could not be created: nothing was written
                raise
            try:
                os.ftruncate(self._fd, start)
            except OSError:  # pragma: no cover - nothing more we can do
                log.exception("could not truncate %s back to %d after a failed write", self.log_path, start)
            raise
        self.size = start + written
        self.dirty = True
        if self.created_ms is None:
            self.created_ms = now_ms
        for h, base in zip(headers, base_offsets, strict=False):
            self._index_batch(h, start + h.position, base)

    def _index_batch(self, h: BatchHeader, position: int, base_offset: int) -> None:
        last_offset = base_offset + h.last_offset_delta
        self.max_timestamp = max(self.max_timestamp, h.max_timestamp)
        if not self.offset_index.offsets or self._bytes_since_index >= self.index_interval_bytes:
            self.offset_index.append(last_offset, position)
            self.time_index.maybe_append(self.max_timestamp, last_offset)
            self._bytes_since_index = 0
        self._bytes_since_index += h.batch_length + LOG_OVERHEAD
        self.next_offset = last_offset + 1
        recent_last = self._recent_last
        recent_last.append(last_offset)
        self._recent_pos.append(position)
        if len(recent_last) > 2 * RECENT_BATCHES:
            del recent_last[:RECENT_BATCHES], self._recent_pos[:RECENT_BATCHES]

    # -- reading -----------------------------------------------------------------

    def scan(self, position: int = 0, end: int | None = None, *, verify_crc: bool = False) -> Iterator[BatchHeader]:
        """Yield headers (absolute positions) of the whole, valid batches from ``position``.

        Stops at the first torn, garbled or (with ``verify_crc``) corrupt batch.
        """
        end = self.size if end is None else end
        chunk = SCAN_CHUNK_BYTES
        while position < end:
            data = os.pread(self.fd, min(chunk, end - position), position)
            last_end = 0
            for h in iter_batch_headers(data):
                if verify_crc and not batch_crc_ok(data, h):
                    return
                yield h._replace(position=position + h.position)
                last_end = h.end
            if last_end == 0:
                # Either one batch larger than the chunk, or garbage.
                if len(data) < HEADER_SIZE:
                    return
                length = struct.unpack_from(">i", data, 8)[0]
                need = LOG_OVERHEAD + length
                if data[16] != 2 or length < MIN_BATCH_LENGTH or need <= len(data) or position + need > end:
                    return
                chunk = need
                continue
            position += last_end

    def read_header(self, position: int) -> BatchHeader | None:
        data = os.pread(self.fd, HEADER_SIZE, position)
        if len(data) < HEADER_SIZE:
            return None
        return BatchHeader._make((*HEADER.unpack_from(data), position))

    def find_batch(self, offset: int, size: int | None = None) -> BatchHeader | None:
        """Header of the batch holding ``offset`` (or the first one after it), via the index."""
        size = self.size if size is None else size
        recent_last = self._recent_last
        if recent_last and offset > recent_last[0]:  # a recent batch: no header scan
            i = bisect.bisect_left(recent_last, offset)
            if i < len(recent_last):
                h = self.read_header(self._recent_pos[i])
                if h is not None and h.end <= size and h.last_offset == recent_last[i]:
                    return h
        position = self.offset_index.lookup(offset)
        while position < size:
            h = self.read_header(position)
            if h is None or h.end > size:
                return None
            if h.last_offset >= offset:
                return h
            position = h.end
        return None

    def read(self, offset: int, max_bytes: int, upper_bound: int, *, size: int | None = None) -> memoryview | None:
        """Whole batches from the one holding ``offset``, all below ``upper_bound``.

        At least one batch when one qualifies, even beyond ``max_bytes`` (KIP-74);
        None when this segment has no batch at or after ``offset`` below the bound.
        """
        size = self.size if size is None else size
        first = self.find_batch(offset, size)
        if first is None or first.last_offset >= upper_bound:
            return None
        want = min(max(max_bytes, first.size), size - first.position)
        data = os.pread(self.fd, want, first.position)
        end = 0
        for h in iter_batch_headers(data):
            if h.last_offset >= upper_bound or (end and h.end > max_bytes):
                break
            if not batch_crc_ok(data, h):
                # Damaged on disk since the broker started: never serve it. What precedes it goes out.
                log.error(
                    "%s: batch at byte %d (offsets %d..%d) fails its CRC; not served",
                    self.log_path,
                    first.position + h.position,
                    h.base_offset,
                    h.last_offset,
                )
                if not end:
                    raise KafkaProtocolError(
                        ErrorCode.KAFKA_STORAGE_ERROR,
                        f"{self.log_path}: batch at offset {h.base_offset} fails its CRC check",
                    )
                break
            end = h.end
        return memoryview(data)[:end] if end else None

    def read_all(self) -> bytes:
        return os.pread(self.fd, self.size, 0) if self.size else b""

    def find_offset_by_timestamp(self, timestamp: int, start_offset: int, upper_bound: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at/after ``start_offset`` with time >= ``timestamp``."""
        from_offset = max(self.time_index.lookup(timestamp), start_offset)
        position = self.offset_index.lookup(from_offset)
        for h in self.scan(position):
            if h.next_offset <= start_offset:
                continue
            if h.base_offset >= upper_bound:
                return None
            if h.max_timestamp < timestamp or h.is_control:
                continue
            cols = decode_records(os.pread(self.fd, h.size, h.position))
            for off, ts in zip(cols["offset"], cols["timestamp"], strict=False):
                if off >= upper_bound:
                    return None
                if off >= start_offset and ts >= timestamp:
                    return off, ts
        return None

    def find_max_timestamp(self, start_offset: int, upper_bound: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the record in [start_offset, upper_bound) with the largest
        timestamp, the first such record on ties (KIP-734); control batches are skipped. Only
        batches whose header's maxTimestamp beats the best so far are decoded."""
        best: tuple[int, int] | None = None
        for h in self.scan(self.offset_index.lookup(start_offset)):
            if h.base_offset >= upper_bound:
                break
            if h.next_offset <= start_offset or h.is_control or (best is not None and h.max_timestamp <= best[1]):
                continue
            cols = decode_records(os.pread(self.fd, h.size, h.position))
            for off, ts in zip(cols["offset"], cols["timestamp"], strict=False):
                if start_offset <= off < upper_bound and (best is None or ts > best[1]):
                    best = (off, ts)
        return best

    # -- recovery and lifecycle --------------------------------------------------

    def recover(
        self,
        *,
        verify_crc: bool,
        expected_base: int | None = None,
        on_batch: Callable[[BatchHeader], None] | None = None,
        quarantine: bool = False,
    ) -> int:
        """Rebuild indexes and ``next_offset`` by scanning the file; cut a torn/corrupt tail.

        ``on_batch`` sees the header of every batch kept (leader epoch cache rebuild).
        Returns the number of bytes truncated (0 when the segment was whole).
        """
        self.offset_index.clear()
        self.time_index.clear()
        self._recent_last.clear()
        self._recent_pos.clear()
        self.max_timestamp = -1
        self.next_offset = self.base_offset
        self._bytes_since_index = 0
        valid_end = 0
        expected = self.base_offset if expected_base is None else expected_base
        for h in self.scan(0, verify_crc=verify_crc):
            # Batches of a segment are contiguous; baseOffset lies outside the CRC, so a flipped
            # byte there is only seen as a jump.
            if h.base_offset != expected or h.last_offset_delta < 0:
                break
            self._index_batch(h, h.position, h.base_offset)
            expected = h.next_offset
            valid_end = h.end
            if on_batch is not None:
                on_batch(h)
        lost = self.size - valid_end
        if lost:
            bad = self.read_header(valid_end)
            what = (
                f"a batch claiming offsets {bad.base_offset}..{bad.last_offset}"
                if bad is not None and bad.magic == 2
                else "an unreadable batch"
            )
            log.warning(
                "%s: torn or corrupt tail at byte %d (%s); truncating %d bytes, offsets >= %d lost",
                self.log_path,
                valid_end,
                what,
                lost,
                self.next_offset,
            )
            if quarantine:  # a sealed segment is never torn by a crash: keep the bad bytes for inspection
                aside = self.log_path.with_name(f"{self.log_path.name}.corrupt-{valid_end}")
                with open(aside, "wb") as f:
                    f.write(os.pread(self.fd, lost, valid_end))
            os.ftruncate(self.fd, valid_end)
            self.size = valid_end
            self.dirty = True
        return lost

    def load_sealed(self) -> int:
        """Open a sealed segment cheaply: trust its index files if they agree with the data.

        Walks the batches after the last index entry only; falls back to a full
        scan (and truncation of a torn tail) when anything disagrees.
        """
        if (
            self.offset_index.load(self.size)
            and self.time_index.load()
            and self.offset_index.offsets
            and self._index_entries_match()
        ):
            position = self.offset_index.positions[-1]
            h = self.read_header(position)
            if h is not None and h.last_offset == self.offset_index.offsets[-1]:
                self.max_timestamp = self.time_index.last_timestamp
                end = position
                for h in self.scan(position):
                    self.max_timestamp = max(self.max_timestamp, h.max_timestamp)
                    self.next_offset = h.next_offset
                    end = h.end
                if end == self.size:
                    return 0
        lost = self.recover(verify_crc=False, quarantine=True)
        self.write_indexes()
        return lost

    def _index_entries_match(self) -> bool:
        """Every offset-index entry points at a batch header ending at that offset, and every
        time-index entry names an indexed offset (a flipped byte that keeps the file sorted
        otherwise sends reads into the middle of a batch)."""
        for offset, position in zip(self.offset_index.offsets, self.offset_index.positions, strict=False):
            h = self.read_header(position)
            if h is None or h.magic != 2 or h.last_offset != offset or h.end > self.size:
                log.warning(
                    "%s: index entry %d -> byte %d does not match the log; rebuilding the indexes",
                    self.offset_index.path,
                    offset,
                    position,
                )
                return False
        indexed = set(self.offset_index.offsets)
        if any(o not in indexed for o in self.time_index.offsets):
            log.warning(
                "%s: time index names offsets the offset index does not; rebuilding the indexes",
                self.time_index.path,
            )
            return False
        return True

    def verify_crcs(self) -> int:
        """CRC-check every batch of a sealed segment; cut it at the first bad one.

        The bytes from the bad batch on are kept beside the segment as
        ``<base>.log.corrupt-<position>`` for inspection, and the log names the offsets lost.
        Returns the bytes cut (0 when every batch is whole and intact).
        """
        valid_end = 0
        expected = self.base_offset
        for h in self.scan(0, verify_crc=True):
            if h.base_offset != expected or h.last_offset_delta < 0:
                break
            expected = h.next_offset
            valid_end = h.end
        if valid_end == self.size and expected == self.next_offset:
            return 0
        first_lost = expected
        last_lost = self.next_offset - 1
        aside = self.log_path.with_name(f"{self.log_path.name}.corrupt-{valid_end}")
        with open(aside, "wb") as f:
            f.write(os.pread(self.fd, self.size - valid_end, valid_end))
        lost = self.size - valid_end
        log.error(
            "%s: corrupt batch (CRC mismatch or garbled header) at byte %d; offsets %d..%d lost, "
            "%d bytes quarantined in %s",
            self.log_path,
            valid_end,
            first_lost,
            last_lost,
            lost,
            aside.name,
        )
        os.ftruncate(self.fd, valid_end)
        self.size = valid_end
        self.dirty = True
        self.recover(verify_crc=False)
        self.write_indexes()
        return lost

    def truncate_to(self, offset: int) -> int:
        """Remove the batch holding ``offset`` (or the first one after it) and every later one.

        As Kafka's LogSegment.truncateTo: when ``offset`` falls inside a batch,
        that whole batch goes, so the segment then ends at the batch's base
        offset. Indexes are rebuilt. Returns the bytes removed.
        """
        self._recent_last.clear()
        self._recent_pos.clear()
        h = self.find_batch(offset)
        if h is None:
            return 0
        removed = self.size - h.position
        os.ftruncate(self.fd, h.position)
        self.size = h.position
        self.dirty = True
        self.recover(verify_crc=False)
        return removed

    def write_indexes(self) -> None:
        self.offset_index.write()
        self.time_index.write()

    def flush(self) -> None:
        if self.dirty:
            self.dirty = False
            os.fsync(self.fd)

    def close(self) -> None:
        self._lazy = False  # a closed segment never creates its file
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def delete(self) -> None:
        self.close()
        for path in (self.log_path, self.offset_index.path, self.time_index.path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def storage_error(exc: OSError, what: str) -> KafkaProtocolError:
    """The Kafka error a disk failure surfaces as (KAFKA_STORAGE_ERROR)."""
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return KafkaProtocolError(ErrorCode.KAFKA_STORAGE_ERROR, f"{what}: {name} {exc.strerror or exc}")
