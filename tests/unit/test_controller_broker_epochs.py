"""Controller operations for broker incarnations (KIP-380/903) and offline log directories (KIP-112).

The operations are pure functions of the metadata image (`workbench.controller.ops.execute`),
so each rule is checked by replaying records into a `MetadataImage`.
"""

from __future__ import annotations

import pytest

from workbench.controller.image import MetadataImage
from workbench.controller.ops import execute
from workbench.protocol.errors import ErrorCode, KafkaProtocolError


def run(image: MetadataImage, op: dict) -> list[dict]:
    records = execute(image, op)
    for r in records:
        image.apply(r)
    return records


def cluster(brokers=(1, 2, 3), replicas=(1, 2, 3)) -> MetadataImage:
    image = MetadataImage()
    for b in brokers:
        run(image, {"op": "register_broker", "id": b, "host": "127.0.0.1", "port": 9000 + b, "incarnation": "a"})
        run(image, {"op": "unfence_broker", "id": b})
    image.apply({"t": "topic", "name": "t", "id": "0" * 32, "configs": {}})
    image.apply(
        {
            "t": "partition",
            "topic": "t",
            "p": 0,
            "replicas": list(replicas),
            "isr": list(replicas),
            "leader": replicas[0],
            "leader_epoch": 0,
        }
    )
    return image


def part(image):
    return image.topics["t"].partitions[0]


def test_every_registration_is_a_new_broker_epoch():
    image = cluster()
    before = image.brokers[2].epoch
    run(image, {"op": "register_broker", "id": 2, "host": "127.0.0.1", "port": 9002, "incarnation": "b"})
    assert image.brokers[2].epoch > before
    assert image.brokers[2].fenced


def test_a_fast_restart_leaves_every_isr_and_leadership():
    image = cluster()
    run(image, {"op": "register_broker", "id": 2, "host": "127.0.0.1", "port": 9002, "incarnation": "b"})
    assert part(image).isr == [1, 3] and part(image).leader == 1
    run(image, {"op": "register_broker", "id": 1, "host": "127.0.0.1", "port": 9001, "incarnation": "b"})
    assert part(image).leader == 3 and part(image).isr == [3]
    assert "catches up after restart" in image.elections[-1]["reason"]


def test_the_last_isr_member_keeps_its_place_when_it_restarts():
    image = cluster(brokers=(1,), replicas=(1,))
    run(image, {"op": "register_broker", "id": 1, "host": "127.0.0.1", "port": 9001, "incarnation": "b"})
    assert part(image).isr == [1] and part(image).leader == -1
    run(image, {"op": "unfence_broker", "id": 1})
    assert part(image).leader == 1


def test_isr_expansion_with_a_stale_broker_epoch_is_refused():
    image = cluster()
    old_epoch = image.brokers[2].epoch
    run(image, {"op": "register_broker", "id": 2, "host": "127.0.0.1", "port": 9002, "incarnation": "b"})
    run(image, {"op": "unfence_broker", "id": 2})
    p = part(image)
    op = {
        "op": "alter_partition",
        "topic": "t",
        "p": 0,
        "leader": p.leader,
        "leader_epoch": p.leader_epoch,
        "isr": [1, 2, 3],
    }
    with pytest.raises(KafkaProtocolError) as err:
        execute(image, {**op, "broker_epochs": {2: old_epoch}})
    assert err.value.code == ErrorCode.STALE_BROKER_EPOCH
    run(image, {**op, "broker_epochs": {2: image.brokers[2].epoch}})
    assert part(image).isr == [1, 2, 3]


def test_log_dir_offline_moves_leadership_and_keeps_the_broker_out_of_elections():
    image = cluster()
    run(image, {"op": "log_dir_offline", "id": 1, "reason": "disk full"})
    assert part(image).leader == 2 and part(image).isr == [2, 3]
    assert not image.brokers[1].fenced and image.brokers[1].log_dir_offline
    assert run(image, {"op": "elect_leaders", "type": 0, "partitions": None}) == []  # preferred: not broker 1
    p = part(image)
    with pytest.raises(KafkaProtocolError):
        execute(
            image,
            {
                "op": "alter_partition",
                "topic": "t",
                "p": 0,
                "leader": 2,
                "leader_epoch": p.leader_epoch,
                "isr": [1, 2, 3],
            },
        )
    # A restart (after the directory was repaired) registers a healthy incarnation.
    run(image, {"op": "register_broker", "id": 1, "host": "127.0.0.1", "port": 9001, "incarnation": "c"})
    assert not image.brokers[1].log_dir_offline
