"""The compiled record walk against aiokafka's reader (issue 19): same decisions, and the time per record.

    python benchmarks/record_walk_proto.py    # check against the pure-Python walk, time both, write JSON

`protocol.records.check_records` walked every record of a batch with aiokafka's C reader, which makes a
Python object (and a copy of the value) per record: about 0.2-0.3 µs per record, more than the whole
0.15 µs/record budget of issue 19 at RF=1. Kafka's LogValidator walks every record too (its
`assignOffsetsNonCompressed` parses each one), so the walk stays; `workbench/protocol/_record_walk.c`
(first a prototype here, now the package's optional C extension) does the same checks (lengths,
varints, offset deltas 0..n-1, key/value/header bounds, nothing left over) without allocating. This
script uses the built extension (or compiles that source with the interpreter's own compiler settings
into a temporary directory when the install did not build it), checks that it refuses exactly the
batches the pure-Python walk refuses (a fuzz of single-byte changes inside the records with the CRC
recomputed, so only the walk can catch them; tests/unit/test_record_walk.py holds the same property),
and times both by CPU time. For the broker-level figure use
`full_speed_cpu.py --trees before=<a tree without it>,after=.`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "workbench" / "protocol" / "_record_walk.c"
sys.path.insert(0, str(HERE.parent))

from crc32c import crc32c

from workbench.protocol import records as R
from workbench.protocol.blocking_client import make_batch
from workbench.protocol.errors import KafkaProtocolError


def build(out_dir: Path) -> Path:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = out_dir / f"_record_walk{suffix}"
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    cmd = [*cc, "-O2", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}", str(SOURCE), "-o", str(target)]
    subprocess.run(cmd, check=True)
    return target


def load(path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_record_walk", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def python_refuses(buf: bytes, h: R.BatchHeader) -> bool:
    try:
        R._check_records_python(buf, h, None)
    except KafkaProtocolError:
        return True
    return False


def c_refuses(walk, buf: bytes, h: R.BatchHeader) -> bool:  # type: ignore[no-untyped-def]
    try:
        return walk(buf, h.position + R.HEADER_SIZE, h.end, h.records_count) >= 0
    except ValueError:
        return True


def fuzz(walk, cases: int, seed: int) -> dict:  # type: ignore[no-untyped-def]
    """Single-byte changes after the header, CRC recomputed: do both walks refuse the same batches?"""
    rnd = random.Random(seed)
    agree = refused = 0
    disagreements = []
    for _ in range(cases):
        n = rnd.choice([1, 2, 5, 30])
        values = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 20))) for _ in range(n)]
        key = rnd.choice([None, b"k", b"key-xyz"])
        buf = bytearray(make_batch(values, key=key))
        pos = rnd.randrange(R.HEADER_SIZE, len(buf))
        buf[pos] = rnd.randrange(256)
        buf[R.CRC_OFFSET : R.CRC_OFFSET + 4] = crc32c(bytes(buf[R.ATTRIBUTES_OFFSET :])).to_bytes(4, "big")
        data = bytes(buf)
        h = R.validate_produce_batches(make_batch(values, key=key))[0]  # the header is unchanged
        p, c = python_refuses(data, h), c_refuses(walk, data, h)
        refused += p
        if p == c:
            agree += 1
        elif len(disagreements) < 10:
            disagreements.append({"n": n, "byte": pos, "python_refuses": p, "c_refuses": c})
    return {"cases": cases, "agree": agree, "python_refused": refused, "disagreements": disagreements}


def cpu_us(f, n: int) -> float:  # type: ignore[no-untyped-def]
    f()
    best = float("inf")
    for _ in range(3):
        c0 = time.process_time()
        for _ in range(n):
            f()
        best = min(best, (time.process_time() - c0) / n * 1e6)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fuzz", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="record-walk-") as tmp:
        try:
            from workbench.protocol._record_walk import walk
        except ImportError:
            walk = load(build(Path(tmp))).walk
        checked = fuzz(walk, args.fuzz, args.seed)
        rows = []
        for n in (1, 85, 1000, 10_000):
            buf = make_batch([b"x" * 100] * n)
            h = R.validate_produce_batches(buf)[0]
            reps = max(20, 200_000 // n)
            py = cpu_us(lambda buf=buf, h=h: R._check_records_python(buf, h, None), reps)
            c = cpu_us(lambda buf=buf, h=h: walk(buf, h.position + R.HEADER_SIZE, h.end, h.records_count), reps)
            rows.append(
                {
                    "records": n,
                    "python_us": round(py, 2),
                    "c_us": round(c, 2),
                    "python_us_per_record": round(py / n, 4),
                    "c_us_per_record": round(c / n, 4),
                }
            )
    print(f"fuzz: {checked['agree']}/{checked['cases']} agree ({checked['python_refused']} refused by check_records)")
    for d in checked["disagreements"]:
        print("  disagreement:", d)
    print(f"{'records':>8} {'aiokafka walk µs':>17} {'C walk µs':>10} {'µs/record':>10} {'C µs/record':>12}")
    for r in rows:
        per = f"{r['python_us_per_record']:>10} {r['c_us_per_record']:>12}"
        print(f"{r['records']:>8} {r['python_us']:>17} {r['c_us']:>10} {per}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"record_walk_proto-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"fuzz": checked, "timings": rows}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
