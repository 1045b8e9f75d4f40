"""How cost grows: producer throughput, ack p99 and broker RSS against partitions, consumer groups and
connections; SQL time and kernel RSS against topic size; each next to its peer in the same run.

    python benchmarks/cost_growth.py                                  # every section, default sizes
    python benchmarks/cost_growth.py --only partitions --partitions 1,10,100,1000,10000
    python benchmarks/cost_growth.py --only groups --groups 1,10,100
    python benchmarks/cost_growth.py --only connections --connections 1,10,100,1000
    python benchmarks/cost_growth.py --only sql --sql-records 1000000,5000000,10000000,50000000
    python benchmarks/cost_growth.py --smoke                          # tiny sizes, a minute or two

One broker (RF=1) per section, fresh for each size, so one size's leftovers do not tax the next.
Per size:

* **throughput**: `perf_client.py produce` (librdkafka, acks=1, linger 5 ms, 100-byte values),
  the same command against librdkafka's mock cluster (`mock_cluster.py`) with the same topic layout
  and the same extra load, in the same run;
* **ack p99**: `perf_client.py e2e-produce` at a fixed 2,000 records/s (produce() to delivery report),
  against the mock too (librdkafka's own cost of thousands of partitions at linger 0);
* **broker RSS** (from /proc) once the topic and the extra load are in place, and broker CPU per
  second while only the extra load runs (what idle groups or connections cost).

The extra load: *groups* runs G librdkafka consumers, each its own group on the topic, in one child
process (heartbeats, fetches and a commit a second each); *connections* opens C TCP connections that
each send ApiVersions and then stay open and idle. *sql* produces N small JSON events and times, on
`cluster.sql` and on a native DuckDB table of the same rows, a GROUP BY, a point lookup by key and a
one-minute time window, with the notebook process's RSS once the topic is loaded (before the native copy joins it).

Each curve gets a shape: the exponent b of a least-squares fit of log(cost) on log(size) (b ~ 0 flat,
~ 1 linear); the table says whether that is linear. Prints the tables with the load average and
writes `results/cost_growth-<ts>.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # this tree's workbench, not whichever one is installed

from mock_cluster import MockClusterProcess
from proc_stats import cpu_s
from proc_stats import rss_mb as _rss_mb

from workbench import Cluster

CLIENT = HERE / "perf_client.py"
SECTIONS = ("partitions", "groups", "connections", "sql")


def client(command: str, *extra: str, timeout: float = 900) -> dict:
    out = subprocess.run(
        [sys.executable, str(CLIENT), command, *extra], capture_output=True, text=True, timeout=timeout
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"perf_client {command} failed: {out.stderr[-400:]}")
    return json.loads(lines[-1])


def shape(points: list[tuple[float, float | None]]) -> dict[str, Any]:
    """Least-squares exponent b of cost ~ size^b over the points that have a value."""
    pts = [(x, y) for x, y in points if y is not None and x > 0 and y > 0]
    if len(pts) < 2:
        return {"exponent": None, "verdict": "too few points"}
    lx = [math.log(x) for x, _ in pts]
    ly = [math.log(y) for _, y in pts]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    var = sum((a - mx) ** 2 for a in lx)
    b = sum((a - mx) * (c - my) for a, c in zip(lx, ly, strict=True)) / var if var else 0.0
    if abs(b) < 0.15:
        verdict = "flat"
    elif 0.85 <= b <= 1.15:
        verdict = "linear"
    elif b < 0:
        verdict = f"falls as size^{b:.2f}"
    else:
        verdict = f"grows as size^{b:.2f} ({'sub' if b < 1 else 'super'}linear)"
    return {"exponent": round(b, 3), "verdict": verdict}


def rss_mb(pid: int) -> float | None:
    mb = _rss_mb(pid)
    return None if mb is None else round(mb, 1)


def broker_pid(cluster: Cluster) -> int:
    return next(iter(cluster.broker_pids().values()))


def cpu_per_s(pid: int, seconds: float) -> float | None:
    c0 = cpu_s(pid)
    time.sleep(seconds)
    c1 = cpu_s(pid)
    return None if c0 is None or c1 is None else round((c1 - c0) / seconds, 3)


def produce_args(bootstrap: str, topic: str, records: int) -> list[str]:
    return ["--bootstrap", bootstrap, "--topic", topic, "--records", str(records), "--acks", "1", "--linger-ms", "5"]


def ack_args(bootstrap: str, topic: str, ack_seconds: float) -> list[str]:
    """The ack-latency run: 2,000 records/s, acks=1, linger 0."""
    rate = ["--rate", "2000", "--seconds", str(ack_seconds), "--warmup", "1"]
    return ["--bootstrap", bootstrap, "--topic", topic, *rate, "--acks", "1", "--linger-ms", "0"]


def measure_one(bootstrap: str, topic: str, records: int, pid: int | None, ack_seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if pid is not None:
        row["rss_mb_loaded"] = rss_mb(pid)
        row["cpu_cores_idle_load"] = cpu_per_s(pid, 3.0)
    ours = client("produce", *produce_args(bootstrap, topic, records))
    row["records_per_s"] = ours["records_per_s"]
    row["errors"] = ours["errors"]
    lat = client("e2e-produce", *ack_args(bootstrap, topic, ack_seconds))
    row["ack_ms_p50"], row["ack_ms_p99"] = lat["ack_ms_p50"], lat["ack_ms_p99"]
    if pid is not None:
        row["rss_mb_after"] = rss_mb(pid)
    return row


# -- extra load ------------------------------------------------------------------------------------


GROUPS_WORKER = r"""
import sys, time, confluent_kafka as ck
bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cs = []
for i in range(n):
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"cost-{i}", "auto.offset.reset": "latest",
                     "enable.auto.commit": True, "auto.commit.interval.ms": 1000, "log_level": 0,
                     "fetch.wait.max.ms": 500})
    c.subscribe([topic])
    cs.append(c)
deadline = time.monotonic() + 120
while time.monotonic() < deadline and not all(c.assignment() for c in cs):
    for c in cs:
        c.poll(0)
    time.sleep(0.05)
print("READY", sum(1 for c in cs if c.assignment()), flush=True)
while True:
    for c in cs:
        c.poll(0)
    time.sleep(0.05)
"""


class Groups:
    def __init__(self, bootstrap: str, topic: str, n: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", GROUPS_WORKER, bootstrap, topic, str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        self.assigned = int(line[1]) if len(line) == 2 and line[0] == "READY" else 0

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(30)


def api_versions_request(correlation_id: int) -> bytes:
    client_id = b"cost-growth"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


class Connections:
    def __init__(self, host: str, port: int, n: int) -> None:
        self.socks: list[socket.socket] = []
        for i in range(n):
            s = socket.create_connection((host, port), timeout=30)
            s.sendall(api_versions_request(i))
            size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
            s.recv(size, socket.MSG_WAITALL)
            self.socks.append(s)

    def close(self) -> None:
        for s in self.socks:
            s.close()


# -- sections --------------------------------------------------------------------------------------


def section_partitions(args) -> dict[str, Any]:
    rows = []
    for p in args.partitions:
        row: dict[str, Any] = {"partitions": p}
        with tempfile.TemporaryDirectory(prefix="cost-p-") as tmp, Cluster(brokers=1, data_dir=tmp) as cluster:
            pid = broker_pid(cluster)
            row["rss_mb_empty"] = rss_mb(pid)
            t0 = time.perf_counter()
            try:
                cluster.create_topic("t", partitions=p, replication_factor=1, timeout=600)
            except Exception as exc:
                row["error"] = f"create_topic: {type(exc).__name__}: {exc}"
                rows.append(row)
                continue
            row["create_topic_s"] = round(time.perf_counter() - t0, 2)
            row.update(measure_one(cluster.bootstrap_servers, "t", args.records, pid, args.ack_seconds))
        with MockClusterProcess(1) as mock:
            mock.create_topic("t", p, 1)
            row["mock_records_per_s"] = client("produce", *produce_args(mock.bootstrap_servers, "t", args.records))[
                "records_per_s"
            ]
            # The same ack run against the mock: librdkafka's own cost of many partitions at linger 0.
            lat = client("e2e-produce", *ack_args(mock.bootstrap_servers, "t", args.ack_seconds))
            row["mock_ack_ms_p50"], row["mock_ack_ms_p99"] = lat["ack_ms_p50"], lat["ack_ms_p99"]
        row["ratio_to_mock"] = round(row["records_per_s"] / row["mock_records_per_s"], 2)
        rows.append(row)
        print(f"  partitions={p}: {row}", file=sys.stderr, flush=True)
    return {"rows": rows, **_shapes(rows, "partitions")}


def _with_load(args, sizes: list[int], key: str, start_load) -> dict[str, Any]:
    rows = []
    for n in sizes:
        row: dict[str, Any] = {key: n}
        with tempfile.TemporaryDirectory(prefix=f"cost-{key}-") as tmp, Cluster(brokers=1, data_dir=tmp) as cluster:
            cluster.create_topic("t", partitions=6, replication_factor=1)
            pid = broker_pid(cluster)
            row["rss_mb_empty"] = rss_mb(pid)
            load = start_load(cluster.bootstrap_servers, n)
            try:
                row.update(measure_one(cluster.bootstrap_servers, "t", args.records, pid, args.ack_seconds))
                if isinstance(load, Groups):
                    row["groups_assigned"] = load.assigned
            finally:
                load.close()
        with MockClusterProcess(1) as mock:
            mock.create_topic("t", 6, 1)
            load = start_load(mock.bootstrap_servers, n)
            try:
                row["mock_records_per_s"] = client("produce", *produce_args(mock.bootstrap_servers, "t", args.records))[
                    "records_per_s"
                ]
                row["mock_rss_mb_loaded"] = rss_mb(mock.pid)
            finally:
                load.close()
        row["ratio_to_mock"] = round(row["records_per_s"] / row["mock_records_per_s"], 2)
        rows.append(row)
        print(f"  {key}={n}: {row}", file=sys.stderr, flush=True)
    return {"rows": rows, **_shapes(rows, key)}


def _hostport(bootstrap: str) -> tuple[str, int]:
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    return host, int(port)


def section_groups(args) -> dict[str, Any]:
    return _with_load(args, args.groups, "groups", lambda b, n: Groups(b, "t", n))


def section_connections(args) -> dict[str, Any]:
    return _with_load(args, args.connections, "connections", lambda b, n: Connections(*_hostport(b), n))


def _shapes(rows: list[dict], key: str) -> dict[str, Any]:
    def col(name: str) -> list[tuple[float, float | None]]:
        return [(r[key], r.get(name)) for r in rows]

    grown = [(r[key], (r["rss_mb_loaded"] - r["rss_mb_empty"]) or None) for r in rows if "rss_mb_loaded" in r]
    return {
        "shape": {
            "records_per_s": shape(col("records_per_s")),
            "ack_ms_p99": shape(col("ack_ms_p99")),
            "rss_mb_growth": shape(grown),
        }
    }


SQL_QUERIES = {
    "group_by": "SELECT kind, count(*) AS n, sum(amount) AS total FROM {t} GROUP BY kind ORDER BY kind",
    "point_lookup": "SELECT * FROM {t} WHERE key = '{key}'",
    "time_window": "SELECT count(*) AS n, avg(amount) AS mean FROM {t} WHERE timestamp >= {lo} AND timestamp < {hi}",
}
KINDS = [b"click", b"view", b"buy", b"scroll", b"hover", b"share", b"like", b"close"]


def _median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def section_sql(args) -> dict[str, Any]:
    rows = []
    for n in args.sql_records:
        row: dict[str, Any] = {"records": n}
        try:
            _sql_size(args, n, row)
        except Exception as exc:  # keep the sizes measured so far
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
        print(f"  records={n}: {row}", file=sys.stderr, flush=True)
    shapes = {f"{name}_s": shape([(r["records"], r.get(f"{name}_s")) for r in rows]) for name in SQL_QUERIES}
    shapes["kernel_rss_mb"] = shape([(r["records"], r.get("kernel_rss_mb")) for r in rows])
    shapes["first_query_s"] = shape([(r["records"], r.get("first_query_s")) for r in rows])
    return {"rows": rows, "shape": shapes}


def _sql_size(args, n: int, row: dict[str, Any]) -> None:
    import duckdb

    with tempfile.TemporaryDirectory(prefix="cost-sql-") as tmp, Cluster(brokers=1, data_dir=tmp) as cluster:
        cluster.create_topic("events", partitions=4, replication_factor=1)
        raw = cluster.producer(**{"linger.ms": 20, "batch.size": 1_000_000, "compression.type": "lz4"}).raw
        t0 = time.perf_counter()
        base_ms = int(time.time() * 1000) - n  # one record per millisecond of event time
        for i in range(n):
            value = b'{"id":%d,"kind":"%s","amount":%d.5}' % (i, KINDS[i % 8], i % 1000)
            while True:
                try:
                    raw.produce("events", value, key=b"k%d" % i, timestamp=base_ms + i)
                    break
                except BufferError:
                    raw.poll(0.01)
            if i % 10000 == 0:
                raw.poll(0)
        assert raw.flush(600) == 0
        row["produce_s"] = round(time.perf_counter() - t0, 1)
        t, cpu = time.perf_counter(), time.process_time()
        assert int(cluster.sql(SQL_QUERIES["group_by"].format(t="events"))["n"].sum()) == n
        row["first_query_s"] = round(time.perf_counter() - t, 2)
        # CPU of the notebook process (DuckDB's threads included): robust under load, unlike wall time.
        row["first_query_cpu_us_per_record"] = round((time.process_time() - cpu) / n * 1e6, 2)
        row["first_query_fetched_live"] = cluster.sql_engine.wire.records_fetched  # the rest came from files
        time.sleep(3)
        key = f"k{n // 2}"
        mid = base_ms + n // 2
        window = {"lo": f"epoch_ms({mid})", "hi": f"epoch_ms({mid + 60_000})"}
        cluster.sql(SQL_QUERIES["group_by"].format(t="events"))  # what the compactor did meanwhile
        row["kernel_rss_mb"] = rss_mb(os.getpid())  # before the native copy joins the process
        native = duckdb.connect()
        # The native table holds every column of the topic table, so `SELECT *` returns the same.
        arrow = cluster.sql_engine.cursor().sql("SELECT * FROM events").arrow()
        if hasattr(arrow, "read_all"):
            arrow = arrow.read_all()
        native.register("rows_", arrow)
        native.execute("CREATE TABLE events AS SELECT * FROM rows_")
        native.unregister("rows_")
        del arrow
        for name, q in SQL_QUERIES.items():
            sql = q.format(t="events", key=key, **window)
            ours = cluster.sql(sql)
            theirs = native.sql(sql).df()
            assert len(ours) == len(theirs), (name, len(ours), len(theirs))
            assert ours.astype(str).equals(theirs.astype(str)), name
            row[f"{name}_s"] = round(_median_s(lambda sql=sql: cluster.sql(sql), args.repeat), 4)
            row[f"{name}_native_s"] = round(_median_s(lambda sql=sql, db=native: db.sql(sql).df(), args.repeat), 4)
            row[f"{name}_ratio"] = round(row[f"{name}_s"] / max(row[f"{name}_native_s"], 1e-6), 2)
        native.close()


# -- output ----------------------------------------------------------------------------------------


def print_section(name: str, res: dict[str, Any]) -> None:
    rows = res.get("rows", [])
    if not rows:
        print(f"\n{name}: {res}")
        return
    cols = list(dict.fromkeys(k for r in rows for k in r if not k.startswith("error")))
    print(f"\n## {name}")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r.get(c, "")) for c in cols) + (f"  ERROR {r['error']}" if "error" in r else ""))
    for metric, s in res.get("shape", {}).items():
        print(f"  {metric}: {s['verdict']} (exponent {s['exponent']})")


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=SECTIONS, metavar="NAME", help=f"some of: {' '.join(SECTIONS)}")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes")
    ap.add_argument("--records", type=int, default=500_000, help="records per throughput run")
    ap.add_argument("--ack-seconds", type=float, default=5.0, help="seconds of the 2,000 records/s ack run")
    ap.add_argument("--partitions", type=ints, default=ints("1,10,100,1000,10000"))
    ap.add_argument("--groups", type=ints, default=ints("1,10,100"))
    ap.add_argument("--connections", type=ints, default=ints("1,10,100,1000"))
    ap.add_argument("--sql-records", type=ints, default=ints("1000000,5000000,10000000"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    if args.smoke:
        args.records, args.ack_seconds, args.repeat = 20_000, 1.0, 2
        args.partitions, args.groups, args.connections, args.sql_records = [1, 10], [1, 3], [1, 20], [20_000, 40_000]
    want = args.only or list(SECTIONS)
    result: dict[str, Any] = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "argv": sys.argv[1:],
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    fns = {
        "partitions": section_partitions,
        "groups": section_groups,
        "connections": section_connections,
        "sql": section_sql,
    }
    for name in want:
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
        load0 = os.getloadavg()[0]
        try:
            result[name] = fns[name](args)
        except Exception as exc:
            result[name] = {"error": f"{type(exc).__name__}: {exc}"}
        result[name]["loadavg_1m"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
        print_section(name, result[name])
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"\nload average at start {result['loadavg_start']}, at end {result['loadavg_end']} ({os.cpu_count()} cores)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"cost_growth-{time.strftime('%Y%m%d-%H%M%S')}{'-smoke' if args.smoke else ''}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
