"""Issue 17, tail chunks (`workbench.storage.parquet_tail`): a broker writes only the records
committed since its last tail file, as a chunk, and merges chunks of similar size, so a partition's
unsealed segment is a changing set of overlapping files on disk. A separate plain-DuckDB process
(no workbench imported) reads them by the documented rule (`open_views.broker_files_sql`) in a
loop while records arrive, chunks pile up and merge, and the broker is SIGKILLed and restarted:
every answer is a prefix of the log with each offset once, never shorter than an earlier one, and
at the end every acknowledged record is there exactly once.
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
from workbench.sql.cache import read_sealed
from workbench.sql.open_views import broker_files_sql
from workbench.storage.parquet_tail import MAX_CHUNKS

READER = r"""
import json, sys, time
import duckdb
raw_sql, seconds = sys.argv[1], float(sys.argv[2])
con = duckdb.connect()
sql = f'SELECT count(*), count(DISTINCT "offset"), coalesce(max("offset"), -1) FROM ({raw_sql})'
end = time.monotonic() + seconds
while True:
    try:
        print(json.dumps({"row": list(con.execute(sql).fetchone())}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
    if time.monotonic() >= end:
        break
"""


def read_once(raw_sql: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", READER, raw_sql, "0"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])["row"]


def test_a_reader_sees_every_acknowledged_record_once_across_chunks_merges_and_a_sigkill(fresh_cluster, topic_name):
    c = fresh_cluster(1, config={**FAST_GROUPS, "parquet_tail_ms": 100})
    c.start()
    # One segment for the whole test (64 MiB): only tail files, never a sealed one, hold the records.
    c.create_topic(topic_name, partitions=1, replication_factor=1, config={"segment.bytes": str(64 << 20)})
    directory = c.data_dir / "broker-1" / "topics" / topic_name / "partition=0"
    raw_sql = broker_files_sql(c.data_dir, topic_name, {})
    acked: list[int] = []
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "linger.ms": 5, "acks": "all"})
    p.produce(topic_name, value=b'{"i": -1}', on_delivery=lambda err, msg: acked.append(msg.offset()))
    assert p.flush(30) == 0 and acked == [0]
    assert c.sql(f'SELECT count(*) n FROM "{topic_name}"')["n"][0] == 1  # writes the catalog's anchor file

    def on_delivery(err, msg) -> None:
        if err is None:
            acked.append(msg.offset())

    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            for _ in range(100):  # ~3,000 records/s of ~100 bytes: a chunk of ~30 KB per tick
                try:
                    p.produce(topic_name, value=b'{"i": %d, "pad": "%s"}' % (i, b"x" * 64), on_delivery=on_delivery)
                except BufferError:
                    break
                i += 1
            p.poll(0)
            time.sleep(0.03)
        p.flush(60)

    ranges: set[tuple[int, int]] = set()
    most_current = [0]

    def watch() -> None:  # the files on disk, by the readers' rule (the notebook side's `read_sealed`)
        while not stop.is_set():
            current = read_sealed(directory, tails=True)
            most_current[0] = max(most_current[0], len(current))
            ranges.update((f.base, f.next) for f in current)
            time.sleep(0.05)

    threads = [threading.Thread(target=produce, daemon=True), threading.Thread(target=watch, daemon=True)]
    for t in threads:
        t.start()
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, raw_sql, "24"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(10)
        c.kill_broker(1)  # SIGKILL: chunks, merges and their superseded members all left on disk
        time.sleep(1)
        c.restart_broker(1)
        time.sleep(10)
    finally:
        stop.set()
        for t in threads:
            t.join(90)
        out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    results = [json.loads(line) for line in out.splitlines() if line.strip()]
    errors = [r for r in results if "error" in r]
    assert not errors, f"{len(errors)} of {len(results)} queries failed, first: {errors[:3]}"
    rows = [r["row"] for r in results]
    assert len(rows) >= 20, f"only {len(rows)} queries ran: nothing was tested"
    assert all(n == distinct == top + 1 for n, distinct, top in rows), f"not a prefix with each offset once: {rows}"
    tops = [top for _n, _d, top in rows]
    assert tops == sorted(tops), f"the view went back: {tops}"
    assert tops[-1] > tops[0] + 10_000, f"the files hardly grew while read: {tops[0]}..{tops[-1]}"
    # Many chunks, merged (a file holding another's first offset), never more than the bound.
    assert len(ranges) > 20, ranges
    assert any(a < b < c for a, c in ranges for b, _ in ranges), f"no merge happened: {sorted(ranges)}"
    assert 2 <= most_current[0] <= MAX_CHUNKS, most_current[0]
    # Every acknowledged record, once, once the broker caught up.
    assert acked, "nothing was acknowledged"
    want = max(acked) + 1
    wait_until(lambda: read_once(raw_sql)[2] + 1 >= want, timeout=60, interval=0.5, message="every acked record")
    n, distinct, top = read_once(raw_sql)
    assert n == distinct == top + 1 >= want
