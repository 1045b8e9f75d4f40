"""The compacted-topic workload and its checker (issue 15): compaction under faults.

- `KeyedProducer`: an idempotent confluent-kafka producer updating a small key space of a
  ``cleanup.policy=compact`` topic (each key in one partition), with a share of tombstones
  (NULL values), every outcome recorded as a `KeyedSend`.
- `keyed_final_read`: after the faults, one consumer reads every partition of that topic from
  the log start to the high watermark (a compacted log has gaps; nothing else is judged on them).
- `check_compaction`: Kafka's compaction promise, per key. Let L be the acknowledged write of a
  key with the highest offset. In the final read the key's latest record must be at L's offset
  (with L's value) or later (a later write of that key, whatever its acknowledgement said):

  * ``lost_latest_value``: L wrote a value, and the final read has no record of the key at or
    after L's offset (the cleaner, a truncation or an election lost it);
  * ``resurrected_key``: L was a tombstone and the final read's latest record of the key is an
    older value (a delete undone: e.g. the tombstone removed after ``delete.retention.ms`` while
    an older value survived);
  * ``compacted_offset_mismatch``: the record read at L's offset is not L's value;
  * ``compacted_nonmonotonic``: offsets of the final read not increasing within a partition.

  A key whose tombstone is gone from the log, with nothing older left, is correct (that is
  what ``delete.retention.ms`` is for).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from tests.chaos.history import OK, UNKNOWN, History, outcome_of_error

#: The compacted topic's configuration: small segments that roll by time, a cleaner that runs on
#: almost any dirt, and tombstones that may go after a few seconds, so every part of the cleaner
#: (rewrites, merges, tombstone removal) runs many times in a few minutes.
COMPACT_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "min.insync.replicas": "2",
    "segment.bytes": "16384",
    "segment.ms": "2000",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "3000",
    "index.interval.bytes": "1024",
}
#: Broker settings for a run with the compacted workload: the cleaner wakes every half second.
CLUSTER_CONFIG = {"log_cleaner_backoff_ms": 500}
TOMBSTONE = "<tombstone>"


@dataclass
class KeyedSend:
    key: str
    value: str  # TOMBSTONE for a NULL value
    partition: int
    outcome: str
    offset: int | None = None
    time: float = 0.0


@dataclass
class KeyedRead:
    partition: int
    offset: int
    key: str
    value: str


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


class KeyedProducer(threading.Thread):
    """Updates keys ``k0..k<keys-1>`` at `rate` records/s; about `tombstones` of them deletes."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        history: History,
        *,
        keys: int = 60,
        rate: float = 30.0,
        tombstones: float = 0.15,
        seed: int = 0,
    ) -> None:
        super().__init__(name="chaos-keyed", daemon=True)
        self.bootstrap, self.topic, self.partitions, self.history = bootstrap, topic, partitions, history
        self.keys, self.rate, self.tombstones = keys, rate, tombstones
        self.rng = random.Random(seed)
        self.sends: list[KeyedSend] = []
        self._halt = threading.Event()
        self._pending: dict[int, tuple[str, str, int]] = {}
        self._fatal = threading.Event()

    def stop(self, timeout: float = 90.0) -> None:
        self._halt.set()
        self.join(timeout)

    def _producer(self) -> Producer:
        return Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 30000,
                "request.timeout.ms": 5000,
                "error_cb": self._on_error,
                "log_level": 0,
            }
        )

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.history.observe("fatal_producer_error", f"keyed: {err.name()} {err.str()}")
            self._fatal.set()

    def _record(self, seq: int, err: KafkaError | None, msg) -> None:
        # A delivery callback must never raise (librdkafka turns it into a SystemError in poll()).
        try:
            key, value, partition = self._pending.pop(seq)
            now = self.history.now()
            if err is None:
                offset = msg.offset()
                ok_offset = offset if offset is not None and offset >= 0 else None
                self.sends.append(KeyedSend(key, value, partition, OK, ok_offset, now))
            else:
                self.sends.append(KeyedSend(key, value, partition, outcome_of_error(err.name()), None, now))
        except Exception as exc:
            self.history.note(f"keyed delivery callback failed: {exc!r}")

    def _abandon_pending(self) -> None:
        """Sends never answered (the run ended, or the producer was replaced): their outcome is unknown."""
        now = self.history.now()
        for _seq, (key, value, partition) in sorted(self._pending.items()):
            self.sends.append(KeyedSend(key, value, partition, UNKNOWN, None, now))
        self._pending.clear()

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:
            self.history.observe("client_died", f"keyed producer stopped on {exc!r}")
        finally:
            self._abandon_pending()

    def _run(self) -> None:
        producer = self._producer()
        seq = 0
        interval = 1.0 / self.rate
        while not self._halt.is_set():
            if self._fatal.is_set():
                producer.purge()
                producer = self._producer()
                self._fatal.clear()
            key = f"k{self.rng.randrange(self.keys)}"
            value = TOMBSTONE if self.rng.random() < self.tombstones else f"{key}-v{seq}"
            partition = partition_of(key, self.partitions)
            self._pending[seq] = (key, value, partition)
            try:
                producer.produce(
                    self.topic,
                    key=key.encode(),
                    value=None if value == TOMBSTONE else value.encode(),
                    partition=partition,
                    on_delivery=lambda err, msg, seq=seq: self._record(seq, err, msg),
                )
                seq += 1
                producer.poll(interval)
            except BufferError:
                self._pending.pop(seq, None)
                producer.poll(0.1)
            except KafkaException:
                time.sleep(0.1)
        try:
            producer.flush(40)
        except KafkaException:
            pass
        producer.purge()
        producer.poll(0)


def keyed_final_read(
    bootstrap: str, topic: str, partitions: int, timeout: float = 60.0
) -> tuple[list[KeyedRead], dict[int, bool]]:
    """Every record of every partition, log start to high watermark; and which reads completed."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-keyed-final-{topic}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "check.crcs": True,
            "log_level": 0,
        }
    )
    reads: list[KeyedRead] = []
    try:
        highs: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        for p in range(partitions):
            while p not in highs and time.monotonic() < deadline:
                try:
                    highs[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                except KafkaException:
                    time.sleep(0.5)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        last = {p: -1 for p in range(partitions)}

        def unfinished() -> bool:
            # A compacted log may end in a gap: done when the position reached the high watermark.
            return (
                any(
                    last[p] < highs.get(p, 1 << 62) - 1 and c.position([TopicPartition(topic, p)])[0].offset < highs[p]
                    for p in range(partitions)
                    if p in highs
                )
                or len(highs) < partitions
            )

        while time.monotonic() < deadline and unfinished():
            for msg in c.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                p = msg.partition()
                last[p] = max(last[p], msg.offset())
                value = msg.value()
                reads.append(
                    KeyedRead(
                        p,
                        msg.offset(),
                        (msg.key() or b"").decode(errors="replace"),
                        TOMBSTONE if value is None else value.decode(errors="replace"),
                    )
                )
        complete = {}
        for p in range(partitions):
            pos = c.position([TopicPartition(topic, p)])[0].offset if p in highs else -1
            complete[p] = p in highs and (last[p] >= highs[p] - 1 or pos >= highs[p])
        return reads, complete
    finally:
        c.close()


def check_compaction(sends: list[KeyedSend], reads: list[KeyedRead], complete: dict[int, bool]) -> dict[str, list[str]]:
    """The anomalies of a compacted topic's history; see the module docstring."""
    out: dict[str, list[str]] = defaultdict(list)
    by_partition: dict[int, list[KeyedRead]] = defaultdict(list)
    for r in reads:
        by_partition[r.partition].append(r)
    for p, rs in sorted(by_partition.items()):
        for a, b in itertools.pairwise(rs):
            if b.offset <= a.offset:
                out["compacted_nonmonotonic"].append(f"p{p}: {a.offset} then {b.offset}")
    latest_read: dict[str, KeyedRead] = {}
    at: dict[tuple[int, int], KeyedRead] = {}
    for r in reads:
        at[(r.partition, r.offset)] = r
        cur = latest_read.get(r.key)
        if cur is None or r.offset > cur.offset:
            latest_read[r.key] = r
    last_ack: dict[str, KeyedSend] = {}
    for s in sends:
        if s.outcome == OK and s.offset is not None:
            cur = last_ack.get(s.key)
            if cur is None or s.offset > cur.offset:  # type: ignore[operator]
                last_ack[s.key] = s
    sent_values = {(s.key, s.value) for s in sends}
    unacked_tombstone_after = {
        (key, ack.time)
        for key, ack in last_ack.items()
        if any(s.key == key and s.outcome != OK and s.value == TOMBSTONE and s.time >= ack.time for s in sends)
    }
    for key, ack in sorted(last_ack.items()):
        if not complete.get(ack.partition, False):
            continue  # the final read did not reach the end of this partition: nothing to judge
        assert ack.offset is not None
        held = at.get((ack.partition, ack.offset))
        if held is not None and (held.key, held.value) != (key, ack.value):
            out["compacted_offset_mismatch"].append(
                f"{key}={ack.value} acknowledged at p{ack.partition}@{ack.offset}, read {held.key}={held.value}"
            )
        got = latest_read.get(key)
        if got is not None and got.offset > ack.offset and (key, got.value) not in sent_values:
            out["compacted_offset_mismatch"].append(f"{key}: read {got.value}@{got.offset}, never sent")
        if ack.value != TOMBSTONE:
            if got is None and (key, ack.time) in unacked_tombstone_after:
                continue  # a delete whose answer was lost may have landed later, and expired
            if got is None or got.offset < ack.offset:
                seen = f"latest read {got.value}@{got.offset}" if got else "key absent"
                out["lost_latest_value"].append(
                    f"{key}={ack.value} acknowledged at p{ack.partition}@{ack.offset}; {seen}"
                )
        elif got is not None and got.offset < ack.offset:
            out["resurrected_key"].append(
                f"{key} deleted at p{ack.partition}@{ack.offset}; final read has {got.value}@{got.offset}"
            )
    return dict(out)


def stats(sends: list[KeyedSend], reads: list[KeyedRead]) -> dict[str, int]:
    return {
        "keyed_sends_ok": sum(1 for s in sends if s.outcome == OK),
        "keyed_sends_unknown": sum(1 for s in sends if s.outcome == UNKNOWN),
        "keyed_tombstones_ok": sum(1 for s in sends if s.outcome == OK and s.value == TOMBSTONE),
        "keyed_records_read": len(reads),
        "keyed_keys_read": len({r.key for r in reads}),
    }
