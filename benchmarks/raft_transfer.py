"""How fast the controller quorum changes leader: a handover (TimeoutNow) and a failover.

    python benchmarks/raft_transfer.py              # 10 runs of each
    python benchmarks/raft_transfer.py --runs 30

Three `RaftServer`s on 127.0.0.1 in one asyncio loop (each with its own directory and sockets,
as in tests/integration/test_raft_quorum.py). *transfer*: `transfer_leadership(target)` until
the target leads, the controlled-shutdown path, which needs no election timeout (the claim the
quorum test used to assert as `< 0.3 s`). *failover*: the leader's server closes, until a new
leader is known to the survivors: bounded by the election timeout (300-600 ms) plus pre-vote.
Prints a table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's workbench

from workbench.controller.raft import RaftServer


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


async def wait_leader(servers: dict[int, RaftServer], timeout: float = 10.0) -> RaftServer:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = [s for s in servers.values() if s.is_leader]
        if len(leaders) == 1 and all(s.leader_id == leaders[0].node_id for s in servers.values()):
            return leaders[0]
        await asyncio.sleep(0.002)
    raise RuntimeError("no leader")


async def one_run(directory: Path) -> tuple[float, float]:
    voters = {i: ("127.0.0.1", p) for i, p in zip((1, 2, 3), free_ports(3), strict=True)}
    servers = {i: RaftServer(i, voters, directory / f"raft-{i}") for i in voters}
    for s in servers.values():
        await s.start()
    try:
        leader = await wait_leader(servers)
        await leader.propose({"t": "x"})
        target = next(i for i in servers if i != leader.node_id)
        started = time.perf_counter()
        if await leader.transfer_leadership(target) != target:
            raise RuntimeError("transfer failed")
        await wait_leader(servers)
        transfer = time.perf_counter() - started
        leader = servers[target]
        started = time.perf_counter()
        await servers.pop(leader.node_id).close()
        await wait_leader(servers)
        failover = time.perf_counter() - started
        return transfer, failover
    finally:
        for s in servers.values():
            await s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    transfers, failovers = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="raftbench-") as tmp:
            t, f = asyncio.run(one_run(Path(tmp)))
        transfers.append(t)
        failovers.append(f)
    rows = []
    for name, xs in (("transfer", transfers), ("failover", failovers)):
        rows.append(
            {
                "kind": name,
                "runs": len(xs),
                "median_ms": round(statistics.median(xs) * 1000, 1),
                "max_ms": round(max(xs) * 1000, 1),
            }
        )
    print(f"{'kind':<10}{'runs':>6}{'median ms':>12}{'max ms':>10}")
    for r in rows:
        print(f"{r['kind']:<10}{r['runs']:>6}{r['median_ms']:>12}{r['max_ms']:>10}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = out / f"{time.strftime('%Y%m%d-%H%M%S')}-raft-transfer.json"
    path.write_text(json.dumps({"meta": meta, "raft_transfer": rows}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
