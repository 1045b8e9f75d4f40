"""`SchemaIds`: which schema ids are registered under which subject, for broker-side schema
validation (Confluent's `confluent.value.schema.validation` / `confluent.key.schema.validation`).

Confluent Server asks the registry over HTTP; here the broker reads what the registry itself
reads, the `_schemas` topic, with an ordinary consumer over the Kafka protocol (this broker's
own listener; the partition's leader may be another broker), applying the records the way the
registry does (`workbench.schema_registry.topic_reader`, shared with the Iceberg committer). Not
the registry's class itself: it imports every format's parser (jsonschema alone costs a broker
seconds of CPU). Started the first time
a validating topic gets a produce; a topic without these configs never pays for it.

A produce naming an id the reader has not seen yet may simply be ahead of it (the registry
answered the serializer a moment ago): the produce handler then asks `catch_up`, which waits
(bounded, off the event loop) until the reader has reached the topic's current end, and checks
again (a catch-up when the reader is already at the end costs one ListOffsets round trip).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from workbench.schema_registry.topic_reader import TOPIC, SchemasTopicReader

#: How long a produce may wait for the reader to reach the end of `_schemas` on a miss; the
#: first time longer, as the reader's consumer is still connecting and finding the leader.
CATCH_UP_TIMEOUT_S = 3.0
FIRST_CATCH_UP_TIMEOUT_S = 15.0


class SchemaIds(SchemasTopicReader):
    """The live (not deleted) schema ids per subject, read from `_schemas` by the same reader the
    Iceberg committer uses (`SchemasTopicReader`); thread-safe. The broker's port is known only once
    its listener is bound, so the bootstrap address is a callable asked when the reader starts."""

    client_id = "broker-schema-ids"

    def __init__(self, bootstrap_servers: Callable[[], str], topic: str = TOPIC) -> None:
        super().__init__("", topic)
        self._bootstrap_of = bootstrap_servers
        self._last_catch_up = 0.0

    def _bootstrap(self) -> str:
        return self._bootstrap_of()

    def ids(self, subject: str) -> frozenset[int]:
        """The ids of the subject's live versions."""
        self.start()
        return frozenset(self.subject_ids(subject, deleted=False))

    def catch_up(self, timeout: float | None = None) -> bool:
        """Block until the reader has applied everything in `_schemas` as of now (at once when there
        is no `_schemas`: no id can be registered); False on timeout (blocking: call it off the event
        loop)."""
        if timeout is None:
            timeout = CATCH_UP_TIMEOUT_S if self._last_catch_up else FIRST_CATCH_UP_TIMEOUT_S
        done = super().catch_up(timeout)
        if done:
            self._last_catch_up = time.monotonic()
        return done
