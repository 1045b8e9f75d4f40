"""Peak memory of the Parquet conversion for a normal and for hostile segments.

    python benchmarks/converter_memory.py
    python benchmarks/converter_memory.py --code-root /path/to/other/checkout   # compare another version

Each case writes a segment file, then converts it in a fresh child process exactly as
the broker's converter does (`workbench.storage.converter.convert_one`) and reports the
child's peak RSS (VmHWM) and time:

* normal: a 16 MiB segment of 100-byte JSON-ish records in batches of 500 (zstd);
* one 1 GiB record: a 33 KB zstd batch holding one 1 GiB value (refused at
  MAX_CONVERT_BATCH_BYTES while decompressing; before the bound it took 8.3 GB);
* 200 k-record batches: a segment of 1,000,000 small records in five batches (decoded in
  row-group chunks, not as one list of a million Python objects).

Prints a table and writes `results/converter_memory-<ts>.json`. The hostile 1 GiB case is
skipped with `--code-root` unless `--old-hostile` is given (an unbounded converter needs
~8 GB for it).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zstandard
from crc32c import crc32c

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MiB = 1 << 20

CHILD = r"""
import json, resource, sys, time
from workbench.storage.converter import convert_one
job = json.loads(sys.argv[1])
t0 = time.perf_counter()
try:
    answer = convert_one(job)
    outcome = "converted"
except Exception as exc:
    outcome = f"refused: {type(exc).__name__}: {str(exc)[:80]}"
elapsed = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"outcome": outcome, "seconds": round(elapsed, 3), "peak_rss_mb": round(int(hwm) / 1024, 1)}))
"""


def varint(n: int) -> bytes:
    z, out = (n << 1) ^ (n >> 63), bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def record(offset_delta: int, value: bytes) -> bytes:
    body = b"\x00" + varint(0) + varint(offset_delta) + varint(-1) + varint(len(value)) + value + varint(0)
    return varint(len(body)) + body


def batch(base: int, records: list[bytes], codec: int = 4) -> bytes:
    payload = b"".join(records)
    if codec == 4:
        payload = zstandard.ZstdCompressor(level=1).compress(payload)
    now = int(time.time() * 1000)
    body = struct.pack(">hiqqqhii", codec, len(records) - 1, now, now, -1, -1, -1, len(records)) + payload
    return struct.pack(">qiibI", base, 9 + len(body), -1, 2, crc32c(body)) + body


def normal_segment() -> tuple[bytes, int]:
    out, base = bytearray(), 0
    while len(out) < 16 * MiB:
        recs = [
            record(i, b'{"id": %d, "user": "u%d", "pad": "%s"}' % (base + i, i % 97, b"x" * 50)) for i in range(500)
        ]
        out += batch(base, recs)
        base += 500
    return bytes(out), base


def huge_record_segment() -> tuple[bytes, int]:
    size = 1024 * MiB
    head = varint(5 + len(varint(size)) + size) + b"\x00\x00\x00" + varint(-1) + varint(size)
    c = zstandard.ZstdCompressor(level=1).compressobj()
    payload = c.compress(head) + b"".join(c.compress(bytes(MiB)) for _ in range(size // MiB))
    payload += c.compress(b"\x00") + c.flush()
    now = int(time.time() * 1000)
    body = struct.pack(">hiqqqhii", 4, 0, now, now, -1, -1, -1, 1) + payload
    return struct.pack(">qiibI", 0, 9 + len(body), -1, 2, crc32c(body)) + body, 1


def many_records_segment() -> tuple[bytes, int]:
    out, base = bytearray(), 0
    for _ in range(5):
        out += batch(base, [record(i, b"v") for i in range(200_000)])
        base += 200_000
    return bytes(out), base


def run_case(name: str, build, code_root: Path, workdir: Path) -> dict:
    data, next_offset = build()
    seg = workdir / f"{name}.log"
    seg.write_bytes(data)
    out_dir = workdir / name
    out_dir.mkdir()
    job = {
        "segment": str(seg),
        "size": len(data),
        "directory": str(out_dir),
        "base_offset": 0,
        "next_offset": next_offset,
        "topic": "bench",
        "partition": 0,
    }
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(job)],
        capture_output=True,
        text=True,
        cwd=code_root,
        timeout=600,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"outcome": f"child failed: {proc.stderr[-200:]}"}
    return {"case": name, "segment_bytes": len(data), **result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--code-root", type=Path, default=ROOT, help="checkout whose workbench package to measure")
    ap.add_argument("--old-hostile", action="store_true", help="also run the 1 GiB case with --code-root")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    cases = [("normal", normal_segment), ("many_records", many_records_segment)]
    if args.code_root.resolve() == ROOT or args.old_hostile:
        cases.insert(1, ("one_1GiB_record", huge_record_segment))
    rows = []
    with tempfile.TemporaryDirectory(prefix="converter-mem-") as tmp:
        for name, build in cases:
            rows.append(run_case(name, build, args.code_root, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(f"{'case':<18} {'segment':>12} {'peak RSS MB':>12} {'seconds':>8}  outcome")
    for r in rows:
        print(
            f"{r['case']:<18} {r['segment_bytes']:>12} {r.get('peak_rss_mb', '-'):>12} "
            f"{r.get('seconds', '-'):>8}  {r['outcome']}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"converter_memory-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps({"meta": {"code_root": str(args.code_root), "cpus": os.cpu_count()}, "rows": rows}, indent=2)
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
