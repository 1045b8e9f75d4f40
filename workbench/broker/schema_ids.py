"""`SchemaIds`: which schema ids are registered under which subject, for broker-side schema
validation (Confluent's `confluent.value.schema.validation` / `confluent.key.schema.validation`).

Confluent Server asks the registry over HTTP; here the broker reads what the registry itself
reads, the `_schemas` topic, with an ordinary consumer over the Kafka protocol (this broker's
own listener; the partition's leader may be another broker), and applies its records with the
registry's own state machine (`SchemaRegistry.apply`), so soft deletes, hard deletes and
cleared subjects mean exactly what they mean to the registry. Started the first time a
validating topic gets a produce; a topic without these configs never pays for it.

A produce naming an id the reader has not seen yet may simply be ahead of it (the registry
answered the serializer a moment ago): the produce handler then asks `catch_up`, which waits
(bounded, off the event loop) until the reader has reached the topic's current end, and checks
again. A second miss within `CATCH_UP_COOLDOWN_S` does not wait again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

TOPIC = "_schemas"
#: How long a produce may wait for the reader to reach the end of `_schemas` on a miss; the
#: first time longer, as the reader's consumer is still connecting and finding the leader.
CATCH_UP_TIMEOUT_S = 3.0
FIRST_CATCH_UP_TIMEOUT_S = 15.0
#: After a catch-up, misses within this window are answered without waiting again.
CATCH_UP_COOLDOWN_S = 0.5


class SchemaIds:
    """The live (not deleted) schema ids per subject, read from `_schemas`; thread-safe."""

    def __init__(self, bootstrap_servers: Callable[[], str], topic: str = TOPIC) -> None:
        self.topic = topic
        self._bootstrap = bootstrap_servers  # asked when the reader starts (the port is known by then)
        self._registry: Any = None  # a SchemaRegistry, made by the reader (its imports are heavy)
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
        registry = self._registry
        return registry.live_ids(subject) if registry is not None else frozenset()

    def catch_up(self, timeout: float | None = None) -> bool:
        """Block until the reader has applied everything in `_schemas` as of now; False on timeout
        or when a catch-up just happened (blocking: call it off the event loop)."""
        self.start()
        if time.monotonic() - self._last_catch_up < CATCH_UP_COOLDOWN_S:
            return False
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
        # Imported here: a broker without schema-validating topics never loads the client or the registry.
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        from workbench.schema_registry.registry import SchemaRegistry

        self._registry = SchemaRegistry()
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
                    self._registry.apply(msg.key(), msg.value())
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
