"""`SchemaIds`: which schema ids are registered under which subject, for broker-side schema
validation (Confluent's `confluent.value.schema.validation` / `confluent.key.schema.validation`).

Confluent Server asks the registry over HTTP; here the broker reads what the registry itself
reads, the `_schemas` topic, with an ordinary consumer over the Kafka protocol (this broker's
own listener; the partition's leader may be another broker), and applies the records the way
the registry does (`SchemaRegistry.apply`: a SCHEMA value sets a version, its tombstone hard-
deletes it, DELETE_SUBJECT soft-deletes versions up to one, CLEAR_SUBJECT forgets the subject),
keeping only subject -> version -> (id, deleted). Not the registry's class itself: it imports
every format's parser (jsonschema alone costs a broker seconds of CPU). Started the first time
a validating topic gets a produce; a topic without these configs never pays for it.

A produce naming an id the reader has not seen yet may simply be ahead of it (the registry
answered the serializer a moment ago): the produce handler then asks `catch_up`, which waits
(bounded, off the event loop) until the reader has reached the topic's current end, and checks
again (a catch-up when the reader is already at the end costs one ListOffsets round trip).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from workbench.schema_registry import records

log = logging.getLogger(__name__)

TOPIC = "_schemas"
#: How long a produce may wait for the reader to reach the end of `_schemas` on a miss; the
#: first time longer, as the reader's consumer is still connecting and finding the leader.
CATCH_UP_TIMEOUT_S = 3.0
FIRST_CATCH_UP_TIMEOUT_S = 15.0


class SchemaIds:
    """The live (not deleted) schema ids per subject, read from `_schemas`; thread-safe."""

    def __init__(self, bootstrap_servers: Callable[[], str], topic: str = TOPIC) -> None:
        self.topic = topic
        self._bootstrap = bootstrap_servers  # asked when the reader starts (the port is known by then)
        self._versions: dict[str, dict[int, tuple[int, bool]]] = {}  # subject -> version -> (id, deleted)
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._position = 0  # next offset to read
        self._target: int | None = None  # the end a catch-up waits for (set by the reader thread)
        self._wanted = 0  # catch-up requests made
        self._served = 0  # catch-up requests answered by the reader
        self._last_catch_up = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._read, name="schema-ids-reader", daemon=True)
                self._thread.start()

    def ids(self, subject: str) -> frozenset[int]:
        """The ids of the subject's live versions."""
        self.start()
        with self._lock:
            return frozenset(sid for sid, deleted in self._versions.get(subject, {}).values() if not deleted)

    def apply(self, key_bytes: bytes | None, value_bytes: bytes | None) -> None:
        """Apply one `_schemas` record (unknown or malformed ones are skipped, as the registry does)."""
        try:
            key = records.decode(key_bytes)
            value = records.decode(value_bytes)
        except ValueError:
            return
        if key is None:
            return
        kind, subject = key.get("keytype"), key.get("subject")
        if not isinstance(subject, str):
            return
        with self._lock:
            versions = self._versions.setdefault(subject, {})
            if kind == "SCHEMA":
                if value is None:
                    versions.pop(int(key["version"]), None)
                else:
                    versions[int(value["version"])] = (int(value["id"]), bool(value.get("deleted", False)))
            elif kind == "DELETE_SUBJECT" and value is not None:
                upto = int(value["version"])
                for v, (sid, _deleted) in list(versions.items()):
                    if v <= upto:
                        versions[v] = (sid, True)
            elif kind == "CLEAR_SUBJECT" and value is not None:
                versions.clear()

    def catch_up(self, timeout: float | None = None) -> bool:
        """Block until the reader has applied everything in `_schemas` as of now; False on timeout
        (blocking: call it off the event loop)."""
        self.start()
        if timeout is None:
            timeout = CATCH_UP_TIMEOUT_S if self._last_catch_up else FIRST_CATCH_UP_TIMEOUT_S
        deadline = time.monotonic() + timeout
        with self._cond:
            self._wanted += 1
            wanted = self._wanted
            self._cond.notify_all()
            while self._served < wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        self._last_catch_up = time.monotonic()
        return True

    def _read(self) -> None:
        # Imported here: a broker without schema-validating topics never loads the client.
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap(),
                "group.id": "broker-schema-validation",
                "enable.auto.commit": False,
                "client.id": "broker-schema-ids",
                "fetch.wait.max.ms": 100,
                "topic.metadata.refresh.interval.ms": 2000,
                "log_level": 3,
            }
        )
        tp = TopicPartition(self.topic, 0, OFFSET_BEGINNING)
        consumer.assign([tp])
        try:
            while not self._stop.is_set():
                with self._cond:
                    pending = self._wanted > self._served and self._target is None
                if pending:  # a catch-up was asked: learn the end (in this thread, the consumer's)
                    try:
                        _low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=1)
                        with self._cond:
                            self._target = high
                    except Exception:
                        pass  # no `_schemas` yet or no leader: the caller times out
                self._answer_catch_up()
                msg = consumer.poll(0.1)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.debug("reading %s: %s", self.topic, err)
                    continue
                try:
                    self.apply(msg.key(), msg.value())
                except Exception:
                    log.exception("could not apply the record at offset %d of %s", msg.offset(), self.topic)
                with self._cond:
                    self._position = (msg.offset() or 0) + 1
        finally:
            consumer.close()

    def _answer_catch_up(self) -> None:
        with self._cond:
            if self._target is not None and self._position >= self._target:
                self._served = self._wanted
                self._target = None
                self._cond.notify_all()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
