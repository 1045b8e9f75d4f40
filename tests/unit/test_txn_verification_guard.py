"""KIP-890 part 1 at the partition, without a broker: which coordinator answers refuse a
transactional write, and the guard a verification takes, checked at append time against a real
`PartitionLog` (its producer state), so a marker written while the coordinator was asked spends it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.broker.txn_verification import Verification, _Pending, produce_error
from workbench.protocol.control_records import build_control_batch
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.storage import LogConfig, PartitionLog

TP = ("t", 0)


def txn_batch(pid: int, epoch: int, seq: int) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 1, pid, epoch, seq, 1 << 30)
    b.append(0, 1000, None, b"t", [])
    return bytes(b.build())


def abort_marker(pid: int, epoch: int) -> bytes:
    return build_control_batch(pid, epoch, commit=False, coordinator_epoch=0, timestamp_ms=2000)


def refusal(verification: Verification, partition) -> ErrorCode | None:  # type: ignore[no-untyped-def]
    try:
        verification.check(partition, *TP)
    except KafkaProtocolError as exc:
        return exc.code
    return None


def test_coordinator_answers_become_the_produce_errors_kafka_gives_produce_below_v11() -> None:
    assert produce_error(ErrorCode.NONE) is None
    assert produce_error(ErrorCode.INVALID_TXN_STATE)[0] == ErrorCode.INVALID_TXN_STATE  # type: ignore[index]
    assert produce_error(ErrorCode.PRODUCER_FENCED)[0] == ErrorCode.INVALID_PRODUCER_EPOCH  # type: ignore[index]
    for retriable in (
        ErrorCode.CONCURRENT_TRANSACTIONS,
        ErrorCode.NETWORK_EXCEPTION,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.NOT_COORDINATOR,
    ):
        assert produce_error(retriable)[0] == ErrorCode.NOT_ENOUGH_REPLICAS  # type: ignore[index]
    code = ErrorCode.INVALID_PRODUCER_ID_MAPPING
    assert produce_error(code)[0] == code  # type: ignore[index]


def test_a_guard_taken_before_the_marker_no_longer_lets_the_batch_in(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path, LogConfig())
    partition = SimpleNamespace(log=log)
    state = log.producers
    # The transaction's first write here: verified, appended, the transaction open.
    guard = state.maybe_create_verification_state_entry(5, 0, 0)
    first = Verification({TP: _Pending(5, guard)})
    assert refusal(first, partition) is None
    log.append(txn_batch(5, 0, 0))
    # A later write of the same transaction needed no question (None: open here already).
    assert refusal(Verification({TP: _Pending(5, None)}), partition) is None
    # The transaction ends (abort marker) while a write verified before it is still in flight.
    log.append(abort_marker(5, 0), origin="coordinator")
    assert refusal(Verification({TP: _Pending(5, None)}), partition) == ErrorCode.INVALID_TXN_STATE
    guard = state.maybe_create_verification_state_entry(5, 1, 0)
    raced = Verification({TP: _Pending(5, guard)})
    log.append(abort_marker(5, 0), origin="coordinator")  # the marker lands between answer and append
    assert refusal(raced, partition) == ErrorCode.INVALID_TXN_STATE
    assert 5 not in state.transactions.ongoing


def test_a_refused_partition_raises_its_error(tmp_path: Path) -> None:
    partition = SimpleNamespace(log=PartitionLog(tmp_path, LogConfig()))
    error = (ErrorCode.INVALID_TXN_STATE, "Partition was not added to the transaction")
    with pytest.raises(KafkaProtocolError) as e:
        Verification({TP: _Pending(9, None, error)}).check(partition, *TP)  # type: ignore[arg-type]
    assert e.value.code == ErrorCode.INVALID_TXN_STATE
    assert refusal(Verification({("other", 0): _Pending(9, None, error)}), partition) is None
