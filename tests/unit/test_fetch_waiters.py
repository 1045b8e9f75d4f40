"""Long-poll fetches wait for what can answer them (issue 19): followers for the log end offset
to move, consumers for the high watermark. An acks=all append wakes only the followers; the high
watermark advance only the consumers; a leadership or topic change (`notify`) everyone."""

from __future__ import annotations

import asyncio

from workbench.broker.replica_manager import ReplicaManager

TP = ("t", 0)


async def _waiting(replicas: ReplicaManager) -> tuple[asyncio.Task, asyncio.Task]:
    consumer = asyncio.ensure_future(replicas.wait_for_data([TP], 30.0))
    follower = asyncio.ensure_future(replicas.wait_for_data([TP], 30.0, follower=True))
    await asyncio.sleep(0)  # both registered
    return consumer, follower


def test_an_uncommitted_append_wakes_the_followers_and_the_hw_advance_the_consumers(tmp_path):
    async def run() -> None:
        replicas = ReplicaManager(1, tmp_path)
        consumer, follower = await _waiting(replicas)
        replicas.notify_appended(TP, committed=False)
        await asyncio.sleep(0)
        assert follower.done() and not consumer.done()
        follower = asyncio.ensure_future(replicas.wait_for_data([TP], 30.0, follower=True))
        await asyncio.sleep(0)
        replicas._wake_committed(TP)  # Partition's on_high_watermark callback
        await asyncio.sleep(0)
        assert consumer.done() and not follower.done()
        follower.cancel()

    asyncio.run(run())


def test_a_committed_append_and_notify_wake_every_fetch(tmp_path):
    async def run() -> None:
        replicas = ReplicaManager(1, tmp_path)
        consumer, follower = await _waiting(replicas)
        replicas.notify_appended(TP, committed=True)  # one replica in the ISR: the HW moved with it
        await asyncio.sleep(0)
        assert consumer.done() and follower.done()
        consumer, follower = await _waiting(replicas)
        replicas.notify(TP)
        await asyncio.sleep(0)
        assert consumer.done() and follower.done()
        assert not replicas._waiters and not replicas._follower_waiters  # nothing left registered

    asyncio.run(run())
