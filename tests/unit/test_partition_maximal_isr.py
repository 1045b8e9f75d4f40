"""Issue 12: while an ISR expansion is in flight, the leader's high watermark counts the joiner.

The controller may commit an AlterPartition before the leader applies it, and from then on
it may elect the joining replica. A high watermark that advanced on the old ISR alone in that
window acknowledged records the joiner (the next leader) did not have: an acknowledged
offset later held another producer's record. Kafka computes the high watermark over the
*maximal* ISR (`PendingExpandIsr`): the committed ISR plus the replicas being added.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_storage_replication import batch
from workbench.broker.partition import Partition
from workbench.controller.image import PartitionInfo
from workbench.storage import LogConfig, PartitionLog


def leader_of(tmp_path: Path, isr: list[int]) -> Partition:
    plog = PartitionLog(tmp_path / "p", LogConfig(), topic="t", partition=0)
    info = PartitionInfo("t", 0, replicas=[1, 2, 3], isr=isr, leader=1, leader_epoch=3)
    partition = Partition(1, plog, info)
    for i in range(10):
        plog.append(batch(1, tag=i), leader_epoch=partition.leader_epoch)
    return partition


def test_a_proposed_joiner_holds_the_high_watermark_until_the_change_is_resolved(tmp_path: Path) -> None:
    partition = leader_of(tmp_path, isr=[1, 3])
    partition.record_follower_fetch(3, 4)
    partition.record_follower_fetch(2, 4)
    assert partition.log.high_watermark == 4
    # Replica 2 reached the HW: the leader proposes ISR [1, 2, 3]. Until it learns the outcome,
    # replica 2's copy counts: replica 3 alone fetching further must not move the HW past 2.
    partition.propose_isr([1, 2, 3])
    partition.record_follower_fetch(3, 10)
    assert partition.log.high_watermark == 4
    assert partition.maximal_isr == [1, 3, 2]
    partition.record_follower_fetch(2, 7)
    assert partition.log.high_watermark == 7
    # The controller committed it and the leader applied it: the committed ISR rules from now on.
    partition.update(PartitionInfo("t", 0, replicas=[1, 2, 3], isr=[1, 2, 3], leader=1, leader_epoch=3))
    partition.isr_change_resolved()
    partition.record_follower_fetch(2, 10)
    assert partition.log.high_watermark == 10


def test_a_refused_expansion_stops_counting_the_joiner(tmp_path: Path) -> None:
    partition = leader_of(tmp_path, isr=[1, 3])
    partition.propose_isr([1, 2, 3])
    partition.record_follower_fetch(3, 10)
    assert partition.log.high_watermark == 0  # replica 2 has not fetched at all
    assert partition.isr_change_unresolved
    partition.isr_change_resolved()  # e.g. STALE_BROKER_EPOCH: replica 2 restarted meanwhile
    assert partition.log.high_watermark == 10
    assert not partition.isr_change_unresolved


def test_a_new_leader_epoch_forgets_older_proposals(tmp_path: Path) -> None:
    partition = leader_of(tmp_path, isr=[1, 3])
    partition.propose_isr([1, 2, 3])
    partition.update(PartitionInfo("t", 0, replicas=[1, 2, 3], isr=[1, 3], leader=1, leader_epoch=4))
    assert partition.maximal_isr == [1, 3]
