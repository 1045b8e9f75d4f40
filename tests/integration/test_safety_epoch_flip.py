"""A follower restarted with a bit flipped in a batch's partitionLeaderEpoch (issue 12, tail-flip).

The leader epoch of a batch sits before the part its CRC covers (as in Kafka's format), so a bit
flip there passes recovery, and the replica's leader epoch cache learns an epoch no leader ever
had. Its fetches then carry that epoch as the last fetched one; the leader, knowing no such
epoch, answered "undefined", the follower ignored the answer and got no records: it stayed
"catching up after restart" for good, the partition one replica short (the chaos harness's slow
heals after `tail-flip-follower`). Now the leader answers where its own history ends, and the
follower cuts the batch off and fetches it again.
"""

from __future__ import annotations

import struct
from pathlib import Path

from confluent_kafka import Producer

from tests.support import wait_until
from workbench import Cluster

TOPIC = "flipped-epoch"


def last_batch_position(segment: Path) -> int:
    data = segment.read_bytes()
    pos = last = 0
    while pos + 12 <= len(data):
        _base, length = struct.unpack_from(">qi", data, pos)
        if pos + 12 + length > len(data):
            break
        last, pos = pos, pos + 12 + length
    return last


def produce(cluster: Cluster, start: int, n: int) -> None:
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "enable.idempotence": True, "acks": "all"})
    for i in range(start, start + n):
        p.produce(TOPIC, f"v{i}".encode(), partition=0)
        if i % 20 == 0:
            p.flush(30)  # several batches, so the flipped one is not the only one
    assert p.flush(30) == 0


def test_a_follower_whose_last_batch_claims_an_unknown_leader_epoch_rejoins_the_isr(tmp_path):
    cluster = Cluster(brokers=3, data_dir=tmp_path / "cluster", config={"group_initial_rebalance_delay_ms": 0})
    try:
        cluster.create_topic(TOPIC, partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
        produce(cluster, 0, 200)

        def row():
            parts = cluster.describe().partitions
            return parts[parts.topic == TOPIC].iloc[0]

        wait_until(lambda: len(row().isr) == 3, message="a full ISR")
        leader = int(row().leader)
        follower = next(int(r) for r in row().replicas if int(r) != leader)
        partition_dir = Path(cluster.data_dir) / f"broker-{follower}" / "topics" / TOPIC / "partition=0"
        cluster.kill_broker(follower)
        segment = sorted(partition_dir.glob("*.log"), key=lambda p: int(p.stem))[-1]
        data = bytearray(segment.read_bytes())
        data[last_batch_position(segment) + 12] ^= 0x40  # partitionLeaderEpoch's bit 30: epoch ~2**30
        segment.write_bytes(bytes(data))
        cluster.restart_broker(follower)

        produce(cluster, 200, 50)
        wait_until(
            lambda: follower in [int(r) for r in row().isr],
            timeout=30,
            message=lambda: f"broker {follower} back in the ISR (states {row().replica_states})",
        )
        checkpoint = (partition_dir / "leader-epoch-checkpoint").read_text().split()
        assert all(int(e) < 1 << 20 for e in checkpoint[2::2]), checkpoint  # the bogus epoch is gone
    finally:
        cluster.stop()
