"""The topic-config rules a produced batch must pass before it is appended (Kafka's `LogValidator`).

Runs on the leader, on the produce path, between the request and the log's own
checks (CRC, sequence numbers, `max.message.bytes`). Most topics have none of
these configs set and pay one dict lookup; the work is done only when a config
asks for it:

* `message.timestamp.type=LogAppendTime`: each batch's timestamp type bit is set
  and its maxTimestamp becomes the broker's clock (the CRC is recomputed); the
  produce response carries that time (`log_append_time_ms`), as in Kafka.
  Record bytes are untouched: consumers read LogAppendTime batches' timestamps
  from the batch header.
* `message.timestamp.before.max.ms` / `after.max.ms` (KIP-937; and the
  deprecated `difference.max.ms`): for CreateTime topics every record's
  timestamp must be within the window around the broker's clock, else the
  batch is refused with INVALID_TIMESTAMP naming the records (KIP-467).
* a compacted topic (`cleanup.policy` with `compact`) refuses records without a
  key: INVALID_RECORD with each such record's index and a message (KIP-467).
* `confluent.value.schema.validation=true` (and `confluent.key.schema.validation`, Confluent
  Server's names): every record's value (key) must be in Confluent's wire format (magic byte 0,
  a 4-byte schema id) with an id registered, and not deleted, under the subject `<topic>-value`
  (`<topic>-key`, the TopicNameStrategy), else INVALID_RECORD naming each record (KIP-467). The
  ids come from the caller (`SchemaIdSets`); the broker learns them from `_schemas`
  (`broker/schema_ids.py`). A null value (a tombstone) is not checked, as in Confluent Server.
* `compression.type` other than `producer`: a batch in another codec is rebuilt
  in the topic's codec, producer id, epoch, sequence, transactional flag,
  timestamps, keys, values and headers kept.

A refused batch is refused whole, as in Kafka: nothing of it is appended. A
batch whose CRC fails is never rewritten (a fresh CRC would hide the damage):
it goes on unchanged and the log refuses it with CORRUPT_MESSAGE.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from crc32c import crc32c

from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.records import (
    ATTRIBUTES_OFFSET,
    CONTROL_MASK,
    CRC_OFFSET,
    TIMESTAMP_TYPE_MASK,
    batch_crc_ok,
    iter_batch_headers,
)
from workbench.protocol.topic_config import DEFAULTS, LONG_MAX

_CODECS = {"uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
_MAX_TIMESTAMP_OFFSET = 35  # attributes(21) + 2 + lastOffsetDelta 4 + firstTimestamp 8
_ATTRS = struct.Struct(">h")
_INT64 = struct.Struct(">q")
_UINT32 = struct.Struct(">I")


class RecordValidationError(KafkaProtocolError):
    """A batch refused because of some of its records: the error, and (index, message) per record."""

    def __init__(self, code: ErrorCode, message: str, record_errors: list[tuple[int, str]]) -> None:
        super().__init__(code, message)
        self.record_errors = record_errors


@dataclass(frozen=True, slots=True)
class SchemaIdSets:
    """The schema ids a validating topic accepts: those of `<topic>-value` and `<topic>-key`."""

    value: frozenset[int] = frozenset()
    key: frozenset[int] = frozenset()


class SchemaValidationError(RecordValidationError):
    """Records refused by schema validation; `unknown_ids` lists ids that were not registered
    (the caller may learn newer ids and try again)."""

    def __init__(self, message: str, record_errors: list[tuple[int, str]], unknown_ids: set[int]) -> None:
        super().__init__(ErrorCode.INVALID_RECORD, message, record_errors)
        self.unknown_ids = unknown_ids


@dataclass(frozen=True, slots=True)
class TopicRules:
    """The validator's view of one topic's configs (set values over broker defaults)."""

    log_append_time: bool = False
    before_max_ms: int = LONG_MAX
    after_max_ms: int = LONG_MAX
    compacted: bool = False
    codec: int | None = None  # None: keep the producer's
    value_schema_validation: bool = False  # confluent.value.schema.validation
    key_schema_validation: bool = False  # confluent.key.schema.validation
    trivial: bool = True  # nothing to check or change: the produce path's common case, one attribute read

    @classmethod
    def of(cls, configs: dict[str, str]) -> TopicRules:
        def get(name: str) -> str:
            return configs.get(name) or DEFAULTS[name]

        difference = int(get("message.timestamp.difference.max.ms"))
        compression = get("compression.type")
        # Kafka 3.6+: the deprecated difference.max.ms bounds both sides unless the new ones are set.
        before = min(int(get("message.timestamp.before.max.ms")), difference)
        after = min(int(get("message.timestamp.after.max.ms")), difference)
        log_append_time = get("message.timestamp.type") == "LogAppendTime"
        compacted = "compact" in get("cleanup.policy").split(",")
        codec = _CODECS.get(compression)
        value_schemas = get("confluent.value.schema.validation").lower() == "true"
        key_schemas = get("confluent.key.schema.validation").lower() == "true"
        return cls(
            log_append_time=log_append_time,
            before_max_ms=before,
            after_max_ms=after,
            compacted=compacted,
            codec=codec,
            value_schema_validation=value_schemas,
            key_schema_validation=key_schemas,
            trivial=not log_append_time
            and before == after == LONG_MAX
            and not compacted
            and codec is None
            and not value_schemas
            and not key_schemas,
        )

    @property
    def schema_validation(self) -> bool:
        return self.value_schema_validation or self.key_schema_validation


def validate(
    records: bytes, rules: TopicRules, now_ms: int | None = None, schema_ids: SchemaIdSets | None = None
) -> tuple[bytes, int]:
    """Apply `rules` to a produce request's batches; returns (bytes to append, log_append_time_ms or -1).

    Raises `RecordValidationError` (INVALID_TIMESTAMP, INVALID_RECORD) for a refused batch. Batches
    that do not parse are left for the log's own validation to refuse. `schema_ids`: the ids a
    schema-validating topic accepts (none when not given).
    """
    if rules.trivial:
        return records, -1
    now = int(time.time() * 1000) if now_ms is None else now_ms
    headers = list(iter_batch_headers(records))
    if not headers or not all(batch_crc_ok(records, h) for h in headers):
        # Never rewrite a batch whose CRC fails: a new CRC over damaged bytes would make them look
        # sound. Left as they came, the log's own validation refuses them with CORRUPT_MESSAGE.
        return records, -1
    check_records = (
        rules.compacted
        or rules.schema_validation
        or (not rules.log_append_time and (rules.before_max_ms, rules.after_max_ms) != (LONG_MAX, LONG_MAX))
    )
    ids = schema_ids if schema_ids is not None else SchemaIdSets()
    out = bytearray()
    for h in headers:
        batch = records[h.position : h.end]
        if h.attributes & CONTROL_MASK:
            out += batch
            continue
        if check_records:
            _check_records(batch, h.position, rules, now, ids)
        if rules.codec is not None and rules.codec != h.compression:
            try:
                batch = _recompress(batch, rules.codec)
            except Exception as exc:  # a sound CRC over records that do not parse (a hostile client)
                raise KafkaProtocolError(
                    ErrorCode.CORRUPT_MESSAGE, f"batch at byte {h.position}: records do not parse ({exc})"
                ) from exc
        if rules.log_append_time:
            batch = _stamp_log_append_time(batch, now)
        out += batch
    tail = records[headers[-1].end :]
    return bytes(out) + bytes(tail), (now if rules.log_append_time else -1)


def _schema_problem(data: bytes | None, accepted: frozenset[int], what: str, unknown: set[int]) -> str | None:
    """Why a key or value fails schema validation (None when it passes)."""
    if data is None:
        return None if what == "value" else f"Record has no {what}; the topic requires a schema id in its {what}"
    if len(data) < 5 or data[0] != 0:
        return f"The {what} is not in Confluent's wire format (magic byte 0 and a schema id); schema validation failed"
    sid = int.from_bytes(data[1:5], "big")
    if sid not in accepted:
        unknown.add(sid)
        return f"Schema id {sid} in the {what} is not registered for this topic's subject; schema validation failed"
    return None


def _check_records(batch: bytes, position: int, rules: TopicRules, now: int, ids: SchemaIdSets) -> None:
    errors: list[tuple[int, str]] = []
    code = ErrorCode.INVALID_RECORD
    unknown: set[int] = set()
    try:
        records = list(DefaultRecordBatch(batch))
    except Exception:
        return  # the log's CORRUPT_MESSAGE check will refuse it
    for i, r in enumerate(records):
        if rules.compacted and r.key is None:
            errors.append((i, "Compacted topic cannot accept message without key"))
            continue
        problem = None
        if rules.value_schema_validation:
            problem = _schema_problem(r.value, ids.value, "value", unknown)
        if problem is None and rules.key_schema_validation:
            problem = _schema_problem(r.key, ids.key, "key", unknown)
        if problem is not None:
            errors.append((i, problem))
            continue
        if rules.log_append_time:
            continue
        ts = r.timestamp
        if ts < now - rules.before_max_ms or ts > now + rules.after_max_ms:
            code = ErrorCode.INVALID_TIMESTAMP
            errors.append(
                (
                    i,
                    f"Timestamp {ts} of message with offset {i} is out of range: must be within "
                    f"[{now - rules.before_max_ms}, {now + rules.after_max_ms}]",
                )
            )
    if errors:
        summary = f"batch at byte {position}: {len(errors)} of {len(records)} records refused: {errors[0][1]}"
        if any(e[1].startswith("Timestamp") for e in errors):
            code = ErrorCode.INVALID_TIMESTAMP
        elif rules.schema_validation and any("schema" in e[1] for e in errors):
            raise SchemaValidationError(summary, errors, unknown)
        raise RecordValidationError(code, summary, errors)


def _recompress(batch: bytes, codec: int) -> bytes:
    b = DefaultRecordBatch(batch)
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=int(b.is_transactional),
        producer_id=b.producer_id,
        producer_epoch=b.producer_epoch,
        base_sequence=b.base_sequence,
        batch_size=1 << 31,
    )
    base = b.base_offset
    for r in b:
        builder.append(r.offset - base, timestamp=r.timestamp, key=r.key, value=r.value, headers=list(r.headers))
    rebuilt = bytearray(builder.build())
    _INT64.pack_into(rebuilt, 0, base)
    rebuilt[12:16] = batch[12:16]  # partition leader epoch: not covered by the CRC
    return bytes(rebuilt)


def _stamp_log_append_time(batch: bytes, now: int) -> bytes:
    out = bytearray(batch)
    (attrs,) = _ATTRS.unpack_from(out, ATTRIBUTES_OFFSET)
    _ATTRS.pack_into(out, ATTRIBUTES_OFFSET, attrs | TIMESTAMP_TYPE_MASK)
    _INT64.pack_into(out, _MAX_TIMESTAMP_OFFSET, now)
    _UINT32.pack_into(out, CRC_OFFSET, crc32c(memoryview(out)[ATTRIBUTES_OFFSET:]))
    return bytes(out)
