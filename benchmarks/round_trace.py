"""Where one acknowledged produce's time goes at RF=3 acks=all: stage by stage, from the brokers' own timestamps.

    python benchmarks/round_trace.py                    # 10,000 records/s for 8 s, as latency_by_rate.py
    python benchmarks/round_trace.py --rate 1000 --seconds 5

Runs `latency_by_rate.measure` (librdkafka producer and consumer, 6 partitions, linger.ms=0,
max.in.flight=5) with `WORKBENCH_ROUND_TRACE` set, so every broker writes its events
(`workbench/broker/round_trace.py`), then follows each appended batch through them:

    client queue       the batch's CreateTime (librdkafka stamps it at produce()) to the leader's handler
    receive→append     the leader's Produce handler: decode done → validated and appended
    append→fetch out   until the leader answers the follower's waiting long-poll Fetch with the batch
    fetch out→frame    the answer crossing the socket until the follower's loop has the frame
    frame→decoded      the follower decodes the Fetch response (kafka-python schema)
    decoded→appended   the follower appends
    appended→next fetch  until the follower sends its next Fetch (which carries its new log end offset)
    next fetch→leader  that Fetch crossing the socket until the leader's handler runs
    leader→HW          the leader records the follower's offset and advances the high watermark
    HW→ack             the waiting Produce resumes and its response is built
    ack→consumer       (beside the produce path) until a consumer Fetch returns the batch

Of the two followers, the stages shown are the one whose fetch moved the high watermark past the
batch (the later one). All timestamps are CLOCK_MONOTONIC, shared by the processes of one machine;
the client-queue stage uses the wall clock at millisecond resolution. Prints a table of medians and
p90/p99 per stage and writes `results/round_trace-<ts>.json`.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from latency_by_rate import measure

HERE = Path(__file__).resolve().parent

STAGES = [
    "client queue",
    "receive→append",
    "append→fetch out",
    "fetch out→frame",
    "frame→decoded",
    "decoded→appended",
    "appended→next fetch",
    "next fetch→leader",
    "leader→HW",
    "HW→ack",
]


def load(trace_dir: Path, node_of_pid: dict[int, int]) -> dict[int, list[list]]:
    events: dict[int, list[list]] = defaultdict(list)
    for f in trace_dir.glob("*.trace"):
        node = node_of_pid.get(int(f.stem))
        if node is None:
            continue
        for line in f.read_text().splitlines():
            try:
                events[node].append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut by the broker's exit
    for evs in events.values():
        evs.sort(key=lambda e: e[0])
    return events


class Index:
    """One node's events of one kind, by time, for 'the first such event after t that matches'."""

    def __init__(self, events: list[list]) -> None:
        self.events = events
        self.times = [e[0] for e in events]

    def first_after(self, t: int, match, limit: int = 5000) -> list | None:
        i = bisect.bisect_left(self.times, t)
        for e in self.events[i : i + limit]:
            if match(e):
                return e
        return None


def follow(events: dict[int, list[list]], fetcher_node: dict[str, int]) -> list[dict]:
    """Per appended batch, the time of each stage (ns) along the follower that moved the HW."""
    by_kind: dict[tuple[int, str], list[list]] = defaultdict(list)
    for node, evs in events.items():
        for e in evs:
            by_kind[(node, e[1])].append(e)
    idx = {k: Index(v) for k, v in by_kind.items()}
    nodes = sorted(events)
    out = []
    for leader in nodes:
        for ev in by_kind.get((leader, "append"), []):
            row = _follow_batch(idx, nodes, leader, ev, fetcher_node)
            if row is not None:
                out.append(row)
    return out


def _follow_batch(idx: dict, nodes: list[int], leader: int, ev: list, fetcher_node: dict[str, int]) -> dict | None:
    t_app, _, topic, part, base, last, t_recv, queue_ms = ev
    if base < 0:
        return None
    empty = Index([])

    def find(node: int, kind: str, t: int, match) -> list | None:
        return idx.get((node, kind), empty).first_after(t, match)

    def has(parts: list, pred) -> bool:
        return any(p[0] == topic and p[1] == part and pred(p) for p in parts)

    def holds(p: list) -> bool:  # a fetch answer's (topic, partition, fetch offset, end) covering the batch
        return p[2] <= base < p[3]

    def past(p: list) -> bool:  # a position after the batch
        return p[2] > last

    row: dict = {"leader": leader, "tp": f"{topic}-{part}", "records": last - base + 1}
    row["client queue"] = queue_ms * 1_000_000
    row["receive→append"] = t_app - t_recv
    per_follower = []
    for f in nodes:
        if f == leader:
            continue
        fout = find(leader, "fetch_out", t_app, lambda e, f=f: e[2] == f and has(e[3], holds))
        if fout is None:
            return None
        frame = find(f, "f_frame", fout[0], lambda e: fetcher_node.get(e[2]) == leader)
        if frame is None:
            return None
        rcv = find(f, "f_received", frame[0], lambda e: e[2] == leader)
        if rcv is None:
            return None
        appended = find(f, "f_appended", rcv[0], lambda e: e[2] == leader and has(e[3], past))
        if appended is None:
            return None
        send = find(f, "f_send", appended[0], lambda e: e[2] == leader and has(e[3], past))
        if send is None:
            return None
        fin = find(leader, "fetch_in", send[0], lambda e, f=f: e[2] == f and has(e[3], past))
        if fin is None:
            return None
        per_follower.append((fin[0], fout[0], frame[0], rcv[0], appended[0], send[0]))
    hw = find(leader, "hw", t_app, lambda e: e[2] == topic and e[3] == part and e[4] > last)
    ack = find(leader, "ack", t_app, lambda e: e[2] == topic and e[3] == part and e[4] == base)
    cons = find(leader, "fetch_out", t_app, lambda e: e[2] < 0 and has(e[3], holds))
    if hw is None or ack is None or len(per_follower) != 2:
        return None
    fin, fout, frame, rcv, appended, send = max(per_follower)  # the follower that moved the HW
    row["append→fetch out"] = fout - t_app
    row["fetch out→frame"] = frame - fout
    row["frame→decoded"] = rcv - frame
    row["decoded→appended"] = appended - rcv
    row["appended→next fetch"] = send - appended
    row["next fetch→leader"] = fin - send
    row["leader→HW"] = hw[0] - fin
    row["HW→ack"] = ack[0] - hw[0]
    row["receive→ack"] = ack[0] - t_recv
    row["other follower's fetch in, earlier by"] = max(per_follower)[0] - min(per_follower)[0]
    if cons is not None:
        row["ack→consumer"] = cons[0] - ack[0]
    return row


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def summarize(rows: list[dict]) -> dict:
    keys = [*STAGES, "receive→ack", "other follower's fetch in, earlier by", "ack→consumer"]
    summary = {}
    for k in keys:
        vals = [r[k] / 1e6 for r in rows if k in r]
        if vals:
            summary[k] = {
                "p50_ms": round(statistics.median(vals), 3),
                "p90_ms": round(pct(vals, 0.9), 3),
                "p99_ms": round(pct(vals, 0.99), 3),
                "mean_ms": round(statistics.fmean(vals), 3),
                "n": len(vals),
            }
    recs = [r["records"] for r in rows]
    summary["records_per_batch"] = {"p50": statistics.median(recs), "mean": round(statistics.fmean(recs), 2)}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="round-trace-") as tmp:
        os.environ["WORKBENCH_ROUND_TRACE"] = tmp
        pids: dict[int, int] = {}

        @contextmanager
        def around(broker_pids: dict[int, int]):
            pids.update(broker_pids)
            yield

        load0 = os.getloadavg()
        result = measure(3, args.rate, args.seconds, args.warmup, around=around)
        load1 = os.getloadavg()
        time.sleep(0.5)
        events = load(Path(tmp), {pid: node for node, pid in pids.items()})
    fetcher_node = {f"replica-fetcher-{f}-{leader}": leader for f in pids for leader in pids}
    rows = follow(events, fetcher_node)
    summary = summarize(rows)
    print(f"RF=3 acks=all, {args.rate} records/s, {args.seconds} s; load {load0[0]:.2f} -> {load1[0]:.2f}")
    print(
        f"e2e p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; ack p50 {result['ack_p50_ms']} ms, "
        f"p99 {result['ack_p99_ms']} ms; brokers {result['broker_cores_busy']} cores busy"
    )
    print(f"{len(rows)} batches followed, records per batch {summary['records_per_batch']}")
    print(f"{'stage':40} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for k, v in summary.items():
        if "p50_ms" in v:
            print(f"{k:40} {v['p50_ms']:8.3f} {v['p90_ms']:8.3f} {v['p99_ms']:8.3f} {v['mean_ms']:8.3f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"round_trace-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps({"args": vars(args), "loadavg": [load0, load1], "latency": result, "stages": summary}, indent=2)
    )
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
