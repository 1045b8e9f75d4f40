"""Log cleaner throughput (records/s) and peak memory, for few and for many distinct keys.

    python benchmarks/log_cleaner.py                 # 400 k records per case
    python benchmarks/log_cleaner.py --records 2000000

Each case runs in a fresh child process: it builds a partition log of ``records`` records
(batches of 500, ~100-byte JSON values, 1 MiB segments, uncompressed) with keys drawn from
``keys`` distinct keys, converts its sealed segments to Parquet (untimed: the broker's converter
does this anyway), then runs one `LogCleaner.clean_log` pass with I/O throttling off and
reports:

* seconds and records/s of the pass (records read by the copy phase / wall time; the pass reads
  each dirty segment twice, once for the offset map and once to copy);
* records kept, and the offset map's entries and accounted bytes (`OffsetMap.used_bytes`);
* pyarrow's pool peak and the child's peak RSS growth (VmHWM after the pass minus RSS before
  it); with ``--trace`` also tracemalloc's peak of Python allocations (that run is slower).

Prints a table and writes ``benchmarks/results/log_cleaner-<ts>.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = r"""
import json, random, sys, tempfile, time, tracemalloc
from pathlib import Path
import pyarrow as pa
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from workbench.storage import LogConfig, PartitionLog
from workbench.storage.log_cleaner import LogCleaner

records, keys, dedupe, trace = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"

def rss_kb(field):
    return int([l for l in open("/proc/self/status") if l.startswith(field)][0].split()[1])

d = Path(tempfile.mkdtemp(prefix="cleaner-bench-"))
cfg = LogConfig(segment_bytes=1 << 20, cleanup_policy="compact", min_cleanable_dirty_ratio=0.0, hot_segments=0)
log = PartitionLog(d, cfg, topic="bench", partition=0)
rnd = random.Random(1)
now = int(time.time() * 1000)
t0 = time.perf_counter()
for start in range(0, records, 500):
    b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
    for i in range(min(500, records - start)):
        k = rnd.randrange(keys)
        b.append(i, now, b"key-%08d" % k, b'{"id": %d, "n": %d, "payload": "%s"}' % (k, start + i, b"x" * 60), [])
    log.append(bytes(b.build()), now_ms=now)
log._roll()  # everything written is cleanable (the active segment never is)
log.convert_sealed_segments()  # the cleaner takes segments once they are in the Parquet tier
build_s = time.perf_counter() - t0
cleaner = LogCleaner(lambda: [log], io_max_bytes_per_second=0, dedupe_buffer_bytes=dedupe)
pa.default_memory_pool().release_unused()
rss_before = rss_kb("VmRSS:")
if trace:
    tracemalloc.start()
t0 = time.perf_counter()
res = cleaner.clean_log(log, now_ms=now + 1000, force=True)
secs = time.perf_counter() - t0
py_peak = tracemalloc.get_traced_memory()[1] if trace else 0
tracemalloc.stop()
print(json.dumps({
    "records": records, "keys": keys, "build_s": round(build_s, 2), "seconds": round(secs, 3),
    "records_per_s": round(res.records_read / secs) if secs else None,
    "records_read": res.records_read, "records_kept": res.records_read - res.records_removed,
    "segments": res.segments_rewritten, "map_entries": res.map_entries,
    "map_mb": round(res.map_bytes / 2**20, 1), "python_peak_mb": round(py_peak / 2**20, 1) if trace else None,
    "arrow_peak_mb": round(pa.default_memory_pool().max_memory() / 2**20, 1),
    "rss_growth_mb": round((rss_kb("VmHWM:") - rss_before) / 1024, 1), "reason": res.reason,
}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=400_000)
    ap.add_argument("--dedupe-mb", type=int, default=32, help="log.cleaner.dedupe.buffer.size in MiB")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument(
        "--trace", action="store_true", help="also measure Python's peak with tracemalloc (slows the pass 2-4x)"
    )
    args = ap.parse_args()
    cases = [("1 k keys", 1_000), ("100 k keys", 100_000)]
    rows = []
    for name, keys in cases:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(args.records),
                str(keys),
                str(args.dedupe_mb << 20),
                str(int(args.trace)),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        row = {"case": name, **json.loads(proc.stdout.strip().splitlines()[-1])}
        rows.append(row)
    cols = [
        "case",
        "records",
        "seconds",
        "records_per_s",
        "records_kept",
        "map_entries",
        "map_mb",
        "python_peak_mb",
        "arrow_peak_mb",
        "rss_growth_mb",
    ]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).rjust(w) for c, w in zip(cols, widths, strict=True)))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"log_cleaner-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"benchmark": "log_cleaner", "args": vars(args) | {"out": str(args.out)}, "rows": rows}))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
