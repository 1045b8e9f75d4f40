"""Nemeses: the faults one machine can make, each aimed at brokers chosen by their role.

Roles come from Metadata, read just before the fault (`ClusterView.pick`): the ``leader`` of a
random partition of the workload topic, one ``follower`` of it, both ``followers``, the active
``controller`` (the Raft leader, Metadata's controller id), the transaction ``coordinator`` of
one of the txn workload's transactional ids (FindCoordinator; a random broker when the run has
no transactional producer) or a ``random`` broker. A nemesis
uses the public `Cluster` API (`kill_broker`, `restart_broker`, `broker_pids`, `data_dir`) and
`os.kill`; it reads a broker's files only to damage them, and only while that broker is down.

Every nemesis heals what it did before returning (restarts what it killed, resumes what it
paused, frees the space it took), so the runner can judge the cluster between faults. Damage is
done to one broker at a time: one damaged replica of three is always repairable, so any loss is
the broker's fault, not the harness's.

Names are ``<fault>-<role>``; `NEMESES` lists them all, `CI_MIX` the ones the CI test runs.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka.protocol.metadata import ApiVersionsRequest
from kafka.protocol.producer import ProduceRequest

from tests.chaos import hostile
from tests.chaos.history import Fault, History
from workbench.cluster import ClusterError
from workbench.protocol.blocking_client import WireClient

ROLES = ("leader", "follower", "followers", "controller", "coordinator", "random")


@dataclass
class ClusterView:
    """What a nemesis may use: the cluster, the workload topic, a seeded random source."""

    cluster: Any  # workbench.Cluster
    topic: str
    rng: random.Random
    history: History
    tmpfs: dict[int, Path] = field(default_factory=dict)  # broker -> its data dir, on a tmpfs of its own
    tmpfs_skip_reason: str | None = "the run did not mount tmpfs data directories"
    hostile_scale: float = 1.0
    hostile_topic: str = ""
    transactional_ids: list[str] = field(default_factory=list)  # the txn workload's, for "coordinator"

    def transaction_coordinator(self, transactional_id: str) -> int | None:
        """The broker coordinating `transactional_id` now (FindCoordinator, key type 1), or None."""
        from kafka.protocol.metadata import FindCoordinatorRequest

        for address in self.cluster.bootstrap_servers.split(","):
            port = int(address.rsplit(":", 1)[1])
            try:
                client = WireClient("127.0.0.1", port, timeout=3.0)
            except OSError:
                continue
            try:
                resp = client.request(FindCoordinatorRequest(key=transactional_id, key_type=1), 3)
                if resp.error_code == 0 and resp.node_id >= 0:
                    return int(resp.node_id)
            except (OSError, ConnectionError):
                pass
            finally:
                client.close()
        return None

    def broker_dir(self, node_id: int) -> Path:
        return Path(self.cluster.data_dir) / f"broker-{node_id}"

    def partition_dirs(self, node_id: int, topic: str | None = None) -> list[Path]:
        d = self.broker_dir(node_id) / "topics" / (topic or self.topic)
        return sorted(d.glob("partition=*"))

    def pick(self, role: str) -> tuple[list[int], list[str]]:
        """Broker ids playing `role` right now, from Metadata."""
        brokers = sorted(self.cluster.brokers)
        for _ in range(20):
            try:
                desc = self.cluster.describe()
            except Exception:
                time.sleep(0.5)
                continue
            parts = desc.partitions[(desc.partitions.topic == self.topic) & (desc.partitions.leader >= 0)]
            if role == "controller" and desc.controller_id in brokers:
                return [int(desc.controller_id)], ["controller"]
            if role == "random":
                return [self.rng.choice(brokers)], ["random"]
            if role == "coordinator" and self.transactional_ids:
                tid = self.rng.choice(self.transactional_ids)
                node = self.transaction_coordinator(tid)
                if node in brokers:
                    return [node], [f"coordinator of {tid}"]
            if len(parts):
                row = parts.iloc[self.rng.randrange(len(parts))]
                leader = int(row.leader)
                followers = [int(r) for r in row.replicas if int(r) != leader]
                tag = f"p{int(row.partition)}"
                if role == "leader":
                    return [leader], [f"leader of {tag}"]
                if role == "follower" and followers:
                    return [self.rng.choice(followers)], [f"follower of {tag}"]
                if role == "followers" and followers:
                    return followers, [f"follower of {tag}"] * len(followers)
            time.sleep(0.5)
        victim = self.rng.choice(brokers)
        return [victim], [f"random (no {role} found)"]


def _wont_start(view: ClusterView, fault: Fault, exc: Exception) -> None:
    first = str(exc).splitlines()[0]
    tail = " | ".join(line.strip() for line in str(exc).splitlines()[-4:])
    view.history.observe("broker_wont_start", f"after {fault.nemesis}: {first} ... {tail[-300:]}")
    fault.details["restart_failed"] = first


def _flip(path: Path, rng: random.Random, lo: int = 0, flips: int = 1) -> list[int]:
    """Flip one bit in each of `flips` random bytes at or after `lo`; returns the positions."""
    size = path.stat().st_size
    if size <= lo:
        return []
    positions = sorted(rng.randrange(lo, size) for _ in range(flips))
    with open(path, "r+b") as f:
        for pos in positions:
            f.seek(pos)
            byte = f.read(1)[0]
            f.seek(pos)
            f.write(bytes([byte ^ (1 << rng.randrange(8))]))
    return positions


def _active_segment(d: Path) -> Path | None:
    logs = sorted(d.glob("*.log"), key=lambda p: int(p.stem))
    return logs[-1] if logs else None


class Nemesis:
    """One kind of fault against brokers of one role. Subclasses implement `act`."""

    fault = "fault"

    def __init__(self, role: str = "random") -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        self.role = role

    @property
    def name(self) -> str:
        return f"{self.fault}-{self.role}"

    def __call__(self, view: ClusterView) -> Fault:
        targets, roles = view.pick(self.role)
        fault = Fault(self.name, targets, roles, start=view.history.now())
        try:
            self.act(view, targets, fault)
        except ClusterError as exc:  # a broker that does not come back is a finding, not a harness crash
            _wont_start(view, fault, exc)
        finally:
            fault.end = view.history.now()
        return fault

    def act(self, view: ClusterView, targets: list[int], fault: Fault) -> None:
        raise NotImplementedError


class Kill(Nemesis):
    """SIGKILL the targets, keep them down for 0.5-3 s, restart them."""

    fault = "kill"

    def act(self, view, targets, fault):
        for t in targets:
            view.cluster.kill_broker(t)
        down = view.rng.uniform(0.5, 3.0)
        fault.details["down_s"] = round(down, 2)
        time.sleep(down)
        for t in targets:
            view.cluster.restart_broker(t)


class Pause(Nemesis):
    """SIGSTOP the targets for 1-6 s (a GC pause, a stalled VM), then SIGCONT."""

    fault = "pause"

    def act(self, view, targets, fault):
        pids = [view.cluster.broker_pids()[t] for t in targets]
        hold = view.rng.uniform(1.0, 6.0)
        fault.details["paused_s"] = round(hold, 2)
        try:
            for pid in pids:
                if pid:
                    os.kill(pid, signal.SIGSTOP)
            time.sleep(hold)
        finally:
            for pid in pids:
                if pid:
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass


class _Damage(Nemesis):
    """SIGKILL one target, damage its files, restart it at once (well inside the session timeout:
    the fast restart a crash-looping machine makes)."""

    def act(self, view, targets, fault):
        target = targets[0]
        del targets[1:]
        if not self.ready(view, target):
            fault.skipped = f"nothing to damage yet on broker {target}"
            return
        view.cluster.kill_broker(target)
        try:
            fault.details.update(self.damage(view, target))
        finally:
            view.cluster.restart_broker(target)

    def ready(self, view: ClusterView, target: int) -> bool:
        return True

    def damage(self, view: ClusterView, target: int) -> dict[str, Any]:
        raise NotImplementedError


class TailLoss(_Damage):
    """Page-cache loss: cut a random amount (1 byte to 16 KiB) of the latest bytes of every active
    segment of the workload topic, as if the unflushed tail never reached the disk."""

    fault = "tail-loss"
    max_cut = 16 * 1024

    def damage(self, view, target):
        cuts = {}
        for d in view.partition_dirs(target):
            seg = _active_segment(d)
            if seg is None or seg.stat().st_size == 0:
                continue
            size = seg.stat().st_size
            cut = view.rng.randint(1, min(size, self.max_cut))
            os.truncate(seg, size - cut)
            cuts[d.name] = cut
        return {"cut_bytes": cuts}


class TailFlip(_Damage):
    """Flip a bit in the last 4 KiB of every active segment of the workload topic."""

    fault = "tail-flip"

    def damage(self, view, target):
        flips = {}
        for d in view.partition_dirs(target):
            seg = _active_segment(d)
            if seg is None or seg.stat().st_size == 0:
                continue
            flips[d.name] = _flip(seg, view.rng, lo=max(0, seg.stat().st_size - 4096))
        return {"flipped_at": flips}


class _FileCorruption(_Damage):
    """Flip bits in one file of a random partition; `candidates` says which files qualify."""

    flips = 3

    def candidates(self, d: Path) -> list[Path]:
        raise NotImplementedError

    def _files(self, view, target):
        return [f for d in view.partition_dirs(target) for f in self.candidates(d) if f.stat().st_size > 0]

    def ready(self, view, target):
        try:
            return bool(self._files(view, target))
        except FileNotFoundError:  # a file went away (converted, retired) while looking
            return False

    def damage(self, view, target):
        files = self._files(view, target)
        if not files:
            return {"damaged": None}
        victim = view.rng.choice(files)
        return {
            "damaged": str(victim.relative_to(view.broker_dir(target))),
            "at": _flip(victim, view.rng, 0, self.flips),
        }


class CorruptSegment(_FileCorruption):
    """Bits flipped in a sealed (not the active) segment."""

    fault = "corrupt-segment"

    def candidates(self, d):
        logs = sorted(d.glob("*.log"), key=lambda p: int(p.stem))
        return logs[:-1]


class CorruptIndex(_FileCorruption):
    """Bits flipped in an offset or time index."""

    fault = "corrupt-index"

    def candidates(self, d):
        return [*d.glob("*.index"), *d.glob("*.timeindex")]


class CorruptParquet(_FileCorruption):
    """Bits flipped in a Parquet file of the tier."""

    fault = "corrupt-parquet"

    def candidates(self, d):
        return list(d.glob("*.parquet"))


class CorruptRaftLog(_Damage):
    """Bits flipped in the broker's Raft metadata log (``metadata/log.bin``)."""

    fault = "corrupt-raft"

    def ready(self, view, target):
        path = view.broker_dir(target) / "metadata" / "log.bin"
        return path.exists() and path.stat().st_size > 0

    def damage(self, view, target):
        path = view.broker_dir(target) / "metadata" / "log.bin"
        return {"at": _flip(path, view.rng, 0, 1)}


class DiskFull(Nemesis):
    """Fill the tmpfs under the targets' data directories (segments and the Raft log) for 2-6 s,
    then free it; a target whose log directory went offline (out of the ISR 10 s later) is
    restarted, as an operator would. Needs the run to have mounted one tmpfs per broker (root)."""

    fault = "disk-full"

    def act(self, view, targets, fault):
        if view.tmpfs_skip_reason is not None:
            fault.skipped = view.tmpfs_skip_reason
            return
        fillers = []
        try:
            for t in targets:
                filler = view.tmpfs[t] / ".chaos-filler"
                fillers.append(filler)
                fault.details[f"filled_b{t}"] = _fill(filler)
            hold = view.rng.uniform(2.0, 6.0)
            fault.details["full_s"] = round(hold, 2)
            time.sleep(hold)
            # Issue 12's case 6 (a full log directory keeps its leaderships) is availability, not
            # safety: recorded for the report, not judged as an anomaly.
            try:
                parts = view.cluster.describe().partitions
                mine = parts[parts.topic == view.topic]
                fault.details["still_leading_when_full"] = int(mine.leader.isin(targets).sum())
            except Exception:
                pass
        finally:
            for filler in fillers:
                try:
                    filler.unlink()
                except FileNotFoundError:
                    pass
        # A log directory that failed goes offline until its broker restarts (KIP-112, as in Kafka):
        # once the space is back, restart a target whose log directory is offline or that is still
        # out of an ISR, as an operator would. The broker says so at once in the replica states it
        # publishes (every maintenance round, 0.5 s); the ISRs only change once the controller took
        # note, which can take seconds when the controller's own disk was the full one: judged on
        # the ISRs alone, a target that had not left them yet was left offline for good.
        time.sleep(1.5)
        out = [t for t in targets if _log_dir_offline(view, t) or not _in_every_isr(view, t, wait=10.0)]
        for t in out:
            view.cluster.restart_broker(t)
        fault.details["restarted_after"] = out


def _log_dir_offline(view: ClusterView, node_id: int) -> bool:
    """What the broker publishes in `replica-states.json`: is its log directory offline?"""
    try:
        states = json.loads((view.broker_dir(node_id) / "replica-states.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(states, dict) and states.get("log_dir_offline") is not None


def _in_every_isr(view: ClusterView, node_id: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            parts = view.cluster.describe().partitions
            mine = parts[parts.topic == view.topic]
            if len(mine) and all(node_id in isr for isr in mine.isr):
                return True
        except Exception:
            pass
        time.sleep(0.5)
    return False


def _fill(path: Path) -> int:
    """Write zeros to `path` until the filesystem is full; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (bytes(1 << 20), bytes(4096), bytes(1)):
            while True:
                try:
                    n = os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        break
                    raise
                written += n
                if n < len(chunk):
                    break
    finally:
        os.close(fd)
    return written


class Hostile(Nemesis):
    """A small zstd Produce request that expands enormously, sent over a raw socket to the leader
    of a partition of its own topic. The broker must refuse it (an error code, or closing that
    connection) and keep serving; accepting it, or dying, is an anomaly. Targets the leader."""

    fault = "hostile"

    def __init__(self, kind: str) -> None:
        super().__init__("leader")
        if kind not in ("zstd-bomb", "many-records"):
            raise ValueError(f"kind must be 'zstd-bomb' or 'many-records', not {kind!r}")
        self.kind = kind

    @property
    def name(self) -> str:
        return f"hostile-{self.kind}"

    def __call__(self, view: ClusterView) -> Fault:
        topic = view.hostile_topic
        leader = _leader_of(view.cluster, topic, 0)
        fault = Fault(self.name, [leader], [f"leader of {topic}/0"], start=view.history.now())
        try:
            self.act(view, [leader], fault)
        finally:
            fault.end = view.history.now()
        return fault

    def act(self, view, targets, fault):
        target = targets[0]
        if self.kind == "zstd-bomb":
            size = int((256 << 20) * view.hostile_scale)
            batch = hostile.zstd_bomb(size)
            fault.details["expands_to_bytes"] = size
        else:
            count = int(20_000_000 * view.hostile_scale)
            batch = hostile.many_empty_records(count)
            fault.details["records"] = count
        fault.details["wire_bytes"] = len(batch)
        port = view.cluster.brokers[target].port
        before = _log_end(view.cluster, view.hostile_topic)
        answer = _send_produce(port, view.hostile_topic, batch)
        fault.details["answer"] = answer
        t0 = time.monotonic()
        responsive = _api_versions_ok(port, within=60.0)
        fault.details["next_answer_after_s"] = round(time.monotonic() - t0, 2)
        proc = view.cluster.brokers[target]
        if not proc.alive:
            view.history.observe("broker_crash", f"broker {target} died after a {self.name} batch")
            view.cluster.restart_broker(target)
            return
        if not responsive:
            view.history.observe("broker_unresponsive", f"broker {target}: no answer 60 s after a {self.name} batch")
        after = _log_end(view.cluster, view.hostile_topic)
        if answer == "error 0" or (before is not None and after is not None and after > before):
            view.history.observe(
                "hostile_accepted",
                f"broker {target} took a {self.name} batch (answer {answer}, log end {before}->{after})",
            )


class DamagedFollowerThenLeaderCrash(Nemesis):
    """Issue 12's case 3 as one fault: a follower of a partition is SIGKILLed, loses the tail of
    its active segments and restarts at once (inside the session timeout); right after, the
    partition's leader is SIGKILLed, down 1-3 s, and restarted. Only a replica that has caught up
    again may be elected in between."""

    fault = "tail-loss-follower+kill-leader"

    def __init__(self) -> None:
        super().__init__("follower")

    @property
    def name(self) -> str:
        return self.fault

    def __call__(self, view: ClusterView) -> Fault:
        leader, follower, tag = _leader_and_follower(view)
        fault = Fault(self.name, [follower, leader], [f"follower of {tag}", f"leader of {tag}"], view.history.now())
        try:
            view.cluster.kill_broker(follower)
            try:
                fault.details.update(TailLoss("follower").damage(view, follower))
            finally:
                view.cluster.restart_broker(follower)
            view.cluster.kill_broker(leader)
            down = view.rng.uniform(1.0, 3.0)
            fault.details["leader_down_s"] = round(down, 2)
            time.sleep(down)
            view.cluster.restart_broker(leader)
        except ClusterError as exc:
            _wont_start(view, fault, exc)
        finally:
            fault.end = view.history.now()
        return fault


class IsolatedLeaderCrash(Nemesis):
    """Issue 12's case 2 as one fault: both followers of a partition are SIGSTOPped long enough to
    be fenced (3-5 s), then the leader is SIGKILLed and loses the tail of its active segments
    (lost page cache), the followers resume and the leader restarts. A write acknowledged while
    the leader was alone (fewer than min.insync.replicas copies) is what this loses."""

    fault = "pause-followers+tail-loss-leader"

    def __init__(self) -> None:
        super().__init__("leader")

    @property
    def name(self) -> str:
        return self.fault

    def __call__(self, view: ClusterView) -> Fault:
        leader, _, tag = _leader_and_follower(view)
        followers = [b for b in sorted(view.cluster.brokers) if b != leader]
        fault = Fault(
            self.name, [*followers, leader], [f"follower of {tag}"] * 2 + [f"leader of {tag}"], view.history.now()
        )
        pids = [view.cluster.broker_pids()[f] for f in followers]
        try:
            try:
                for pid in pids:
                    if pid:
                        os.kill(pid, signal.SIGSTOP)
                hold = view.rng.uniform(3.0, 5.0)
                fault.details["paused_s"] = round(hold, 2)
                time.sleep(hold)
                view.cluster.kill_broker(leader)
                fault.details.update(TailLoss("leader").damage(view, leader))
            finally:
                for pid in pids:
                    if pid:
                        try:
                            os.kill(pid, signal.SIGCONT)
                        except ProcessLookupError:
                            pass
            time.sleep(0.5)
            view.cluster.restart_broker(leader)
        except ClusterError as exc:
            _wont_start(view, fault, exc)
        finally:
            fault.end = view.history.now()
        return fault


def _leader_and_follower(view: ClusterView) -> tuple[int, int, str]:
    """The leader and one follower of one partition of the workload topic (a random one)."""
    for _ in range(20):
        try:
            parts = view.cluster.describe().partitions
            parts = parts[(parts.topic == view.topic) & (parts.leader >= 0)]
            if len(parts):
                row = parts.iloc[view.rng.randrange(len(parts))]
                leader = int(row.leader)
                followers = [int(r) for r in row.replicas if int(r) != leader]
                if followers:
                    return leader, view.rng.choice(followers), f"p{int(row.partition)}"
        except Exception:
            pass
        time.sleep(0.5)
    a, b = view.rng.sample(sorted(view.cluster.brokers), 2)
    return a, b, "p?"


def _leader_of(cluster, topic: str, partition: int) -> int:
    for _ in range(40):
        try:
            parts = cluster.describe().partitions
            row = parts[(parts.topic == topic) & (parts.partition == partition)]
            if len(row) and int(row.leader.iloc[0]) >= 0:
                return int(row.leader.iloc[0])
        except Exception:
            pass
        time.sleep(0.5)
    return sorted(cluster.brokers)[0]


def _log_end(cluster, topic: str) -> int | None:
    try:
        parts = cluster.describe().partitions
        row = parts[(parts.topic == topic) & (parts.partition == 0)]
        value = row.log_end_offset.iloc[0]
        return None if value is None or value != value else int(value)
    except Exception:
        return None


def _send_produce(port: int, topic: str, batch: bytes) -> str:
    """Send one Produce v9 (acks=1) with `batch`; return "error <code>", "closed" or "no answer"."""
    req = ProduceRequest(
        transactional_id=None,
        acks=1,
        timeout_ms=5000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=batch)],
            )
        ],
    )
    try:
        client = WireClient("127.0.0.1", port, timeout=30.0)
    except OSError as exc:
        return f"connect failed: {exc}"
    try:
        r = client.request(req, 9)
        return f"error {r.responses[0].partition_responses[0].error_code}"
    except (ConnectionError, BrokenPipeError, ConnectionResetError):
        return "closed"
    except TimeoutError:
        return "no answer"
    finally:
        client.close()


def _api_versions_ok(port: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            client = WireClient("127.0.0.1", port, timeout=max(1.0, deadline - time.monotonic()))
            try:
                client.request(ApiVersionsRequest(), 0)
                return True
            finally:
                client.close()
        except (OSError, ConnectionError):
            time.sleep(0.5)
    return False


def _nemeses() -> dict[str, Callable[[], Nemesis]]:
    out: dict[str, Callable[[], Nemesis]] = {}
    for cls, roles in (
        (Kill, ("leader", "follower", "followers", "controller", "coordinator")),
        (Pause, ("leader", "follower", "followers", "controller", "coordinator")),
        (TailLoss, ("leader", "follower")),
        (TailFlip, ("leader", "follower")),
        (CorruptSegment, ("leader", "follower")),
        (CorruptIndex, ("leader", "follower")),
        (CorruptParquet, ("leader", "follower")),
        (CorruptRaftLog, ("controller", "follower")),
        (DiskFull, ("leader", "follower", "controller")),
    ):
        for role in roles:
            out[f"{cls.fault}-{role}"] = lambda cls=cls, role=role: cls(role)
    for kind in ("zstd-bomb", "many-records"):
        out[f"hostile-{kind}"] = lambda kind=kind: Hostile(kind)
    out[DamagedFollowerThenLeaderCrash.fault] = DamagedFollowerThenLeaderCrash
    out[IsolatedLeaderCrash.fault] = IsolatedLeaderCrash
    return out


NEMESES: dict[str, Callable[[], Nemesis]] = _nemeses()

# The nemeses that pass on main today (a short run of each alone and of them mixed left no
# anomaly): since raft12, every nemesis. A CI run of 150 s strikes 10-15 faults, so it draws a
# different part of this list each time (the runner shuffles it per round, seeded). disk-full
# skips itself without root.
# pause-* left the CI mix on 2026-12-01 (a clean-clone CI run, seed 400285361, found an acknowledged
# record overwritten after pauses) and came back once a controller resuming from a pause no longer
# fences healthy brokers and the high watermark counts ISR expansions in flight (issue 12).
CI_MIX: tuple[str, ...] = (
    "kill-leader",
    "kill-follower",
    "kill-followers",
    "kill-controller",
    "pause-leader",
    "pause-follower",
    "pause-followers",
    "pause-controller",
    "corrupt-index-leader",
    "corrupt-index-follower",
    "disk-full-leader",
    "disk-full-follower",
    "hostile-many-records",
    "hostile-zstd-bomb",  # refused (MESSAGE_TOO_LARGE) since safety-storage's bounded decompression
    # Joined on 2026-12-01 (raft12): each ran alone for 3 minutes (seed 1212) with no anomaly and no
    # heal over the timeout, after the fixes for a damaged Raft log (repair before voting) and for a
    # flipped partitionLeaderEpoch (the follower is told where the leader's history ends).
    "tail-loss-leader",
    "tail-loss-follower",
    "tail-flip-leader",
    "tail-flip-follower",
    "corrupt-segment-leader",
    "corrupt-segment-follower",
    "corrupt-parquet-leader",
    "corrupt-parquet-follower",
    "corrupt-raft-controller",
    "corrupt-raft-follower",
    "disk-full-controller",
    "tail-loss-follower+kill-leader",
    "pause-followers+tail-loss-leader",
)

# The txn workload's CI mix (tests/chaos/test_ci_mix.py): leader, follower and transaction
# coordinator kills and pauses. pause-* joined once an acks=all wait could no longer be answered
# by a deposed leader's follower high watermark (issue 14: a torn committed transaction and a
# fatal OUT_OF_ORDER_SEQUENCE_NUMBER after pause-leader / pause-coordinator).
CI_TXN_MIX: tuple[str, ...] = (
    "kill-leader",
    "kill-follower",
    "kill-coordinator",
    "pause-leader",
    "pause-follower",
    "pause-coordinator",
)
