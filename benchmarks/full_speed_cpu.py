"""Broker CPU per record at full speed (run_all's producer case), two code trees interleaved (ABBA).

    python benchmarks/full_speed_cpu.py --trees before=/work/main,after=. --rf 1,3 --repeats 2
    python benchmarks/full_speed_cpu.py --profile                 # py-spy on each broker, profiles/full-*.txt
    python benchmarks/full_speed_cpu.py --sample --repeats 1      # CPU-time profile (cpu_sampler/), profiles/
    python benchmarks/full_speed_cpu.py --calls                   # Python calls per record (load-independent)
    python benchmarks/full_speed_cpu.py --perf --repeats 1        # Linux perf: Python vs kernel vs libc, profiles/

The load is `perf_client.py produce` with run_all's defaults (6 partitions, 100-byte records,
`linger.ms` 5, 1 MB batches, librdkafka's default in-flight window; acks=1 at RF=1, acks=all at RF=3).
A broker runs `python -m workbench.broker` from its working directory, so a "tree" is any directory
holding `workbench/`. What is compared is the brokers' utime+stime from /proc over the producer's
run, per record, summed over the brokers (their converter children are reported apart). Parquet
tails are off (`parquet_tail_ms=0`) unless `--tails`, so the tail converter's work stays out of the
figure. Prints a table with the load average; writes `results/full_speed_cpu-<ts>.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from broker_cpu import SAMPLER, summarize
from run_all import Profiler, Sampler, client, wait_isr

from workbench import Cluster


def _perf_start(pids: list[int], args: argparse.Namespace, label: str) -> subprocess.Popen | None:
    """`perf record` on the brokers while the producer runs: where the CPU goes below Python (the
    interpreter, the kernel's socket and file paths, libc copies). Python 3.11 has no perf
    trampolines, so Python functions all show as the interpreter loop."""
    if not args.perf:
        return None
    perf = shutil.which("perf")
    if perf is None:
        raise SystemExit("--perf needs Linux perf (apt-get install linux-perf)")
    data = Path(args.profile_dir) / f".perf-{label}.data"
    cmd = [perf, "record", "-F", "499", "-g", "-p", ",".join(map(str, pids)), "-o", str(data)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _perf_stop(proc: subprocess.Popen | None, args: argparse.Namespace, label: str) -> str | None:
    if proc is None:
        return None
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    data = Path(args.profile_dir) / f".perf-{label}.data"
    out = Path(args.profile_dir) / f"full-{label}.perf.txt"
    lines = [f"# perf record -F 499 -g on the brokers, full speed {label}, load {os.getloadavg()[0]:.1f}", ""]
    for title, sort in (("by library", "dso"), ("top symbols", "dso,sym")):
        rep = subprocess.run(
            ["perf", "report", "-i", str(data), "--no-children", "--sort", sort, "--stdio", "-g", "none"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        lines += [f"## {title}", *[ln for ln in rep.splitlines() if "%" in ln and not ln.startswith("#")][:30], ""]
    out.write_text("\n".join(lines))
    data.unlink(missing_ok=True)
    return str(out)


def one_run(tree: Path, rf: int, records: int, args: argparse.Namespace, label: str) -> dict:
    config: dict = {"group_initial_rebalance_delay_ms": 0}
    if not args.tails:
        config["parquet_tail_ms"] = 0
    cwd = os.getcwd()
    prefix = Path(args.profile_dir) / f".samples-{label}"
    if args.sample or args.calls:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
        os.environ["WB_CPU_SAMPLE"] = str(prefix)  # read by the brokers' sitecustomize at start
    os.chdir(tree)
    try:
        with (
            tempfile.TemporaryDirectory(prefix=f"fullcpu-{label}-") as tmp,
            Cluster(brokers=rf, data_dir=tmp, config=config) as cluster,
        ):
            pids = {f"broker{k}": v for k, v in cluster.broker_pids().items()}
            cluster.create_topic("perf", partitions=6, replication_factor=rf)
            wait_isr(cluster.bootstrap_servers, "perf", rf)
            time.sleep(1.0)
            produce = [
                "--bootstrap",
                cluster.bootstrap_servers,
                "--topic",
                "perf",
                "--records",
                str(records),
                "--acks",
                "all" if rf > 1 else "1",
                "--linger-ms",
                "5",
                "--batch-size",
                str(1_048_576),
            ]
            prof = Profiler(pids, f"full-{label}", Path(args.profile_dir)) if args.profile else None
            load = os.getloadavg()[0]
            live = [p for p in pids.values() if p]
            with Sampler(pids) as s:
                for pid in live if args.sample or args.calls else ():
                    os.kill(pid, signal.SIGRTMIN)
                perf = _perf_start(live, args, label)
                if prof is not None:
                    with prof:
                        run = client("produce", *produce)
                else:
                    run = client("produce", *produce)
                perf_report = _perf_stop(perf, args, label)
                for pid in live if args.sample or args.calls else ():
                    os.kill(pid, signal.SIGRTMIN + 1)
            row = {
                "records_per_s": run["records_per_s"],
                "broker_cpu_s": s.cpu,
                "broker_us_per_record": round(1e6 * sum(s.cpu.values()) / records, 3),
                "children_cpu_s": s.child_cpu_during,
                "loadavg_before": round(load, 2),
                "loadavg_after": round(os.getloadavg()[0], 2),
            }
            if perf_report:
                row["perf"] = perf_report
            if prof is not None:
                row["profile"] = {
                    k: {"samples": v.get("samples"), "top_file": v.get("top_file")} for k, v in prof.report().items()
                }
            time.sleep(1.0)  # the brokers write their samples
            if args.calls:
                files = [Path(f"{prefix}.{pid}.calls.json") for pid in live]
                calls = [json.loads(f.read_text()) for f in files if f.exists()]
                row["python_calls"] = sum(c["calls"] for c in calls)
                row["python_calls_per_record"] = round(row["python_calls"] / records, 4)
                row["calls_top"] = [c["top"][:15] for c in calls]
                for f in files:
                    f.unlink(missing_ok=True)
            if args.sample:
                files = [f for f in (Path(f"{prefix}.{pid}.collapsed") for pid in live) if f.exists()]
                row["cpu_profile"] = summarize(
                    files,
                    f"CPU samples of the brokers, full speed {label}, load {os.getloadavg()[0]:.1f}",
                    Path(args.profile_dir) / f"full-{label}.cpu.txt",
                )
                for f in files:
                    f.unlink()
            return row
    finally:
        os.chdir(cwd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trees", default=f"this={HERE.parent}", help="name=dir,... (dirs holding workbench/)")
    parser.add_argument("--rf", default="1,3", help="comma-separated replication factors (brokers = RF)")
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tails", action="store_true", help="keep Parquet tails on (default: parquet_tail_ms=0)")
    parser.add_argument("--profile", action="store_true", help="py-spy record each broker (run_all.Profiler)")
    parser.add_argument("--sample", action="store_true", help="CPU-time profile of the brokers (cpu_sampler/)")
    parser.add_argument("--perf", action="store_true", help="Linux perf record the brokers (profiles/full-*.perf.txt)")
    parser.add_argument("--calls", action="store_true", help="count the brokers' Python calls (cProfile)")
    parser.add_argument("--profile-dir", default=str(HERE / "profiles"))
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    trees = dict(item.split("=", 1) for item in args.trees.split(","))
    if args.sample or args.calls:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SAMPLER), os.environ.get("PYTHONPATH")]))
        if args.calls:
            os.environ["WB_CPU_SAMPLE_CALLS"] = "1"
    runs = []
    for rf in (int(x) for x in args.rf.split(",")):
        for i in range(args.repeats):
            order = list(trees) if i % 2 == 0 else list(reversed(trees))
            for name in order:
                tree = Path(trees[name]).resolve()
                assert (tree / "workbench" / "broker" / "__main__.py").exists(), tree
                row = one_run(tree, rf, args.records, args, f"rf{rf}-{name}")
                row.update(tree=name, rf=rf, repeat=i, records=args.records)
                runs.append(row)
                print(
                    f"rf{rf} {name:>8} run {i}: {row['broker_us_per_record']} us/record, "
                    f"{row['records_per_s']:.0f} rec/s, load {row['loadavg_before']}"
                    + (f", {row['python_calls_per_record']} calls/record" if args.calls else ""),
                    flush=True,
                )
    print(f"{'rf':>3} {'tree':>8} {'run':>3} {'us/rec':>7} {'rec/s':>9} {'conv s':>7} {'load 1m':>7}")
    for r in runs:
        conv = sum(r["children_cpu_s"].values())
        print(
            f"{r['rf']:>3} {r['tree']:>8} {r['repeat']:>3} {r['broker_us_per_record']:>7} "
            f"{r['records_per_s']:>9.0f} {conv:>7.2f} {r['loadavg_before']:>7}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"full_speed_cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"args": vars(args), "trees": trees, "runs": runs}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
