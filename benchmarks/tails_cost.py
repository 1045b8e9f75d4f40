"""Tail files on vs off (issue 17), side by side: produce ack latency at a fixed rate and flat-out
produce throughput, in ABBA order, several pairs.

    python benchmarks/tails_cost.py                          # RF=1 and RF=3, 10,000 rec/s, 2 ABBA pairs
    python benchmarks/tails_cost.py --rf 1 --pairs 3 --seconds 6 --no-throughput

Latency: `latency_by_rate.measure` (a fresh cluster per run; `perf_client.py` producer, 6
partitions, acks=all at RF=3, acks=1 at RF=1) with ``parquet_tail_ms`` 1000 (on, the default) or 0
(off); each ABBA block runs on, off, off, on, so a drift of the machine's load over the block hits
both sides alike. Throughput: `lakehouse_freshness.throughput` (one broker, flat out) in the same
order. The load average is printed per run: on the shared 2-core machine the spread between runs
of the same setting is the noise floor to read the difference against. The CPU time of the
brokers' converter children (`workbench.storage.converter`: tail files and sealed conversions)
during each latency run is reported per produced record (``converter_us_per_record``), a figure
that load does not inflate the way it does latencies. Writes ``results/tails_cost-<ts>.json``.

To compare two trees (issue 17: before and after a change), run each tree's copy of this script
with ``PYTHONPATH`` set to that tree (the brokers inherit it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from lakehouse_freshness import throughput
from latency_by_rate import measure

ON, OFF = 1000, 0
_TICK = os.sysconf("SC_CLK_TCK")


def _converters(parents: set[int]) -> dict[int, float]:
    """CPU seconds (user + system) of every converter child of ``parents``, by pid."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) in parents and b"workbench.storage.converter" in cmd:
            out[int(d.name)] = (int(fields[11]) + int(fields[12])) / _TICK
    return out


class ConverterCpu:
    """`measure`'s ``around``: the converter children's CPU while the producer runs."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def __call__(self, pids: dict[str, int]) -> Iterator[None]:
        parents = set(pids.values())
        before = _converters(parents)
        yield
        after = _converters(parents)
        self.seconds = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rf", default="1,3")
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--pairs", type=int, default=2, help="ABBA blocks (each: on, off, off, on)")
    ap.add_argument("--records", type=int, default=500_000, help="records per throughput run")
    ap.add_argument("--no-throughput", action="store_true")
    args = ap.parse_args()
    runs: list[dict] = []
    order = [ON, OFF, OFF, ON] * args.pairs
    for rf in [int(x) for x in args.rf.split(",")]:
        for tail_ms in order:
            conv = ConverterCpu()
            r = measure(rf, args.rate, args.seconds, 2.0, config={"parquet_tail_ms": tail_ms}, around=conv)
            r.update(kind="latency", tails="on" if tail_ms else "off", loadavg_1m=round(os.getloadavg()[0], 1))
            # records produced: the rate over the warm-up (2 s) and the measured seconds
            r.update(
                converter_cpu_s=round(conv.seconds, 2),
                converter_us_per_record=round(conv.seconds * 1e6 / (args.rate * (args.seconds + 2.0)), 2),
            )
            runs.append(r)
            print(
                f"latency RF={rf} tails {r['tails']:<3} ack p50 {r['ack_p50_ms']} ms p99 {r['ack_p99_ms']} ms "
                f"(e2e p50 {r['p50_ms']} p99 {r['p99_ms']}); converter {r['converter_us_per_record']} us/record; "
                f"load {r['loadavg_1m']}",
                flush=True,
            )
    if not args.no_throughput:
        for tail_ms in order:
            r = throughput(args.records, tail_ms)
            r.update(kind="throughput", tails="on" if tail_ms else "off", loadavg_1m=round(os.getloadavg()[0], 1))
            runs.append(r)
            print(f"throughput tails {r['tails']:<3} {r}", flush=True)
    print("\nsummary (median [min-max] over the runs of each setting):")
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["kind"], r.get("rf", 1), r["tails"]), []).append(r)
    for (kind, rf, tails), rs in sorted(groups.items()):
        latency_keys = ("ack_p50_ms", "ack_p99_ms", "converter_us_per_record")
        keys = latency_keys if kind == "latency" else tuple(k for k in rs[0] if "per_s" in k)
        parts = []
        for k in keys:
            xs = [float(r[k]) for r in rs]
            parts.append(f"{k} {statistics.median(xs):.1f} [{min(xs):.1f}-{max(xs):.1f}]")
        loads = [r["loadavg_1m"] for r in rs]
        print(f"  {kind:<10} RF={rf} tails {tails:<3}: {', '.join(parts)}; load {min(loads)}-{max(loads)}")
    out = HERE / "results" / f"tails_cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"rate": args.rate, "seconds": args.seconds, "runs": runs}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
