"""Broker CPU per record at a fixed low rate (RF=3 acks=all), two code trees interleaved, with profiles.

    python benchmarks/broker_cpu.py                                   # this tree, 10k records/s, RF=3, 3 runs
    python benchmarks/broker_cpu.py --trees before=/tmp/base,after=.  # A/B: runs alternate between the trees
    python benchmarks/broker_cpu.py --sample --repeats 1              # CPU-time profile of the brokers (profiles/)

The load is `latency_by_rate.measure` (6 partitions, linger.ms=0, max.in.flight=5, librdkafka's
e2e producer and consumer). A broker runs `python -m workbench.broker` from its working directory, so
a "tree" is any directory holding a `workbench/` package (`git archive <commit> workbench | tar -x -C
DIR` makes one): the brokers of that run use its code. Runs of the trees alternate (ABBA...) so a
change in the shared machine's load hits each tree alike; what is compared is CPU seconds from /proc
per record, summed over the brokers (their converter children are reported apart), which a loaded
machine perturbs far less than latency. Prints a table with the load average; writes
`results/broker_cpu-<ts>.json`.

`--sample` profiles the brokers by CPU time (`cpu_sampler/sitecustomize.py`: SIGPROF on
ITIMER_PROF, so a broker waiting for a core on a loaded machine is not sampled, unlike py-spy's
wall-clock samples, `--profile`) for `--seconds` in the middle of the run, and writes per tree the
top frames by self and inclusive CPU, summed over the brokers, to `profiles/lowrate-*.cpu.txt`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from latency_by_rate import measure
from proc_stats import children, cpu_s


def _children_cpu(pids: dict) -> float:
    return sum(cpu_s(c) or 0.0 for pid in pids.values() if pid for c in children(pid))


SAMPLER = HERE / "cpu_sampler"


def summarize(paths: list[Path], title: str, out: Path, top: int = 40) -> dict:
    """Top frames by self and inclusive CPU samples over the collapsed stacks in `paths`."""
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            total += n
            self_t[frames[-1]] += n
            for f in set(frames):
                incl[f] += n
    lines = [f"# {title}", f"# {total} CPU samples (1 per ms of broker CPU), {len(paths)} brokers", ""]
    lines += ["## top frames by self CPU"] + [f"{100 * c / total:6.1f}%  {f}" for f, c in self_t.most_common(top)]
    lines += ["", "## top frames by inclusive CPU"]
    lines += [f"{100 * c / total:6.1f}%  {f}" for f, c in incl.most_common(top)]
    out.write_text("\n".join(lines) + "\n")
    return {
        "samples": total,
        "file": str(out),
        "top_self": [[f, round(100 * c / total, 1)] for f, c in self_t.most_common(10)],
    }


@contextlib.contextmanager
def _around(
    pids: dict, *, args: argparse.Namespace, label: str, prefix: Path, kids: dict, profile: dict
) -> Iterator[None]:
    """While the producer runs: the converter children's CPU, and the profilers asked for."""
    live = {f"broker{k}": v for k, v in pids.items() if v}
    kids["before"] = _children_cpu(pids)
    sampler = None
    if args.sample:

        def sample() -> None:
            time.sleep(args.warmup)
            for pid in live.values():
                os.kill(pid, signal.SIGRTMIN)
            time.sleep(args.seconds * 0.75)
            for pid in live.values():
                os.kill(pid, signal.SIGRTMIN + 1)

        sampler = threading.Thread(target=sample)
        sampler.start()
    if args.profile:
        from run_all import Profiler

        with Profiler(live, label, Path(args.profile_dir), extra=("--gil",)) as prof:
            yield
        profile.update(prof.report())
    else:
        yield
    if sampler is not None:
        sampler.join()
        time.sleep(0.5)
        files = [f for f in (Path(f"{prefix}.{pid}.collapsed") for pid in live.values()) if f.exists()]
        profile["cpu"] = summarize(
            files,
            f"CPU samples of the brokers, {label}, load {os.getloadavg()[0]:.1f}",
            Path(args.profile_dir) / f"{label}.cpu.txt",
        )
        merged: Counter[str] = Counter()
        for f in files:
            for line in f.read_text().splitlines():
                stack, _, n = line.rpartition(" ")
                merged[stack] += int(n)
            f.unlink()
        (Path(args.profile_dir) / f"{label}.cpu.collapsed.txt").write_text(
            "".join(f"{k} {v}\n" for k, v in merged.most_common())
        )
    kids["after"] = _children_cpu(pids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trees", default=f"this={HERE.parent}", help="name=dir,... (dirs holding workbench/)")
    parser.add_argument("--rate", type=int, default=10000)
    parser.add_argument("--rf", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="py-spy record the brokers (run_all.Profiler)")
    parser.add_argument("--sample", action="store_true", help="CPU-time profile of the brokers (cpu_sampler/)")
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="librdkafka's default in-flight (1,000,000) and fetch.wait.max.ms (500), as run_all's defaults row",
    )
    parser.add_argument("--profile-dir", default=str(HERE / "profiles"))
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    trees = dict(item.split("=", 1) for item in args.trees.split(","))
    records = int(args.rate * (args.seconds + args.warmup))
    cwd = os.getcwd()
    if args.sample:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SAMPLER), os.environ.get("PYTHONPATH")]))
    runs = []
    for i in range(args.repeats):
        order = list(trees) if i % 2 == 0 else list(reversed(trees))
        for name in order:
            tree = Path(trees[name]).resolve()
            assert (tree / "workbench" / "broker" / "__main__.py").exists(), tree
            label = f"lowrate-rf{args.rf}-{args.rate}-{name}"
            prefix = Path(args.profile_dir) / f".samples-{name}-{i}"
            if args.sample:
                Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
                os.environ["WB_CPU_SAMPLE"] = str(prefix)  # read by the brokers' sitecustomize at start
            kids: dict[str, float] = {}
            profile: dict = {}
            around = functools.partial(_around, args=args, label=label, prefix=prefix, kids=kids, profile=profile)
            load_before = os.getloadavg()
            os.chdir(tree)
            try:
                row = measure(
                    args.rf,
                    args.rate,
                    args.seconds,
                    args.warmup,
                    around=around,
                    max_in_flight=0 if args.defaults else 5,
                    fetch_wait_ms=500 if args.defaults else 10,
                )
            finally:
                os.chdir(cwd)
            broker_cpu = sum(row["broker_cpu_s"].values())
            row.update(
                tree=name,
                repeat=i,
                records=records,
                broker_us_per_record=round(broker_cpu / records * 1e6, 1),
                children_cpu_s=round(kids.get("after", 0.0) - kids.get("before", 0.0), 2),
                loadavg_before=[round(x, 2) for x in load_before],
                loadavg_after=[round(x, 2) for x in os.getloadavg()],
            )
            if profile:
                row["profile"] = profile
            runs.append(row)
            print(
                f"{name:>8} run {i}: {row['broker_us_per_record']} us/record, cores {row['broker_cores_busy']}, "
                f"p50 {row['p50_ms']} p99 {row['p99_ms']} ms, load {row['loadavg_before'][0]}",
                flush=True,
            )
    print(
        f"{'tree':>8} {'run':>3} {'us/rec':>7} {'cores':>6} {'child s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'ack p50':>7} {'ack p99':>7} {'load 1m':>7}"
    )
    for r in runs:
        print(
            f"{r['tree']:>8} {r['repeat']:>3} {r['broker_us_per_record']:>7} {r['broker_cores_busy']:>6} "
            f"{r['children_cpu_s']:>7} {r['p50_ms']:>7} {r['p99_ms']:>7} {r['ack_p50_ms']:>7} {r['ack_p99_ms']:>7} "
            f"{r['loadavg_before'][0]:>7}"
        )
    summary = {}
    for name in trees:
        mine = [r for r in runs if r["tree"] == name]
        summary[name] = {
            k: round(statistics.median(r[k] for r in mine), 2)
            for k in ("broker_us_per_record", "broker_cores_busy", "p50_ms", "p99_ms", "ack_p50_ms", "ack_p99_ms")
        }
        print(f"median, {name}: {summary[name]}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"broker_cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "rate": args.rate,
                "rf": args.rf,
                "trees": trees,
                "cpus": os.cpu_count(),
                "runs": runs,
                "median": summary,
            },
            indent=1,
        )
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
