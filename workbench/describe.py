"""`describe(bootstrap)`: brokers and partitions as DataFrames, from the Kafka protocol alone.

Metadata gives brokers, the controller, and per partition the leader, leader
epoch, replicas and ISR; ListOffsets to each leader gives the high watermark
(what consumers see) and, asked as a debugging replica (`replica_id=-2`,
Kafka's convention), the log end offset. Nothing here knows broker internals,
so the same call describes Apache Kafka or Redpanda.

`LeaderHistory` polls the same Metadata and records every leader change it
sees with its time and the evident reason, for the cluster widget's timeline.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pandas as pd
from kafka.protocol.consumer import ListOffsetsRequest
from kafka.protocol.metadata import MetadataRequest

from workbench.protocol.blocking_client import WireClient

LATEST = -1
DEBUGGING_REPLICA_ID = -2
CONSUMER_REPLICA_ID = -1


def _connect_any(bootstrap: str) -> WireClient:
    last: Exception | None = None
    for server in bootstrap.split(","):
        host, port = server.strip().rsplit(":", 1)
        try:
            return WireClient(host, int(port), timeout=5.0)
        except OSError as exc:
            last = exc
    raise ConnectionError(f"no broker of {bootstrap} answers: {last}")


def metadata(bootstrap: str):
    client = _connect_any(bootstrap)
    try:
        return client.request(MetadataRequest(topics=None, allow_auto_topic_creation=False), 9)
    finally:
        client.close()


def _list_offsets(host: str, port: int, parts: list[tuple[str, int]], replica_id: int) -> dict:
    by_topic: dict[str, list[int]] = {}
    for topic, p in parts:
        by_topic.setdefault(topic, []).append(p)
    req = ListOffsetsRequest(
        replica_id=replica_id,
        isolation_level=0,
        topics=[
            ListOffsetsRequest.ListOffsetsTopic(
                name=t,
                partitions=[
                    ListOffsetsRequest.ListOffsetsTopic.ListOffsetsPartition(
                        partition_index=p, current_leader_epoch=-1, timestamp=LATEST
                    )
                    for p in ps
                ],
            )
            for t, ps in by_topic.items()
        ],
    )
    client = WireClient(host, port, timeout=5.0)
    try:
        resp = client.request(req, 5)
    finally:
        client.close()
    return {
        (t.name, p.partition_index): (p.offset if p.error_code == 0 else None)
        for t in resp.topics
        for p in t.partitions
    }


@dataclass
class ClusterDescription:
    brokers: pd.DataFrame
    partitions: pd.DataFrame
    controller_id: int
    cluster_id: str | None

    def _repr_html_(self) -> str:
        return (
            f"<b>cluster</b> {self.cluster_id} · controller {self.controller_id}"
            f"<h4>brokers</h4>{self.brokers.to_html(index=False)}"
            f"<h4>partitions</h4>{self.partitions.to_html(index=False)}"
        )


def describe(
    bootstrap: str,
    *,
    known_brokers: dict[int, str] | None = None,
    include_internal: bool = False,
    attempts: int = 3,
) -> ClusterDescription:
    """One consistent snapshot; retried briefly while leadership is moving (a broker's metadata can
    trail the controller's by a few milliseconds, and the old leader then declines ListOffsets)."""
    for attempt in range(attempts):
        result = _describe_once(bootstrap, known_brokers, include_internal)
        frame = result.partitions
        if attempt == attempts - 1 or not (frame.high_watermark.isna() & (frame.leader >= 0)).any():
            return result
        time.sleep(0.1)
    return result


def _describe_once(bootstrap: str, known_brokers: dict[int, str] | None, include_internal: bool) -> ClusterDescription:
    md = metadata(bootstrap)
    listed = {b.node_id: b for b in md.brokers}
    rows = []
    ids = sorted(set(listed) | set(known_brokers or {}))
    for bid in ids:
        b = listed.get(bid)
        address = f"{b.host}:{b.port}" if b is not None else (known_brokers or {}).get(bid, "")
        rows.append({"id": bid, "address": address, "alive": b is not None, "controller": bid == md.controller_id})
    brokers = pd.DataFrame(rows, columns=["id", "address", "alive", "controller"])

    partitions = []
    for t in md.topics:
        if t.is_internal and not include_internal:
            continue
        for p in t.partitions:
            partitions.append(
                {
                    "topic": t.name,
                    "partition": p.partition_index,
                    "leader": p.leader_id,
                    "leader_epoch": p.leader_epoch,
                    "replicas": list(p.replica_nodes),
                    "isr": list(p.isr_nodes),
                    "offline_replicas": list(p.offline_replicas),
                    "error": p.error_code,
                }
            )
    by_leader: dict[int, list[tuple[str, int]]] = {}
    for row in partitions:
        if row["leader"] in listed:
            by_leader.setdefault(row["leader"], []).append((row["topic"], row["partition"]))
    hw: dict = {}
    leo: dict = {}
    for leader, parts in by_leader.items():
        b = listed[leader]
        try:
            hw.update(_list_offsets(b.host, b.port, parts, CONSUMER_REPLICA_ID))
            leo.update(_list_offsets(b.host, b.port, parts, DEBUGGING_REPLICA_ID))
        except OSError:
            pass
    for row in partitions:
        key = (row["topic"], row["partition"])
        row["high_watermark"] = hw.get(key)
        row["log_end_offset"] = leo.get(key)
    columns = [
        "topic",
        "partition",
        "leader",
        "leader_epoch",
        "replicas",
        "isr",
        "high_watermark",
        "log_end_offset",
        "offline_replicas",
        "error",
    ]
    frame = pd.DataFrame(partitions, columns=columns).sort_values(["topic", "partition"], ignore_index=True)
    return ClusterDescription(brokers, frame, md.controller_id, md.cluster_id)


@dataclass
class LeaderHistory:
    """Leader changes observed by polling Metadata every `interval` seconds (a background thread)."""

    bootstrap: str
    interval: float = 0.25
    events: list[dict] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _last: dict | None = None
    _brokers: set[int] = field(default_factory=set)

    def start(self) -> LeaderHistory:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="workbench-leader-history", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def poll(self) -> list[dict]:
        """Take one Metadata snapshot; returns the changes it revealed."""
        md = metadata(self.bootstrap)
        brokers = {b.node_id for b in md.brokers}
        now = pd.Timestamp.now(tz="UTC")
        state = {
            (t.name, p.partition_index): (
                p.leader_id,
                p.leader_epoch,
                list(p.replica_nodes),
                list(p.isr_nodes),
            )
            for t in md.topics
            for p in t.partitions
        }
        new = []
        if self._last is not None:
            for key, (leader, epoch, replicas, isr) in state.items():
                old = self._last.get(key)
                if old is None or (old[0], old[1]) == (leader, epoch):
                    continue
                old_leader = old[0]
                if leader == -1:
                    reason = "no in-sync replica is available: partition offline"
                elif old_leader not in brokers and old_leader != -1:
                    reason = f"broker {old_leader} left the cluster"
                elif old_leader == -1:
                    reason = f"broker {leader} returned"
                elif replicas and leader == replicas[0]:
                    reason = "preferred leader election"
                else:
                    reason = "leader moved"
                new.append(
                    {
                        "time": now,
                        "topic": key[0],
                        "partition": key[1],
                        "old_leader": old_leader,
                        "new_leader": leader,
                        "leader_epoch": epoch,
                        "isr": isr,
                        "reason": reason,
                    }
                )
        self._last = state
        self._brokers = brokers
        self.events.extend(new)
        return new

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            self.events,
            columns=[
                "time",
                "topic",
                "partition",
                "old_leader",
                "new_leader",
                "leader_epoch",
                "isr",
                "reason",
            ],
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:
                time.sleep(self.interval)
