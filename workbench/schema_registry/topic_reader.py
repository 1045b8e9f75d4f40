"""`SchemasTopicReader`: the registered schemas, read from the `_schemas` topic over the Kafka protocol.

For processes that need schemas but must not depend on the registry's HTTP server: the brokers'
Iceberg committer (`workbench.storage.iceberg_typed`) types a topic's values with it, and each
broker's schema validation (`workbench.broker.schema_ids`) checks produced ids against it. Like
the registry's own `KafkaStore` reader, a confluent-kafka
consumer with no group assigns `_schemas` partition 0 from the beginning and applies each record
as `SchemaRegistry.apply` does: a SCHEMA value sets a subject version (and its id's schema), a
tombstone hard-deletes the version, DELETE_SUBJECT soft-deletes versions up to one, CLEAR_SUBJECT
forgets the subject's versions. A schema id is kept once seen (an id never changes meaning, and
records written with a deleted version still carry it).

Nothing here blocks on an absent registry: before the registry created `_schemas` the consumer
finds no such partition (consumers never auto-create topics) and the reader simply knows no
schema; librdkafka's metadata refresh picks the topic up once it exists, so a registry started
after the brokers is read from then on. `catch_up` (bounded) waits for the reader to reach the
topic's current end, answering at once when the topic does not exist.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from workbench.schema_registry import records

log = logging.getLogger(__name__)

TOPIC = "_schemas"


class SchemasTopicReader:
    """Schemas by id and subject versions from `_schemas`; thread-safe; a `SchemaSource`."""

    #: The consumer's client.id (what the brokers' logs and quotas see).
    client_id = "iceberg-schemas-reader"

    def __init__(self, bootstrap_servers: str, topic: str = TOPIC) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._by_id: dict[int, dict[str, Any]] = {}
        self._versions: dict[str, dict[int, tuple[int, bool]]] = {}  # subject -> version -> (id, deleted)
        self._cond = threading.Condition()
        self._position = 0  # next offset to apply
        self._wanted = 0  # catch-up requests made
        self._served = 0  # catch-up requests answered
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._read, name="schemas-topic-reader", daemon=True)
                self._thread.start()

    # -- what it knows ------------------------------------------------------------------------

    def subject_ids(self, subject: str, *, deleted: bool = True) -> list[int]:
        """The ids of the subject's versions, oldest first (soft-deleted ones too unless `deleted` is False)."""
        with self._cond:
            versions = self._versions.get(subject, {})
            return list(dict.fromkeys(sid for _v, (sid, gone) in sorted(versions.items()) if deleted or not gone))

    def by_id(self, schema_id: int) -> dict[str, Any] | None:
        with self._cond:
            return self._by_id.get(int(schema_id))

    def version(self, subject: str, version: int) -> dict[str, Any] | None:
        with self._cond:
            found = self._versions.get(subject, {}).get(int(version))
            return self._by_id.get(found[0]) if found is not None else None

    def referenced(self, entry: dict[str, Any], seen: set[tuple[str, int]] | None = None) -> list[str]:
        """The texts of the schemas `entry` references, recursively, dependencies first (each once)."""
        seen = set() if seen is None else seen
        out: list[str] = []
        for ref in entry.get("references") or []:
            key = (ref["subject"], int(ref["version"]))
            if key in seen:
                continue
            seen.add(key)
            target = self.version(*key)
            if target is None:
                raise ValueError(f"reference {ref.get('name')!r}: {key[0]} version {key[1]} is not registered")
            out += self.referenced(target, seen)
            out.append(target["schema"])
        return out

    # -- reading ------------------------------------------------------------------------------

    def apply(self, key_bytes: bytes | None, value_bytes: bytes | None) -> None:
        """Apply one `_schemas` record (unknown or malformed ones are skipped, as the registry does)."""
        try:
            key = records.decode(key_bytes)
            value = records.decode(value_bytes)
        except ValueError:
            return
        if key is None or not isinstance(key.get("subject"), str):
            return
        kind, subject = key.get("keytype"), key["subject"]
        with self._cond:
            versions = self._versions.setdefault(subject, {})
            if kind == "SCHEMA":
                if value is None:
                    versions.pop(int(key["version"]), None)
                else:
                    sid = int(value["id"])
                    versions[int(value["version"])] = (sid, bool(value.get("deleted", False)))
                    self._by_id.setdefault(
                        sid,
                        {
                            "schema": value["schema"],
                            "schemaType": value.get("schemaType", "AVRO"),
                            "references": value.get("references") or [],
                        },
                    )
            elif kind == "DELETE_SUBJECT" and value is not None:
                upto = int(value["version"])
                for v, (sid, _gone) in list(versions.items()):
                    if v <= upto:
                        versions[v] = (sid, True)
            elif kind == "CLEAR_SUBJECT" and value is not None:
                versions.clear()

    def catch_up(self, timeout: float) -> bool:
        """Wait (at most `timeout`) until everything in `_schemas` as of now is applied. True at
        once when the topic does not exist (no registry yet); False on timeout."""
        self.start()
        deadline = time.monotonic() + timeout
        with self._cond:
            self._wanted += 1
            wanted = self._wanted
            while self._served < wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _read(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap(),
                "group.id": "workbench-schemas-reader",  # never joined nor committed: assign() only
                "enable.auto.commit": False,
                "client.id": self.client_id,
                "fetch.wait.max.ms": 100,
                "topic.metadata.refresh.interval.ms": 2000,
                "log_level": 3,
            }
        )
        consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        target: int | None = None
        try:
            while not self._stop.is_set():
                with self._cond:
                    pending = self._wanted > self._served
                if pending and target is None:  # learn the end (in this thread, the consumer's)
                    try:
                        _low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=1)
                        target = high
                    except Exception:
                        if self._absent(consumer):
                            target = -1  # no `_schemas`: no registry yet, nothing to wait for
                        # else not reachable yet (a broker restarting): ask again, the caller's timeout bounds it
                if target is not None:
                    with self._cond:
                        if self._position >= target:
                            self._served = self._wanted
                            target = None
                            self._cond.notify_all()
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

    def _bootstrap(self) -> str:
        """Where the consumer connects (asked when the reader thread starts)."""
        return self.bootstrap_servers

    def _absent(self, consumer: Any) -> bool:
        """Whether the cluster answers that `_schemas` does not exist (not: could not be asked)."""
        from confluent_kafka import KafkaError

        try:
            found = consumer.list_topics(self.topic, timeout=1).topics.get(self.topic)
        except Exception:
            return False
        return found is None or (found.error is not None and found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
