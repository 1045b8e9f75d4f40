"""Idempotent producers: duplicates, gaps, epochs, sequence wrap, state across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.storage import LogConfig, PartitionLog


def batch(n: int, pid: int, epoch: int, seq: int) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 0, pid, epoch, seq, 1 << 30)
    for i in range(n):
        b.append(i, 1000 + i, None, b"v%d" % i, [])
    return bytes(b.build())


def code_of(log: PartitionLog, data: bytes) -> ErrorCode:
    with pytest.raises(KafkaProtocolError) as e:
        log.append(data)
    return e.value.code


def test_duplicate_batch_is_dropped_with_original_offsets(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path, LogConfig())
    first = log.append(batch(5, 1, 0, 0))
    log.append(batch(5, 1, 0, 5))
    retry = log.append(batch(5, 1, 0, 0))
    assert retry.duplicate and (retry.base_offset, retry.last_offset) == (
        first.base_offset,
        first.last_offset,
    )
    assert log.log_end_offset == 10
    assert log.producer_state() == {1: (0, 9, 9)}


def test_gap_and_epoch_rules(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path, LogConfig())
    log.append(batch(5, 1, 3, 0))
    assert code_of(log, batch(5, 1, 3, 6)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert code_of(log, batch(5, 1, 2, 5)) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert code_of(log, batch(5, 1, 4, 5)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER  # new epoch starts at 0
    assert log.append(batch(5, 1, 4, 0)).base_offset == 5
    # unknown producer: any sequence accepted (Kafka >= 2.5, KIP-360)
    assert log.append(batch(1, 2, 0, 42)).base_offset == 10
    # non-idempotent batches are not checked
    assert log.append(batch(1, -1, -1, -1)).base_offset == 11


def test_sequence_wraps(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path, LogConfig())
    log.append(batch(2, 1, 0, 0x7FFFFFFF - 1))
    assert log.append(batch(2, 1, 0, 0)).base_offset == 2


def test_state_survives_reopen_and_crash(tmp_path: Path) -> None:
    cfg = LogConfig(segment_bytes=300)
    log = PartitionLog(tmp_path, cfg)
    for i in range(6):
        log.append(batch(3, 9, 1, i * 3))
    log.close()
    log = PartitionLog(tmp_path, cfg)
    assert log.producer_state() == {9: (1, 17, 17)}
    assert log.append(batch(3, 9, 1, 15)).duplicate
    assert code_of(log, batch(3, 9, 1, 19)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    log.append(batch(3, 9, 1, 18))
    # no close (kill -9): snapshot is stale, the tail is replayed from batch headers
    again = PartitionLog(tmp_path, cfg)
    assert again.producer_state() == {9: (1, 20, 20)}
    assert again.append(batch(3, 9, 1, 18)).duplicate
