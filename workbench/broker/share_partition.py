"""One share-partition's state (KIP-932): Kafka's ``SharePartition``, without I/O.

A share group reads a topic-partition as a queue. The share-partition leader (the broker that
leads the topic-partition) tracks, for the records between the share-partition start offset
(SPSO) and the next offset never handed out (``next_offset``), each record's state:

* AVAILABLE: may be handed out (again) by the next ShareFetch;
* ACQUIRED: handed to one member, locked until ``share.record.lock.duration.ms`` passes;
* ACKNOWLEDGED: accepted by the member that held it; done;
* ARCHIVED: rejected, or released (or timed out) after ``share.delivery.count.limit``
  deliveries; done, never delivered again.

Each acquisition increments the record's delivery count. The SPSO advances over the prefix of
ACKNOWLEDGED/ARCHIVED records, which are then forgotten; a record below the SPSO is done.

Kafka keeps in-flight *batches* and splits them per offset when acknowledgements disagree;
this keeps one entry per in-flight offset, which is simpler and fine for the workbench's sizes
(bounded by ``max_in_flight``, Kafka's ``group.share.partition.max.record.locks``, 2000).

All times are milliseconds given by the caller (``now_ms``), so every rule is testable without
clocks; the caller persists `snapshot()` where it needs durability (workbench/broker/share_state.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from workbench.protocol.errors import ErrorCode

__all__ = ["AcknowledgeType", "InFlightRecord", "RecordState", "SharePartition"]

#: Kafka's group.share.partition.max.record.locks default: at most this many records in flight.
MAX_IN_FLIGHT = 2000


class RecordState(IntEnum):
    """Kafka's ``RecordState`` ids (as persisted in ``__share_group_state``)."""

    AVAILABLE = 0
    ACQUIRED = 1
    ACKNOWLEDGED = 2
    ARCHIVED = 4


class AcknowledgeType(IntEnum):
    """The AcknowledgeTypes of ShareFetch/ShareAcknowledge (KIP-932; Renew is KIP-1222)."""

    GAP = 0
    ACCEPT = 1
    RELEASE = 2
    REJECT = 3
    RENEW = 4


@dataclass(slots=True)
class InFlightRecord:
    state: RecordState
    delivery_count: int = 0
    member_id: str | None = None
    lock_expiry_ms: int = 0


class SharePartition:
    """The in-flight records of one (share group, topic, partition)."""

    def __init__(
        self,
        start_offset: int,
        *,
        lock_duration_ms: int = 30_000,
        delivery_count_limit: int = 5,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.start_offset = start_offset  # the SPSO
        self.next_offset = start_offset  # the first offset never acquired (Kafka: endOffset + 1)
        self.lock_duration_ms = lock_duration_ms
        self.delivery_count_limit = delivery_count_limit
        self.max_in_flight = max_in_flight
        self.records: dict[int, InFlightRecord] = {}

    # -- acquisition -----------------------------------------------------------------------

    def acquire(
        self, member_id: str, available_end: int, max_records: int, now_ms: int, *, log_start: int = 0
    ) -> list[tuple[int, int, int]]:
        """Acquire up to ``max_records`` records for ``member_id``, below ``available_end`` (the HW).

        Records released back (AVAILABLE) come first, in offset order, then offsets never handed
        out. Returns ``(first, last, delivery_count)`` ranges as ShareFetch's AcquiredRecords.
        """
        self.expire_locks(now_ms)
        if log_start > self.start_offset:  # records deleted under us (retention, DeleteRecords)
            self._move_start(log_start)
        acquired: list[int] = []
        for offset in sorted(self.records):
            if len(acquired) >= max_records:
                break
            rec = self.records[offset]
            if rec.state == RecordState.AVAILABLE and offset < available_end:
                self._lock(rec, member_id, now_ms)
                acquired.append(offset)
        while (
            len(acquired) < max_records and self.next_offset < available_end and len(self.records) < self.max_in_flight
        ):
            rec = InFlightRecord(RecordState.AVAILABLE)
            self.records[self.next_offset] = rec
            self._lock(rec, member_id, now_ms)
            acquired.append(self.next_offset)
            self.next_offset += 1
        return self._ranges(acquired)

    def _lock(self, rec: InFlightRecord, member_id: str, now_ms: int) -> None:
        rec.state = RecordState.ACQUIRED
        rec.delivery_count += 1
        rec.member_id = member_id
        rec.lock_expiry_ms = now_ms + self.lock_duration_ms

    def _ranges(self, offsets: list[int]) -> list[tuple[int, int, int]]:
        """Contiguous runs of offsets with the same delivery count."""
        out: list[tuple[int, int, int]] = []
        for offset in offsets:
            count = self.records[offset].delivery_count
            if out and out[-1][1] == offset - 1 and out[-1][2] == count:
                out[-1] = (out[-1][0], offset, count)
            else:
                out.append((offset, offset, count))
        return out

    def has_available(self, available_end: int) -> bool:
        """Whether a ShareFetch now would acquire something (long polls wait while it would not)."""
        if self.next_offset < available_end and len(self.records) < self.max_in_flight:
            return True
        return any(r.state == RecordState.AVAILABLE and o < available_end for o, r in self.records.items())

    # -- acknowledgement -------------------------------------------------------------------

    def acknowledge(self, member_id: str, batches: list[tuple[int, int, list[int]]], now_ms: int) -> int:
        """Apply ``(first, last, acknowledge_types)`` batches of ``member_id``; returns an error code.

        ``acknowledge_types`` has one type for the whole range or one per offset, as on the wire.
        A record not acquired by this member (its lock expired and it moved on, or never
        acquired) is INVALID_RECORD_STATE, as in Kafka; the batch is then applied all or nothing.
        """
        self.expire_locks(now_ms)
        plan: list[tuple[int, AcknowledgeType]] = []
        for first, last, types in batches:
            if last < first or not types or (len(types) != 1 and len(types) != last - first + 1):
                return ErrorCode.INVALID_REQUEST
            for i, offset in enumerate(range(first, last + 1)):
                try:
                    kind = AcknowledgeType(types[0] if len(types) == 1 else types[i])
                except ValueError:
                    return ErrorCode.INVALID_REQUEST
                rec = self.records.get(offset)
                if rec is None or rec.state != RecordState.ACQUIRED or rec.member_id != member_id:
                    return ErrorCode.INVALID_RECORD_STATE
                plan.append((offset, kind))
        for offset, kind in plan:
            rec = self.records[offset]
            if kind == AcknowledgeType.ACCEPT:
                self._finish(rec, RecordState.ACKNOWLEDGED)
            elif kind in (AcknowledgeType.REJECT, AcknowledgeType.GAP):
                self._finish(rec, RecordState.ARCHIVED)
            elif kind == AcknowledgeType.RELEASE:
                self._release(rec)
            elif kind == AcknowledgeType.RENEW:
                rec.lock_expiry_ms = now_ms + self.lock_duration_ms
        self._advance_start()
        return ErrorCode.NONE

    def archive_acquired(self, offsets: Iterable[int]) -> None:
        """Archive acquired records that are never to be delivered (under share.isolation.level=
        read_committed, the records of aborted transactions, as Kafka's SharePartition does)."""
        for offset in offsets:
            rec = self.records.get(offset)
            if rec is not None and rec.state == RecordState.ACQUIRED:
                self._finish(rec, RecordState.ARCHIVED)
        self._advance_start()

    @staticmethod
    def _finish(rec: InFlightRecord, state: RecordState) -> None:
        rec.state, rec.member_id, rec.lock_expiry_ms = state, None, 0

    def _release(self, rec: InFlightRecord) -> None:
        """Back to AVAILABLE, or ARCHIVED once it has been delivered ``delivery_count_limit`` times."""
        done = rec.delivery_count >= self.delivery_count_limit
        self._finish(rec, RecordState.ARCHIVED if done else RecordState.AVAILABLE)

    def release_member(self, member_id: str) -> int:
        """Release every record ``member_id`` holds (it left the group or closed its session)."""
        held = [r for r in self.records.values() if r.state == RecordState.ACQUIRED and r.member_id == member_id]
        for rec in held:
            self._release(rec)
        self._advance_start()
        return len(held)

    def expire_locks(self, now_ms: int) -> int:
        """Release the records whose acquisition lock has run out; returns how many."""
        expired = [r for r in self.records.values() if r.state == RecordState.ACQUIRED and r.lock_expiry_ms <= now_ms]
        for rec in expired:
            self._release(rec)
        if expired:
            self._advance_start()
        return len(expired)

    # -- the start offset ------------------------------------------------------------------

    def _advance_start(self) -> None:
        while self.start_offset < self.next_offset:
            rec = self.records.get(self.start_offset)
            if rec is not None and rec.state not in (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED):
                break
            self.records.pop(self.start_offset, None)
            self.start_offset += 1

    def _move_start(self, offset: int) -> None:
        for o in [o for o in self.records if o < offset]:
            del self.records[o]
        self.start_offset = offset
        self.next_offset = max(self.next_offset, offset)

    def reset(self, start_offset: int) -> None:
        """AlterShareGroupOffsets / DeleteShareGroupOffsets: start over at ``start_offset``."""
        self.records.clear()
        self.start_offset = self.next_offset = start_offset

    # -- persistence -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The durable part, as Kafka's ShareSnapshot: the SPSO and the state batches above it.

        Acquisition locks are not durable (Kafka neither): after a leader change an ACQUIRED
        record is AVAILABLE again, keeping its delivery count.
        """
        batches: list[list[int]] = []
        for offset in sorted(self.records):
            rec = self.records[offset]
            state = RecordState.AVAILABLE if rec.state == RecordState.ACQUIRED else rec.state
            if batches and batches[-1][1] == offset - 1 and batches[-1][2:] == [int(state), rec.delivery_count]:
                batches[-1][1] = offset
            else:
                batches.append([offset, offset, int(state), rec.delivery_count])
        return {"start_offset": self.start_offset, "next_offset": self.next_offset, "state_batches": batches}

    def restore(self, snap: dict[str, Any]) -> None:
        """Load a `snapshot()` (taken by this or another leader)."""
        self.records.clear()
        self.start_offset = int(snap["start_offset"])
        self.next_offset = int(snap.get("next_offset", self.start_offset))
        for first, last, state, count in snap.get("state_batches", []):
            for offset in range(first, last + 1):
                self.records[offset] = InFlightRecord(RecordState(state), count)
                self.next_offset = max(self.next_offset, offset + 1)
        self._advance_start()

    # -- views -----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """How many in-flight records are in each state (for wb.share_groups)."""
        out = {s.name.lower(): 0 for s in RecordState}
        for rec in self.records.values():
            out[rec.state.name.lower()] += 1
        return out
