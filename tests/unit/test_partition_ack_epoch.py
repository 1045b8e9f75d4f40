"""Issue 14: an acks=all wait is answered only by the leader's high watermark in the epoch of the append.

The chaos harness's pause-leader / pause-coordinator nemeses found a committed transaction
with a record missing and a fatal OUT_OF_ORDER_SEQUENCE_NUMBER (seed 1, `--workload txn`): a
leader resuming from SIGSTOP appended a queued produce with stale metadata, learned it had
been deposed, truncated the batch away, and the offset was reused by another producer's
record. The produce's wait then ended on the high watermark this replica reached *as a
follower* (on timeout, or when the wait began after the leadership change), so the lost
batch was acknowledged: librdkafka sent the next sequence number (refused: a gap) and
committed a transaction missing that record. The same wait guards transaction markers and
`__transaction_state` / `__consumer_offsets` writes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.unit.test_storage_replication import batch
from workbench.broker.partition import NotLeaderError, Partition
from workbench.controller.image import PartitionInfo
from workbench.storage import LogConfig, PartitionLog

EPOCH = 3


def info(leader: int, epoch: int) -> PartitionInfo:
    return PartitionInfo("t", 0, replicas=[1, 2, 3], isr=[1, 2, 3], leader=leader, leader_epoch=epoch)


def leader_with_batches(tmp_path: Path, n: int = 5) -> Partition:
    plog = PartitionLog(tmp_path / "p", LogConfig(), topic="t", partition=0)
    partition = Partition(1, plog, info(1, EPOCH))
    for i in range(n):
        plog.append(batch(1, tag=i), leader_epoch=EPOCH)
    for r in (2, 3):
        partition.record_follower_fetch(r, n)
    assert plog.high_watermark == n
    return partition


def deposed_and_overwritten(partition: Partition, stale_offset: int) -> None:
    """The new leader (2) has other records at `stale_offset` and beyond; this replica follows it."""
    partition.update(info(2, EPOCH + 1))
    partition.log.truncate_to(stale_offset)
    for i in range(3):
        partition.log.append(batch(1, tag=100 + i), leader_epoch=EPOCH + 1)  # as the fetcher would
    partition.log.high_watermark = partition.log.log_end_offset  # the leader's HW, from its fetch answers
    assert partition.log.high_watermark > stale_offset


def test_a_wait_that_starts_after_the_leader_was_deposed_fails(tmp_path: Path) -> None:
    partition = leader_with_batches(tmp_path)
    stale = partition.log.append(batch(1, tag=9), leader_epoch=EPOCH)  # appended, then deposed
    deposed_and_overwritten(partition, stale.base_offset)

    async def wait() -> bool:
        return await partition.wait_for_high_watermark(stale.last_offset + 1, 0.2, EPOCH)

    with pytest.raises(NotLeaderError):
        asyncio.run(wait())


def test_a_wait_that_times_out_after_the_leader_was_deposed_fails(tmp_path: Path) -> None:
    partition = leader_with_batches(tmp_path)
    stale = partition.log.append(batch(1, tag=9), leader_epoch=EPOCH)

    async def scenario() -> bool:
        waiter = asyncio.ensure_future(partition.wait_for_high_watermark(stale.last_offset + 1, 0.3, EPOCH))
        await asyncio.sleep(0.05)
        # Not through update(): the waiter is left in place, as if registered after the change.
        partition.info = info(2, EPOCH + 1)
        deposed_and_overwritten(partition, stale.base_offset)
        return await waiter

    with pytest.raises(NotLeaderError):
        asyncio.run(scenario())


def test_leading_again_in_a_later_epoch_does_not_vouch_for_an_older_append(tmp_path: Path) -> None:
    partition = leader_with_batches(tmp_path)
    stale = partition.log.append(batch(1, tag=9), leader_epoch=EPOCH)

    async def scenario() -> bool:
        waiter = asyncio.ensure_future(partition.wait_for_high_watermark(stale.last_offset + 1, 5.0, EPOCH))
        await asyncio.sleep(0.05)
        partition.update(info(1, EPOCH + 2))  # deposed and re-elected meanwhile
        for r in (2, 3):
            partition.record_follower_fetch(r, partition.log.log_end_offset)
        return await waiter

    with pytest.raises(NotLeaderError):
        asyncio.run(scenario())


def test_a_wait_in_the_same_epoch_is_answered_by_the_isr(tmp_path: Path) -> None:
    partition = leader_with_batches(tmp_path)
    appended = partition.log.append(batch(1, tag=9), leader_epoch=EPOCH)

    async def scenario() -> tuple[bool, bool]:
        waiter = asyncio.ensure_future(partition.wait_for_high_watermark(appended.last_offset + 1, 5.0, EPOCH))
        await asyncio.sleep(0.05)
        partition.record_follower_fetch(2, partition.log.log_end_offset)
        assert not waiter.done()  # replica 3 has not fetched it yet
        partition.record_follower_fetch(3, partition.log.log_end_offset)
        timed_out = await partition.wait_for_high_watermark(partition.log.log_end_offset + 1, 0.1, EPOCH)
        return await waiter, timed_out

    assert asyncio.run(scenario()) == (True, False)
