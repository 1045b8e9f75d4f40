"""Transactions on the notebook side (KIP-98): `Producer.transaction()` and a
consume-transform-produce loop with exactly-once effect.

A transaction is a context manager: everything sent inside it becomes visible to
read_committed readers (SQL, the topic browser, `watch()`, consumers with
``isolation_level="read_committed"``) at once when the block ends normally, and never
when it raises (the transaction is aborted, the exception propagates)::

    producer = cluster.producer(transactional_id="orders-enricher")
    with producer.transaction():
        producer.send("orders", {"id": 1})
        producer.send("audit", {"order": 1})

`consume_transform_produce` adds the consumer's offsets to the same transaction
(`send_offsets_to_transaction`), so the output and "these inputs are done" commit
together: after a crash anywhere, a restarted loop neither loses nor repeats an effect.

`open_transactions` lists the transactions a cluster has open, with their age, over the
protocol only (ListTransactions/DescribeTransactions, KIP-664, through kafka-python's admin
client), so it works against any Kafka 3.0+ cluster as well as the embedded one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from confluent_kafka import KafkaException


# What this module needs of workbench.client's Producer and Consumer (client imports this module,
# so it names the shapes instead of importing the classes: no import circle).
class Producer(Protocol):
    transactional_id: str | None
    raw: Any
    _transactions_ready: bool

    def transaction(self) -> Transaction: ...

    def send(self, topic: str, value: Any, key: Any = None) -> Any: ...


class Consumer(Protocol):
    raw: Any

    def read(self, max_records: int = ..., timeout: float = ...) -> list[Any]: ...


Record = Any  # workbench.client.Record

#: How long init/commit/abort may take (they wait for the coordinator and the markers).
TRANSACTION_TIMEOUT_S = 30.0


class TransactionError(RuntimeError):
    """A transaction could not be started, committed or aborted (the broker's reason inside)."""


def _ensure_initialized(producer: Producer) -> None:
    if getattr(producer, "_transactions_ready", False):
        return
    if not producer.transactional_id:
        raise ValueError(
            "this producer has no transactional_id: create it with "
            "cluster.producer(transactional_id='some-stable-name') to use transactions"
        )
    try:
        producer.raw.init_transactions(TRANSACTION_TIMEOUT_S)
    except KafkaException as exc:
        raise TransactionError(f"init_transactions failed: {exc.args[0].str()}") from exc
    producer._transactions_ready = True


class Transaction:
    """One transaction of a transactional `Producer`: commit on success, abort on exception."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.committed: bool | None = None  # None while open

    def __enter__(self) -> Transaction:
        _ensure_initialized(self.producer)
        try:
            self.producer.raw.begin_transaction()
        except KafkaException as exc:
            raise TransactionError(f"begin_transaction failed: {exc.args[0].str()}") from exc
        return self

    def send_offsets(self, consumer: Consumer) -> None:
        """Commit ``consumer``'s current positions as part of this transaction (KIP-447)."""
        raw = consumer.raw
        raw_producer = self.producer.raw
        raw_producer.send_offsets_to_transaction(
            raw.position(raw.assignment()), raw.consumer_group_metadata(), TRANSACTION_TIMEOUT_S
        )

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        raw = self.producer.raw
        if exc_type is None:
            try:
                raw.commit_transaction(TRANSACTION_TIMEOUT_S)
                self.committed = True
                return
            except KafkaException as err:
                kafka_error = err.args[0]
                if kafka_error.txn_requires_abort():
                    raw.abort_transaction(TRANSACTION_TIMEOUT_S)
                self.committed = False
                raise TransactionError(f"commit failed, the transaction was aborted: {kafka_error.str()}") from err
        self.committed = False
        try:
            raw.abort_transaction(TRANSACTION_TIMEOUT_S)
        except KafkaException as err:  # fenced or fatal: the coordinator aborts it anyway
            if not err.args[0].fatal():
                raise TransactionError(f"abort failed: {err.args[0].str()}") from err


def consume_transform_produce(
    consumer: Consumer,
    producer: Producer,
    transform: Callable[[Record], Any],
    output_topic: str,
    *,
    max_records: int = 1000,
    timeout: float = 5.0,
) -> int:
    """Read up to ``max_records`` from ``consumer``, send ``transform(record)`` for each to
    ``output_topic`` and commit the output with the consumer's offsets in one transaction.

    ``transform`` returns a value to send, a list of values, or None to send nothing. The
    consumer must belong to a group (its offsets are what the transaction commits) and should
    read with ``isolation_level="read_committed"``. Returns how many records were consumed
    (0: nothing arrived within ``timeout``, and no transaction was started). If ``transform``
    raises, the transaction is aborted: neither its output nor the offsets count, and the
    records are consumed again from the last committed offsets once the consumer is
    rewound or restarted.
    """
    if not isinstance(output_topic, str) or not output_topic:
        raise ValueError(f"output_topic must be a topic name, not {output_topic!r}")
    if max_records < 1:
        raise ValueError(f"max_records must be at least 1, not {max_records!r}")
    records = consumer.read(max_records=max_records, timeout=timeout)
    if not records:
        return 0
    with producer.transaction() as txn:
        for record in records:
            out = transform(record)
            if out is None:
                continue
            values: Iterable[Any] = out if isinstance(out, list) else [out]
            for value in values:
                producer.send(output_topic, value, key=record.key)
        txn.send_offsets(consumer)
    return len(records)


#: Transaction states that are not over yet (Kafka's names, as ListTransactions reports them).
OPEN_STATES = ("Ongoing", "PrepareCommit", "PrepareAbort", "PrepareEpochFence")


def open_transactions(bootstrap_servers: str) -> list[dict[str, Any]]:
    """Open transactions, oldest first: transactional id, producer id and epoch, state, age in
    seconds, timeout, the partitions written so far and the coordinating broker."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="workbench-transactions")
    try:
        listed = admin.list_transactions(state_filters=list(OPEN_STATES))  # broker id -> listings
        listings = [t for per_broker in listed.values() for t in per_broker]
        coordinators = {_field(t, "transactional_id"): b for b, per in listed.items() for t in per}
        ids = sorted({_field(t, "transactional_id") for t in listings})
        described = admin.describe_transactions(ids) if ids else {}
    finally:
        admin.close()
    now_ms = time.time() * 1000
    out = []
    for tid, d in described.items():
        state = _field(d, "state")
        state = getattr(state, "value", state)  # kafka-python's TransactionState enum
        if state not in OPEN_STATES:
            continue  # finished between the two requests
        start = _field(d, "transaction_start_time_ms")
        partitions = _field(d, "topic_partitions") or _field(d, "topics") or []
        out.append(
            {
                "transactional_id": tid,
                "producer_id": _field(d, "producer_id"),
                "producer_epoch": _field(d, "producer_epoch"),
                "state": state,
                "age_s": round((now_ms - start) / 1000, 1) if start and start > 0 else None,
                "timeout_ms": _field(d, "transaction_timeout_ms"),
                "partitions": sorted(_partition_names(partitions)),
                "coordinator": _node_id(coordinators.get(tid)),
            }
        )
    return sorted(out, key=lambda r: -(r["age_s"] or 0))


def _node_id(broker: Any) -> int | None:
    """A broker id from kafka-python's listing key (an int, or a node with ``node_id``/``nodeId``)."""
    if broker is None:
        return None
    if isinstance(broker, int):
        return broker
    for name in ("node_id", "nodeId"):
        value = getattr(broker, name, None)
        if isinstance(value, int):
            return value
    try:
        return int(broker)
    except (TypeError, ValueError):
        return None


#: Columns of `open_transactions` rows, in order (the DataFrame, `wb.transactions`, the panel).
COLUMNS = (
    "transactional_id",
    "producer_id",
    "producer_epoch",
    "state",
    "age_s",
    "timeout_ms",
    "partitions",
    "coordinator",
)


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _partition_names(partitions: Any) -> list[str]:
    names = []
    for p in partitions:
        topic = _field(p, "topic")
        part = _field(p, "partition")
        if part is None:  # DescribeTransactions' topic -> [partitions] layout
            names += [f"{topic}-{i}" for i in _field(p, "partitions") or []]
        else:
            names.append(f"{topic}-{part}")
    return names
