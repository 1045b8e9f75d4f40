"""Brokers' CPU samples by stage of an acks=all round, from collapsed stacks (py-spy raw or cpu_sampler).

    python benchmarks/profile_stages.py benchmarks/profiles/lowrate-rf3-10000-this-broker*.collapsed.txt
    python benchmarks/profile_stages.py FILES --cpu-us-per-record 95     # also in µs of CPU per record

Each stack goes to the first stage whose rule matches (rules in order, most specific first), so the
shares add up to 100 %. With `--cpu-us-per-record` (the brokers' CPU per record from /proc, e.g.
`broker_cpu.py`'s figure), each share is also given in µs per record.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

# (stage, substrings any of which puts a stack there); checked in order.
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("Raft quorum and controller channel", ("controller/raft", "raft/server", "controller_channel", "quorum.py")),
    ("follower: decode Fetch response", ("fetch_response", "FetchResponse")),
    ("follower: append", ("append_as_follower",)),
    ("follower: flush / HW / log start", ("maybe_update_high_watermark", "_follow_log_start", "flusher")),
    ("follower: encode next Fetch", ("encode_fetch_request", "_encode_follower_fetch", "_build_request", "build (")),
    ("follower: fetcher loop, socket, futures", ("ReplicaFetcherManager", "network_client")),
    ("leader: Produce validate + append", ("log_validator", "PartitionLog.append", "LogSegment.append")),
    ("leader: acks=all wait and HW advance", ("wait_for_high_watermark", "maybe_advance_high_watermark", "_wake")),
    ("leader: Produce handler, rest", ("handlers/produce.py",)),
    ("leader: Fetch read (logs, sessions)", ("_read_all", "fetch_session", "FetchSessionCache")),
    ("leader: Fetch handler, rest (long-poll wait)", ("handlers/fetch.py", "wait_for_data")),
    ("request decode", ("decode_request", "codegen_decode")),
    ("response encode", ("fast_encode", "encode_response", "encode (")),
    ("network: frames in, responses out", ("broker/server.py",)),
    ("background loops (maintenance, conversion, flush, groups)", ("broker.py", "log_flusher", "group", "converter")),
]


def stage_of(stack: str) -> str:
    for stage, needles in RULES:
        if any(n in stack for n in needles):
            return stage
    return "other (event loop, timers, asyncio)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--cpu-us-per-record", type=float, default=0.0)
    args = parser.parse_args(argv)
    counts: Counter[str] = Counter()
    for path in args.files:
        for line in path.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if stack and n.isdigit():
                counts[stage_of(stack)] += int(n)
    total = sum(counts.values()) or 1
    print(f"{total} samples in {len(args.files)} files")
    for stage, n in counts.most_common():
        per = f"  {args.cpu_us_per_record * n / total:6.1f} µs/record" if args.cpu_us_per_record else ""
        print(f"{100 * n / total:6.1f}%  {stage}{per}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
