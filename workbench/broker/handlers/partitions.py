"""Finding the local log behind a (topic, partition), with Kafka's error for each miss."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from workbench.broker.handlers.context import BrokerContext as Broker
    from workbench.broker.partition import Partition
    from workbench.storage import PartitionLog


def leader_log(broker: Broker, topic: str, partition: int) -> tuple[PartitionLog | None, ErrorCode]:
    """The log this broker leads for `topic`-`partition`, or the error to return instead."""
    for attempt in range(2):
        info = broker.image.topics.get(topic)
        p = info.partitions.get(partition) if info is not None else None
        if p is not None:
            if p.leader != broker.node_id:
                if attempt == 0:
                    broker.refresh_metadata()
                    continue
                return None, ErrorCode.NOT_LEADER_OR_FOLLOWER
            plog = broker.replicas.get(topic, partition)
            if plog is not None:
                return plog, ErrorCode.NONE
        if attempt == 0:
            broker.refresh_metadata()  # created a moment ago through another broker?
    info = broker.image.topics.get(topic)
    if info is None or partition not in info.partitions:
        return None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    return None, ErrorCode.NOT_LEADER_OR_FOLLOWER


def leader_partition(
    broker: Broker, topic: str, partition: int, current_leader_epoch: int = -1
) -> tuple[Partition | None, ErrorCode]:
    """The `Partition` this broker leads, checking the client's view of the leader epoch (KIP-320)."""
    # Every produce and fetch partition comes here: when the image and the partition agree that
    # we lead it (the steady state), skip `leader_log`'s second round of lookups (issue 19).
    info = broker.image.topics.get(topic)
    pinfo = info.partitions.get(partition) if info is not None else None
    p = broker.replicas.partitions.get((topic, partition)) if pinfo is not None else None
    if p is None or pinfo is None or pinfo.leader != broker.node_id or not p.is_leader:
        plog, error = leader_log(broker, topic, partition)
        if plog is None:
            return None, error
        p = broker.replicas.partition(topic, partition)
        if p is None or not p.is_leader:
            return None, ErrorCode.NOT_LEADER_OR_FOLLOWER
    if current_leader_epoch >= 0:
        if current_leader_epoch < p.leader_epoch:
            return None, ErrorCode.FENCED_LEADER_EPOCH
        if current_leader_epoch > p.leader_epoch:
            return None, ErrorCode.UNKNOWN_LEADER_EPOCH
    return p, ErrorCode.NONE
