"""The two waits on a leader's request path (issue 19 made each one future and one timer):

* `Partition.wait_for_high_watermark` (acks=all): True once the high watermark covers the
  offset, False when the timeout passes first, NotLeaderError when leadership moves; a finished
  wait leaves no waiter and no timer behind.
* `ReplicaManager.wait_for_data` (a long-poll Fetch): returns on new data or at the timeout.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.unit.test_partition_maximal_isr import leader_of
from workbench.broker.partition import NotLeaderError
from workbench.broker.replica_manager import ReplicaManager
from workbench.controller.image import PartitionInfo


def test_acks_all_wait_returns_true_when_the_high_watermark_covers_the_offset(tmp_path: Path) -> None:
    partition = leader_of(tmp_path, isr=[1, 2, 3])

    async def main() -> bool:
        wait = asyncio.ensure_future(
            partition.wait_for_high_watermark(5, timeout=30, leader_epoch=partition.leader_epoch)
        )
        await asyncio.sleep(0)
        partition.record_follower_fetch(2, 5)
        assert not wait.done()  # replica 3 has not confirmed yet
        partition.record_follower_fetch(3, 6)
        return await asyncio.wait_for(wait, 5)

    assert asyncio.run(main()) is True
    assert partition._hw_waiters == []


def test_acks_all_wait_times_out_false_and_leaves_no_waiter(tmp_path: Path) -> None:
    partition = leader_of(tmp_path, isr=[1, 2, 3])

    async def main() -> bool:
        ok = await partition.wait_for_high_watermark(5, timeout=0.05, leader_epoch=partition.leader_epoch)
        # A wake after the timeout finds nothing to resolve.
        partition.record_follower_fetch(2, 10)
        partition.record_follower_fetch(3, 10)
        return ok

    assert asyncio.run(main()) is False
    assert partition._hw_waiters == []
    assert partition.log.high_watermark == 10


def test_acks_all_wait_fails_when_leadership_moves(tmp_path: Path) -> None:
    partition = leader_of(tmp_path, isr=[1, 2, 3])

    async def main() -> None:
        wait = asyncio.ensure_future(
            partition.wait_for_high_watermark(5, timeout=30, leader_epoch=partition.leader_epoch)
        )
        await asyncio.sleep(0)
        partition.update(PartitionInfo("t", 0, replicas=[1, 2, 3], isr=[2, 3], leader=2, leader_epoch=4))
        await asyncio.wait_for(wait, 5)

    with pytest.raises(NotLeaderError):
        asyncio.run(main())
    assert partition._hw_waiters == []


def test_long_poll_returns_on_data_or_at_the_timeout(tmp_path: Path) -> None:
    replicas = ReplicaManager(1, tmp_path)
    tp = ("t", 0)

    async def main() -> None:
        await asyncio.wait_for(replicas.wait_for_data([tp], 0.05), 5)  # nothing comes: the timeout ends it
        assert replicas._waiters == {}
        wait = asyncio.ensure_future(replicas.wait_for_data([tp, ("t", 1)], 30))
        await asyncio.sleep(0.01)
        assert not wait.done()
        replicas.notify(tp)
        await asyncio.wait_for(wait, 5)  # the notify, not the 30 s timeout, ends it

    asyncio.run(main())
    assert replicas._waiters == {}
