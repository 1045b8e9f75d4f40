"""`produce_from`: re-produce the rows a SQL query selects: replay, and dead-letter redrive.

    cluster.produce_from("SELECT * FROM orders WHERE status = 'failed'", topic="orders-retry")
    cluster.produce_from("SELECT * FROM dlq", route_by="source_topic")        # back where each came from
    cluster.produce_from("SELECT * FROM clicks ORDER BY timestamp", topic="clicks-copy", rate=500)

Byte-exact: a topic's table has `key_bytes` and `value_bytes` (the record's bytes as stored) and
`headers` (names and raw byte values), so what is re-produced is what was consumed, whatever the
encoding (JSON, Avro, binary): nothing is decoded and re-encoded. A query over another table
may give `key`/`value` instead (str as UTF-8, bytes as is, other values as JSON, NULL as a null
value). Timestamps are kept by default (`timestamps=False`: the producer's clock). Records go
through the connection's idempotent producer (acks=all); the call returns once every record is
acknowledged, or raises `ProduceError` naming how many were not.

Order: records are sent in the query's row order; Kafka keeps order per partition, so the
default partitioner (by key) keeps the order of each key. `keep_partitions=True` sends each row
to the partition of its `partition` column instead (a copy with the same layout).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench.errors import ProduceError
from workbench.serialization import check_topic_name, encode_value

# The whole result is read into memory first: produce_from is for the amounts a notebook
# replays (thousands to a few million rows); a bigger replay belongs to a connector.


@dataclass
class ProduceFromResult:
    """What `produce_from` re-produced: records acknowledged per destination topic, and how fast."""

    records: int
    topics: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else math.inf

    def _repr_html_(self) -> str:
        where = ", ".join(f"{t}: {n}" for t, n in sorted(self.topics.items()))
        return f"re-produced <b>{self.records}</b> records ({where}) in {self.seconds:.2f} s"


def _column(frame: pd.DataFrame, raw: str, decoded: str) -> list[Any] | None:
    if raw in frame.columns:
        return [None if _is_null(v) else bytes(v) for v in frame[raw]]
    if decoded in frame.columns:
        return [None if _is_null(v) else encode_value(v) for v in frame[decoded]]
    return None


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _headers(value: Any) -> list[tuple[str, bytes | None]]:
    if value is None or (not hasattr(value, "__len__") and _is_null(value)):
        return []
    out = []
    for h in list(value):
        if isinstance(h, dict):
            name, raw = h.get("key"), h.get("value")
        else:
            name, raw = h
        out.append((str(name), None if raw is None else (bytes(raw) if not isinstance(raw, str) else raw.encode())))
    return out


def _timestamp_ms(value: Any) -> int | None:
    if _is_null(value):
        return None
    if isinstance(value, int | float):
        return int(value)
    return int(pd.Timestamp(value).timestamp() * 1000)


def produce_from(
    conn,
    query: str,
    *,
    topic: str | None = None,
    route_by: str | None = None,
    rate: float | None = None,
    timestamps: bool = True,
    keep_partitions: bool = False,
    timeout: float = 60.0,
) -> ProduceFromResult:
    """See the module docstring; `conn` is a `Cluster` or `workbench.connect(...)` connection."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError("produce_from needs a SQL query, e.g. \"SELECT * FROM orders WHERE status = 'failed'\"")
    if topic is None and route_by is None:
        raise ValueError("say where the records go: topic='name', or route_by='<column naming each row's topic>'")
    if topic is not None:
        check_topic_name(topic)
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0):
        raise ValueError(
            f"rate must be records per second (a positive number) or None for as fast as possible, not {rate!r}"
        )
    frame = conn.sql(query)
    if route_by is not None and route_by not in frame.columns:
        raise ValueError(
            f"route_by={route_by!r} is not a column of the query's result (columns: {list(frame.columns)})"
        )
    values = _column(frame, "value_bytes", "value")
    if values is None:
        raise ValueError(
            "the query must select the record values: value_bytes (byte-exact, in every topic's table) or value; "
            "SELECT * selects both"
        )
    keys = _column(frame, "key_bytes", "key") or [None] * len(frame)
    headers = [_headers(h) for h in frame["headers"]] if "headers" in frame.columns else [[] for _ in values]
    stamps = (
        [_timestamp_ms(t) for t in frame["timestamp"]]
        if timestamps and "timestamp" in frame.columns
        else [None] * len(values)
    )
    if keep_partitions and "partition" not in frame.columns:
        raise ValueError("keep_partitions=True needs the query to select the partition column")
    partitions = [int(p) for p in frame["partition"]] if keep_partitions else [None] * len(values)
    destinations = (
        [topic if _is_null(t) else str(t) for t in frame[route_by]] if route_by is not None else [topic] * len(values)
    )
    for name in set(destinations):
        if name is None:
            raise ValueError(f"a row has no {route_by!r} and no topic= was given to fall back on")
        check_topic_name(name)

    producer = conn.producer()
    raw = producer.raw
    failures: list[str] = []
    acked: dict[str, int] = {}
    lock = threading.Lock()

    def on_delivery(err, msg) -> None:
        with lock:
            if err is not None:
                failures.append(err.str())
            else:
                acked[msg.topic()] = acked.get(msg.topic(), 0) + 1

    started = time.perf_counter()
    for i, value in enumerate(values):
        if rate is not None:
            due = started + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                raw.poll(wait)  # serve delivery reports while pacing
        kwargs: dict[str, Any] = {"value": value, "on_delivery": on_delivery}
        if keys[i] is not None:
            kwargs["key"] = keys[i]
        if headers[i]:
            kwargs["headers"] = headers[i]
        if stamps[i] is not None:
            kwargs["timestamp"] = stamps[i]
        if partitions[i] is not None:
            kwargs["partition"] = partitions[i]
        producer._check_open()
        while True:
            try:
                raw.produce(destinations[i], **kwargs)
                break
            except BufferError:
                raw.poll(0.05)
    left = raw.flush(timeout)
    seconds = time.perf_counter() - started
    producer._check_open()
    if left or failures:
        raise ProduceError(
            f"{len(failures) + left} of {len(values)} records were not acknowledged"
            + (f" (first error: {failures[0]})" if failures else f" within {timeout}s")
        )
    return ProduceFromResult(len(values), dict(acked), seconds)
