"""Small files after an hour of trickle traffic on a compacted topic, simulated fast.

    python benchmarks/compaction_small_files.py                  # 1 h at 10 records/s, 500 keys
    python benchmarks/compaction_small_files.py --hours 0.1      # quicker

One partition log (the broker's storage classes, in this process) gets ``rate`` records/s of
~100-byte JSON updates over ``keys`` keys for ``hours`` of *simulated* time: every record carries
the simulated clock, segments roll by ``segment.ms`` (60 s here, so an hour makes ~60 segments),
the converter turns sealed segments into Parquet every simulated 10 s, and the log cleaner runs
every simulated 15 s (``log.cleaner.backoff.ms``) as the broker's thread does. The same traffic is
run three ways:

* ``no cleaner``: what a compacted topic looked like before issue 15 (one file per segment, every
  record kept);
* ``cleaner, no merge``: the cleaner rewriting each segment into its own compacted file (the
  behaviour before the merge: files shrink, their count does not, and ``bytes_reclaimed`` can go
  negative because each tiny file pays a Parquet footer);
* ``cleaner + merge``: adjacent cleaned segments grouped into one file up to ``segment.bytes``.

Prints file counts, bytes on disk (Parquet + raw) and records kept, and writes
``benchmarks/results/compaction_small_files-<ts>.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.storage import LogConfig, PartitionLog
from workbench.storage.log_cleaner import LogCleaner

T0 = 1_800_000_000_000


def disk(log: PartitionLog) -> dict[str, int]:
    parquet = [p.stat().st_size for p in log.directory.glob("*.parquet")]
    raw = [p.stat().st_size for p in log.directory.glob("*.log")]
    return {
        "parquet_files": len(parquet),
        "parquet_bytes": sum(parquet),
        "raw_segments": len(raw),
        "raw_bytes": sum(raw),
    }


def simulate(mode: str, hours: float, rate: float, keys: int, seed: int) -> dict:
    directory = Path(tempfile.mkdtemp(prefix=f"small-files-{mode.replace(' ', '-').replace(',', '')}-"))
    config = LogConfig(
        cleanup_policy="compact",
        segment_ms=60_000,
        min_cleanable_dirty_ratio=0.5,  # Kafka's default
        delete_retention_ms=86_400_000,
    )
    log = PartitionLog(directory, config, topic="orders", partition=0)
    cleaner = (
        None
        if mode == "no cleaner"
        else LogCleaner(lambda: [log], io_max_bytes_per_second=0, merge=mode == "cleaner + merge")
    )
    rnd = random.Random(seed)
    seconds = int(hours * 3600)
    per_second = max(1, round(rate))
    passes = reclaimed = removed = 0
    started = time.perf_counter()
    seq = 0
    for sec in range(seconds):
        now = T0 + sec * 1000
        b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
        for i in range(per_second):  # one producer batch per second (linger.ms of a trickle)
            k = rnd.randrange(keys)
            b.append(i, now, b"order-%05d" % k, b'{"id": %d, "n": %d, "status": "%s"}' % (k, seq, b"x" * 50), [])
            seq += 1
        log.append(bytes(b.build()), now_ms=now)
        log.maybe_roll(now)
        if sec % 10 == 9:
            log.convert_sealed_segments()
        if cleaner is not None and sec % 15 == 14:
            res = cleaner.clean_log(log, now_ms=now)
            if res.cleaned:
                passes += 1
                reclaimed += res.bytes_before - res.bytes_after
                removed += res.records_removed
    log.convert_sealed_segments()
    wall = time.perf_counter() - started
    kept = 0
    offset = log.log_start_offset
    from workbench.protocol.records import decode_records, iter_batch_headers

    while offset < log.high_watermark:
        data = bytes(log.read(offset, 1 << 22))
        if not data:
            break
        kept += len(decode_records(data)["offset"])
        offset = max(h.next_offset for h in iter_batch_headers(memoryview(data)))
    row = {
        "mode": mode,
        "simulated_s": seconds,
        "records_written": seq,
        "records_kept": kept,
        "records_removed": removed,
        "cleaner_passes": passes,
        "bytes_reclaimed": reclaimed,
        **disk(log),
        "wall_s": round(wall, 2),
    }
    row["total_bytes"] = row["parquet_bytes"] + row["raw_bytes"]
    log.close()
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--rate", type=float, default=10.0, help="records per simulated second")
    ap.add_argument("--keys", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    modes = ("no cleaner", "cleaner, no merge", "cleaner + merge")
    rows = [simulate(m, args.hours, args.rate, args.keys, args.seed) for m in modes]
    cols = [
        "mode",
        "records_written",
        "records_kept",
        "parquet_files",
        "parquet_bytes",
        "raw_segments",
        "raw_bytes",
        "total_bytes",
        "cleaner_passes",
        "bytes_reclaimed",
        "wall_s",
    ]
    print(f"{args.hours:g} h simulated at {args.rate:g} records/s over {args.keys} keys (segment.ms 60 s)")
    print("  ".join(f"{c:>17}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]!s:>17}" for c in cols))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"compaction_small_files-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps({"benchmark": "compaction_small_files", "args": vars(args) | {"out": str(args.out)}, "rows": rows})
    )
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
