"""Run a workload against a mix of nemeses, then read everything back and judge it.

    from tests.chaos.runner import run
    result = run(seconds=120, nemeses=["kill-leader", "pause-followers"])
    print(result.table())
    assert result.report.valid

One run: three brokers (a tmpfs of their own each, as root, when the mix fills disks), a topic of
RF=3 with ``min.insync.replicas=2`` and small segments (so segments roll and reach the Parquet
tier during the run), producers, consumers and a metadata writer; then, until the time is up, one
nemesis after another (shuffled round robin over the mix), each followed by a heal (every broker
running and back in every ISR) and a quiet second or two. At the end: stop the writers, wait for
the cluster to heal, read every partition in full, and check.

`Settings.workload` picks the clients: ``plain`` (idempotent producers, consumers, a metadata
writer: the default), ``txn`` (transactional producers committing and aborting, read_committed
consumers, the metadata writer, on a topic of their own: the nemeses aim at its partitions and at
the transaction coordinators) or ``mixed`` (both, the nemeses aimed at the plain topic).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos import compaction as keyed
from tests.chaos.checker import Report, check
from tests.chaos.history import History
from tests.chaos.nemesis import NEMESES, ClusterView
from tests.chaos.workload import (
    AssignConsumer,
    GroupConsumer,
    MetadataWriter,
    ProducerClient,
    TxnAssignConsumer,
    TxnProducerClient,
    final_read,
    txn_final_read,
)
from workbench import Cluster

HEAL_TIMEOUT_S = 45.0
WORKLOADS = ("plain", "txn", "mixed")


@dataclass
class Settings:
    seconds: float = 120.0
    nemeses: list[str] = field(default_factory=lambda: ["kill-leader"])
    seed: int | None = None
    partitions: int = 4
    producers: int = 2
    rate: float = 40.0  # records per second per producer
    assign_consumers: int = 2
    group_consumers: int = 1
    segment_bytes: int = 32 * 1024
    segment_ms: int = 15_000  # segments roll by time too, so sealed segments and Parquet files exist early
    tmpfs_mb: int = 192  # per broker, when the mix has a disk-full nemesis
    hostile_scale: float = 1.0  # 1.0: a 256 MiB zstd bomb, 20 million empty records
    workload: str = "plain"  # WORKLOADS
    txn_producers: int = 2
    txn_rate: float = 3.0  # transactions per second per transactional producer
    abort_ratio: float = 0.3
    data_dir: str | None = None
    keep_data: bool = False
    #: Also run the compacted-topic workload and its checker (`tests.chaos.compaction`).
    compaction: bool = False
    compacted_partitions: int = 2


@dataclass
class Result:
    settings: Settings
    history: History
    report: Report
    topics_acknowledged: int = 0
    elapsed_s: float = 0.0

    def table(self) -> str:
        return format_table(self)

    def to_json(self) -> dict[str, Any]:
        s = dict(self.settings.__dict__)
        return {
            "settings": s,
            "elapsed_s": round(self.elapsed_s, 1),
            "report": self.report.to_json(),
            "topics_acknowledged": self.topics_acknowledged,
            "faults": [f.__dict__ for f in self.history.faults],
            "notes": self.history.notes,
        }


def _mount_tmpfs(dirs: list[Path], size_mb: int) -> str | None:
    """Mount a tmpfs of `size_mb` on each of `dirs`; None, or why not."""
    if os.geteuid() != 0:
        return "disk-full needs root (mount -t tmpfs); run as root, as CI does"
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(d)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            _unmount(dirs)
            return f"mount -t tmpfs failed: {done.stderr.strip()}"
    return None


def _unmount(dirs: list[Path]) -> None:
    for d in dirs:
        if os.path.ismount(d):
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _save_logs(dirs: list[Path]) -> None:
    """Copy each broker's directory out of its tmpfs (to ``<dir>-saved/``) before it is unmounted:
    its logs, and its data and metadata log (the elections, every partition's records), so an
    anomaly can be traced after the run."""
    import shutil

    for d in dirs:
        saved = d.with_name(d.name + "-saved")
        shutil.copytree(
            d, saved, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".chaos-filler"), ignore_dangling_symlinks=True
        )


def _heal(
    cluster: Cluster,
    topic: str | list[str],
    history: History,
    timeout: float = HEAL_TIMEOUT_S,
    reported: frozenset = frozenset(),
) -> bool:
    """Restart any broker that died on its own (an anomaly), then wait until every partition of
    `topic` (or of each topic listed) has its full ISR again. False (and a note) when it does not
    within `timeout`."""
    topics = [topic] if isinstance(topic, str) else list(topic)
    for node_id, proc in cluster.brokers.items():
        if not proc.alive:
            code = proc.process.returncode if proc.process is not None else None
            # -9: SIGKILLed by the harness or by Cluster's start-up timeout (then reported as
            # broker_wont_start); `reported`: brokers the nemesis already saw fail to start.
            if node_id not in reported and code != -signal.SIGKILL:
                tail = cluster._log_tail(node_id, 5).replace("\n", " | ")
                history.observe("broker_crash", f"broker {node_id} exited on its own (code {code}): {tail[-400:]}")
            try:
                cluster.restart_broker(node_id)
            except Exception as exc:
                history.note(f"restart of broker {node_id} failed again: {str(exc).splitlines()[0]}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            parts = cluster.describe().partitions
            mine = parts[parts.topic.isin(topics)]
            if (
                len(mine)
                and set(mine.topic) == set(topics)
                and all(len(isr) == len(r) for isr, r in zip(mine.isr, mine.replicas, strict=True))
            ):
                return True
        except Exception:
            pass
        time.sleep(0.5)
    history.note(f"cluster not healed within {timeout:.0f}s")
    history.heal_timeouts += 1
    return False


def _create_topic(cluster: Cluster, name: str, partitions: int, config: dict[str, str]) -> None:
    """Create an RF=3 topic, waiting (30 s at most) for all three brokers to have registered:
    `Cluster` returns once each broker serves, which can be a moment before the controller has
    every registration."""
    deadline = time.monotonic() + 30
    while True:
        try:
            cluster.create_topic(name, partitions=partitions, replication_factor=3, config=config)
            return
        except ValueError as exc:
            if "available broker" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def run(settings: Settings | None = None, **overrides: Any) -> Result:
    """One chaos run; `overrides` set `Settings` fields."""
    settings = settings or Settings()
    for k, v in overrides.items():
        if not hasattr(settings, k):
            raise TypeError(f"unknown setting {k!r}; see tests.chaos.runner.Settings")
        setattr(settings, k, v)
    if settings.workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {WORKLOADS}, not {settings.workload!r}")
    unknown = [n for n in settings.nemeses if n not in NEMESES]
    if unknown:
        raise ValueError(f"unknown nemeses {unknown}; known: {sorted(NEMESES)}")
    if settings.seed is None:
        settings.seed = random.randrange(1 << 30)
    rng = random.Random(settings.seed)
    history = History()
    history.note(f"seed {settings.seed}")
    tmp = None
    if settings.data_dir is None:
        tmp = tempfile.mkdtemp(prefix="workbench-chaos-")
        data_dir = Path(tmp)
    else:
        data_dir = Path(settings.data_dir)
    broker_dirs = [data_dir / f"broker-{i}" for i in (1, 2, 3)]
    wants_tmpfs = any(n.startswith("disk-full") for n in settings.nemeses)
    tmpfs_reason = _mount_tmpfs(broker_dirs, settings.tmpfs_mb) if wants_tmpfs else "not mounted"
    if wants_tmpfs and tmpfs_reason:
        history.note(f"disk-full skipped: {tmpfs_reason}")
    topic = f"chaos-{uuid.uuid4().hex[:8]}"
    plain = settings.workload in ("plain", "mixed")
    txn = settings.workload in ("txn", "mixed")
    txn_topic = f"{topic}-txn"
    heal_topics = [t for t, on in ((topic, plain), (txn_topic, txn)) if on]
    cluster = None
    workers: list = []
    meta = None
    keyed_producer = None
    keyed_result: dict[str, list[str]] = {}
    keyed_stats: dict[str, int] = {}
    started = time.monotonic()
    try:
        cluster_config: dict[str, Any] = {"group_initial_rebalance_delay_ms": 0}
        if settings.compaction:
            cluster_config.update(keyed.CLUSTER_CONFIG)
        cluster = Cluster(brokers=3, data_dir=data_dir, config=cluster_config)
        topic_config = {
            "min.insync.replicas": "2",
            "segment.bytes": str(settings.segment_bytes),
            "segment.ms": str(settings.segment_ms),
            "index.interval.bytes": "1024",
        }
        for t in heal_topics:
            _create_topic(cluster, t, settings.partitions, topic_config)
        hostile_topic = f"{topic}-hostile"
        if any(n.startswith("hostile") for n in settings.nemeses):
            _create_topic(cluster, hostile_topic, 1, {})
        txn_producers = [
            TxnProducerClient(
                f"tp{i}",
                cluster.bootstrap_servers,
                txn_topic,
                settings.partitions,
                history,
                settings.txn_rate,
                settings.abort_ratio,
                seed=settings.seed,
            )
            for i in range(settings.txn_producers if txn else 0)
        ]
        view = ClusterView(
            cluster,
            heal_topics[0],
            rng,
            history,
            tmpfs={i + 1: d for i, d in enumerate(broker_dirs)} if not tmpfs_reason else {},
            tmpfs_skip_reason=tmpfs_reason,
            hostile_scale=settings.hostile_scale,
            hostile_topic=hostile_topic,
            transactional_ids=[p.transactional_id for p in txn_producers],
        )
        bootstrap = cluster.bootstrap_servers
        producers: list = [
            ProducerClient(f"p{i}", bootstrap, topic, settings.partitions, history, settings.rate)
            for i in range(settings.producers if plain else 0)
        ] + txn_producers
        consumers: list = [
            AssignConsumer(f"a{i}", bootstrap, topic, settings.partitions, history)
            for i in range(settings.assign_consumers if plain else 0)
        ] + [
            GroupConsumer(f"g{i}", bootstrap, topic, settings.partitions, history)
            for i in range(settings.group_consumers if plain else 0)
        ]
        consumers += [
            TxnAssignConsumer(f"ta{i}", bootstrap, txn_topic, settings.partitions, history)
            for i in range(settings.assign_consumers if txn else 0)
        ]
        meta = MetadataWriter("meta", bootstrap, f"{topic}-meta", history)
        workers = [*producers, *consumers, meta]
        compacted_topic = f"{topic}-compact"
        if settings.compaction:
            _create_topic(cluster, compacted_topic, settings.compacted_partitions, keyed.COMPACT_TOPIC_CONFIG)
            keyed_producer = keyed.KeyedProducer(
                bootstrap, compacted_topic, settings.compacted_partitions, history, seed=settings.seed
            )
            keyed_producer.start()
        for w in workers:
            w.start()
        time.sleep(2.0)
        deadline = started + settings.seconds
        order: list[str] = []
        while time.monotonic() < deadline:
            if not order:
                order = list(settings.nemeses)
                rng.shuffle(order)
            name = order.pop()
            fault = NEMESES[name]()(view)
            history.faults.append(fault)
            history.note(
                f"{fault.nemesis} on {fault.targets} ({', '.join(fault.roles)})"
                + (f" skipped: {fault.skipped}" if fault.skipped else f" {fault.details}")
            )
            failed = frozenset(fault.targets) if "restart_failed" in fault.details else frozenset()
            healing = time.monotonic()
            if _heal(cluster, heal_topics, history, reported=failed):
                fault.heal_s = round(time.monotonic() - healing, 2)
            time.sleep(rng.uniform(1.0, 2.0))
        meta.stop()
        for p in producers:
            p.stop(90)
        if keyed_producer is not None:
            keyed_producer.stop(90)
        _heal(cluster, heal_topics, history)
        time.sleep(1.0)
        for c in consumers:
            c.stop(30)
        if plain:
            final_read(bootstrap, topic, settings.partitions, history)
        if txn:
            txn_final_read(bootstrap, txn_topic, settings.partitions, history)
        if keyed_producer is not None:
            reads, complete = keyed.keyed_final_read(bootstrap, compacted_topic, settings.compacted_partitions)
            keyed_result = keyed.check_compaction(keyed_producer.sends, reads, complete)
            keyed_stats = keyed.stats(keyed_producer.sends, reads)
            keyed_stats["keyed_partitions_complete"] = sum(complete.values())
        for t in meta.check(bootstrap):
            history.observe("lost_topic", f"CreateTopics {t} was acknowledged; the topic is gone")
        for node_id in cluster.brokers:
            log = cluster.data_dir / f"broker-{node_id}" / "stderr.log"
            if log.exists() and "Traceback" in log.read_text(errors="replace"):
                history.note(f"broker {node_id}'s stderr.log holds a Traceback (see {log})")
    finally:
        for w in workers:
            w.stop(5)
        if keyed_producer is not None:
            keyed_producer.stop(5)
        if cluster is not None:
            cluster.stop()
        if wants_tmpfs and not tmpfs_reason:
            if settings.keep_data:
                _save_logs(broker_dirs)  # the tmpfs goes with the unmount: keep what happened
            _unmount(broker_dirs)
        if tmp is not None and not settings.keep_data:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    report = check(history, extra_checks=[lambda _h: keyed_result] if settings.compaction else ())
    report.stats.update(keyed_stats)
    return Result(
        settings,
        history,
        report,
        topics_acknowledged=len(meta.acknowledged) if meta else 0,
        elapsed_s=time.monotonic() - started,
    )


def format_table(result: Result) -> str:
    """Operations, faults and anomalies, as plain-text tables."""
    r = result.report
    s = r.stats
    lines = [
        f"chaos run: {result.elapsed_s:.0f}s, seed {result.settings.seed}, workload {result.settings.workload}, "
        f"nemeses {result.settings.nemeses}"
    ]
    lines.append("")
    lines.append(f"{'operation':<28}{'count':>10}")
    if result.history.sends or not result.history.txns:  # the plain workload's lines
        for outcome, n in s["sends"].items():
            lines.append(f"{'send ' + outcome:<28}{n:>10}")
    if result.history.txns:
        for outcome, n in s["txns"].items():
            lines.append(f"{'transaction ' + outcome:<28}{n:>10}")
        lines.append(f"{'records committed':<28}{s['txn_records_committed']:>10}")
        for mode, n in sorted(s["txn_polls"].items()):
            lines.append(f"{'txn poll ' + mode:<28}{n:>10}")
    for mode, n in sorted(s["polls"].items()):
        lines.append(f"{'poll ' + mode:<28}{n:>10}")
    if result.history.sends or not result.history.txns:
        lines.append(f"{'distinct values read':<28}{s['distinct_values_read']:>10}")
        lines.append(f"{'failed/unknown but read':<28}{s['failed_but_present']:>10}")
    lines.append(f"{'topics created (acked)':<28}{result.topics_acknowledged:>10}")
    lines.append(f"{'heals over 45 s (no ISR)':<28}{result.history.heal_timeouts:>10}")
    lines.append(f"{'producer epoch bumps':<28}{result.history.epoch_bumps:>10}")
    for name in ("keyed_sends_ok", "keyed_tombstones_ok", "keyed_records_read", "keyed_keys_read"):
        if name in s:
            lines.append(f"{name.replace('_', ' '):<28}{s[name]:>10}")
    lines.append("")
    lines.append(f"{'fault':<28}{'count':>10}{'skipped':>10}   heal s: median   max  >{HEAL_TIMEOUT_S:.0f}s")
    names = sorted(set(s["faults"]) | set(s["skipped_faults"]))
    for name in names:
        heals = sorted(f.heal_s for f in result.history.faults if f.nemesis == name and f.heal_s is not None)
        slow = sum(1 for f in result.history.faults if f.nemesis == name and f.heal_s is None)
        spread = f"{heals[len(heals) // 2]:>14.1f}{heals[-1]:>6.1f}" if heals else f"{'-':>14}{'-':>6}"
        lines.append(f"{name:<28}{s['faults'].get(name, 0):>10}{s['skipped_faults'].get(name, 0):>10}{spread}{slow:>6}")
    lines.append("")
    lines.append(f"{'anomaly':<28}{'count':>10}  first example")
    if not r.counts:
        lines.append(f"{'(none)':<28}{0:>10}")
    for kind, n in sorted(r.counts.items()):
        lines.append(f"{kind:<28}{n:>10}  {r.anomalies[kind][0][:100]}")
    lines.append("")
    lines.append("valid" if r.valid else "INVALID")
    return "\n".join(lines)


def write_json(result: Result, path: str | os.PathLike) -> None:
    Path(path).write_text(json.dumps(result.to_json(), indent=2, default=str))
