"""What one partition knows of transactions: open ones, the last stable offset, aborted ones.

Kafka keeps this in `ProducerStateManager` (each producer's ``currentTxnFirstOffset``,
the "unreplicated" completed transactions) and in a `TransactionIndex` per segment
(``.txnindex``: the aborted transactions). Here one `TransactionIndex` per partition:

* ``ongoing``: producer id -> offset of its open transaction's first batch. A
  transactional batch from a producer with no open transaction opens one; its
  control batch (commit or abort marker) closes it.
* ``unreplicated``: transactions whose marker is written but may still be above the
  high watermark; they hold the last stable offset back until the HW passes the
  marker (a new leader without the marker would see the transaction open again).
* the **last stable offset** (LSO): ``min(first offset of any unstable transaction,
  HW)``. A ``read_committed`` fetch never returns anything at or above it.
* ``aborted``: ``(producer id, first offset, last offset = the abort marker's,
  LSO when written)`` for every aborted transaction, sorted by last offset, kept in
  ``aborted-transactions.txnindex`` in Kafka's ``.txnindex`` entry layout (version
  int16 0, producerId int64, firstOffset int64, lastOffset int64,
  lastStableOffset int64). A read_committed Fetch lists the ones overlapping
  what it returns, so the client drops their records (KIP-98).

Open and unreplicated transactions go into the producer-state snapshot
(`ProducerStateManager.write_snapshot`); the aborted list is its own file,
appended as markers are written, rewritten on truncation. Entries are keyed by
their marker offset, so replaying a marker twice (recovery after a snapshot)
adds nothing.

Not covered: a transaction whose first batches exist only in the Parquet tier
when the producer state is rebuilt from scratch (no snapshot) is not seen as
open; Kafka has the same blind spot for deleted segments.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from workbench.protocol.control_records import ABORT, control_record

log = logging.getLogger(__name__)

INDEX_NAME = "aborted-transactions.txnindex"
_ENTRY = struct.Struct(">hqqqq")  # Kafka's AbortedTxn: version, pid, first, last, lso (34 bytes)


def marker_type_in(segments: list, offset: int) -> tuple[int, int]:
    """(COMMIT or ABORT, coordinator epoch): the marker at ``offset`` in one of ``segments`` (raw `LogSegment`s)."""
    for seg in reversed(segments):
        if seg.base_offset <= offset < seg.next_offset:
            data = seg.read(offset, 256, offset + 1)
            if data is not None:
                return control_record(data)
            break
    raise ValueError(f"no batch at offset {offset}")


@dataclass(slots=True, frozen=True)
class AbortedTxn:
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


def _last_offset(a: AbortedTxn) -> int:
    return a.last_offset


class TransactionIndex:
    """Open, unreplicated and aborted transactions of one partition."""

    def __init__(self, directory: Path, *, load: bool = True) -> None:
        self.path = Path(directory) / INDEX_NAME
        self.ongoing: dict[int, int] = {}
        #: (producer id, first offset, marker offset) of completed transactions the HW may not cover yet
        self.unreplicated: list[tuple[int, int, int]] = []
        self.aborted: list[AbortedTxn] = []
        if load:
            self._load_index()

    # -- the log's events ----------------------------------------------------------------

    def on_data(self, producer_id: int, base_offset: int) -> None:
        """A transactional (non-control) batch was written at ``base_offset``."""
        if producer_id not in self.ongoing:
            self.ongoing[producer_id] = base_offset

    def on_marker(self, producer_id: int, marker_type: int, offset: int) -> None:
        """The control batch of ``producer_id`` was written at ``offset``."""
        first = self.ongoing.pop(producer_id, None)
        if first is None:
            return  # a marker for a partition the transaction never wrote (or a replay): nothing to close
        self.unreplicated.append((producer_id, first, offset))
        if marker_type == ABORT:
            lso = min([first, *self.ongoing.values()])
            self._add_aborted(AbortedTxn(producer_id, first, offset, lso))

    def _add_aborted(self, entry: AbortedTxn) -> None:
        n = len(self.aborted)
        i = bisect.bisect_left(self.aborted, entry.last_offset, key=_last_offset)
        if i < n and self.aborted[i].last_offset == entry.last_offset:
            return
        self.aborted.insert(i, entry)
        if i == n:
            try:
                with open(self.path, "ab") as f:
                    f.write(self._pack(entry))
            except OSError as exc:  # recovery replays the marker from the log
                log.error("%s: cannot append to the aborted-transaction index: %s", self.path, exc)
        else:
            self._rewrite()

    # -- reads -----------------------------------------------------------------------------

    def first_unstable_offset(self, high_watermark: int) -> int | None:
        """The first offset of a transaction that is open or whose marker is not yet below the HW."""
        if not self.ongoing and not self.unreplicated:
            return None  # every fetch asks (the LSO it answers): the common case costs nothing
        if self.unreplicated:
            self.unreplicated = [u for u in self.unreplicated if u[2] >= high_watermark]
        firsts = [*self.ongoing.values(), *(u[1] for u in self.unreplicated)]
        return min(firsts) if firsts else None

    def last_stable_offset(self, high_watermark: int, log_start_offset: int = 0) -> int:
        first = self.first_unstable_offset(high_watermark)
        lso = high_watermark if first is None else min(first, high_watermark)
        return max(lso, min(log_start_offset, high_watermark))

    def aborted_between(self, fetch_offset: int, upper: int) -> list[AbortedTxn]:
        """Aborted transactions with data in ``[fetch_offset, upper)`` (Kafka's collectAbortedTxns)."""
        i = bisect.bisect_left(self.aborted, fetch_offset, key=_last_offset)  # O(log n) per fetch
        return [a for a in self.aborted[i:] if a.first_offset < upper]

    # -- truncation and snapshots ------------------------------------------------------------

    def truncate_tail(self, offset: int) -> None:
        """The log now ends at ``offset``: forget what starts there or later; reopen what a
        removed marker had closed."""
        self.ongoing = {pid: f for pid, f in self.ongoing.items() if f < offset}
        for pid, first, marker in self.unreplicated:
            if marker >= offset and first < offset:
                self.ongoing.setdefault(pid, first)
        self.unreplicated = [u for u in self.unreplicated if u[2] < offset]
        before = len(self.aborted)
        self.aborted = [a for a in self.aborted if a.last_offset < offset]
        if len(self.aborted) != before:
            self._rewrite()

    def truncate_head(self, log_start_offset: int) -> None:
        """Retention or DeleteRecords moved the log start: aborted entries wholly below it go."""
        before = len(self.aborted)
        self.aborted = [a for a in self.aborted if a.last_offset >= log_start_offset]
        if len(self.aborted) != before:
            self._rewrite()

    def clear(self) -> None:
        self.ongoing.clear()
        self.unreplicated.clear()
        if self.aborted:
            self.aborted = []
            self._rewrite()

    def snapshot(self) -> dict:
        return {
            "ongoing": {str(pid): first for pid, first in self.ongoing.items()},
            "unreplicated": [list(x) for x in self.unreplicated],
        }

    def restore(self, doc: dict | None) -> None:
        self.ongoing.clear()
        self.unreplicated.clear()
        if not doc:
            return
        self.ongoing.update({int(pid): int(first) for pid, first in doc.get("ongoing", {}).items()})
        self.unreplicated.extend((int(p), int(f), int(m)) for p, f, m in doc.get("unreplicated", []))

    # -- the index file ----------------------------------------------------------------------

    @staticmethod
    def _pack(a: AbortedTxn) -> bytes:
        return _ENTRY.pack(0, a.producer_id, a.first_offset, a.last_offset, a.last_stable_offset)

    def _load_index(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("%s: unreadable aborted-transaction index (%s); rebuilding from the log", self.path, exc)
            return
        usable = len(data) - len(data) % _ENTRY.size  # a torn last entry is dropped
        entries: list[AbortedTxn] = []
        for pos in range(0, usable, _ENTRY.size):
            version, pid, first, last, lso = _ENTRY.unpack_from(data, pos)
            if version != 0 or first > last:
                log.error("%s: damaged entry at byte %d; keeping the %d before it", self.path, pos, len(entries))
                break
            entries.append(AbortedTxn(pid, first, last, lso))
        entries.sort(key=lambda a: a.last_offset)
        self.aborted = entries
        if usable != len(data):
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_bytes(b"".join(self._pack(a) for a in self.aborted))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("%s: cannot rewrite the aborted-transaction index: %s", self.path, exc)

    def flush(self) -> None:
        """fsync the index (called with the log's own flush)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
