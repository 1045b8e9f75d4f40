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


def txn_batch(pid: int, epoch: int, seq: int) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 1, pid, epoch, seq, 1 << 30)
    b.append(0, 1000, None, b"t", [])
    return bytes(b.build())


def test_a_verification_guard_is_spent_by_the_next_transactional_write_or_marker(tmp_path: Path) -> None:
    """KIP-890's VerificationStateEntry: concurrent verifications of one producer share a guard;
    a transactional write (the transaction is open here now) or a marker (it is over) spends it,
    so a batch verified before an abort marker no longer matches and cannot open a transaction."""
    from workbench.protocol.control_records import build_control_batch

    log = PartitionLog(tmp_path, LogConfig())
    state = log.producers
    guard = state.maybe_create_verification_state_entry(7, 0, 0)
    assert state.maybe_create_verification_state_entry(7, 0, 0) is guard
    assert state.verification_guard(7) is guard
    log.append(txn_batch(7, 0, 0))
    assert state.verification_guard(7) is None and 7 in state.transactions.ongoing

    guard = state.maybe_create_verification_state_entry(7, 1, 0)
    log.append(build_control_batch(7, 0, commit=False, coordinator_epoch=0, timestamp_ms=2000), origin="coordinator")
    assert state.verification_guard(7) is None and 7 not in state.transactions.ongoing
    assert state.maybe_create_verification_state_entry(7, 1, 0) is not guard  # a new question, a new guard

    state.remove_expired(now_ms=10**13, expiration_ms=1000)
    assert state.verification_guard(7) is None  # a verification whose batch never came expires


def test_a_marker_from_an_older_coordinator_epoch_is_fenced_and_the_epoch_survives_restarts(tmp_path: Path) -> None:
    """Issue 12: a deposed coordinator's marker that arrives after its successor's (a late
    request, a retry) must not end the producer's next transaction with the old decision: it is
    TRANSACTION_COORDINATOR_FENCED, as in Kafka. The coordinator epoch of the last marker is kept
    in the snapshot and learned again from the log (recovery, a follower's replay)."""
    from workbench.protocol.control_records import build_control_batch

    def marker(coordinator_epoch: int, commit: bool = True) -> bytes:
        return build_control_batch(7, 0, commit=commit, coordinator_epoch=coordinator_epoch, timestamp_ms=2000)

    def fenced(log: PartitionLog, coordinator_epoch: int) -> ErrorCode:
        with pytest.raises(KafkaProtocolError) as e:
            log.append(
                marker(coordinator_epoch, commit=False), origin="coordinator", coordinator_epoch=coordinator_epoch
            )
        return e.value.code

    log = PartitionLog(tmp_path, LogConfig())
    log.append(txn_batch(7, 0, 0))
    log.append(marker(5), origin="coordinator", coordinator_epoch=5)  # the successor committed it
    log.append(txn_batch(7, 0, 1))  # the producer's next transaction
    assert fenced(log, 4) == ErrorCode.TRANSACTION_COORDINATOR_FENCED  # the deposed one's late ABORT
    assert 7 in log.producers.transactions.ongoing  # still open: only its own coordinator ends it
    log.append(marker(5), origin="coordinator", coordinator_epoch=5)
    assert 7 not in log.producers.transactions.ongoing
    log.close()

    reopened = PartitionLog(tmp_path, LogConfig())  # from the snapshot
    assert reopened.producers.producers[7].coordinator_epoch == 5
    reopened.append(txn_batch(7, 0, 2))
    assert fenced(reopened, 3) == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    reopened.close()

    from workbench.storage.producer_state import SNAPSHOT_NAME

    (tmp_path / SNAPSHOT_NAME).unlink()
    rebuilt = PartitionLog(tmp_path, LogConfig())  # no snapshot: replayed from the markers
    assert rebuilt.producers.producers[7].coordinator_epoch == 5
    rebuilt.close()
