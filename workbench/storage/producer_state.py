"""Idempotent-producer state of one partition (Kafka's ProducerStateManager, KIP-98/KIP-360).

Per producer id: its epoch and the metadata of its last 5 batches (Kafka keeps
5 because a producer has at most 5 requests in flight), enough to recognise a
retried batch and to reject a gap.

Rules, as Kafka's ProducerAppendInfo.checkSequence (3.x):

* a batch epoch below the known epoch -> INVALID_PRODUCER_EPOCH;
* a new (higher) epoch must start at sequence 0 -> else OUT_OF_ORDER_SEQUENCE_NUMBER;
* a batch whose (first_seq, last_seq) matches one of the last 5 -> duplicate,
  answered with the original offsets;
* otherwise first_seq must be last_seq + 1 (wrapping 2^31-1 -> 0)
  -> else OUT_OF_ORDER_SEQUENCE_NUMBER;
* an unknown producer id is accepted at any sequence. Since KIP-360 (Kafka 2.5)
  brokers no longer answer UNKNOWN_PRODUCER_ID here: the producer's state may
  simply have been removed by retention or DeleteRecords.

Transactions (KIP-98): control batches (markers) and batches without a sequence
(written by a coordinator, e.g. transactional offset commits) are checked for
the epoch only: a marker may bump it (fencing the zombie that still writes with
the old one). Open transactions, the last stable offset and the aborted list are
kept by `TransactionIndex` (``self.transactions``), fed from here; a marker's
type (commit or abort) is read back from the log through ``marker_reader``.

The state is checkpointed to ``producer-state.json`` (offset it is valid up to +
entries) at roll and close; recovery loads it and replays the batch headers
after that offset.

Expiry (Kafka's ``producer.id.expiration.ms``, `remove_expired`): a producer whose last
batch's timestamp is that old, and that has no open transaction here, is forgotten; if
it writes again its sequence is accepted as an unknown producer's (KIP-360).

Verification (KIP-890 part 1, Kafka's ``VerificationStateEntry``): before a leader appends
the first transactional batch of a producer that has no transaction open here, it asks the
transaction coordinator whether the partition is in the producer's transaction
(`workbench.broker.txn_verification`). The guard of that question is kept here, one per
producer, and dropped by the next transactional write or marker of the producer: a batch
whose verification started before a marker (the transaction ended meanwhile) carries a
guard that no longer matches and is refused, so it cannot open a hanging transaction.
Only the leader keeps these (in memory, not in the snapshot).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from workbench.protocol.control_records import ABORT
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.records import BatchHeader
from workbench.storage.transaction_index import TransactionIndex

log = logging.getLogger(__name__)

#: Batches remembered per producer for duplicate detection (Kafka's NUM_BATCHES_TO_RETAIN).
BATCHES_TO_RETAIN = 5
SNAPSHOT_NAME = "producer-state.json"


@dataclass(slots=True, frozen=True)
class BatchMetadata:
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp: int


@dataclass(slots=True)
class ProducerEntry:
    epoch: int
    batches: deque[BatchMetadata] = field(default_factory=lambda: deque(maxlen=BATCHES_TO_RETAIN))
    #: The newest batch timestamp (data or marker) of this producer: what expiry looks at.
    last_timestamp: int = -1
    #: The transaction coordinator epoch of this producer's last marker here: a marker from an
    #: older coordinator (a deposed one whose request arrives late) is fenced, as in Kafka.
    coordinator_epoch: int = -1

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1

    @property
    def last_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else -1

    def copy(self) -> ProducerEntry:
        return ProducerEntry(
            self.epoch, deque(self.batches, maxlen=BATCHES_TO_RETAIN), self.last_timestamp, self.coordinator_epoch
        )

    def touch(self, timestamp: int) -> None:
        if timestamp > self.last_timestamp:
            self.last_timestamp = timestamp


class VerificationGuard:
    """The identity of one verification of a producer at one partition (Kafka's VerificationGuard)."""

    __slots__ = ()


@dataclass(slots=True)
class VerificationStateEntry:
    """A verification in flight (or done, the batch not yet written) for one producer."""

    guard: VerificationGuard
    lowest_sequence: int
    epoch: int
    timestamp_ms: int

    def maybe_update(self, sequence: int, epoch: int) -> None:
        """Kafka's maybeUpdateLowestSequenceAndEpoch: a newer epoch restarts the lowest sequence."""
        if epoch > self.epoch:
            self.epoch, self.lowest_sequence = epoch, sequence
        elif epoch == self.epoch and sequence < self.lowest_sequence:
            self.lowest_sequence = sequence


def _in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == 0x7FFFFFFF)


class ProducerStateManager:
    """Sequence and epoch bookkeeping for the idempotent producers writing one partition."""

    def __init__(self, directory: Path, *, load: bool = True) -> None:
        """``load=False``: the directory is new, there is no aborted-transaction index to read."""
        self.path = directory / SNAPSHOT_NAME
        self.producers: dict[int, ProducerEntry] = {}
        self.changed = False
        self.transactions = TransactionIndex(directory, load=load)
        #: offset of a written control batch -> its marker type (set by the log)
        self.marker_reader: Callable[[int], tuple[int, int]] | None = None
        #: producer id -> its transaction verification in flight (KIP-890; leader only, not persisted)
        self.verification: dict[int, VerificationStateEntry] = {}

    # -- KIP-890 verification -----------------------------------------------------------

    def verification_guard(self, producer_id: int) -> VerificationGuard | None:
        entry = self.verification.get(producer_id)
        return entry.guard if entry is not None else None

    def maybe_create_verification_state_entry(self, producer_id: int, sequence: int, epoch: int) -> VerificationGuard:
        """The guard a verification of ``producer_id`` starts with (shared by concurrent ones)."""
        entry = self.verification.get(producer_id)
        if entry is None:
            entry = self.verification[producer_id] = VerificationStateEntry(
                VerificationGuard(), sequence, epoch, int(time.time() * 1000)
            )
        else:
            entry.maybe_update(sequence, epoch)
        return entry.guard

    def clear_verification_state_entry(self, producer_id: int, guard: VerificationGuard | None = None) -> None:
        """Forget the producer's verification (only if it is still ``guard``, when given)."""
        entry = self.verification.get(producer_id)
        if entry is not None and (guard is None or entry.guard is guard):
            del self.verification[producer_id]

    def check(
        self, headers: list[BatchHeader], coordinator_epoch: int | None = None
    ) -> tuple[dict[int, ProducerEntry], BatchMetadata | None]:
        """Validate ``headers`` (offsets not yet assigned) against the current state.

        ``coordinator_epoch``: the transaction coordinator epoch of the markers among ``headers``
        (a coordinator's append): TRANSACTION_COORDINATOR_FENCED if the producer's last marker here
        came from a newer coordinator. Without that check a deposed coordinator's marker, retried
        or delayed past its successor's, would end the producer's *next* transaction here with
        the old decision (an ABORT taking a committed transaction's records with it).

        Returns the staged entries to `commit` once the batches are written, or,
        when a batch is a retry of a recent one, ``({}, original_metadata)``.
        Raises KafkaProtocolError on an epoch or sequence violation.
        """
        staged: dict[int, ProducerEntry] = {}
        for h in headers:
            pid = h.producer_id
            if pid < 0:
                continue
            entry = staged.get(pid)
            if entry is None:
                current = self.producers.get(pid)
                entry = staged[pid] = current.copy() if current else ProducerEntry(-1)
            epoch, first_seq = h.producer_epoch, h.base_sequence
            if epoch < entry.epoch:
                raise KafkaProtocolError(
                    ErrorCode.INVALID_PRODUCER_EPOCH,
                    f"producer {pid}: epoch {epoch} is older than the current {entry.epoch}",
                )
            entry.touch(h.max_timestamp)
            if h.is_control or first_seq < 0:
                # A marker or a coordinator's batch: epoch only (Kafka's AppendOrigin.COORDINATOR).
                if h.is_control and coordinator_epoch is not None:
                    if coordinator_epoch < entry.coordinator_epoch:
                        raise KafkaProtocolError(
                            ErrorCode.TRANSACTION_COORDINATOR_FENCED,
                            f"producer {pid}: marker from coordinator epoch {coordinator_epoch}, "
                            f"older than the {entry.coordinator_epoch} of its last marker here",
                        )
                    entry.coordinator_epoch = coordinator_epoch
                if epoch != entry.epoch:
                    entry.epoch = epoch
                    entry.batches.clear()
                continue
            if epoch == entry.epoch:
                last_seq = h.last_sequence
                for meta in entry.batches:
                    if meta.first_seq == first_seq and meta.last_seq == last_seq:
                        return {}, meta
                if entry.batches and not _in_sequence(entry.last_seq, first_seq):
                    raise KafkaProtocolError(
                        ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                        f"producer {pid} epoch {epoch}: sequence {first_seq} after {entry.last_seq}",
                    )
            elif first_seq != 0 and entry.epoch != -1:
                raise KafkaProtocolError(
                    ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                    f"producer {pid}: new epoch {epoch} must start at sequence 0, got {first_seq}",
                )
            if epoch != entry.epoch:
                entry.epoch = epoch
                entry.batches.clear()
            # Offsets are filled in by `commit` once assigned.
            entry.batches.append(BatchMetadata(first_seq, h.last_sequence, -1, -1, h.max_timestamp))
        return staged, None

    def expected_sequence(self, producer_id: int, epoch: int) -> int | None:
        """The sequence `check` accepts next from ``producer_id`` at ``epoch``; None: any (an unknown
        producer, as Kafka: its state may have been removed by retention or expiry)."""
        entry = self.producers.get(producer_id)
        if entry is None or entry.epoch == -1:
            return None
        if epoch != entry.epoch:
            return 0
        if not entry.batches:
            return None
        return 0 if entry.last_seq == 0x7FFFFFFF else entry.last_seq + 1

    def commit(self, staged: dict[int, ProducerEntry], headers: list[BatchHeader], base_offsets: list[int]) -> None:
        """Install staged entries, filling in the offsets each batch was given."""
        if not staged:
            return
        for h, base in zip(headers, base_offsets, strict=False):
            self._track_transaction(h, base)
        for h, base in zip(headers, base_offsets, strict=False):
            entry = staged.get(h.producer_id)
            if entry is None:
                continue
            for i, meta in enumerate(entry.batches):
                if meta.first_offset == -1 and meta.first_seq == h.base_sequence:
                    entry.batches[i] = BatchMetadata(
                        meta.first_seq, meta.last_seq, base, base + h.last_offset_delta, meta.timestamp
                    )
                    break
        self.producers.update(staged)
        self.changed = True

    def _track_transaction(self, h: BatchHeader, base_offset: int) -> int:
        """Note a transactional batch; for a marker, return its coordinator epoch (-1 if unknown)."""
        if h.producer_id < 0 or not h.is_transactional:
            return -1
        if self.verification:
            # The transaction is open here now (data) or over (marker): a verification guard
            # taken before this write is spent (KIP-890).
            self.verification.pop(h.producer_id, None)
        if not h.is_control:
            self.transactions.on_data(h.producer_id, base_offset)
            return -1
        kind, coordinator_epoch = ABORT, -1
        if self.marker_reader is not None:
            try:
                kind, coordinator_epoch = self.marker_reader(base_offset)
            except (ValueError, KafkaProtocolError) as exc:
                log.error(
                    "%s: unreadable transaction marker at %d (%s): taken as an abort", self.path, base_offset, exc
                )
        self.transactions.on_marker(h.producer_id, kind, base_offset)
        self.changed = True
        return coordinator_epoch

    def replay(self, h: BatchHeader) -> None:
        """Apply an already-written batch (recovery) without any checks."""
        if h.producer_id < 0:
            return
        coordinator_epoch = self._track_transaction(h, h.base_offset)
        if h.is_control or h.base_sequence < 0:
            entry = self.producers.get(h.producer_id)
            if entry is None:
                entry = self.producers[h.producer_id] = ProducerEntry(h.producer_epoch)
            elif h.producer_epoch > entry.epoch:
                entry.epoch = h.producer_epoch
                entry.batches.clear()
            if h.is_control and coordinator_epoch >= 0:
                entry.coordinator_epoch = coordinator_epoch
            entry.touch(h.max_timestamp)
            self.changed = True
            return
        entry = self.producers.get(h.producer_id)
        if entry is None:
            entry = self.producers[h.producer_id] = ProducerEntry(h.producer_epoch)
        entry.touch(h.max_timestamp)
        if h.producer_epoch != entry.epoch:
            entry.epoch = h.producer_epoch
            entry.batches.clear()
        entry.batches.append(
            BatchMetadata(h.base_sequence, h.last_sequence, h.base_offset, h.last_offset, h.max_timestamp)
        )
        self.changed = True

    def truncate_head(self, log_start_offset: int) -> None:
        """Forget producers whose last write is below the log start offset (retention, DeleteRecords)."""
        gone = [
            pid
            for pid, e in self.producers.items()
            if e.last_offset < log_start_offset and pid not in self.transactions.ongoing
        ]
        for pid in gone:
            del self.producers[pid]
        self.transactions.truncate_head(log_start_offset)
        self.changed = self.changed or bool(gone)

    def remove_expired(self, now_ms: int, expiration_ms: int) -> list[int]:
        """Forget producers idle for ``expiration_ms`` (by their last batch timestamp) that have no
        open transaction here (Kafka's removeExpiredProducers); returns their ids."""
        gone = [
            pid
            for pid, e in self.producers.items()
            if now_ms - e.last_timestamp >= expiration_ms and pid not in self.transactions.ongoing
        ]
        for pid in gone:
            del self.producers[pid]
        for pid in [p for p, v in self.verification.items() if now_ms - v.timestamp_ms >= expiration_ms]:
            del self.verification[pid]  # a verification whose batch never came (Kafka expires them alike)
        self.changed = self.changed or bool(gone)
        return gone

    def truncate_tail(self, log_end_offset: int) -> None:
        """Drop batch metadata at or above ``log_end_offset`` (log truncation).

        A producer left without any batch is forgotten (as if it had never
        written): the log then knows nothing of it, like after a rebuild.
        """
        self.transactions.truncate_tail(log_end_offset)
        for pid in list(self.producers):
            entry = self.producers[pid]
            kept = [m for m in entry.batches if m.last_offset < log_end_offset]
            if len(kept) != len(entry.batches):
                self.changed = True
                if kept:
                    entry.batches = deque(kept, maxlen=BATCHES_TO_RETAIN)
                else:
                    del self.producers[pid]

    def clear(self) -> None:
        """Forget every producer (the log restarts empty)."""
        self.producers.clear()
        self.transactions.clear()
        self.verification.clear()
        self.changed = True

    def summary(self) -> dict[int, tuple[int, int, int]]:
        return {pid: (e.epoch, e.last_seq, e.last_offset) for pid, e in self.producers.items()}

    # -- snapshot ------------------------------------------------------------------

    def write_snapshot(self, offset: int) -> None:
        """Persist the state as of log end offset ``offset`` (atomic replace)."""
        doc = {
            "offset": offset,
            "producers": {
                str(pid): {
                    "epoch": e.epoch,
                    "batches": [
                        [m.first_seq, m.last_seq, m.first_offset, m.last_offset, m.timestamp] for m in e.batches
                    ],
                    "last_timestamp": e.last_timestamp,
                    "coordinator_epoch": e.coordinator_epoch,
                }
                for pid, e in self.producers.items()
            },
            "transactions": self.transactions.snapshot(),
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.path)
        self.changed = False

    def load_snapshot(self) -> int:
        """Load the snapshot; return the offset it is valid up to (0 when there is none)."""
        self.producers.clear()
        try:
            doc = json.loads(self.path.read_text())
            loaded_ms = int(time.time() * 1000)
            for pid, e in doc["producers"].items():
                entry = ProducerEntry(int(e["epoch"]))
                for b in e["batches"]:
                    entry.batches.append(BatchMetadata(*(int(x) for x in b)))
                # A snapshot from before expiry existed has no timestamp: idle from now on.
                entry.last_timestamp = int(e.get("last_timestamp", loaded_ms))
                entry.coordinator_epoch = int(e.get("coordinator_epoch", -1))
                self.producers[int(pid)] = entry
            self.transactions.restore(doc.get("transactions"))
            return int(doc["offset"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            self.producers.clear()
            self.transactions.restore(None)
            return 0
