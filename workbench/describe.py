"""`describe(bootstrap)`: brokers and partitions as DataFrames, from the Kafka protocol alone.

Metadata gives brokers, the controller, and per partition the leader, leader
epoch, replicas and ISR; ListOffsets to each leader gives the high watermark
(what consumers see) and, asked as a debugging replica (`replica_id=-2`,
Kafka's convention), the log end offset; ListGroups to every broker gives the
groups it coordinates with their protocol (classic or KIP-848 consumer). Nothing here knows broker internals,
so the same call describes Apache Kafka or Redpanda.

`LeaderHistory` polls the same Metadata and records every leader change it
sees with its time and the evident reason, for the cluster widget's timeline.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass, field

import pandas as pd
from kafka.protocol.admin import ListGroupsRequest
from kafka.protocol.consumer import ListOffsetsRequest
from kafka.protocol.metadata import MetadataRequest

from workbench.embedded import is_embedded
from workbench.protocol.blocking_client import WireClient

LATEST = -1
DEBUGGING_REPLICA_ID = -2
CONSUMER_REPLICA_ID = -1
#: How long one broker may take to answer Metadata or ListOffsets. A paused broker (SIGSTOP, a
#: long GC, a frozen VM) still accepts TCP connections (the kernel does that), so "the first
#: broker that accepts" can be one that never answers: every broker is asked at once and the
#: first answer wins; a leader that does not answer ListOffsets within this leaves its
#: partitions' offsets unknown (NULL) instead of failing the whole description.
ANSWER_TIMEOUT_S = 2.0

#: Threads for the per-broker requests: one stuck on a paused broker never holds up the caller;
#: it ends with its socket timeout.
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="workbench-describe")


def _ask(host: str, port: int, request, version: int, timeout: float):
    client = WireClient(host, port, timeout=timeout)
    try:
        return client.request(request, version)
    finally:
        client.close()


def metadata(bootstrap: str, timeout: float = ANSWER_TIMEOUT_S):
    """Metadata from whichever bootstrap broker answers first (all are asked at once)."""
    servers = [s.strip().rsplit(":", 1) for s in bootstrap.split(",") if s.strip()]
    futures = [
        _POOL.submit(_ask, host, int(port), MetadataRequest(topics=None, allow_auto_topic_creation=False), 9, timeout)
        for host, port in servers
    ]
    errors: list[str] = []
    try:
        for future in as_completed(futures, timeout=timeout + 1.0):
            try:
                return future.result()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    except FuturesTimeout:
        errors.append(f"no answer within {timeout}s")
    finally:
        for future in futures:
            future.cancel()
    raise ConnectionError(f"no broker of {bootstrap} answers Metadata ({'; '.join(errors)})")


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
    resp = _ask(host, port, req, 5, ANSWER_TIMEOUT_S)
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
    #: Leaders that did not answer ListOffsets in time (their partitions' offsets are NULL).
    unanswered: frozenset[int] = frozenset()
    #: Groups (group_id, protocol "classic"/"consumer", state, coordinator), from each broker's ListGroups.
    groups: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=GROUP_COLUMNS))

    def _repr_html_(self) -> str:
        return (
            f"<b>cluster</b> {self.cluster_id} · controller {self.controller_id}"
            f"<h4>brokers</h4>{self.brokers.to_html(index=False)}"
            f"<h4>partitions</h4>{self.partitions.to_html(index=False)}"
            f"<h4>groups</h4>{self.groups.to_html(index=False)}"
        )


GROUP_COLUMNS = ["group_id", "protocol", "state", "coordinator"]


def _list_groups(host: str, port: int, timeout: float = ANSWER_TIMEOUT_S) -> list[dict]:
    """The groups one broker coordinates. ListGroups v5 (Kafka 3.8+, KIP-848) names each group's type
    ("classic" or "consumer"); an older broker is asked v4, and the protocol stays unknown (None)."""
    try:
        answer = _ask(host, port, ListGroupsRequest(states_filter=[], types_filter=[]), 5, timeout)
        return [
            {"group_id": g.group_id, "protocol": g.group_type or None, "state": g.group_state} for g in answer.groups
        ]
    except Exception:  # an older broker closes the connection on a version it lacks
        answer = _ask(host, port, ListGroupsRequest(states_filter=[]), 4, timeout)
        return [{"group_id": g.group_id, "protocol": None, "state": g.group_state} for g in answer.groups]


def describe(
    bootstrap: str,
    *,
    known_brokers: dict[int, str] | None = None,
    include_internal: bool = False,
    attempts: int = 3,
    replica_notes: dict[int, dict] | None = None,
) -> ClusterDescription:
    """One consistent snapshot; retried briefly while leadership is moving (a broker's metadata can
    trail the controller's by a few milliseconds, and the old leader then declines ListOffsets)."""
    for attempt in range(attempts):
        result = _describe_once(bootstrap, known_brokers, include_internal, replica_notes)
        frame = result.partitions
        # Retry only for leaders that answered without the offsets (leadership moving); one that did
        # not answer at all (paused, dying) would only make every attempt wait for it again.
        declined = frame.high_watermark.isna() & (frame.leader >= 0) & ~frame.leader.isin(result.unanswered)
        if attempt == attempts - 1 or not declined.any():
            return result
        time.sleep(0.1)
    return result


def replica_states(row: dict, notes: dict[int, dict] | None = None) -> dict[int, str]:
    """Each replica's state: "in sync", "offline" (dead broker or offline log directory), or
    "catching up" (out of the ISR), from Metadata alone; refined by what the brokers publish
    (`replica-states.json`, given as `notes`): "catching up after restart", "log dir offline",
    "damaged range a..b being repaired" or "... lost (no healthy replica)"."""
    states: dict[int, str] = {}
    key = f"{row['topic']}/{row['partition']}"
    for r in row["replicas"]:
        note = ((notes or {}).get(r) or {}).get("partitions", {}).get(key)
        if r in row["offline_replicas"]:
            states[r] = note if note == "log dir offline" else "offline"
        elif note is not None and (r not in row["isr"] or note.startswith("damaged")):
            states[r] = note
        else:
            states[r] = "in sync" if r in row["isr"] else "catching up"
    return states


def _describe_once(
    bootstrap: str,
    known_brokers: dict[int, str] | None,
    include_internal: bool,
    replica_notes: dict[int, dict] | None = None,
) -> ClusterDescription:
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
    asked = {
        (leader, kind): _POOL.submit(_list_offsets, listed[leader].host, listed[leader].port, parts, replica)
        for leader, parts in by_leader.items()
        for kind, replica in (("hw", CONSUMER_REPLICA_ID), ("leo", DEBUGGING_REPLICA_ID))
    }
    listing = {bid: _POOL.submit(_list_groups, b.host, b.port) for bid, b in listed.items()}
    wait([*asked.values(), *listing.values()], timeout=ANSWER_TIMEOUT_S + 1.0)
    group_rows = []
    for bid, future in sorted(listing.items()):
        if future.done() and future.exception() is None:
            group_rows += [{**g, "coordinator": bid} for g in future.result()]
        else:
            future.cancel()
    groups = pd.DataFrame(group_rows, columns=GROUP_COLUMNS).sort_values("group_id", ignore_index=True)
    unanswered = set()
    for (leader, kind), future in asked.items():
        if future.done() and future.exception() is None:
            (hw if kind == "hw" else leo).update(future.result())
        else:
            future.cancel()  # a paused or dying leader: its partitions' offsets stay unknown
            unanswered.add(leader)
    for row in partitions:
        key = (row["topic"], row["partition"])
        row["high_watermark"] = hw.get(key)
        row["log_end_offset"] = leo.get(key)
        row["replica_states"] = replica_states(row, replica_notes)
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
        "replica_states",
        "error",
    ]
    frame = pd.DataFrame(partitions, columns=columns).sort_values(["topic", "partition"], ignore_index=True)
    return ClusterDescription(brokers, frame, md.controller_id, md.cluster_id, frozenset(unanswered), groups)


@dataclass
class LeaderHistory:
    """Leader changes observed by polling Metadata every `interval` seconds (a background thread)."""

    bootstrap: str
    interval: float = 0.25
    #: Keep only this many seconds of events (None: all).
    span: float | None = None
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
        if self.span is not None and self.events:
            cutoff = now - pd.Timedelta(seconds=self.span)
            while self.events and self.events[0]["time"] < cutoff:
                self.events.pop(0)
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


#: The topic configs the overview shows (Kafka's names); the full set is in `configs`.
OVERVIEW_CONFIGS = ("cleanup.policy", "retention.ms", "retention.bytes", "min.insync.replicas", "segment.bytes")


def topic_overview(conn, *, internal: bool = False) -> pd.DataFrame:
    """One row per topic, as a Kafka console's topic list shows it: partitions, replication factor,
    records (high watermark minus log start, summed), under-replicated and offline partitions,
    size on disk (an embedded cluster's leader replicas; NULL for a remote cluster, whose files
    are not here), the main retention and cleanup settings (DescribeConfigs) and every config
    that is not a default (`configs`, a dict)."""
    from confluent_kafka.admin import ConfigResource

    parts = conn.sql(
        "SELECT topic, partition, leader, replicas, isr, log_start_offset, high_watermark, records FROM wb.partitions"
    )
    if not internal:
        parts = parts[~parts["topic"].str.startswith("__")]
    topics = sorted(parts["topic"].unique())
    admin = conn.admin()
    configs: dict[str, dict[str, str]] = {}
    non_default: dict[str, dict[str, str]] = {}
    if topics:
        futures = admin.describe_configs([ConfigResource("topic", t) for t in topics], request_timeout=10)
        for resource, future in futures.items():
            try:
                entries = future.result(10)
            except Exception:
                continue
            configs[resource.name] = {k: e.value for k, e in entries.items()}
            non_default[resource.name] = {k: e.value for k, e in entries.items() if not e.is_default}
    data_dir = conn.data_dir if is_embedded(conn) else None
    rows = []
    for topic in topics:
        tp = parts[parts["topic"] == topic]
        size = None
        if data_dir is not None:
            size = 0
            for r in tp.itertuples():
                d = data_dir / f"broker-{int(r.leader)}" / "topics" / topic / f"partition={int(r.partition)}"
                if r.leader >= 0 and d.is_dir():
                    size += sum(f.stat().st_size for f in d.iterdir() if f.is_file())
        row = {
            "topic": topic,
            "partitions": len(tp),
            "replication_factor": max((len(r) for r in tp["replicas"]), default=0),
            "records": int(tp["records"].sum()),
            "under_replicated": int(sum(len(i) < len(r) for i, r in zip(tp["isr"], tp["replicas"], strict=True))),
            "offline": int((tp["leader"] < 0).sum()),
            "size_bytes": size,
        }
        for name in OVERVIEW_CONFIGS:
            row[name] = configs.get(topic, {}).get(name)
        row["configs"] = non_default.get(topic, {})
        rows.append(row)
    columns = [
        "topic",
        "partitions",
        "replication_factor",
        "records",
        "under_replicated",
        "offline",
        "size_bytes",
        *OVERVIEW_CONFIGS,
        "configs",
    ]
    return pd.DataFrame(rows, columns=columns)
