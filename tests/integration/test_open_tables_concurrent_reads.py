"""Issue 17: a plain DuckDB query over the brokers' Parquet files never fails because a broker
replaced a file, and every answer is a consistent committed prefix.

DuckDB (2.0) opens a Parquet file's footer and its pages separately, so a broker that renamed a
newer tail over the old one, or a cleaned file over the same name, between the two made a query
fail (``TProtocolException: Invalid data``), and one that deleted a listed file made it fail with
"Cannot open file". Brokers now never put new content under an existing name and unlink a
superseded file only after ``parquet_unlink_grace_ms`` (`workbench.storage.superseded`). Here a
separate plain-DuckDB process (no workbench imported) queries the ``workbench.duckdb`` views and
the raw glob by the documented rule in a tight loop while records arrive at a few thousand a
second, tails are rewritten every 150 ms, segments seal, and a compacted topic's cleaner runs
every 200 ms.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from confluent_kafka import Producer

from tests.conftest import FAST_GROUPS
from tests.support import wait_until
from workbench.sql.open_views import broker_files_sql

#: How long the reader queries while the producer writes (a failure needs only one torn read).
READ_S = 25

READER = r"""
import json, sys, time
import duckdb
catalog, plain, compacted, raw_sql, seconds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
con = duckdb.connect(catalog, read_only=True)
queries = {
    "view": f'SELECT count(*), count(DISTINCT "offset"), coalesce(max("offset"), -1) FROM "{plain}"',
    "raw": f'SELECT count(*), count(DISTINCT "offset"), coalesce(max("offset"), -1) FROM ({raw_sql})',
    "compacted": f'SELECT count(*), count(DISTINCT "offset"), coalesce(max("offset"), -1) FROM "{compacted}"',
}
end = time.monotonic() + seconds
while time.monotonic() < end:
    for name, sql in queries.items():
        try:
            row = con.execute(sql).fetchone()
            print(json.dumps({"q": name, "row": list(row)}), flush=True)
        except Exception as exc:
            print(json.dumps({"q": name, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
"""


def test_plain_duckdb_queries_never_fail_while_brokers_replace_files(fresh_cluster, topic_name):
    c = fresh_cluster(
        1, config={**FAST_GROUPS, "parquet_tail_ms": 150, "log_cleaner_backoff_ms": 200, "parquet_quiet_ms": 100}
    )
    c.start()
    plain, compacted = topic_name, f"{topic_name}-compacted"
    # Segments seal every ~2,500 records: sealed files replace tails throughout.
    c.create_topic(plain, partitions=1, replication_factor=1, config={"segment.bytes": str(256 * 1024)})
    c.create_topic(
        compacted,
        partitions=1,
        replication_factor=1,
        config={
            "cleanup.policy": "compact",
            "segment.bytes": "16384",
            "segment.ms": "300",
            "min.cleanable.dirty.ratio": "0.01",
            "workbench.hot.segments": "1",
        },
    )
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "linger.ms": 5})
    p.produce(plain, value=b'{"i": -1}', partition=0)
    p.produce(compacted, key=b"k", value=b'{"i": -1}', partition=0)
    assert p.flush(30) == 0
    assert c.sql(f'SELECT count(*) n FROM "{plain}"')["n"][0] == 1  # writes the catalog
    assert c.sql(f'SELECT count(*) n FROM "{compacted}"')["n"][0] >= 1
    catalog = c.data_dir / "workbench.duckdb"
    raw_sql = broker_files_sql(c.data_dir, plain, {})  # the documented rule, as plain SQL text

    stop = threading.Event()
    sent = [1]

    def produce() -> None:
        i = 0
        while not stop.is_set():
            for _ in range(100):  # ~4,000 records/s in all
                p.produce(plain, value=b'{"i": %d, "pad": "%s"}' % (i, b"x" * 64), partition=0)
                p.produce(compacted, key=b"k%03d" % (i % 200), value=b'{"i": %d}' % i, partition=0)
                i += 1
            p.poll(0)
            sent[0] = i + 1
            time.sleep(0.05)
        p.flush(30)

    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    try:
        out = subprocess.run(
            [sys.executable, "-c", READER, str(catalog), plain, compacted, raw_sql, str(READ_S)],
            capture_output=True,
            text=True,
            timeout=READ_S + 120,
            check=False,
        )
    finally:
        stop.set()
        writer.join(60)
    assert out.returncode == 0, out.stderr
    results = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    errors = [r for r in results if "error" in r]
    assert not errors, f"{len(errors)} of {len(results)} queries failed, first: {errors[:3]}"
    by_query: dict[str, list[list[int]]] = {}
    for r in results:
        by_query.setdefault(r["q"], []).append(r["row"])
    for name, rows in by_query.items():
        assert all(n == distinct for n, distinct, _top in rows), f"{name}: a record counted twice: {rows}"
    for name in ("view", "raw"):
        rows = by_query[name]
        assert len(rows) >= 20, f"only {len(rows)} {name} queries ran: nothing was tested"
        tops = [top for _n, _d, top in rows]
        assert tops == sorted(tops), f"{name}: the max offset went back: {tops}"
        assert all(n == top + 1 for n, _d, top in rows), f"{name}: not a prefix of the log: {rows}"
        assert tops[-1] > tops[0] + 10_000, f"{name}: the files hardly grew while read: {tops[0]}..{tops[-1]}"
    assert max(n for n, _d, _top in by_query["compacted"]) > 200, "the compacted topic's view read nothing"
    # And once the producer stopped, both reads reach the whole log (every record once).
    want = sent[0]
    wait_until(
        lambda: (
            subprocess.run(
                [sys.executable, "-c", READER, str(catalog), plain, compacted, raw_sql, "0.01"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.count(f"[{want}, {want}, {want - 1}]")
            >= 2
        ),
        timeout=60,
        interval=0.5,
        message="every record in the view and the raw read",
    )
