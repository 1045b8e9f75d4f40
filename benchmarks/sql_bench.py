"""SQL on topics: GROUP BY over N small JSON events via `cluster.sql` vs a native DuckDB table,
and the ack-to-visible delay (a record acknowledged to a producer, then found by a query).

    python benchmarks/sql_bench.py                   # 10 million events (the issue's benchmark)
    python benchmarks/sql_bench.py --records 200000  # a smoke run

Prints a table and writes JSON to benchmarks/results/. Goals (issue 4): ratio within 1.5x,
ack-to-visible p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from workbench import Cluster

QUERY = "SELECT kind, count(*) AS n, sum(amount) AS total, avg(amount) AS mean FROM {t} GROUP BY kind ORDER BY kind"
KINDS = ["click", "view", "buy", "scroll", "hover", "share", "like", "close"]


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--probes", type=int, default=200, help="ack-to-visible samples")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    n = args.records

    with tempfile.TemporaryDirectory(prefix="sqlbench-") as tmp, Cluster(brokers=1, data_dir=tmp) as cluster:
        cluster.create_topic("events", partitions=args.partitions)
        producer = cluster.producer(**{"linger.ms": 20, "batch.size": 1_000_000, "compression.type": "lz4"})
        raw = producer.raw
        t0 = time.perf_counter()
        for i in range(n):
            value = b'{"id":%d,"kind":"%s","amount":%d.5,"user":%d}' % (
                i,
                KINDS[i % 8].encode(),
                i % 1000,
                i % 9973,
            )
            while True:
                try:
                    raw.produce("events", value)
                    break
                except BufferError:
                    raw.poll(0.01)
            if i % 10000 == 0:
                raw.poll(0)
        assert producer.flush(300) == 0
        produce_s = time.perf_counter() - t0
        print(f"produced {n:,} events in {produce_s:.1f}s ({n / produce_s:,.0f}/s)", flush=True)

        t = time.perf_counter()
        first = cluster.sql(QUERY.format(t="events"))
        cold_s = time.perf_counter() - t
        assert int(first["n"].sum()) == n, first
        # Let the background conversion catch up with what brokers sealed meanwhile.
        time.sleep(5)
        workbench_times = timed(lambda: cluster.sql(QUERY.format(t="events")), args.repeat)

        native = duckdb.connect()
        arrow = (
            cluster.sql_engine.cursor()
            .sql('SELECT partition, "offset", timestamp, id, kind, amount, "user" FROM events')
            .arrow()
        )
        if hasattr(arrow, "read_all"):
            arrow = arrow.read_all()
        native.register("arrow_rows", arrow)
        native.execute("CREATE TABLE events AS SELECT * FROM arrow_rows").fetchall()
        native.unregister("arrow_rows")
        native_times = timed(lambda: native.sql(QUERY.format(t="events")).df(), args.repeat)
        assert native.sql(QUERY.format(t="events")).df()["n"].tolist() == first["n"].tolist()

        delays = []
        for i in range(args.probes):
            d = producer.send_and_wait("events", {"id": -i, "kind": "probe", "amount": 0.0})
            acked = time.perf_counter()
            while True:
                hit = cluster.sql(
                    f'SELECT count(*) c FROM events WHERE partition = {d.partition} AND "offset" = {d.offset}'
                )["c"][0]
                if hit:
                    break
            delays.append((time.perf_counter() - acked) * 1000)
        delays.sort()
        p50 = delays[len(delays) // 2]
        p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]

        wb_med, nat_med = statistics.median(workbench_times), statistics.median(native_times)
        state = cluster.sql_engine.topic_states()["events"]
        cache_files = sum(len(ps.cache.files) for ps in state.partitions.values())
        result = {
            "records": n,
            "partitions": args.partitions,
            "produce_s": round(produce_s, 2),
            "cold_first_query_s": round(cold_s, 3),
            "cluster_sql_median_s": round(wb_med, 4),
            "native_median_s": round(nat_med, 4),
            "ratio": round(wb_med / nat_med, 2),
            "ack_to_visible_ms_p50": round(p50, 2),
            "ack_to_visible_ms_p99": round(p99, 2),
            "probes": args.probes,
            "cache_files": cache_files,
            "duckdb": duckdb.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    rows = [
        ("records", f"{n:,}"),
        ("produce", f"{produce_s:.1f} s"),
        ("first query (cold)", f"{cold_s:.2f} s"),
        ("cluster.sql GROUP BY (median)", f"{wb_med * 1000:.1f} ms"),
        ("native table GROUP BY (median)", f"{nat_med * 1000:.1f} ms"),
        ("ratio (goal <= 1.5)", f"{result['ratio']:.2f}x"),
        ("ack-to-visible p50", f"{p50:.1f} ms"),
        ("ack-to-visible p99 (goal < 50)", f"{p99:.1f} ms"),
        ("cache files", str(cache_files)),
    ]
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"{a:<{width}}  {b:>14}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"sql_bench-{n}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
