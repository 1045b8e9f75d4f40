"""`KafkaStore`: the registry's durable state is the compacted, replicated `_schemas` topic.

As Confluent's `KafkaStore` and `KafkaStoreReaderThread`: one partition (a total order of
writes), `cleanup.policy=compact`, replicated to up to three brokers with
`min.insync.replicas` one less. A reader thread consumes it from the start and feeds every
record to `apply`; `put` produces with `acks=all` and idempotence, then waits until the
reader has applied that offset, so an answered write is both replicated and visible. The
clients are confluent-kafka's: the registry talks to brokers only over the Kafka protocol,
and rides out a broker SIGKILL the way any client does (metadata refresh, retries).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from workbench.schema_registry import errors

log = logging.getLogger(__name__)

TOPIC = "_schemas"
#: How long a write may wait for acks=all plus the reader catching up (Confluent's
#: `kafkastore.timeout.ms` is 500 ms; a broker failover here takes seconds).
WRITE_TIMEOUT_S = 30.0
STARTUP_TIMEOUT_S = 60.0


class KafkaStore:
    """Reads `_schemas` into `apply(key, value)` and writes records to it, one writer at a time."""

    def __init__(
        self,
        bootstrap_servers: str,
        apply: Callable[[bytes | None, bytes | None], None],
        *,
        topic: str = TOPIC,
        replication_factor: int = 1,
        client_conf: dict | None = None,
    ) -> None:
        self.topic = topic
        self.apply = apply
        self.replication_factor = replication_factor
        conf = {"bootstrap.servers": bootstrap_servers, **(client_conf or {})}
        self._conf = conf
        self._applied = -1  # offset of the last record applied
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._producer = Producer(
            {**conf, "acks": "all", "enable.idempotence": True, "linger.ms": 0, "client.id": "schema-registry"}
        )
        self._consumer = Consumer(
            {
                **conf,
                "group.id": "schema-registry",
                "enable.auto.commit": False,
                "client.id": "schema-registry-reader",
                "fetch.wait.max.ms": 100,
                "topic.metadata.refresh.interval.ms": 2000,
            }
        )
        self._thread = threading.Thread(target=self._read, name="kafka-store-reader", daemon=True)

    def start(self) -> None:
        """Create the topic if needed, start the reader and return once it caught up with the log end."""
        self._ensure_topic()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        # The log end before the reader starts (one thread per confluent-kafka consumer call).
        while True:
            try:
                _low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=5)
                break
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("the end of %s is not known yet (%s); retrying", self.topic, exc)
                time.sleep(0.2)
        self._consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        self._thread.start()
        self._wait_applied(high - 1, deadline - time.monotonic())

    def _ensure_topic(self) -> None:
        admin = AdminClient(self._conf)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            md = admin.list_topics(timeout=10)
            if self.topic in md.topics and not md.topics[self.topic].error:
                return
            brokers = len(md.brokers)
            rf = max(1, min(self.replication_factor, brokers))
            topic = NewTopic(
                self.topic,
                num_partitions=1,
                replication_factor=rf,
                config={"cleanup.policy": "compact", "min.insync.replicas": str(max(1, rf - 1))},
            )
            try:
                admin.create_topics([topic])[self.topic].result(timeout=30)
                return
            except KafkaException as exc:
                code = exc.args[0].code() if exc.args else None
                if code == KafkaError.TOPIC_ALREADY_EXISTS:
                    return
                if time.monotonic() > deadline:
                    raise
                log.warning("creating %s failed (%s); retrying", self.topic, exc)
                time.sleep(0.5)

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._consumer.poll(0.2)
            except Exception:  # closed under us at shutdown
                return
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("reading %s: %s", self.topic, err)
                continue
            try:
                self.apply(msg.key(), msg.value())
            except Exception:
                log.exception("could not apply the record at offset %d of %s", msg.offset(), self.topic)
            with self._cond:
                self._applied = msg.offset() or 0
                self._cond.notify_all()

    def _wait_applied(self, offset: int, timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._applied < offset:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.operation_timeout(
                        f"the registry's reader did not reach offset {offset} of {self.topic} in time"
                    )
                self._cond.wait(left)

    def put(self, key: bytes, value: bytes | None) -> None:
        """Write one record; return once it is acknowledged by the ISR and applied to the registry."""
        done: dict = {}
        event = threading.Event()

        def delivered(err, msg) -> None:
            done["err"] = err
            done["offset"] = None if err else msg.offset()
            event.set()

        self._producer.produce(self.topic, key=key, value=value, partition=0, on_delivery=delivered)
        deadline = time.monotonic() + WRITE_TIMEOUT_S
        while not event.is_set():
            if time.monotonic() > deadline:
                raise errors.operation_timeout(f"writing to {self.topic} was not acknowledged in time")
            self._producer.poll(0.1)
        if done["err"] is not None:
            raise errors.store_error(f"writing to {self.topic} failed: {done['err']}")
        self._wait_applied(done["offset"], deadline - time.monotonic())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        try:
            self._producer.flush(2)
            self._consumer.close()
        except Exception:
            pass
