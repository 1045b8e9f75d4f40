"""Produce and InitProducerId.

The produce path does no per-record work: the log validates each batch's
CRC and header, checks idempotent-producer sequences, assigns offsets by
patching base offsets in place and appends the bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from workbench.broker import log_validator, round_trace, txn_verification
from workbench.broker.handlers.partitions import leader_partition
from workbench.broker.partition import NotLeaderError, Partition
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.message_format import produce_records
from workbench.protocol.records import validate_produce_batches

if TYPE_CHECKING:
    from workbench.broker.handlers.context import BrokerContext as Broker
    from workbench.broker.server import Connection
    from workbench.protocol.codec import Request

log = logging.getLogger(__name__)

MAX_PRODUCER_EPOCH = 32767
_SEQUENCE_ERRORS = (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, ErrorCode.INVALID_PRODUCER_EPOCH)
_TRACE = round_trace.ON
_FIRST_TIMESTAMP = 27  # a v2 batch's firstTimestamp (after baseOffset ... lastOffsetDelta)


async def produce(broker: Broker, req: Request, conn: Connection) -> dict | None:
    if _TRACE:
        received_ns = time.monotonic_ns()
    body = req.body
    acks = body.acks
    timeout = max(0, body.timeout_ms) / 1000.0
    results: list[tuple[str, list[dict]]] = []
    waits: list[Coroutine[Any, Any, None]] = []
    # KIP-890: transactional writes are verified with the coordinator first (None: not transactional)
    verified = None
    if body.transactional_id is not None:
        verified = await txn_verification.verify_produce(broker, body.transactional_id, body.topic_data)
    for topic in body.topic_data:
        parts: list[dict] = []
        for pd in topic.partition_data:
            part = {
                "index": pd.index,
                "error_code": ErrorCode.NONE,
                "base_offset": -1,
                "log_append_time_ms": -1,
                "log_start_offset": -1,
                "record_errors": [],
                "error_message": None,
            }
            parts.append(part)
            if acks not in (0, 1, -1):
                part["error_code"] = ErrorCode.INVALID_REQUIRED_ACKS
                continue
            partition, error = leader_partition(broker, topic.name, pd.index)
            refused = broker.replicas.refused
            if partition is None:
                part["error_code"] = error
                refused.note(topic.name, pd.index, pd.records, ErrorCode(error).name)
                continue
            if broker.replicas.log_dir_offline is not None:
                part["error_code"] = ErrorCode.KAFKA_STORAGE_ERROR
                part["error_message"] = f"the log directory is offline ({broker.replicas.log_dir_offline})"
                refused.note(topic.name, pd.index, pd.records, "log directory offline")
                continue
            if pd.records is None or len(pd.records) == 0:
                part["error_code"], part["error_message"] = ErrorCode.INVALID_RECORD, "empty record set"
                continue
            if acks == -1:
                min_isr = broker.replicas.min_insync_replicas(topic.name)
                if len(partition.info.isr) < min_isr:
                    part["error_code"] = ErrorCode.NOT_ENOUGH_REPLICAS
                    part["error_message"] = (
                        f"the in-sync replicas {partition.info.isr} are fewer than min.insync.replicas={min_isr}"
                    )
                    refused.note(topic.name, pd.index, pd.records, part["error_message"])
                    continue
            try:
                # v0-2: message formats v0/v1 -> one v2 batch, as Kafka's LogValidator; zstd needs v7+.
                records = produce_records(pd.records, req.api_version) if req.api_version < 7 else pd.records
                rules = _rules(broker, topic.name)
                if not rules.trivial:
                    # The topic's rules decode (and may re-compress) records before the log's own
                    # validation: bound that work first, or a small batch could inflate unbounded.
                    validate_produce_batches(records, max_message_bytes=partition.log.config.max_message_bytes)
                if rules.schema_validation:
                    records, part["log_append_time_ms"] = await _validate_schemas(broker, topic.name, records, rules)
                else:
                    records, part["log_append_time_ms"] = log_validator.validate(records, rules)
                if verified is not None:
                    verified.check(partition, topic.name, pd.index)  # no await between this and the append
                wait = refused.explains(topic.name, pd.index, records, partition.log.producers.expected_sequence)
                if wait is not None:
                    # Not OUT_OF_ORDER_SEQUENCE_NUMBER: librdkafka would bump the epoch and re-send
                    # what it has not seen acknowledged on every partition (broker/refused_batches.py).
                    part["error_code"] = ErrorCode.NOT_ENOUGH_REPLICAS
                    part["error_message"] = f"{wait}: send it again first"
                    continue
                leader_epoch = partition.leader_epoch
                info = partition.log.append(records, leader_epoch=leader_epoch)
            except log_validator.RecordValidationError as exc:  # KIP-467: which records, and why
                part["error_code"], part["error_message"] = exc.code, exc.message
                part["record_errors"] = [
                    {"batch_index": i, "batch_index_error_message": m} for i, m in exc.record_errors
                ]
                continue
            except KafkaProtocolError as exc:
                part["error_code"], part["error_message"] = exc.code, exc.message
                if exc.code in _SEQUENCE_ERRORS:
                    # A client may react by bumping its epoch and re-sending what it has not seen
                    # acknowledged (duplicates if some of it was stored): always worth a trace.
                    log.info(
                        "%s-%d (leader epoch %d): %s: %s",
                        topic.name,
                        pd.index,
                        partition.leader_epoch,
                        exc.code.name,
                        exc.message,
                    )
                if exc.code == ErrorCode.KAFKA_STORAGE_ERROR:
                    refused.note(topic.name, pd.index, pd.records, "storage error")
                    broker.replicas.mark_log_dir_offline(exc.message)
                continue
            part["base_offset"], part["log_start_offset"] = info.base_offset, info.log_start_offset
            if _TRACE:
                created_ms = int.from_bytes(records[_FIRST_TIMESTAMP : _FIRST_TIMESTAMP + 8], "big", signed=True)
                round_trace.mark(
                    "append", topic.name, pd.index, info.base_offset, info.last_offset, received_ns,
                    time.time_ns() // 1_000_000 - created_ms,
                )  # fmt: skip
            broker.note_write()
            if not info.duplicate:
                # The HW first: with the leader alone in the ISR it moves now and wakes every fetch.
                partition.maybe_advance_high_watermark()
                committed = partition.log.high_watermark > info.last_offset
                broker.replicas.notify_appended((topic.name, pd.index), committed=committed)
            if acks != 0 and partition.log.needs_flush():
                waits.append(_await_flush(broker, partition, part))
            if acks == -1:
                waits.append(
                    _await_replication(broker, partition, leader_epoch, topic.name, info.last_offset + 1, timeout, part)
                )
        results.append((topic.name, parts))
    if len(waits) == 1:
        await waits[0]  # the common case (one partition, acks=all): no task, no gather (issue 19)
    elif waits:
        await asyncio.gather(*waits)
    if acks == 0:
        return None
    if _TRACE:
        for name, parts in results:
            for part in parts:
                round_trace.mark("ack", name, part["index"], part["base_offset"])
    return {
        "responses": [{"name": name, "partition_responses": parts} for name, parts in results],
        "throttle_time_ms": 0,
    }


_RULES: dict[str, tuple[object, object, log_validator.TopicRules]] = {}


def _schema_ids(broker: Broker, topic: str) -> log_validator.SchemaIdSets:
    return log_validator.SchemaIdSets(
        value=broker.schema_ids.ids(f"{topic}-value"), key=broker.schema_ids.ids(f"{topic}-key")
    )


async def _validate_schemas(
    broker: Broker, topic: str, records: bytes, rules: log_validator.TopicRules
) -> tuple[bytes, int]:
    """`log_validator.validate` for a topic with confluent.*.schema.validation: on an id the broker
    has not seen yet, read `_schemas` up to its end (off the event loop, bounded) and check again.

    One produce per topic at a time gets here: a later batch (the next idempotent sequence) must
    not overtake one that waits for the reader. The caller appends right after, without yielding."""
    lock = _SCHEMA_LOCKS.setdefault(topic, asyncio.Lock())
    async with lock:
        try:
            return log_validator.validate(records, rules, schema_ids=_schema_ids(broker, topic))
        except log_validator.SchemaValidationError as exc:
            if not exc.unknown_ids:
                raise
        caught_up = await asyncio.get_running_loop().run_in_executor(None, broker.schema_ids.catch_up)
        if not caught_up:
            log.debug("schema ids of %s: the _schemas reader did not catch up", topic)
        return log_validator.validate(records, rules, schema_ids=_schema_ids(broker, topic))


_SCHEMA_LOCKS: dict[str, asyncio.Lock] = {}


def _rules(broker: Broker, topic: str) -> log_validator.TopicRules:
    """The topic's validation rules, recomputed only when its configs (or the defaults) change."""
    info = broker.image.topics.get(topic)
    topic_configs = info.configs if info else {}
    defaults = broker.replicas.log_defaults
    cached = _RULES.get(topic)
    if cached is not None and cached[0] is topic_configs and cached[1] is defaults:
        return cached[2]
    rules = log_validator.TopicRules.of({**defaults, **topic_configs})
    if rules.schema_validation:
        broker.schema_ids.start()  # the `_schemas` reader warms up from the first produce on
    _RULES[topic] = (topic_configs, defaults, rules)
    return rules


async def _await_flush(broker: Broker, partition: Partition, part: dict) -> None:
    """flush.messages: answer only once the batch is fsynced (group commit, `LogFlusher`).

    The batch is appended either way; if the fsync fails the answer must not say "not
    written" (see `_await_replication`): REQUEST_TIMED_OUT, so an idempotent producer
    retries with the same sequence and waits for a flush again.
    """
    try:
        await broker.replicas.flusher.flush(partition.log)
    except KafkaProtocolError as exc:
        if part["error_code"] == ErrorCode.NONE:
            part["error_code"] = ErrorCode.REQUEST_TIMED_OUT
            part["error_message"] = f"appended, but not yet durable: {exc.message}"


async def _await_replication(
    broker: Broker, partition: Partition, leader_epoch: int, topic: str, offset: int, timeout: float, part: dict
) -> None:
    """acks=all: answer once the high watermark covers the batch (every ISR member has it), as
    leader in `leader_epoch`, the epoch it was appended in (`Partition.wait_for_high_watermark`).

    The batch is already in the log, so no answer here may tell the client it was not
    written (issue 12, item 1): librdkafka reads NOT_LEADER_OR_FOLLOWER as "not
    persisted" and re-sends the records under new sequence numbers (a duplicate when
    the new leader has them), while REQUEST_TIMED_OUT and
    NOT_ENOUGH_REPLICAS_AFTER_APPEND mean "possibly persisted": it retries with the same
    sequence, and the leader that has the batch (the producer state travels with
    replicated batches) answers it as a duplicate with the original offset.

    When the HW covers the batch, min.insync.replicas is checked again (Kafka's
    Partition.checkEnoughReplicasReachOffset): if the ISR shrank below it while we
    waited, the HW may have advanced on fewer copies than promised, so the answer is
    NOT_ENOUGH_REPLICAS_AFTER_APPEND (issue 12, item 2).
    """
    try:
        ok = await partition.wait_for_high_watermark(offset, timeout, leader_epoch)
    except NotLeaderError:
        part["error_code"] = ErrorCode.REQUEST_TIMED_OUT
        part["error_message"] = "leadership moved before the batch was confirmed replicated; retry it"
        part["base_offset"] = -1
        return
    min_isr = broker.replicas.min_insync_replicas(topic)
    isr = list(partition.info.isr)
    if ok and len(isr) >= min_isr:
        return
    part["base_offset"] = -1
    if len(isr) < min_isr:
        part["error_code"] = ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        part["error_message"] = (
            f"the batch was written but the in-sync replicas {isr} are fewer than min.insync.replicas={min_isr}"
        )
    else:
        part["error_code"] = ErrorCode.REQUEST_TIMED_OUT
        part["error_message"] = f"the in-sync replicas {isr} did not confirm the batch in time"


async def init_producer_id(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    if body.transactional_id is not None:
        from workbench.broker.handlers.transactions import init_producer_id as init_transactional

        return await init_transactional(broker, req)
    pid, epoch = body.producer_id, body.producer_epoch
    if pid is not None and pid >= 0 and epoch is not None and 0 <= epoch < MAX_PRODUCER_EPOCH:
        # KIP-360: an idempotent producer bumps its epoch to reset sequences after an error.
        log.info("producer %d (client %s) bumps its epoch to %d (KIP-360)", pid, req.client_id, epoch + 1)
        return {"throttle_time_ms": 0, "error_code": 0, "producer_id": pid, "producer_epoch": epoch + 1}
    return {
        "throttle_time_ms": 0,
        "error_code": 0,
        "producer_id": await broker.allocate_producer_id(),
        "producer_epoch": 0,
    }
