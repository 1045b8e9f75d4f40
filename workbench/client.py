"""The client façade: thin wrappers over confluent-kafka with JSON values by default.

The same classes serve an embedded `Cluster` and `workbench.connect(...)` to a
cluster started elsewhere: they only need a bootstrap string.

Values: dicts, lists, numbers, booleans and None are JSON-encoded; `str` is
UTF-8; `bytes` pass through untouched. On the way back, a value that parses
as JSON is returned decoded, anything else as `str` (UTF-8) or `bytes`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer as _Consumer
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka import Producer as _Producer
from confluent_kafka.admin import AdminClient, NewTopic

from workbench.delivery import Delivery
from workbench.errors import ClusterStoppedError, ProduceError
from workbench.kafka_logging import KAFKA_LOGGER
from workbench.serialization import check_topic_name, encode_value
from workbench.sql.mixin import SqlMixin
from workbench.transactions import Transaction, consume_transform_produce


def _never_closed() -> str | None:
    return None


def encode_headers(headers: Any) -> list[tuple[str, bytes | None]]:
    """`send(headers=...)`: a dict or a list of (name, value) pairs; names are strings, values are
    encoded like record values (bytes as is, str as UTF-8, anything else as JSON)."""
    if isinstance(headers, dict):
        items = list(headers.items())
    elif isinstance(headers, list | tuple):
        items = list(headers)
    else:
        raise ValueError(
            f"headers must be a dict such as {{'source': 'web'}} or a list of (name, value) pairs, "
            f"not {type(headers).__name__} {headers!r}"
        )
    out = []
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ValueError(f"each header must be a (name, value) pair, not {item!r}")
        name, value = item
        if not isinstance(name, str):
            raise ValueError(f"header names must be strings, not {name!r}")
        out.append((name, encode_value(value)))
    return out


def timestamp_ms(value: Any) -> int:
    """`send(timestamp=...)` as epoch milliseconds: an int, or a datetime (naive means UTC)."""
    import datetime

    if isinstance(value, bool):
        raise ValueError(f"timestamp must be epoch milliseconds or a datetime, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"timestamp must be epoch milliseconds (0 or more), not {value!r}")
        return value
    if isinstance(value, float) and value == value and value >= 0:
        return int(value)
    if isinstance(value, datetime.datetime):  # pandas.Timestamp is one too
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return int(value.timestamp() * 1000)
    raise ValueError(
        f"timestamp must be epoch milliseconds (e.g. int(time.time() * 1000)) or a datetime, not {value!r}"
    )


def _topic_list(topics: Any) -> list[str]:
    if topics is None:
        return []
    names = [topics] if isinstance(topics, str) else topics
    try:
        names = list(names)
    except TypeError:
        raise ValueError(f"topics must be a topic name or a list of them, not {topics!r}") from None
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"topics must be a topic name or a list of them, not {topics!r}")
    return names


def decode_value(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    try:
        return json.loads(text)
    except ValueError:
        return text


def decode_key(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


@dataclass(frozen=True)
class Record:
    """One consumed record with its key and value decoded."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None  # milliseconds since the epoch
    key: Any
    value: Any
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


class Producer:
    """`confluent_kafka.Producer` with JSON values and a blocking `send_and_wait`.

    Defaults are Kafka's safe ones: idempotence on (acks=all, no duplicates on retry).
    """

    def __init__(self, bootstrap_servers: str, **conf: Any) -> None:
        settings = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "linger.ms": 5,
            "logger": KAFKA_LOGGER,
        }
        settings.update({k.replace("_", "."): v for k, v in conf.items()})
        self._producer = _Producer(settings)
        self.bootstrap_servers = bootstrap_servers
        #: Set by the connection that made this producer: why it can no longer be used (a stopped
        #: `Cluster`), or None. Checked before every send and while waiting, so nothing waits for
        #: brokers that are gone.
        self._closed_reason: Callable[[], str | None] = _never_closed
        self.transactional_id: str | None = settings.get("transactional.id")  # [txn]
        self._transactions_ready = False

    def _check_open(self) -> None:
        reason = self._closed_reason()
        if reason is not None:
            raise ClusterStoppedError(reason)

    def transaction(self) -> Transaction:
        """A transaction as a context manager (KIP-98): what is sent inside the block becomes
        visible to read_committed readers when it ends normally, and never if it raises (then
        it is aborted). Needs ``cluster.producer(transactional_id="...")``; see `workbench.transactions`."""
        return Transaction(self)

    def consume_transform_produce(
        self, consumer: Consumer, transform: Any, output_topic: str, *, max_records: int = 1000, timeout: float = 5.0
    ) -> int:
        """Exactly-once step: `transform` each record `consumer` reads, send the results to
        `output_topic` and commit them with the consumer's offsets in one transaction; returns how
        many records were consumed (`workbench.transactions.consume_transform_produce`)."""
        return consume_transform_produce(
            consumer, self, transform, output_topic, max_records=max_records, timeout=timeout
        )

    @property
    def raw(self) -> _Producer:
        """The underlying confluent-kafka producer, for anything the façade does not cover."""
        return self._producer

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        *,
        partition: int | None = None,
        headers: dict[str, Any] | list[tuple[str, Any]] | None = None,
        timestamp: int | Any | None = None,
        on_delivery=None,
        schema: Any = None,
        key_schema: Any = None,
    ) -> None:
        """Queue one record (asynchronous; `flush()` waits for all). Raises for bad arguments.

        `schema` / `key_schema`: an Avro schema or a JSON Schema (dict or JSON text): the value
        (key) is registered under `<topic>-value` (`-key`) in the connection's schema registry and
        sent in Confluent's wire format, with confluent-kafka's serializers.

        `headers`: a dict or a list of (name, value) pairs (values encoded like `value`);
        `timestamp`: epoch milliseconds, or a `datetime` / `pandas.Timestamp` (naive means UTC);
        `partition`: one of the topic's partitions (default: by key, as Kafka's partitioner)."""
        self._check_open()
        check_topic_name(topic)
        if partition is not None and (not isinstance(partition, int) or isinstance(partition, bool) or partition < 0):
            raise ValueError(f"partition must be a non-negative integer or None, not {partition!r}")
        kwargs: dict[str, Any] = {"value": encode_value(value)}
        if key is not None:
            kwargs["key"] = encode_value(key)
        if schema is not None or key_schema is not None:
            codec = self._schema_codec()
            if schema is not None and value is not None:
                kwargs["value"] = codec.serialize(topic, value, schema)
            if key_schema is not None and key is not None:
                kwargs["key"] = codec.serialize(topic, key, key_schema, key=True)
        if partition is not None:
            self._check_partition(topic, partition)
            kwargs["partition"] = partition
        if headers is not None:
            kwargs["headers"] = encode_headers(headers)
        if timestamp is not None:
            kwargs["timestamp"] = timestamp_ms(timestamp)
        if on_delivery is not None:
            kwargs["on_delivery"] = on_delivery
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: serve delivery callbacks and retry
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    size = len(kwargs.get("value") or b"") + len(kwargs.get("key") or b"")
                    raise ValueError(
                        f"record of {size} bytes is larger than the producer's message.max.bytes; send "
                        "smaller values, or raise the limit with cluster.producer(message_max_bytes=...) "
                        "and the topic's max.message.bytes"
                    ) from None
                if err.code() == KafkaError._UNKNOWN_PARTITION:
                    raise ValueError(self._partition_problem(topic, partition)) from None
                raise
        self._producer.poll(0)

    def _schema_codec(self):
        url = getattr(self, "_schema_registry_url", None)
        if url is None:
            raise ValueError(
                "send(..., schema=...) needs a schema registry: Cluster(schema_registry=True), or "
                "workbench.connect(bootstrap, schema_registry_url='http://...')"
            )
        codec = self.__dict__.get("_codec")
        if codec is None:
            from workbench.schema_registry.wire import SchemaCodec

            codec = self.__dict__["_codec"] = SchemaCodec(url)
        return codec

    def _partition_counts(self, topic: str, timeout: float = 5.0) -> int | None:
        """How many partitions `topic` has (None: it does not exist yet, or no broker answered)."""
        try:
            md = self._producer.list_topics(topic, timeout=timeout)
        except KafkaException:
            return None
        tm = md.topics.get(topic)
        if tm is None or tm.error is not None:
            return None
        return len(tm.partitions)

    def _partition_problem(self, topic: str, partition: int | None) -> str:
        count = self._partition_counts(topic)
        if count is None:
            return f"partition {partition} of topic {topic!r} is unknown: the topic does not exist (yet)"
        return (
            f"topic {topic!r} has {count} partition(s), numbered 0 to {count - 1}; there is no partition "
            f"{partition}. Leave partition out to let the key choose, or add partitions to the topic"
        )

    def _check_partition(self, topic: str, partition: int) -> None:
        known = self.__dict__.setdefault("_known_partitions", {})
        count = known.get(topic)
        if count is None or partition >= count:
            count = self._partition_counts(topic)
            if count is None:
                return  # a new topic (auto-created on first use): the broker decides
            known[topic] = count
        if partition >= count:
            raise ValueError(self._partition_problem(topic, partition))

    def send_and_wait(
        self, topic: str, value: Any = None, key: Any = None, *, timeout: float = 30.0, **kwargs: Any
    ) -> Delivery:
        """Send one record and wait for its acknowledgement; returns its partition and offset."""
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def on_delivery(err, msg) -> None:
            outcome["err"], outcome["msg"] = err, msg
            done.set()

        self.send(topic, value, key, on_delivery=on_delivery, **kwargs)
        deadline = time.monotonic() + timeout
        while not done.is_set() and time.monotonic() < deadline:
            self._producer.poll(0.05)
            reason = self._closed_reason()
            if reason is not None and not done.is_set():
                raise ProduceError(f"no acknowledgement for a record to {topic!r}: {reason}")
        if not done.is_set():
            raise ProduceError(f"no acknowledgement for a record to {topic!r} within {timeout}s")
        if outcome["err"] is not None:
            err = outcome["err"]
            hint = ""
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                hint = (
                    "; the record is over the topic's max.message.bytes: send a smaller value or raise it, "
                    "e.g. create_topic(..., config={'max.message.bytes': N})"
                )
            raise ProduceError(f"record to {topic!r} failed: {err.str()}{hint}")
        msg = outcome["msg"]
        return Delivery(msg.topic(), msg.partition(), msg.offset())

    def flush(self, timeout: float = 30.0) -> int:
        """Wait until every queued record is acknowledged; returns how many are still queued."""
        if self._closed_reason() is not None:
            return len(self._producer)  # nothing will acknowledge them now
        return self._producer.flush(timeout)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Consumer:
    """`confluent_kafka.Consumer` in a group, yielding decoded `Record`s."""

    def __init__(
        self,
        bootstrap_servers: str,
        group: str | None,
        topics: str | Iterable[str] | None = None,
        **conf: Any,
    ) -> None:
        if group is not None and (not isinstance(group, str) or not group):
            raise ValueError(
                f"group must be a consumer group name (a non-empty string) or None for no group, not {group!r}"
            )
        topics = _topic_list(topics)
        self._closed_reason: Callable[[], str | None] = _never_closed
        settings = {
            "bootstrap.servers": bootstrap_servers,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "logger": KAFKA_LOGGER,
        }
        if group is not None:
            settings["group.id"] = group
        else:
            settings["group.id"] = f"workbench-anonymous-{id(self)}"
            settings["enable.auto.commit"] = False
        settings.update({k.replace("_", "."): v for k, v in conf.items()})
        self._consumer = _Consumer(settings)
        if topics:
            self.subscribe(topics)

    @property
    def raw(self) -> _Consumer:
        return self._consumer

    def _check_open(self) -> None:
        reason = self._closed_reason()
        if reason is not None:
            raise ClusterStoppedError(reason)

    def subscribe(self, topics: list[str]) -> None:
        self._consumer.subscribe(topics)

    def assign(self, topic: str, partitions: Iterable[int], offset: int | None = None) -> None:
        """Read partitions directly, without group management (offset: -2 earliest, -1 latest)."""
        tps = [TopicPartition(topic, p, offset if offset is not None else -2) for p in partitions]
        self._consumer.assign(tps)

    def poll(self, timeout: float = 1.0) -> Record | None:
        self._check_open()
        msg = self._consumer.poll(timeout)
        if msg is None:
            return None
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                return None
            raise KafkaException(msg.error())
        ts_type, ts = msg.timestamp()
        return Record(
            msg.topic(),
            msg.partition(),
            msg.offset(),
            ts if ts_type else None,
            self._decode(msg.key(), decode_key),
            self._decode(msg.value(), decode_value),
            list(msg.headers() or []),
        )

    def _decode(self, raw: bytes | None, plain: Any) -> Any:
        """Confluent wire-format bytes decode by their schema when the connection has a registry."""
        url = getattr(self, "_schema_registry_url", None)
        if url is not None and raw is not None and raw[:1] == b"\x00" and len(raw) >= 5:
            from workbench.schema_registry.wire import SchemaCodec

            codec = self.__dict__.get("_codec") or self.__dict__.setdefault("_codec", SchemaCodec(url))
            try:
                return codec.decode(raw)
            except Exception:  # not registered here, or not really framed: fall back to the plain decoding
                pass
        return plain(raw)

    def read(self, max_records: int = 1000, timeout: float = 5.0, idle: float = 1.0) -> list[Record]:
        """Collect up to `max_records`, giving up after `timeout` seconds or `idle` seconds with nothing new."""
        if not isinstance(max_records, int) or isinstance(max_records, bool) or max_records < 1:
            raise ValueError(f"max_records must be a positive integer (how many records to read), not {max_records!r}")
        for name, seconds in (("timeout", timeout), ("idle", idle)):
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
                raise ValueError(f"{name} must be a number of seconds (0 or more), not {seconds!r}")
        out: list[Record] = []
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while len(out) < max_records and time.monotonic() < deadline:
            record = self.poll(0.1)
            if record is None:
                if out and time.monotonic() - last > idle:
                    break
                continue
            out.append(record)
            last = time.monotonic()
        return out

    def __iter__(self) -> Iterator[Record]:
        while True:
            record = self.poll(1.0)
            if record is not None:
                yield record

    def commit(self, asynchronous: bool = False) -> None:
        self._check_open()
        self._consumer.commit(asynchronous=asynchronous)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class KafkaConnection(SqlMixin):
    """Producers, consumers and admin for any Kafka-protocol cluster, by bootstrap string.

    `workbench.connect("host:9092")` returns one; `Cluster` is one too.
    """

    #: False: a cluster started elsewhere (see `workbench.embedded`); `Cluster` says True.
    embedded = False

    def __init__(self, bootstrap_servers: str, schema_registry_url: str | None = None) -> None:
        self._bootstrap = bootstrap_servers
        self._schema_registry_url = schema_registry_url

    @property
    def bootstrap_servers(self) -> str:
        return self._bootstrap

    @property
    def schema_registry_url(self) -> str | None:
        """The schema registry's URL (`Cluster(schema_registry=True)`, or `connect(..., schema_registry_url=)`)."""
        return getattr(self, "_schema_registry_url", None)

    def _closed_reason(self) -> str | None:
        """Why this connection can no longer be used (a stopped `Cluster`), or None."""
        return None

    def _ensure_running(self, action: str = "") -> None:
        reason = self._closed_reason()
        if reason is not None:
            raise ClusterStoppedError(f"cannot {action}: {reason}" if action else reason)

    def close(self) -> None:
        """Stop this connection's background work: the shared leader and lag histories, the SQL
        engine's threads (its cache stays on disk). The brokers are not touched; a later call
        starts what it needs again. (`Cluster.close()` is `stop()`.)"""
        history = self.__dict__.pop("_leader_history", None)
        if history is not None:
            history.stop()
        self.close_sql()

    def _on_stop(self, callback: Callable[[], None]) -> None:
        """Call `callback` (held weakly when it is a bound method) right after this connection
        stops (`Cluster.stop()`): widgets show "stopped" at once, even those with no live loop."""
        import weakref

        ref = weakref.WeakMethod(callback) if hasattr(callback, "__self__") else (lambda: callback)
        self.__dict__.setdefault("_stop_callbacks", []).append(ref)

    def _notify_stopped(self) -> None:
        history = self.__dict__.pop("_leader_history", None)
        if history is not None:
            history.stop()
        for ref in self.__dict__.pop("_stop_callbacks", []):
            callback = ref()
            if callback is not None:
                try:
                    callback()
                except Exception:  # a widget that cannot show it must not break stop()
                    pass

    def shared_leader_history(self):
        """The connection's one `LeaderHistory` (started on first use, an hour of leader changes):
        every cluster view and dashboard of this connection shows the same timeline, from when
        the first of them opened."""
        from workbench.describe import LeaderHistory

        self._ensure_running("record leader changes")
        with self.__dict__.setdefault("_leader_history_lock", threading.Lock()):
            history = self.__dict__.get("_leader_history")
            if history is None:
                history = LeaderHistory(self.bootstrap_servers, 0.25, span=3600.0)
                try:
                    history.poll()
                except Exception:
                    pass  # unreachable now: the thread keeps trying
                self._leader_history = history.start()
                import weakref

                weakref.finalize(self, history.stop)  # its thread ends with the connection
            return history

    def _adopt(self, client):
        """Give a producer or consumer this connection's liveness check (and schema registry)."""
        client._closed_reason = self._closed_reason
        client._schema_registry_url = self.schema_registry_url
        return client

    def producer(self, **conf: Any) -> Producer:
        self._ensure_running("make a producer")
        return self._adopt(Producer(self.bootstrap_servers, **conf))

    def consumer(self, group: str | None = None, topics: str | Iterable[str] | None = None, **conf: Any) -> Consumer:
        self._ensure_running("make a consumer")
        return self._adopt(Consumer(self.bootstrap_servers, group, topics, **conf))

    def admin(self, **conf: Any) -> AdminClient:
        self._ensure_running("make an admin client")
        settings = {"bootstrap.servers": self.bootstrap_servers, "logger": KAFKA_LOGGER}
        settings.update({k.replace("_", "."): v for k, v in conf.items()})
        return AdminClient(settings)

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int | None = None,
        config: dict[str, Any] | None = None,
        *,
        exist_ok: bool = False,
        timeout: float = 30.0,
    ) -> None:
        """Create a topic; raises ValueError with the broker's reason when it refuses.

        `exist_ok=True`: a topic of that name that already exists is fine (it is left as it is,
        whatever its partitions and configs), so a notebook cell can run twice."""
        self._ensure_running(f"create topic {name!r}")
        check_topic_name(name)
        if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
            raise ValueError(f"partitions must be a positive integer (1 or more), not {partitions!r}")
        if replication_factor is not None and (
            not isinstance(replication_factor, int) or isinstance(replication_factor, bool) or replication_factor < 1
        ):
            raise ValueError(
                f"replication_factor must be a positive integer or None (the broker default), "
                f"not {replication_factor!r}"
            )
        if config is not None and not isinstance(config, dict):
            raise ValueError(
                f"config must be a dict of Kafka topic configs such as "
                f"{{'retention.ms': 60000}}, not {type(config).__name__}"
            )
        topic = NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=-1 if replication_factor is None else replication_factor,
            config={k: str(v) for k, v in (config or {}).items()},
        )
        admin = self.admin()  # keep a reference: the futures die with their client
        futures = admin.create_topics([topic], operation_timeout=timeout, request_timeout=timeout)
        try:
            futures[name].result(timeout)
        except KafkaException as exc:
            err = exc.args[0]
            if exist_ok and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return
            self._ensure_running(f"create topic {name!r}")
            raise ValueError(f"cannot create topic {name!r}: {err.str()}") from None
        self._wait_until_visible(name, partitions, timeout=max(10.0, timeout))

    def _wait_until_visible(self, name: str, partitions: int, timeout: float = 10.0) -> None:
        """Return once every bootstrap broker's metadata shows the topic with a leader per partition.

        Metadata reaches brokers a few milliseconds apart (as in Kafka); waiting here means the next
        call in a notebook cell never meets UNKNOWN_TOPIC_OR_PARTITION. A workbench broker shows
        itself as leader only once it has opened the partition's log (thousands of new partitions
        take seconds), so this also waits until every partition takes writes. Brokers that cannot
        be asked (unreachable, or requiring SASL) are skipped; after `timeout` it returns anyway."""
        from kafka.protocol.metadata import MetadataRequest

        from workbench.protocol.blocking_client import WireClient

        request = MetadataRequest(
            topics=[MetadataRequest.MetadataRequestTopic(name=name)], allow_auto_topic_creation=False
        )
        deadline = time.monotonic() + timeout
        for server in self.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            while time.monotonic() < deadline:
                try:
                    client = WireClient(host, int(port), timeout=2.0)
                    try:
                        # A busy broker may take longer than the connect timeout to describe
                        # thousands of partitions: a slow answer is waited for, not a skip.
                        client.sock.settimeout(max(2.0, deadline - time.monotonic()))
                        md = client.request(request, 9)
                    finally:
                        client.close()
                except (OSError, ValueError, AssertionError, ConnectionError):
                    break
                parts = [p for t in md.topics if t.name == name and t.error_code == 0 for p in t.partitions]
                if len(parts) >= partitions and all(p.leader_id >= 0 for p in parts):
                    break
                time.sleep(0.02 if partitions < 1000 else 0.2)  # describing 10,000 costs the broker

    def produce_from(
        self,
        query: str,
        *,
        topic: str | None = None,
        route_by: str | None = None,
        rate: float | None = None,
        timestamps: bool = True,
        keep_partitions: bool = False,
        timeout: float = 60.0,
    ):
        """Re-produce the rows a SQL query selects, byte-exact in key, value, headers and (unless
        `timestamps=False`) timestamps: to `topic`, or to the topic each row's `route_by` column
        names (dead-letter redrive), at most `rate` records/s. Waits for every acknowledgement;
        returns a `workbench.redrive.ProduceFromResult`. See `workbench.redrive`."""
        from workbench.redrive import produce_from

        self._ensure_running("produce records")
        return produce_from(
            self,
            query,
            topic=topic,
            route_by=route_by,
            rate=rate,
            timestamps=timestamps,
            keep_partitions=keep_partitions,
            timeout=timeout,
        )

    def delete_topic(self, name: str, *, timeout: float = 30.0) -> None:
        self._ensure_running(f"delete topic {name!r}")
        admin = self.admin()
        futures = admin.delete_topics([name], operation_timeout=timeout, request_timeout=timeout)
        try:
            futures[name].result(timeout)
        except KafkaException as exc:
            raise ValueError(f"cannot delete topic {name!r}: {exc.args[0].str()}") from None

    def open_transactions(self):  # -> pandas.DataFrame
        """[txn] The transactions open on this cluster, oldest first, with their age in seconds
        (ListTransactions + DescribeTransactions, KIP-664): a hanging one holds back every
        read_committed reader of its partitions."""
        import pandas as pd

        from workbench.transactions import COLUMNS, open_transactions

        return pd.DataFrame(open_transactions(self.bootstrap_servers), columns=list(COLUMNS))

    def describe(self, *, internal: bool = False):
        """Brokers (id, address, alive, controller), partitions (leader, leader epoch, replicas, ISR,
        high watermark, log end offset) and groups (protocol classic/consumer, state, coordinator) as
        DataFrames, from Metadata, ListOffsets and ListGroups."""
        from workbench.describe import describe

        self._ensure_running("describe the cluster")
        return describe(
            self.bootstrap_servers,
            known_brokers=self._known_brokers(),
            include_internal=internal,
            replica_notes=self._replica_notes(),
        )

    def topic_overview(self, *, internal: bool = False):
        """Topics as a Kafka console lists them: partitions, replication factor, records,
        under-replicated/offline partitions, size on disk, retention and cleanup settings and the
        non-default configs, one row per topic (`workbench.describe.topic_overview`)."""
        from workbench.describe import topic_overview

        self._ensure_running("describe topics")
        return topic_overview(self, internal=internal)

    def _known_brokers(self) -> dict[int, str] | None:
        return None

    def _replica_notes(self) -> dict[int, dict] | None:
        """What each broker publishes about its replicas (`replica-states.json`), when known."""
        return None

    def leader_history(self, interval: float = 0.25):
        """Start recording leader changes (a `LeaderHistory`; `.frame()` gives them as a DataFrame)."""
        from workbench.describe import LeaderHistory

        self._ensure_running("record leader changes")
        history = LeaderHistory(self.bootstrap_servers, interval)
        history.poll()
        return history.start()

    def rebalance_leaders(self, *, timeout: float = 30.0) -> None:
        """Move leadership back to each partition's preferred replica where it is in sync (ElectLeaders)."""
        from confluent_kafka import ElectionType

        self._ensure_running("rebalance leaders")
        admin = self.admin()
        future = admin.elect_leaders(ElectionType.PREFERRED, None)  # (kwargs trip a confluent-kafka 2.16 bug)
        try:
            future.result(timeout)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() != KafkaError.ELECTION_NOT_NEEDED:
                raise RuntimeError(f"preferred leader election failed: {err.str()}") from None

    def topics(self, *, internal: bool = False, timeout: float = 10.0) -> list[str]:
        """The topic names (internal ones such as `__consumer_offsets` only with `internal=True`)."""
        self._ensure_running("list topics")
        try:
            md = self.admin().list_topics(timeout=timeout)
        except KafkaException as exc:
            raise ConnectionError(
                f"no broker of {self.bootstrap_servers} answered within {timeout}s: {exc.args[0].str()}"
            ) from None
        return sorted(t for t in md.topics if internal or not t.startswith("__"))

    # ---- widgets (workbench/widgets; owned there) -------------------------------------------------
    # Thin constructors, imported lazily so that ipywidgets is only loaded when a widget is asked for.
    def dashboard(self, topic: str | None = None):
        """Produce, Browse, Topics, Groups, Cluster and SQL widgets in tabs (`workbench.widgets.Dashboard`)."""
        from workbench.widgets import Dashboard

        return Dashboard(self, topic=topic)

    def producer_panel(self, topic: str | None = None):
        """A `workbench.widgets.ProducerPanel`: send records by hand or from a generator."""
        from workbench.widgets import ProducerPanel

        return ProducerPanel(self, topic=topic)

    def group_monitor(self):
        """A `workbench.widgets.GroupMonitor`: consumer groups, lag, Burrow-style status, resets."""
        from workbench.widgets import GroupMonitor

        return GroupMonitor(self)

    def transactions_panel(self):
        """A `workbench.widgets.TransactionsPanel`: the open transactions, their age and partitions."""
        from workbench.widgets import TransactionsPanel

        return TransactionsPanel(self)

    def cluster_view(self):
        """A `workbench.widgets.ClusterView`: brokers, partition grid, leader elections."""
        from workbench.widgets import ClusterView

        return ClusterView(self)

    def topic_browser(self, topic: str | None = None):
        """A `workbench.widgets.TopicBrowser`: tail, seek, filter and export a topic's records."""
        from workbench.widgets import TopicBrowser

        return TopicBrowser(self, topic)

    def topic_overview_panel(self):
        """A `workbench.widgets.TopicOverview`: topics with size, records, produce and consume rates
        (sparklines), retention, cleanup and configs (the widget over `topic_overview()`)."""
        from workbench.widgets import TopicOverview

        return TopicOverview(self)

    def sql_panel(self):
        """A `workbench.widgets.SqlPanel`: queries, history, live re-runs."""
        from workbench.widgets import SqlPanel

        return SqlPanel(self)

    # ---- end of widgets ----------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.bootstrap_servers!r})"


def connect(
    bootstrap_servers: str, data_dir: str | None = None, *, schema_registry_url: str | None = None
) -> KafkaConnection:
    """The notebook API for a cluster the workbench did not start (Kafka, Redpanda, `workbench up`).

    `data_dir` is where SQL materializes consumed topics as Parquet (default
    `~/.cache/workbench/<hash of the bootstrap string>`, or `$WORKBENCH_CACHE_DIR`).
    `schema_registry_url` (a Confluent-compatible registry, e.g. `http://127.0.0.1:8081`)
    is what `send(..., schema=...)`, consumers and SQL decode Confluent-framed values with."""
    if not isinstance(bootstrap_servers, str) or not bootstrap_servers.strip():
        raise ValueError('connect() needs a bootstrap string such as "127.0.0.1:9092"')
    if schema_registry_url is not None and (
        not isinstance(schema_registry_url, str) or not schema_registry_url.startswith(("http://", "https://"))
    ):
        raise ValueError(
            f"schema_registry_url must be an http(s) URL such as 'http://127.0.0.1:8081', not {schema_registry_url!r}"
        )
    conn = KafkaConnection(bootstrap_servers.strip(), schema_registry_url)
    if data_dir is not None:
        conn.sql_data_dir = data_dir
    return conn
