"""GroupCoordinatorManager: which groups this broker serves, from the metadata and its own replicas.

The manager takes its collaborators (node id, config, a metadata source, the replica manager, a
submit function), so these tests give it a real `ReplicaManager` over a temporary directory and
a `MetadataImage` built from metadata records: no broker process is needed to see its answers.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from workbench.broker.config import BrokerConfig
from workbench.broker.groups_manager import OFFSETS_TOPIC, GroupCoordinatorManager
from workbench.broker.replica_manager import ReplicaManager
from workbench.controller.image import MetadataImage
from workbench.protocol.errors import ErrorCode, KafkaProtocolError


def offsets_topic_image(leader: int) -> MetadataImage:
    image = MetadataImage()
    image.apply({"t": "broker", "id": 1, "host": "127.0.0.1", "port": 1})
    image.apply({"t": "topic", "name": OFFSETS_TOPIC, "id": uuid.uuid4().hex, "configs": {}})
    image.apply(
        {
            "t": "partition",
            "topic": OFFSETS_TOPIC,
            "p": 0,
            "replicas": [1],
            "isr": [1],
            "leader": leader,
            "leader_epoch": 1,
        }
    )
    return image


async def no_controller(op, timeout=0.0):  # the manager only submits to create the topic
    raise AssertionError(f"unexpected controller operation {op}")


def error_for(manager: GroupCoordinatorManager, group: str) -> ErrorCode:
    with pytest.raises(KafkaProtocolError) as err:
        manager.coordinator_for(group)
    return err.value.code


def test_a_led_partition_not_loaded_yet_answers_load_in_progress(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = BrokerConfig(node_id=1, cluster_dir=tmp_path)
        metadata = SimpleNamespace(image=offsets_topic_image(leader=1))
        replicas = ReplicaManager(1, tmp_path / "broker-1")
        manager = GroupCoordinatorManager(1, config, metadata, replicas, no_controller)  # type: ignore[arg-type]
        await manager.start()
        # The metadata says we lead the group's offsets partition, but our replica is not open
        # yet: the group is ours but not loaded (Kafka: COORDINATOR_LOAD_IN_PROGRESS, retriable
        # without a new FindCoordinator), not somebody else's (NOT_COORDINATOR).
        assert error_for(manager, "billing") == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        replicas.reconcile(metadata.image)
        manager.reconcile(metadata.image)
        assert manager.coordinator_for("billing") is not None
        # Leadership moves to broker 2: the coordinator closes and the group is elsewhere.
        metadata.image = offsets_topic_image(leader=2)
        replicas.reconcile(metadata.image)
        manager.reconcile(metadata.image)
        assert error_for(manager, "billing") == ErrorCode.NOT_COORDINATOR
        await manager.close()
        assert not manager._tasks, "background tasks left running after close"
        replicas.close()

    asyncio.run(scenario())
