"""A controller-quorum voter restarted with a damaged metadata log (issue 12: an acknowledged
metadata change is never lost, and the voter repairs from the leader).

The voter's `metadata/log.bin` takes a bit flip in the middle while the broker is down (a bad
sector). On open it keeps the entries before the damage and remembers that it needs repair
(`RaftStorage.needs_repair`). Before the fix the leader never sent it anything below the match
index the voter had acknowledged before its restart, so the voter stayed short, never served, and
`restart_broker` timed out; and with a shortened log it would have voted like a healthy member.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support import wait_until
from workbench import Cluster

_HEADER = struct.Struct(">II")


def entry_offsets(path: Path) -> list[int]:
    """File offsets of the entries of a Raft log file (read only: the broker may be running)."""
    data = path.read_bytes()
    offsets, pos = [], 0
    while pos + _HEADER.size <= len(data):
        length, _ = _HEADER.unpack_from(data, pos)
        if pos + _HEADER.size + length > len(data):
            break
        offsets.append(pos)
        pos += _HEADER.size + length
    return offsets


def create(admin: AdminClient, names: list[str]) -> None:
    for future in admin.create_topics([NewTopic(n, 1, 1) for n in names], operation_timeout=15).values():
        future.result(timeout=30)


def topic_names(cluster: Cluster, node_id: int) -> set[str]:
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{cluster.brokers[node_id].port}"})
    return set(admin.list_topics(timeout=10).topics)


@pytest.mark.parametrize("victim_role", ["follower", "controller"])
def test_a_voter_with_a_bit_flip_in_its_metadata_log_is_repaired_and_loses_nothing(tmp_path, victim_role):
    cluster = Cluster(brokers=3, data_dir=tmp_path / "cluster", config={"group_initial_rebalance_delay_ms": 0})
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        acked = [f"before-{i}" for i in range(12)]
        create(admin, acked)
        controller = admin.list_topics(timeout=10).controller_id
        victim = controller if victim_role == "controller" else next(i for i in (1, 2, 3) if i != controller)
        log_bin = Path(cluster.data_dir) / f"broker-{victim}" / "metadata" / "log.bin"
        witness = next(i for i in (1, 2, 3) if i != victim)
        healthy = Path(cluster.data_dir) / f"broker-{witness}" / "metadata" / "log.bin"
        wait_until(lambda: len(entry_offsets(log_bin)) >= len(entry_offsets(healthy)), message="the victim's log")

        cluster.kill_broker(victim)
        offsets = entry_offsets(log_bin)
        middle = offsets[len(offsets) // 2]
        data = bytearray(log_bin.read_bytes())
        data[middle + _HEADER.size + 3] ^= 0x04  # inside the body of an entry in the middle: a bad CRC
        log_bin.write_bytes(bytes(data))
        cluster.restart_broker(victim)  # before the fix: it waited for the quorum past the start-up timeout

        log = (Path(cluster.data_dir) / f"broker-{victim}" / "broker.log").read_text(errors="replace")
        assert "damaged" in log and "repair" in log, log[-2000:]
        # Repaired from the leader: its log is as long as a healthy voter's again.
        wait_until(
            lambda: len(entry_offsets(log_bin)) >= len(entry_offsets(healthy)) >= len(offsets),
            timeout=30,
            message=lambda: f"the repair ({len(entry_offsets(log_bin))} of {len(entry_offsets(healthy))} entries)",
        )
        create(admin, ["after-repair"])
        wait_until(lambda: {*acked, "after-repair"} <= topic_names(cluster, victim), timeout=30, message="topics")

        # The repaired voter is a full member again: with the other healthy voter down it forms
        # the majority, and what was acknowledged is all there.
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{cluster.brokers[victim].port}"})
        other = next(i for i in (1, 2, 3) if i not in (victim, controller)) if victim != controller else None
        down = other if other is not None else next(i for i in (1, 2, 3) if i != victim)
        cluster.kill_broker(down)
        create(admin, ["with-one-down"])
        wait_until(
            lambda: {*acked, "after-repair", "with-one-down"} <= topic_names(cluster, victim),
            timeout=30,
            message="topics with one voter down",
        )
        cluster.restart_broker(down)
    finally:
        cluster.stop()
