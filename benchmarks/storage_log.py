"""PartitionLog in-process costs: leader append, follower append, raw read, Parquet read, recovery.

    python benchmarks/storage_log.py                 # 10,000 batches of 10 records (1 MiB segments)
    python benchmarks/storage_log.py --batches 2000  # a smoke run

No broker, no sockets: this times the storage layer alone (`workbench.storage.log`
and its parts), so a change there (for example the LogLoader / LocalLog /
ParquetLog split of issue 11) can be compared with the code before it by running
the same script with another checkout first on PYTHONPATH. Prints a table and
writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from aiokafka.record.default_records import DefaultRecordBatchBuilder

import workbench
from workbench.protocol.records import iter_batch_headers
from workbench.storage import LogConfig, PartitionLog

T0 = 1_700_000_000_000


def make_batch(records: int, value_size: int) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
    for i in range(records):
        b.append(i, T0 + i, b"k%d" % i, b"v" * value_size, [])
    return bytes(b.build())


def run_once(tmp: Path, batches: int, records: int, value_size: int) -> dict[str, float]:
    batch = make_batch(records, value_size)
    config = LogConfig(segment_bytes=1024 * 1024, hot_segments=1)
    out: dict[str, float] = {}

    leader = PartitionLog(tmp / "leader", config, topic="t", partition=0)
    t = time.perf_counter()
    for _ in range(batches):
        leader.append(bytearray(batch))
    out["leader_append_us_per_batch"] = (time.perf_counter() - t) / batches * 1e6

    t = time.perf_counter()
    offset = 0
    while offset < leader.high_watermark:
        data = leader.read(offset, 1 << 20)
        offset = list(iter_batch_headers(bytes(data)))[-1].last_offset + 1
    out["raw_read_ms_all"] = (time.perf_counter() - t) * 1e3

    follower = PartitionLog(tmp / "follower", config, topic="t", partition=0, hw_tracks_leo=False)
    t = time.perf_counter()
    offset = 0
    while offset < leader.log_end_offset:
        data = leader.read(offset, 1 << 20)
        info = follower.append_as_follower(data)
        offset = info.last_offset + 1
    out["follower_append_ms_all"] = (time.perf_counter() - t) * 1e3
    follower.close()

    t = time.perf_counter()
    leader.convert_sealed_segments()
    out["convert_ms_all"] = (time.perf_counter() - t) * 1e3

    t = time.perf_counter()
    offset = 0
    start = leader.active_segment.base_offset
    while offset < start:
        data = leader.read(offset, 1 << 20)
        offset = list(iter_batch_headers(bytes(data)))[-1].last_offset + 1
    out["parquet_read_ms_all"] = (time.perf_counter() - t) * 1e3
    leader.close()

    t = time.perf_counter()
    again = PartitionLog(tmp / "leader", config, topic="t", partition=0)
    out["recovery_ms"] = (time.perf_counter() - t) * 1e3
    again.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=10_000)
    ap.add_argument("--records", type=int, default=10)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="logbench-") as tmp:
            runs.append(run_once(Path(tmp), args.batches, args.records, args.value_size))
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"workbench from {Path(workbench.__file__).parent}  ({args.batches} batches x {args.records} records)")
    print(f"{'metric':32} {'median':>10}   runs")
    for k, v in medians.items():
        print(f"{k:32} {v:10.2f}   " + " ".join(f"{r[k]:.2f}" for r in runs))
    result = {
        "benchmark": "storage_log",
        "label": args.label,
        "workbench": str(Path(workbench.__file__).parent),
        "args": vars(args),
        "python": platform.python_version(),
        "median": medians,
        "runs": runs,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = time.strftime("%Y%m%d-%H%M%S") + "-storage_log" + (f"-{args.label}" if args.label else "") + ".json"
    (out / name).write_text(json.dumps(result, indent=2))
    print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
