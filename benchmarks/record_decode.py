"""The Parquet converter's decode and write, per record: the compiled decoder against aiokafka's reader.

    python benchmarks/record_decode.py
    python benchmarks/record_decode.py --segment-mib 16 --repeat 5

Builds a 16 MiB segment of 100-byte records in batches of 500 (uncompressed, as a producer with
linger sends them; with and without one header per record), then times, in this process:

* ``decode``: `record_tables.decode_table` with the compiled decoder (`protocol/_record_columns.c`)
  and, its peer, with the pure-Python path (aiokafka's reader, a list per column, `pa.array`);
* ``write``: writing the decoded table as a sealed file (zstd) and as a tail file (snappy), the
  other half of the converter's CPU per record.

Best of ``--repeat`` runs, µs per record. Prints a table and writes `results/record_decode-<ts>.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import tempfile
import time
from pathlib import Path

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.storage import parquet_tier, record_tables

HERE = Path(__file__).resolve().parent


def batch(base_offset: int, n: int, headers: bool, rnd: random.Random) -> bytes:
    b = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=0, producer_id=7, producer_epoch=0, base_sequence=base_offset,
        batch_size=1 << 30,
    )  # fmt: skip
    now = int(time.time() * 1000)
    for i in range(n):
        value = rnd.randbytes(50) + b"x" * 50
        b.append(i, timestamp=now + i, key=None, value=value, headers=[("trace", b"abc")] if headers else [])
    out = bytearray(b.build())
    struct.pack_into(">q", out, 0, base_offset)
    return bytes(out)


def segment(mib: int, headers: bool) -> tuple[bytes, int]:
    rnd = random.Random(19)
    out, offset = bytearray(), 0
    while len(out) < mib << 20:
        out += batch(offset, 500, headers, rnd)
        offset += 500
    return bytes(out), offset


def best(fn, repeat: int) -> float:
    fn()  # warm-up: the first call imports pyarrow and its compute kernels
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(buf: bytes, n: int, headers: bool, compiled, repeat: int) -> dict:
    """One segment: decode with each path, then write the decoded table as a sealed and as a tail file."""

    def decode(columns) -> float:
        record_tables._COLUMNS = columns
        try:
            return 1e6 * best(lambda: parquet_tier.decode_table(buf), repeat) / n
        finally:
            record_tables._COLUMNS = compiled

    fast, pure = decode(compiled), decode(None)
    table = parquet_tier.decode_table(buf)
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        sealed = best(lambda: parquet_tier.write_table_file(directory / "s.parquet", 0, n, table, -1), repeat)
        tail = best(lambda: parquet_tier.write_table_file(directory / "t.parquet", 0, n, table, -1, tail=True), repeat)
    return {
        "records": n,
        "segment_bytes": len(buf),
        "headers": headers,
        "decode_compiled_us": round(fast, 3),
        "decode_pure_python_us": round(pure, 3),
        "speedup": round(pure / fast, 1),
        "write_sealed_zstd_us": round(1e6 * sealed / n, 3),
        "write_tail_snappy_us": round(1e6 * tail / n, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segment-mib", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    compiled = record_tables._load_columns()
    if compiled is None:
        raise SystemExit("workbench.protocol._record_columns is not built (pip install -e . with a C compiler)")
    rows = [measure(*segment(args.segment_mib, headers), headers, compiled, args.repeat) for headers in (False, True)]
    header = f"{'headers':>8} {'records':>8} {'compiled':>9} {'pure':>7} {'x':>5} {'sealed':>7} {'tail':>6}"
    print(header + "  (µs per record)")
    for r in rows:
        print(
            f"{r['headers']!s:>8} {r['records']:>8} {r['decode_compiled_us']:>9} {r['decode_pure_python_us']:>7} "
            f"{r['speedup']:>5} {r['write_sealed_zstd_us']:>7} {r['write_tail_snappy_us']:>6}"
        )
    out = Path(args.out) / f"record_decode-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"loadavg": os.getloadavg(), "repeat": args.repeat, "segment_mib": args.segment_mib}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
