"""The benchmark suite (issue 6): one command, a table on stdout, JSON in benchmarks/results/.

    python benchmarks/run_all.py                 # the full run (~10 minutes on 2 cores)
    python benchmarks/run_all.py --smoke         # tiny sizes, every section, < 2 minutes (CI)
    python benchmarks/run_all.py --only producer consumer --records 2000000

Sections (`--only` takes these names): producer, consumer, latency, startup, sql, failover, scaling,
profile. Every run also measures the peers with the same client and records: librdkafka's mock cluster
(C, in memory, started through ctypes in its own process, see mock_cluster.py) and the raw loopback
ceiling (the same wire bytes through a plain TCP socket to a discarding reader); workbench figures are
reported as ratios to both. Clients run in their own processes (perf_client.py), brokers and the mock
in theirs; all of them share this machine's cores, which the JSON records (`meta.cpus`).

py-spy (when installed) profiles the brokers in a separate, repeated producer run so that the headline
figures are not perturbed; top frames by self time go to benchmarks/profiles/.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import confluent_kafka as ck

from workbench import Cluster

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from mock_cluster import MockClusterProcess
from proc_stats import children, cpu_s, rss_mb

SECTIONS = ["producer", "consumer", "latency", "startup", "sql", "failover", "scaling", "profile"]

# The issue's targets, beside each figure in the table.
TARGETS = {
    "producer_rf1": "ratio to mock >= 1.0 (Kafka 2014: ~820k/s)",
    "producer_rf3": ">= 400,000/s (Kafka 2014: ~420k/s)",
    "consumer": ">= 1,000,000/s",
    "latency_p99": "p99 < 5 ms",
    "startup_3": "< 1.5 s",
    "rss_idle": "< 80 MB",
    "failover": "< 2 s",
}


# -- sizes ----------------------------------------------------------------------------------------


def sizes(args) -> dict[str, Any]:
    if args.smoke:
        s = {
            "records": 50_000,
            "latency_seconds": 1.0,
            "latency_warmup": 0.5,
            "startup_repeat": 1,
            "failover_trials": 1,
            "scaling_partitions": [1, 10, 100, 1000],
            "scaling_records": 20_000,
            "sql_records": [20_000],
            "sql_repeat": 2,
            "sql_probes": 20,
            "recovery_records": [20_000],
            "loopback_records": 1_000_000,
            "pipelined_seconds": 0.2,
        }
    else:
        s = {
            "records": 2_000_000,
            "latency_seconds": 10.0,
            "latency_warmup": 2.0,
            "startup_repeat": 3,
            "failover_trials": 3,
            "scaling_partitions": [1, 10, 100, 1000],
            "scaling_records": 1_000_000,
            "sql_records": [1_000_000],
            "sql_repeat": 5,
            "sql_probes": 100,
            "recovery_records": [100_000, 1_000_000, 4_000_000],
            "loopback_records": 20_000_000,
            "pipelined_seconds": 1.0,
        }
    if args.records:
        s["records"] = args.records
    if args.sql_records:
        s["sql_records"] = [int(x) for x in args.sql_records.split(",")]
    return s


# -- process facts from /proc ---------------------------------------------------------------------


class Sampler:
    """Peak RSS and CPU seconds of some processes while a block runs (sampled every 50 ms).

    Their child processes (a broker's Parquet converter, `workbench.storage.converter`) are
    followed too and reported apart, as `child_cpu` / `child_peak`, keyed by the parent's name:
    the converter runs at idle priority and may go on after the block (`settle_children`).
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {k: v for k, v in pids.items() if v}
        self.peak: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.child_peak: dict[str, float] = {}
        self.child_cpu: dict[str, float] = {}
        self._child_first: dict[int, float] = {}
        self._child_last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample_children(self) -> None:
        for k, pid in self.pids.items():
            for child in children(pid):
                c = cpu_s(child)
                if c is None:
                    continue
                self._child_first.setdefault(child, c if self._started else 0.0)
                self._child_last[child] = (k, c)
                r = rss_mb(child)
                if r is not None:
                    self.child_peak[k] = max(self.child_peak.get(k, 0.0), r)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for k, pid in self.pids.items():
                r = rss_mb(pid)
                if r is not None:
                    self.peak[k] = max(self.peak.get(k, 0.0), r)
            self._sample_children()

    def _sum_children(self) -> None:
        totals: dict[str, float] = {}
        for child, (k, c) in self._child_last.items():
            totals[k] = totals.get(k, 0.0) + c - self._child_first.get(child, 0.0)
        self.child_cpu = {k: round(v, 2) for k, v in totals.items()}

    def __enter__(self) -> Sampler:
        self._started = False
        self._sample_children()  # children already running count from here
        self._started = True
        self._child_first = {c: v for c, (_k, v) in self._child_last.items()}
        self._cpu0 = {k: cpu_s(p) for k, p in self.pids.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for k, p in self.pids.items():
            c1 = cpu_s(p)
            if c1 is not None and self._cpu0.get(k) is not None:
                self.cpu[k] = round(c1 - self._cpu0[k], 2)
        self.peak = {k: round(v, 1) for k, v in self.peak.items()}
        self._sum_children()
        self.child_cpu_during = dict(self.child_cpu)

    def settle_children(self, quiet_s: float = 1.5, limit_s: float = 60.0) -> float:
        """Keep following the children until their CPU stops growing; return the seconds waited."""
        start = time.monotonic()
        last, still_since = None, time.monotonic()
        while time.monotonic() - start < limit_s:
            self._sample_children()
            total = sum(c for _k, c in self._child_last.values())
            if total != last:
                last, still_since = total, time.monotonic()
            elif time.monotonic() - still_since >= quiet_s:
                break
            time.sleep(0.1)
        self._sum_children()
        self.child_peak = {k: round(v, 1) for k, v in self.child_peak.items()}
        return round(time.monotonic() - start, 1)


# -- helpers --------------------------------------------------------------------------------------


def client(command: str, *extra: str, timeout: float = 600) -> dict:
    """Run one perf_client.py measurement in its own process; its last stdout line is JSON."""
    cmd = [sys.executable, str(HERE / "perf_client.py"), command, *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{command} failed (exit {out.returncode}): {out.stderr.strip()[-800:]}")
    return json.loads(lines[-1])


def wait_isr(bootstrap: str, topic: str, rf: int, timeout: float = 30) -> None:
    """Until every partition of `topic` has a leader and `rf` in-sync replicas."""
    admin = ck.admin.AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
        if (
            md is not None
            and md.error is None
            and md.partitions
            and all(p.leader >= 0 and len(p.isrs) >= rf for p in md.partitions.values())
        ):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{topic}: ISR not full after {timeout}s")


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def skipped(reason: str) -> dict:
    return {"status": "skipped", "reason": reason}


def median(xs: list[float]) -> float:
    return round(statistics.median(xs), 4)


# -- profiling ------------------------------------------------------------------------------------


class Profiler:
    """`py-spy record --format raw` against some broker pids while a block runs; SIGINT ends it."""

    def __init__(self, pids: dict[str, int], name: str, out_dir: Path, extra: tuple[str, ...] = ()) -> None:
        self.pyspy = shutil.which("py-spy") or (
            str(Path(sys.executable).parent / "py-spy") if (Path(sys.executable).parent / "py-spy").exists() else None
        )
        self.pids, self.name, self.out_dir = pids, name, out_dir
        self.extra = extra  # more py-spy flags, e.g. ("--gil",): only samples holding the GIL (CPU, not waits)
        self.procs: dict[str, tuple[subprocess.Popen, Path]] = {}
        self.t0 = 0.0

    def __enter__(self) -> Profiler:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for label, pid in self.pids.items():
            raw = Path(tempfile.mkstemp(prefix=f"pyspy-{label}-", suffix=".txt")[1])
            cmd = [
                self.pyspy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "200",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(raw),
                *self.extra,
            ]
            self.procs[label] = (
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
                raw,
            )
        time.sleep(0.5)  # py-spy attaches
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        for proc, _ in self.procs.values():
            proc.send_signal(signal.SIGINT)
        for proc, _ in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def report(self, top: int = 25) -> dict:
        result = {}
        for label, (proc, raw) in self.procs.items():
            stacks: list[tuple[list[str], int]] = []
            if raw.exists():
                for line in raw.read_text().splitlines():
                    stack, _, count = line.rpartition(" ")
                    if stack and count.isdigit():
                        stacks.append((stack.split(";"), int(count)))
            total = sum(c for _, c in stacks)
            if not total:
                err = proc.stderr.read().decode(errors="replace")[-400:] if proc.stderr else ""
                result[label] = {"samples": 0, "error": err}
                continue
            self_t: Counter[str] = Counter()
            incl: Counter[str] = Counter()
            for frames, c in stacks:
                frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
                if not frames:
                    continue
                self_t[_frame(frames[-1])] += c
                for f in {_frame(x) for x in frames}:
                    incl[f] += c
            busy = total / (200 * self.seconds) if self.seconds else None
            entry = {
                "samples": total,
                "seconds": round(self.seconds, 2),
                "busy_fraction": round(busy, 3) if busy else None,
                "top_self": [{"frame": f, "pct": round(100 * c / total, 1)} for f, c in self_t.most_common(top)],
                "top_inclusive": [{"frame": f, "pct": round(100 * c / total, 1)} for f, c in incl.most_common(top)],
            }
            base = self.out_dir / f"{self.name}-{label}"
            lines = [
                f"# py-spy record --rate 200 --nonblocking --format raw {' '.join(self.extra)}, {self.name}, {label}",
                f"# {total} samples (active, idle excluded) over {self.seconds:.1f}s; busy ~{busy:.0%} of one core",
                "",
                "## top frames by self time",
                *[f"{e['pct']:6.1f}%  {e['frame']}" for e in entry["top_self"]],
                "",
                "## top frames by inclusive time",
                *[f"{e['pct']:6.1f}%  {e['frame']}" for e in entry["top_inclusive"]],
            ]
            base.with_suffix(".top.txt").write_text("\n".join(lines) + "\n")
            # The collapsed stacks (flamegraph.pl / speedscope input), kept only when small.
            if raw.stat().st_size < 400_000:
                shutil.copyfile(raw, base.with_suffix(".collapsed.txt"))
                entry["collapsed"] = _rel(base.with_suffix(".collapsed.txt"))
            entry["top_file"] = _rel(base.with_suffix(".top.txt"))
            raw.unlink(missing_ok=True)
            result[label] = entry
        return result


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(HERE.parent))
    except ValueError:
        return str(p)


def _frame(f: str) -> str:
    """`func (path/to/file.py:123)` -> `func (file.py)`: self time per function, not per line."""
    name, _, loc = f.partition(" (")
    loc = loc.rstrip(")")
    path = loc.rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return f"{name} ({short})"


# -- sections -------------------------------------------------------------------------------------


def throughput_case(
    label: str, brokers: int, rf: int, acks: str, args, sz: dict, want: set[str], results: dict
) -> None:
    """Producer, consumer, latency and profile for one (brokers, RF, acks) case, and the mock peer."""
    n = sz["records"]
    produce_args = [
        "--records",
        str(n),
        "--acks",
        acks,
        "--linger-ms",
        str(args.linger_ms),
        "--batch-size",
        str(args.batch_size),
    ]

    def latency(bootstrap: str, topic: str, seconds: float, max_in_flight: int, fetch_wait_ms: int) -> dict:
        # max.in.flight 5 is the Java producer's default (and librdkafka's limit with idempotence): the
        # client keeps batching while the broker is busy instead of pipelining one request per record.
        # fetch.wait.max.ms 10: the mock cluster never cuts a long poll short when data arrives (it
        # always waits MaxWait on an empty fetch, see rdkafka_mock_handlers.c), so with the default
        # 500 ms it would measure its own poll interval, not its latency.
        lat_args = [
            "--acks",
            acks,
            "--linger-ms",
            "0",
            "--rate",
            "10000",
            "--seconds",
            str(seconds),
            "--warmup",
            str(sz["latency_warmup"]),
            "--max-in-flight",
            str(max_in_flight),
        ]
        cons = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "perf_client.py"),
                "e2e-consume",
                "--bootstrap",
                bootstrap,
                "--topic",
                topic,
                "--records",
                str(int(10_000 * seconds)),
                "--timeout",
                str(seconds + sz["latency_warmup"] + 120),
                "--fetch-wait-ms",
                str(fetch_wait_ms),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert cons.stdout.readline().strip() == "READY", cons.stderr.read()[-500:]
            prod = client("e2e-produce", "--bootstrap", bootstrap, "--topic", topic, *lat_args)
            out, err = cons.communicate(timeout=240)
        finally:
            if cons.poll() is None:
                cons.kill()
                cons.wait()
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"e2e-consume failed: {err[-500:]}")
        prod.pop("config", None)
        return {
            **json.loads(lines[-1]),
            "producer": prod,
            "max_in_flight": max_in_flight or "librdkafka default",
            "seconds": seconds,
        }

    ours: dict[str, Any] = {"brokers": brokers, "replication_factor": rf, "acks": acks, "partitions": 6}
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-{label}-") as tmp,
        Cluster(brokers=brokers, data_dir=tmp, config={"group_initial_rebalance_delay_ms": 0}) as cluster,
    ):
        pids = {f"broker{k}": v for k, v in cluster.broker_pids().items()}
        cluster.create_topic("perf", partitions=6, replication_factor=rf)
        wait_isr(cluster.bootstrap_servers, "perf", rf)
        time.sleep(1.0)
        ours["rss_idle_mb"] = {k: round(rss_mb(p), 1) for k, p in pids.items()}
        with Sampler(pids) as s:
            ours["produce"] = client(
                "produce", "--bootstrap", cluster.bootstrap_servers, "--topic", "perf", *produce_args
            )
        ours["rss_under_load_peak_mb"] = s.peak
        ours["broker_cpu_s_during_produce"] = s.cpu
        ours["broker_cpu_us_per_record"] = round(1e6 * sum(s.cpu.values()) / n, 2)
        # The Parquet converters (idle priority, child processes) while the producer ran, and until done.
        ours["converter_cpu_s_during_produce"] = s.child_cpu_during
        ours["converter_settle_s"] = s.settle_children()
        ours["converter_cpu_s_total"] = s.child_cpu
        ours["converter_rss_peak_mb"] = s.child_peak
        ours["broker_and_converter_cpu_us_per_record"] = round(
            1e6 * (sum(s.cpu.values()) + sum(s.child_cpu.values())) / n, 2
        )
        if "consumer" in want:
            with Sampler(pids) as s:
                ours["consume"] = client(
                    "consume",
                    "--bootstrap",
                    cluster.bootstrap_servers,
                    "--topic",
                    "perf",
                    "--records",
                    str(n),
                )
            ours["broker_cpu_s_during_consume"] = s.cpu
        if "latency" in want:
            cluster.create_topic("lat", partitions=6, replication_factor=rf)
            wait_isr(cluster.bootstrap_servers, "lat", rf)
            ours["latency"] = latency(cluster.bootstrap_servers, "lat", sz["latency_seconds"], 5, 10)
            # librdkafka's defaults (1,000,000 requests in flight per connection, fetch.wait.max.ms 500),
            # one second of records (smoke: 0.2 s): shows what pipelining one tiny request per record does to a broker.
            cluster.create_topic("lat-pipelined", partitions=6, replication_factor=rf)
            wait_isr(cluster.bootstrap_servers, "lat-pipelined", rf)
            ours["latency_pipelined"] = latency(
                cluster.bootstrap_servers, "lat-pipelined", sz["pipelined_seconds"], 0, 500
            )
        if "profile" in want:
            cluster.create_topic("prof", partitions=6, replication_factor=rf)
            wait_isr(cluster.bootstrap_servers, "prof", rf)
            prof = Profiler(pids, f"produce-{label}", Path(args.profile_dir))
            if prof.pyspy is None:
                ours["profile"] = skipped("py-spy not installed (pip install py-spy)")
            else:
                with prof:
                    run = client("produce", "--bootstrap", cluster.bootstrap_servers, "--topic", "prof", *produce_args)
                ours["profile"] = {
                    "produce_while_profiled": {k: run[k] for k in ("records_per_s", "mb_per_s")},
                    "brokers": prof.report(),
                }

    mock: dict[str, Any] = {"brokers": brokers, "replication_factor": rf, "acks": acks, "partitions": 6}
    with MockClusterProcess(brokers) as m:
        m.create_topic("perf", 6, rf)
        with Sampler({"mock": m.pid}) as s:
            mock["produce"] = client("produce", "--bootstrap", m.bootstrap_servers, "--topic", "perf", *produce_args)
        mock["rss_under_load_peak_mb"] = s.peak.get("mock")
        mock["cpu_s_during_produce"] = s.cpu.get("mock")
        if "consumer" in want:
            mock["consume"] = client(
                "consume", "--bootstrap", m.bootstrap_servers, "--topic", "perf", "--records", str(n)
            )
        if "latency" in want:
            m.create_topic("lat", 6, rf)
            mock["latency"] = latency(m.bootstrap_servers, "lat", sz["latency_seconds"], 5, 10)
            m.create_topic("lat-pipelined", 6, rf)
            mock["latency_pipelined"] = latency(m.bootstrap_servers, "lat-pipelined", sz["pipelined_seconds"], 0, 500)
    results[label] = {"workbench": ours, "mock": mock}


def section_peers_loopback(args, sz: dict) -> dict:
    return client("loopback", "--records", str(sz["loopback_records"]), "--batch-size", str(args.batch_size))


def section_startup(args, sz: dict) -> dict:
    out: dict[str, Any] = {}
    for brokers in (1, 3):
        times, idle = [], []
        for _ in range(sz["startup_repeat"]):
            with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
                t0 = time.perf_counter()
                cluster = Cluster(brokers=brokers, data_dir=tmp)
                times.append(time.perf_counter() - t0)
                try:
                    # Ready means usable: a client sees every broker in Metadata.
                    admin = cluster.admin()
                    md = admin.list_topics(timeout=10)
                    out.setdefault(f"brokers_{brokers}_metadata_brokers", len(md.brokers))
                    out.setdefault(f"brokers_{brokers}_to_metadata_s", []).append(round(time.perf_counter() - t0, 3))
                    time.sleep(1.0)
                    idle.extend(rss_mb(p) for p in cluster.broker_pids().values() if p)
                finally:
                    cluster.stop()
        out[f"brokers_{brokers}"] = {
            "start_s_runs": [round(t, 3) for t in times],
            "start_s_median": median(times),
            "rss_idle_mb_per_broker": round(max(idle), 1),
            "rss_idle_mb_runs": [round(x, 1) for x in idle],
        }
    return out


def section_sql(args, sz: dict) -> dict:
    runs = []
    for n in sz["sql_records"]:
        with tempfile.TemporaryDirectory(prefix="bench-sql-") as out_dir:
            cmd = [
                sys.executable,
                str(HERE / "sql_bench.py"),
                "--records",
                str(n),
                "--repeat",
                str(sz["sql_repeat"]),
                "--probes",
                str(sz["sql_probes"]),
                "--out",
                out_dir,
            ]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
            wall = time.perf_counter() - t0
            files = list(Path(out_dir).glob("*.json"))
            if proc.returncode != 0 or not files:
                raise RuntimeError(f"sql_bench --records {n} failed: {proc.stderr.strip()[-800:]}")
            runs.append({**json.loads(files[0].read_text()), "wall_s": round(wall, 1)})
    return {"command": "benchmarks/sql_bench.py --records N", "runs": runs}


def section_failover(args, sz: dict) -> dict:
    trials = []
    topic = "failover"
    with tempfile.TemporaryDirectory(prefix="bench-fo-") as tmp, Cluster(brokers=3, data_dir=tmp) as cluster:
        cluster.create_topic(topic, partitions=6, replication_factor=3)
        for _ in range(sz["failover_trials"]):
            wait_isr(cluster.bootstrap_servers, topic, 3, timeout=90)  # the restarted broker back in every ISR
            addrs = cluster._known_brokers()
            probe = ck.admin.AdminClient({"bootstrap.servers": cluster.bootstrap_servers, "log_level": 0})
            old = probe.list_topics(topic, timeout=10).topics[topic].partitions[0].leader
            survivors = ",".join(a for b, a in addrs.items() if b != old)
            meta = ck.admin.AdminClient(
                {"bootstrap.servers": survivors, "topic.metadata.refresh.interval.ms": 100, "log_level": 0}
            )
            meta.list_topics(topic, timeout=10)
            producer = ck.Producer(
                {
                    "bootstrap.servers": cluster.bootstrap_servers,
                    "acks": "all",
                    "linger.ms": 0,
                    "message.timeout.ms": 30_000,
                    "log_level": 0,
                }
            )
            producer.produce(topic, b"warm", partition=0)
            assert producer.flush(10) == 0
            t0 = time.perf_counter()
            cluster.kill_broker(old)
            t_killed = time.perf_counter() - t0
            new, t_meta = None, None
            while time.perf_counter() - t0 < 30:
                try:
                    p0 = meta.list_topics(topic, timeout=1).topics[topic].partitions[0]
                    if p0.leader not in (-1, old):
                        new, t_meta = p0.leader, time.perf_counter() - t0
                        break
                except ck.KafkaException:
                    pass
                time.sleep(0.01)
            delivered: list[Any] = []
            producer.produce(
                topic, b"after-failover", partition=0, on_delivery=lambda err, _m, d=delivered: d.append(err)
            )
            producer.flush(30)
            t_prod = time.perf_counter() - t0
            ok = bool(delivered) and delivered[0] is None
            trials.append(
                {
                    "killed_leader": old,
                    "new_leader": new,
                    "kill_s": round(t_killed, 3),
                    "metadata_new_leader_s": round(t_meta, 3) if t_meta else None,
                    "produce_ok": ok,
                    "produce_ok_s": round(t_prod, 3) if ok else None,
                    "error": None if ok else str(delivered[:1]),
                }
            )
            cluster.restart_broker(old)
    oks = [t["produce_ok_s"] for t in trials if t["produce_ok_s"] is not None]
    metas = [t["metadata_new_leader_s"] for t in trials if t["metadata_new_leader_s"] is not None]
    return {
        "trials": trials,
        "metadata_new_leader_s_median": median(metas) if metas else None,
        "failover_s_median": median(oks) if oks else None,
        "failover_s_max": max(oks) if oks else None,
        "how": "3 brokers, RF=3, SIGKILL the leader of partition 0; time until Metadata (from a survivor) "
        "names another leader, and until an acks=all produce to partition 0 is acknowledged",
    }


def section_scaling(args, sz: dict, want_sql: dict | None) -> dict:
    n = sz["scaling_records"]
    parts: list[dict] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp,
        Cluster(brokers=1, data_dir=tmp) as cluster,
        MockClusterProcess(1) as m,
    ):
        for p in sz["scaling_partitions"]:
            topic = f"scale-{p}"
            common = [
                "--topic",
                topic,
                "--records",
                str(n),
                "--acks",
                "1",
                "--linger-ms",
                str(args.linger_ms),
                "--batch-size",
                str(args.batch_size),
            ]
            t0 = time.perf_counter()
            try:  # one partition count failing (e.g. CreateTopics timing out) leaves the others measured
                cluster.create_topic(topic, partitions=p, replication_factor=1, timeout=120)
                create_s = time.perf_counter() - t0
                ours = client("produce", "--bootstrap", cluster.bootstrap_servers, *common)
            except Exception as exc:
                parts.append(
                    {
                        "partitions": p,
                        "records": n,
                        "records_per_s": None,
                        "mock_records_per_s": None,
                        "ratio_to_mock": None,
                        "error": f"{type(exc).__name__}: {exc}",
                        "after_s": round(time.perf_counter() - t0, 1),
                    }
                )
                continue
            m.create_topic(topic, p, 1)
            mock = client("produce", "--bootstrap", m.bootstrap_servers, *common)
            parts.append(
                {
                    "partitions": p,
                    "records": n,
                    "records_per_s": ours["records_per_s"],
                    "mb_per_s": ours["mb_per_s"],
                    "errors": ours["errors"],
                    "create_topic_s": round(create_s, 2),
                    "mock_records_per_s": mock["records_per_s"],
                    "ratio_to_mock": ratio(ours["records_per_s"], mock["records_per_s"]),
                }
            )

    recovery: list[dict] = []
    for records in sz["recovery_records"]:
        with (
            tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp,
            Cluster(brokers=1, data_dir=tmp) as cluster,
        ):
            cluster.create_topic("rec", partitions=1, replication_factor=1)
            client(
                "produce",
                "--bootstrap",
                cluster.bootstrap_servers,
                "--topic",
                "rec",
                "--records",
                str(records),
                "--acks",
                "1",
            )
            time.sleep(2.0)
            log_bytes = sum(f.stat().st_size for f in Path(tmp).glob("broker-1/topics/rec/**/*") if f.is_file())
            row: dict[str, Any] = {"records": records, "log_mb_on_disk": round(log_bytes / 1e6, 1)}
            for how, stop in (
                ("after_sigkill", cluster.kill_broker),
                ("after_clean_stop", cluster.stop_broker),
            ):
                stop(1)
                t0 = time.perf_counter()
                cluster.restart_broker(1)
                row[f"restart_s_{how}"] = round(time.perf_counter() - t0, 3)
                # Usable again: the partition's high watermark is back.
                c = ck.Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "rec", "log_level": 0})
                _, hi = c.get_watermark_offsets(ck.TopicPartition("rec", 0), timeout=30)
                c.close()
                row[f"high_watermark_{how}_s"] = round(time.perf_counter() - t0, 3)
                row["high_watermark"] = hi
            recovery.append(row)
    out: dict[str, Any] = {"producer_by_partitions": parts, "restart_recovery_by_log_size": recovery}
    if want_sql and want_sql.get("status") == "ok":
        out["sql_by_records"] = [
            {
                "records": r["records"],
                "cluster_sql_median_s": r["cluster_sql_median_s"],
                "native_median_s": r["native_median_s"],
                "cold_first_query_s": r["cold_first_query_s"],
            }
            for r in want_sql["runs"]
        ]
    else:
        out["sql_by_records"] = skipped("sql section not run")
    if 10_000_000 not in sz["sql_records"]:
        out["sql_note"] = f"SQL measured at {sz['sql_records']} records (10M reduced for time; --sql-records to change)"
    return out


# -- the table ------------------------------------------------------------------------------------


def fmt(x: Any, unit: str = "") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and x < 100:
        return f"{x:,.3g}{unit}"
    return f"{x:,.0f}{unit}" if isinstance(x, (int, float)) else str(x)


def build_table(res: dict) -> list[list[str]]:
    rows: list[list[str]] = [["metric", "workbench", "mock", "loopback", "wb/mock", "wb/loopback", "target"]]
    sec = res["sections"]
    loop = sec["peers"].get("loopback", {}) if sec["peers"].get("status") == "ok" else {}
    for label, name in (
        ("rf1_acks1", "producer RF=1 acks=1 (rec/s)"),
        ("rf3_acksall", "producer RF=3 acks=all (rec/s)"),
    ):
        p = sec["producer"].get(label) if sec["producer"].get("status") == "ok" else None
        if p:
            rows.append(
                [
                    name,
                    fmt(p["workbench_records_per_s"]),
                    fmt(p["mock_records_per_s"]),
                    fmt(loop.get("records_per_s")),
                    fmt(p["ratio_to_mock"]),
                    fmt(p["ratio_to_loopback"]),
                    TARGETS["producer_rf1" if label.startswith("rf1") else "producer_rf3"],
                ]
            )
            rows.append(
                [
                    name.replace("(rec/s)", "(MB/s)"),
                    fmt(p["workbench_mb_per_s"]),
                    fmt(p["mock_mb_per_s"]),
                    fmt(loop.get("mb_per_s")),
                    "",
                    "",
                    "",
                ]
            )
        c = sec["consumer"].get(label) if sec["consumer"].get("status") == "ok" else None
        if c:
            rows.append(
                [
                    name.replace("producer", "consumer").replace("acks=1 ", "").replace("acks=all ", ""),
                    fmt(c["workbench_records_per_s"]),
                    fmt(c["mock_records_per_s"]),
                    fmt(loop.get("records_per_s")),
                    fmt(c["ratio_to_mock"]),
                    fmt(c["ratio_to_loopback"]),
                    TARGETS["consumer"],
                ]
            )
        lat = sec["latency"].get(label) if sec["latency"].get("status") == "ok" else None
        if lat:
            w, m = lat["workbench"], lat["mock"]
            tag = "RF=1 acks=1" if label.startswith("rf1") else "RF=3 acks=all"
            for q in ("p50_ms", "p99_ms", "max_ms"):
                rows.append(
                    [
                        f"e2e latency {tag} @10k/s {q[:-3]} (ms)",
                        fmt(w[q]),
                        fmt(m[q]),
                        "",
                        fmt(ratio(w[q], m[q])),
                        "",
                        TARGETS["latency_p99"] if q == "p99_ms" else "",
                    ]
                )
            rows.append(
                [
                    f"  produce->ack {tag} @10k/s p50/p99 (ms)",
                    f"{fmt(w['producer']['ack_ms_p50'])}/{fmt(w['producer']['ack_ms_p99'])}",
                    f"{fmt(m['producer']['ack_ms_p50'])}/{fmt(m['producer']['ack_ms_p99'])}",
                    "",
                    "",
                    "",
                    "",
                ]
            )
            pw, pm = lat["pipelined"]["workbench"], lat["pipelined"]["mock"]
            rows.append(
                [
                    "  librdkafka defaults (in-flight 1M, wait 500) p50/p99 (ms)",
                    f"{fmt(pw['p50_ms'])}/{fmt(pw['p99_ms'])}",
                    f"{fmt(pm['p50_ms'])}/{fmt(pm['p99_ms'])}",
                    "",
                    "",
                    "",
                    "",
                ]
            )
    st = sec["startup"]
    if st.get("status") == "ok":
        rows.append(["start-up 1 broker (s)", fmt(st["brokers_1"]["start_s_median"]), "", "", "", "", ""])
        rows.append(
            [
                "start-up 3 brokers (s)",
                fmt(st["brokers_3"]["start_s_median"]),
                "",
                "",
                "",
                "",
                TARGETS["startup_3"],
            ]
        )
        rows.append(
            [
                "RSS idle per broker (MB)",
                fmt(st["brokers_3"]["rss_idle_mb_per_broker"]),
                "",
                "",
                "",
                "",
                TARGETS["rss_idle"],
            ]
        )
    mem = sec["producer"]
    if mem.get("status") == "ok":
        for label in ("rf1_acks1", "rf3_acksall"):
            if label in mem:
                peak = mem[label]["rss_under_load_peak_mb"]
                rows.append(
                    [
                        f"RSS under load per broker, {label} (MB, max)",
                        fmt(max(peak.values()) if peak else None),
                        fmt(mem[label]["mock_rss_under_load_peak_mb"]),
                        "",
                        "",
                        "",
                        "",
                    ]
                )
                rows.append(
                    [
                        f"broker CPU per record, {label} (us)",
                        fmt(mem[label]["broker_cpu_us_per_record"]),
                        fmt(mem[label]["mock_cpu_us_per_record"]),
                        "",
                        "",
                        "",
                        "",
                    ]
                )
                rows.append(
                    [
                        f"  + Parquet converter (idle priority), {label} (us)",
                        fmt(mem[label]["broker_and_converter_cpu_us_per_record"]),
                        "",
                        "",
                        "",
                        "",
                        "",
                    ]
                )
                cpeak = mem[label]["converter_rss_peak_mb"]
                rows.append(
                    [
                        f"  converter RSS peak, {label} (MB, max)",
                        fmt(max(cpeak.values()) if cpeak else None),
                        "",
                        "",
                        "",
                        "",
                        "",
                    ]
                )
    fo = sec["failover"]
    if fo.get("status") == "ok":
        rows.append(
            [
                "failover: metadata shows new leader (s)",
                fmt(fo["metadata_new_leader_s_median"]),
                "",
                "",
                "",
                "",
                "",
            ]
        )
        rows.append(
            [
                "failover: acks=all produce ok (s)",
                fmt(fo["failover_s_median"]),
                "",
                "",
                "",
                "",
                TARGETS["failover"],
            ]
        )
    sq = sec["sql"]
    if sq.get("status") == "ok":
        for r in sq["runs"]:
            rows.append(
                [
                    f"SQL GROUP BY {r['records']:,} rec: cluster.sql / native (s)",
                    f"{r['cluster_sql_median_s']:.3f}/{r['native_median_s']:.3f}",
                    "",
                    "",
                    "",
                    "",
                    f"ratio {r['ratio']} (<= 1.5)",
                ]
            )
            rows.append(
                [
                    f"SQL ack-to-visible p99 {r['records']:,} rec (ms)",
                    fmt(r["ack_to_visible_ms_p99"]),
                    "",
                    "",
                    "",
                    "",
                    "< 50 ms",
                ]
            )
    sc = sec["scaling"]
    if sc.get("status") == "ok":
        for r in sc["producer_by_partitions"]:
            rows.append(
                [
                    f"producer RF=1, {r['partitions']} partitions (rec/s)",
                    fmt(r["records_per_s"]) if "error" not in r else "ERROR",
                    fmt(r["mock_records_per_s"]),
                    "",
                    fmt(r["ratio_to_mock"]),
                    "",
                    "",
                ]
            )
        for r in sc["restart_recovery_by_log_size"]:
            rows.append(
                [
                    f"restart after SIGKILL, {r['records']:,} rec / {r['log_mb_on_disk']} MB on disk (s)",
                    fmt(r["restart_s_after_sigkill"]),
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
    return rows


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  ".join(c.ljust(widths[i]) if i == 0 or i == 6 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def git_state() -> dict:
    """The commit measured, and files changed since (read-only git; others edit the broker meanwhile)."""

    def git(*a: str) -> str:
        try:
            return subprocess.run(
                ["git", "--no-optional-locks", *a],
                capture_output=True,
                text=True,
                cwd=HERE.parent,
                timeout=10,
                check=False,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""

    dirty = [ln[3:] for ln in git("status", "--porcelain", "--", "workbench").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "workbench_changed_since": dirty}


# -- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, every section, < 2 minutes")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, metavar="NAME", help=f"some of: {' '.join(SECTIONS)}")
    ap.add_argument("--records", type=int, help="records per producer/consumer run (default 2M, smoke 50k)")
    ap.add_argument("--sql-records", help="comma-separated sql_bench sizes (default 1000000; smoke 20000)")
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=1_048_576)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--profile-dir", help="py-spy output (default benchmarks/profiles; smoke: <out>/profiles-smoke)")
    args = ap.parse_args(argv)
    # Bytecode for the package first: where PYTHONDONTWRITEBYTECODE=1 is set (this sandbox) an editable
    # install never gets .pyc files, and every broker would compile the sources at start, inside the
    # start-up figure and each converter child's CPU.
    compileall.compile_dir(str(HERE.parent / "workbench"), quiet=1)
    if args.profile_dir is None:
        args.profile_dir = str(Path(args.out) / "profiles-smoke") if args.smoke else str(HERE / "profiles")
    want = set(args.only or SECTIONS)
    sz = sizes(args)
    started = time.perf_counter()
    meta = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "smoke": args.smoke,
        "argv": sys.argv[1:],
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "confluent_kafka": ck.version()[0],
        "librdkafka": ck.libversion()[0],
        "sizes": sz,
        "value_bytes": 100,
        "note": (
            f"client, brokers and peer share {os.cpu_count()} cores; each client measurement runs in its own "
            "process, each broker and the mock cluster in theirs"
        ),
        "producer_config": {
            "linger.ms": args.linger_ms,
            "batch.size": args.batch_size,
            "batch.num.messages": 10_000,
            "compression.type": "none",
            "enable.idempotence": False,
            "acks": "1 (RF=1) / all (RF=3)",
        },
    }
    meta["git"] = git_state()
    sections: dict[str, dict] = {}

    def run(name: str, fn: Callable[[], dict], needed: bool) -> dict:
        if not needed:
            return skipped("not selected (--only)")
        t0 = time.perf_counter()
        print(f"[{time.perf_counter() - started:6.1f}s] {name} ...", file=sys.stderr, flush=True)
        try:
            out = {"status": "ok", **fn()}
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-3:]
            out = {
                "status": "error",
                "reason": f"{type(exc).__name__}: {exc}",
                "where": [f"{Path(f.filename).name}:{f.lineno} {f.line}" for f in where],
            }
            print(f"  {name} failed: {out['reason']}", file=sys.stderr, flush=True)
        out["section_s"] = round(time.perf_counter() - t0, 1)
        return out

    # Peers: the loopback ceiling, measured once; the mock is measured beside each workbench case.
    sections["peers"] = run(
        "peers (loopback)",
        lambda: {"loopback": section_peers_loopback(args, sz)},
        bool(want & {"producer", "consumer", "latency", "scaling"}),
    )
    cases: dict[str, Any] = {}
    throughput_wanted = want & {"producer", "consumer", "latency", "profile"}
    for label, brokers, rf, acks in (("rf1_acks1", 1, 1, "1"), ("rf3_acksall", 3, 3, "all")):

        def case(label=label, brokers=brokers, rf=rf, acks=acks) -> dict:
            throughput_case(label, brokers, rf, acks, args, sz, want, cases)
            return {}

        r = run(f"throughput {label}", case, bool(throughput_wanted))
        if r["status"] == "error":
            cases[label] = {"error": r["reason"]}
    loop_rps = sections["peers"].get("loopback", {}).get("records_per_s")

    def collect(kind: str) -> dict:
        if kind not in want:
            return skipped("not selected (--only)")
        out: dict[str, Any] = {"status": "ok"}
        for label, case in cases.items():
            if "error" in case:
                out["status"] = "error"
                out[label] = {"error": case["error"]}
                continue
            w, m = case["workbench"], case["mock"]
            if kind == "producer":
                out[label] = {
                    "workbench_records_per_s": w["produce"]["records_per_s"],
                    "workbench_mb_per_s": w["produce"]["mb_per_s"],
                    "mock_records_per_s": m["produce"]["records_per_s"],
                    "mock_mb_per_s": m["produce"]["mb_per_s"],
                    "ratio_to_mock": ratio(w["produce"]["records_per_s"], m["produce"]["records_per_s"]),
                    "ratio_to_loopback": ratio(w["produce"]["records_per_s"], loop_rps),
                    "errors": w["produce"]["errors"],
                    "records": w["produce"]["records"],
                    "rss_idle_mb": w["rss_idle_mb"],
                    "rss_under_load_peak_mb": w["rss_under_load_peak_mb"],
                    "broker_cpu_s": w["broker_cpu_s_during_produce"],
                    "broker_cpu_us_per_record": w["broker_cpu_us_per_record"],
                    "converter_cpu_s_during_produce": w["converter_cpu_s_during_produce"],
                    "converter_cpu_s_total": w["converter_cpu_s_total"],
                    "converter_rss_peak_mb": w["converter_rss_peak_mb"],
                    "broker_and_converter_cpu_us_per_record": w["broker_and_converter_cpu_us_per_record"],
                    "client_cpu_s": w["produce"]["client_cpu_s"],
                    "mock_client_cpu_s": m["produce"]["client_cpu_s"],
                    "mock_rss_under_load_peak_mb": m["rss_under_load_peak_mb"],
                    "mock_cpu_us_per_record": round(
                        1e6 * (m["cpu_s_during_produce"] or 0) / w["produce"]["records"], 2
                    ),
                    "workbench": w["produce"],
                    "mock": m["produce"],
                }
            elif kind == "consumer" and "consume" in w:
                out[label] = {
                    "workbench_records": w["consume"]["records"],
                    "mock_records": m["consume"]["records"],
                    "workbench_records_per_s": w["consume"]["records_per_s"],
                    "mock_records_per_s": m["consume"]["records_per_s"],
                    "ratio_to_mock": ratio(w["consume"]["records_per_s"], m["consume"]["records_per_s"]),
                    "ratio_to_loopback": ratio(w["consume"]["records_per_s"], loop_rps),
                    "broker_cpu_s": w.get("broker_cpu_s_during_consume"),
                    "workbench": w["consume"],
                    "mock": m["consume"],
                }
            elif kind == "latency" and "latency" in w:
                out[label] = {
                    "workbench": w["latency"],
                    "mock": m["latency"],
                    "rate": 10_000,
                    "pipelined": {"workbench": w["latency_pipelined"], "mock": m["latency_pipelined"]},
                    "how": "value starts with CLOCK_MONOTONIC ns at produce(); consumer (poll) in another "
                    "process; linger.ms=0; max.in.flight=5 (Java default); fetch.wait.max.ms=10; 'pipelined' = "
                    "librdkafka defaults (in-flight 1M, fetch.wait.max.ms 500) for 1 s of records; "
                    "ack_ms_* = produce() to acknowledgement",
                }
            elif kind == "profile" and "profile" in w:
                out[label] = w["profile"]
        return out

    for kind in ("producer", "consumer", "latency", "profile"):
        sections[kind] = collect(kind)
    sections["startup"] = run("startup", lambda: section_startup(args, sz), "startup" in want)
    sections["sql"] = run("sql", lambda: section_sql(args, sz), "sql" in want)
    sections["failover"] = run("failover", lambda: section_failover(args, sz), "failover" in want)
    sections["scaling"] = run("scaling", lambda: section_scaling(args, sz, sections["sql"]), "scaling" in want)

    meta["total_s"] = round(time.perf_counter() - started, 1)
    meta["loadavg_end"] = os.getloadavg()
    res = {"meta": meta, "sections": sections}
    rows = build_table(res)
    res["table"] = rows
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{time.strftime('%Y%m%d-%H%M%S')}{'-smoke' if args.smoke else ''}.json"
    path.write_text(json.dumps(res, indent=2, default=str))
    print(f"\nworkbench benchmarks ({'smoke' if args.smoke else 'full'}; {meta['note']})\n")
    print_table(rows)
    errors = [k for k, v in sections.items() if v.get("status") == "error"]
    for k in errors:
        print(f"\nsection {k}: ERROR {sections[k].get('reason') or ''}")
    print(f"\nwrote {path} in {meta['total_s']}s")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
