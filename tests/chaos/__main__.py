"""`python -m tests.chaos --minutes N`: a long chaos run; prints a table and writes JSON.

    python -m tests.chaos --minutes 20                       # every nemesis, mixed
    python -m tests.chaos --minutes 2 --nemeses kill-leader,pause-followers --seed 7
    python -m tests.chaos --minutes 5 --compaction --nemeses ci  # plus a compacted topic, judged per key
    ap.add_argument(
    python -m tests.chaos --minutes 2 --workload txn --nemeses kill-leader,kill-coordinator
    python -m tests.chaos --list

Exits 1 when the checker finds an anomaly.
"""

from __future__ import annotations

import argparse
import sys

from tests.chaos.nemesis import CI_MIX, CI_TXN_MIX, NEMESES
from tests.chaos.runner import WORKLOADS, Settings, run, write_json


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="how long the faults go on (default 5)")
    ap.add_argument(
        "--nemeses", default="all", help="comma-separated names, 'all' (default) or 'ci' (the CI mix); see --list"
    )
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--json", default="chaos-result.json", help="where to write the result (default %(default)s)")
    ap.add_argument("--history", default=None, help="also write the full history (every send and poll) here")
    ap.add_argument("--partitions", type=int, default=Settings.partitions)
    ap.add_argument("--producers", type=int, default=Settings.producers)
    ap.add_argument("--rate", type=float, default=Settings.rate, help="records/s per producer")
    ap.add_argument("--hostile-scale", type=float, default=Settings.hostile_scale)
    ap.add_argument("--data-dir", default=None, help="keep the cluster's files here (default: a temporary dir)")
    ap.add_argument(
        "--compaction",
        action="store_true",
        help="also run the compacted-topic workload (latest value per key kept, no key resurrected)",
    )
    ap.add_argument(
        "--workload",
        choices=WORKLOADS,
        default=Settings.workload,
        help="plain (idempotent sends), txn (transactions committed and aborted, read_committed reads) or mixed",
    )
    ap.add_argument("--txn-rate", type=float, default=Settings.txn_rate, help="transactions/s per txn producer")
    ap.add_argument("--list", action="store_true", help="list the nemeses and workloads, and exit")
    args = ap.parse_args(argv)
    if args.list:
        for name in sorted(NEMESES):
            print(f"{name}{'   (ci)' if name in CI_MIX else ''}{'   (ci txn)' if name in CI_TXN_MIX else ''}")
        print(f"\nworkloads (--workload): {', '.join(WORKLOADS)}")
        return 0
    if args.nemeses == "all":
        names = sorted(NEMESES)
    elif args.nemeses == "ci":
        names = list(CI_MIX)
    else:
        names = [n.strip() for n in args.nemeses.split(",") if n.strip()]
    unknown = [n for n in names if n not in NEMESES]
    if unknown:
        ap.error(f"unknown nemeses {unknown}; --list shows them")
    result = run(
        Settings(
            seconds=args.minutes * 60,
            nemeses=names,
            seed=args.seed,
            partitions=args.partitions,
            producers=args.producers,
            rate=args.rate,
            hostile_scale=args.hostile_scale,
            data_dir=args.data_dir,
            workload=args.workload,
            txn_rate=args.txn_rate,
            keep_data=args.data_dir is not None,
            compaction=args.compaction,
        )
    )
    print(result.table())
    write_json(result, args.json)
    print(f"\nresult written to {args.json}")
    if args.history:
        result.history.save(args.history)
    return 0 if result.report.valid else 1


if __name__ == "__main__":
    sys.exit(main())
