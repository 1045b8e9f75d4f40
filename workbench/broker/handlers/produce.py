"""Produce and InitProducerId.

The produce path does no per-record work: the log validates each batch's
CRC and header, checks idempotent-producer sequences, assigns offsets by
patching base offsets in place and appends the bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.broker.handlers.partitions import leader_log
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

if TYPE_CHECKING:
    from workbench.broker.broker import Broker
    from workbench.broker.server import Connection
    from workbench.protocol.codec import Request

MAX_PRODUCER_EPOCH = 32767


async def produce(broker: Broker, req: Request, conn: Connection) -> dict | None:
    body = req.body
    acks = body.acks
    results = []
    for topic in body.topic_data:
        parts = []
        for pd in topic.partition_data:
            base_offset, log_start, error, message = -1, -1, ErrorCode.NONE, None
            if acks not in (0, 1, -1):
                error = ErrorCode.INVALID_REQUIRED_ACKS
            elif body.transactional_id is not None:
                error, message = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactions are not supported"
            else:
                plog, error = leader_log(broker, topic.name, pd.index)
                if plog is not None:
                    if pd.records is None or len(pd.records) == 0:
                        error, message = ErrorCode.INVALID_RECORD, "empty record set"
                    else:
                        try:
                            info = plog.append(pd.records)
                            base_offset, log_start = info.base_offset, info.log_start_offset
                            if not info.duplicate:
                                broker.replicas.notify((topic.name, pd.index))
                        except KafkaProtocolError as exc:
                            error, message = exc.code, exc.message
            parts.append({"index": pd.index, "error_code": error, "base_offset": base_offset,
                          "log_append_time_ms": -1, "log_start_offset": log_start,
                          "record_errors": [], "error_message": message})
        results.append({"name": topic.name, "partition_responses": parts})
    if acks == 0:
        return None
    return {"responses": results, "throttle_time_ms": 0}


async def init_producer_id(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    if body.transactional_id is not None:
        return {"throttle_time_ms": 0, "error_code": ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                "producer_id": -1, "producer_epoch": -1}
    pid, epoch = body.producer_id, body.producer_epoch
    if pid is not None and pid >= 0 and epoch is not None and 0 <= epoch < MAX_PRODUCER_EPOCH:
        # KIP-360: an idempotent producer bumps its epoch to reset sequences after an error.
        return {"throttle_time_ms": 0, "error_code": 0, "producer_id": pid, "producer_epoch": epoch + 1}
    return {"throttle_time_ms": 0, "error_code": 0, "producer_id": broker.allocate_producer_id(),
            "producer_epoch": 0}
