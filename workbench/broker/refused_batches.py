"""Idempotent batches a leader refused before writing them, so their successors' gap is explained.

Why (issue 12, duplicates from the idempotent producer): a producer has up to five requests in
flight per partition. When the leader refuses the first one *before writing it* with a retriable
error (``NOT_ENOUGH_REPLICAS`` while the ISR is below ``min.insync.replicas``; leadership or the
log directory briefly unavailable) and conditions change before the next one arrives (the ISR
grew back), the next batch's sequence no longer follows the partition's last one. Kafka answers
``OUT_OF_ORDER_SEQUENCE_NUMBER`` there (or, for a producer it has no state for, writes the later
batch first); librdkafka (2.16, `rd_kafka_handle_idempotent_Produce_error`, "skipped sequence
numbers") answers the former by draining, **bumping the producer epoch** (KIP-360) and re-sending
everything not yet acknowledged under new sequence numbers, on *every* partition. A batch another
partition's leader had written but could not acknowledge (a "possibly persisted" answer: a
timeout, a dropped connection, a leader change after the append) is then written a second time,
under the new epoch, where no sequence check can recognise it: a duplicate (librdkafka issue
#4953; the Java producer retries these without a bump).

So the leader remembers the batches it refused that way (`note`), and a later batch of the same
producer and epoch whose sequence is past a refused one that is still missing (`explains`) is
answered ``NOT_ENOUGH_REPLICAS`` by the produce handler (retriable, "not persisted": librdkafka puts
it back in its queue behind the refused one and retries both in order, same epoch, same
sequences). A gap nothing explains (records the producer believes written are missing) is still
``OUT_OF_ORDER_SEQUENCE_NUMBER``.

Bounded: the last `PER_PRODUCER` refusals per (partition, producer), at most `MAX_ENTRIES`
producers, each refusal forgotten after `WINDOW_S` (a producer that never retries the refused
batch gets the plain answer again then). Costs nothing on the produce path while nothing was
refused (one dict lookup per partition).
"""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from collections.abc import Callable

#: batch v2 header: producerId (int64) at byte 43, producerEpoch (int16) at 51, baseSequence (int32) at 53
_PRODUCER_FIELDS = struct.Struct(">qhi")
_PRODUCER_AT = 43
_MAGIC_AT = 16

WINDOW_S = 60.0
MAX_ENTRIES = 10_000
PER_PRODUCER = 8  # librdkafka keeps at most 5 requests in flight per partition

#: (epoch, base sequence, when (monotonic), why) of one refused batch
Refusal = tuple[int, int, float, str]


def producer_of(records: bytes | bytearray | memoryview | None) -> tuple[int, int, int] | None:
    """(producer id, epoch, base sequence) of the first batch of ``records``, if idempotent."""
    if records is None or len(records) < _PRODUCER_AT + _PRODUCER_FIELDS.size or records[_MAGIC_AT] != 2:
        return None
    pid, epoch, seq = _PRODUCER_FIELDS.unpack_from(records, _PRODUCER_AT)
    return (pid, epoch, seq) if pid >= 0 and seq >= 0 else None


class RefusedBatches:
    """Recent refused idempotent batches, per (topic, partition) and producer id."""

    def __init__(self, window_s: float = WINDOW_S, max_entries: int = MAX_ENTRIES) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._by_partition: dict[tuple[str, int], dict[int, list[Refusal]]] = {}
        self._order: OrderedDict[tuple[str, int, int], None] = OrderedDict()  # oldest producer entry first

    def __len__(self) -> int:
        return len(self._order)

    def note(self, topic: str, partition: int, records: bytes | bytearray | memoryview | None, why: str) -> None:
        """The leader refused ``records`` without writing them, for reason ``why``."""
        producer = producer_of(records)
        if producer is None:
            return
        pid, epoch, seq = producer
        refusals = self._by_partition.setdefault((topic, partition), {}).setdefault(pid, [])
        refusals.append((epoch, seq, time.monotonic(), why))
        del refusals[:-PER_PRODUCER]
        key = (topic, partition, pid)
        self._order.pop(key, None)
        self._order[key] = None
        while len(self._order) > self.max_entries:
            self._forget(*self._order.popitem(last=False)[0])

    def explains(
        self,
        topic: str,
        partition: int,
        records: bytes | bytearray | memoryview,
        expected: Callable[[int, int], int | None],
    ) -> str | None:
        """Why ``records`` must wait: a batch before it, refused here a moment ago, is still missing.

        ``expected(producer_id, epoch)`` is the sequence the partition accepts next (None: any).
        """
        producers = self._by_partition.get((topic, partition))
        if not producers:
            return None
        producer = producer_of(records)
        if producer is None or producer[0] not in producers:
            return None
        pid, epoch, seq = producer
        now = time.monotonic()
        refusals = [r for r in producers[pid] if now - r[2] <= self.window_s]
        if not refusals:
            self._order.pop((topic, partition, pid), None)
            self._forget(topic, partition, pid)
            return None
        producers[pid] = refusals
        next_seq = expected(pid, epoch)
        for refused_epoch, refused_seq, _, why in refusals:
            # Still missing: the partition expects exactly it next (or takes anything from an
            # unknown producer, so nothing after it may go first).
            if refused_epoch == epoch and refused_seq < seq and next_seq in (None, refused_seq):
                return f"the batch at sequence {refused_seq} was refused here a moment ago ({why})"
        return None

    def _forget(self, topic: str, partition: int, pid: int) -> None:
        producers = self._by_partition.get((topic, partition))
        if producers is not None:
            producers.pop(pid, None)
            if not producers:
                del self._by_partition[(topic, partition)]
