"""Key lookups and time windows on a topic table give exactly what a native DuckDB table of the same
records gives, and reach the Parquet scan as filters on stored columns (issue 19); the first query
on a topic whose segments are not sealed yet reads the brokers' tail files, not the wire."""

from __future__ import annotations

import functools
import json
import re
import time

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from tests.support import wait_until

SMALL_SEGMENTS = {"segment.bytes": 8192}
#: Event time one record a second up to about now (older records would be deleted by time retention).
BASE_MS = int(time.time() * 1000) - 3 * 3600 * 1000

wait_for = functools.partial(wait_until, interval=0.1, fail=False)


def _key(i: int) -> bytes | None:
    """Text keys, null keys, keys that are not UTF-8, and JSON keys, mixed."""
    kind = i % 5
    if kind == 0:
        return None
    if kind == 1:
        return b"\xff\xfe" + bytes([i % 256])  # binary: no text form
    if kind == 2:
        return json.dumps({"id": i % 17}, separators=(",", ":")).encode()
    return b"k%d" % (i % 40)


def _produce(cluster, topic: str, n: int) -> list[dict]:
    """n records with known keys and timestamps; what a native table is built from."""
    rows: list[dict] = []
    producer = cluster.producer(**{"batch.size": 2000, "linger.ms": 0})

    def delivered(i: int, key: bytes | None, ts: int):
        def cb(err, msg):
            assert err is None, err
            text = None
            if key is not None:
                try:
                    text = key.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
            rows.append(
                {"partition": msg.partition(), "offset": msg.offset(), "ts_ms": ts, "key": text, "key_bytes": key}
            )

        return cb

    for i in range(n):
        key, ts = _key(i), BASE_MS + i * 1000
        producer.raw.produce(
            topic,
            b'{"id":%d,"amount":%d.5}' % (i, i % 100),
            key=key,
            partition=i % 2,
            timestamp=ts,
            on_delivery=delivered(i, key, ts),
        )
        if i % 500 == 0:
            producer.raw.poll(0)
    assert producer.raw.flush(30) == 0
    assert len(rows) == n
    return rows


def _native(rows: list[dict]) -> duckdb.DuckDBPyConnection:
    """A native DuckDB table of the produced records (key text decoded in Python, not by DuckDB)."""
    con = duckdb.connect()
    frame = pd.DataFrame(rows)
    con.register("rows_", frame)
    con.execute(
        'CREATE TABLE native AS SELECT partition::INTEGER AS partition, "offset"::BIGINT AS "offset", '
        "make_timestamptz(ts_ms * 1000) AS timestamp, key::VARCHAR AS key, key_bytes::BLOB AS key_bytes FROM rows_"
    )
    con.unregister("rows_")
    return con


QUERIES = [
    "SELECT partition, \"offset\" FROM {t} WHERE key = 'k8'",
    'SELECT partition, "offset" FROM {t} WHERE key = \'{{"id":3}}\'',
    'SELECT partition, "offset" FROM {t} WHERE key IS NULL',
    "SELECT partition, \"offset\" FROM {t} WHERE key_bytes = '\\xFF\\xFE\\x06'::BLOB",
    "SELECT partition, \"offset\" FROM {t} WHERE key IN ('k1', 'k39', 'nope')",
    "SELECT partition, \"offset\" FROM {t} WHERE key LIKE 'k1%'",
    "SELECT partition, \"offset\" FROM {t} WHERE key > 'k3' AND key < 'k5'",
    'SELECT partition, "offset" FROM {t} WHERE timestamp >= epoch_ms({lo}) AND timestamp < epoch_ms({hi})',
    'SELECT partition, "offset" FROM {t} WHERE timestamp >= epoch_ms({lo}) AND timestamp < epoch_ms({hi}) '
    "AND key = 'k3'",
    'SELECT partition, "offset" FROM {t} WHERE timestamp BETWEEN epoch_ms({lo})::TIMESTAMPTZ AND epoch_ms({hi})',
]


def _same(cluster, native, topic: str, n: int) -> None:
    lo, hi = BASE_MS + (n // 3) * 1000, BASE_MS + (n // 3 + 60) * 1000
    for q in QUERIES:
        ours = cluster.sql(q.format(t=f'"{topic}"', lo=lo, hi=hi))
        theirs = native.sql(q.format(t="native", lo=lo, hi=hi)).df()
        got = sorted(zip(ours["partition"].tolist(), ours["offset"].tolist(), strict=True))
        want = sorted(zip(theirs["partition"].tolist(), theirs["offset"].tolist(), strict=True))
        assert got == want, q
        assert want or "nope" in q, f"the query selects nothing, so it proves nothing: {q}"


def test_key_and_time_filters_match_a_native_table_across_cache_fresh_and_tail(cluster, topic_name):
    n = 3000
    cluster.create_topic(topic_name, partitions=2, config=SMALL_SEGMENTS)
    rows = _produce(cluster, topic_name, n)
    native = _native(rows)
    # The first query: rows from sealed files, tail files and the wire, mixed.
    _same(cluster, native, topic_name, n)
    # Then from cache files (the compactor converts the sealed segments) and the fresh table.
    engine = cluster.sql_engine
    assert wait_for(lambda: all(ps.cache.files for ps in engine.topic_states()[topic_name].partitions.values()))
    _same(cluster, native, topic_name, n)
    # Text keys are the text of the bytes, null and non-UTF-8 keys are NULL, JSON keys their text.
    df = cluster.sql(f'SELECT key, key_bytes FROM "{topic_name}" ORDER BY partition, "offset" LIMIT 10')
    for key, raw in zip(df["key"], df["key_bytes"], strict=True):
        if pd.isna(raw) or bytes(raw).startswith(b"\xff"):
            assert pd.isna(key)
        else:
            assert key == bytes(raw).decode()


def _plan(cluster, query: str) -> str:
    return "\n".join(str(r) for r in cluster.sql(f"EXPLAIN {query}").iloc[:, 1])


def test_key_predicate_reaches_the_parquet_scan(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=2, config=SMALL_SEGMENTS)
    _produce(cluster, topic_name, 1500)
    engine = cluster.sql_engine
    cluster.sql(f'SELECT count(*) FROM "{topic_name}"')
    assert wait_for(lambda: engine.topic_states()[topic_name].partitions[0].cache.files)
    plan = _plan(cluster, f"SELECT * FROM \"{topic_name}\" WHERE key = 'k8'")
    # The key filter is one of READ_PARQUET's own filters (row-group statistics apply), not a
    # FILTER above a decode of every row's bytes.
    scan = plan[plan.index("READ_PARQUET") :]
    assert re.search(r"Filters:[\s│]*key\s*=\s*'k8'", scan), plan
    assert "decode(key_bytes)" not in plan, plan


def test_first_query_reads_the_brokers_tail_files_not_the_wire(cluster, topic_name):
    n = 4000
    cluster.create_topic(topic_name, partitions=2)  # default segments: nothing seals
    _produce(cluster, topic_name, n)
    hw = {0: n // 2, 1: n // 2}
    data_dir = cluster.sql_engine.broker_data_dir()
    assert data_dir is not None

    def tail_end(d) -> int:  # where the directory's tail files end (-1: none, or a sealed file)
        end = -1
        for f in d.glob("*.parquet"):
            try:
                meta = pq.read_metadata(f).metadata or {}
            except (OSError, ValueError):
                return -1  # replaced while we looked
            if meta.get(b"workbench.tail") != b"1":
                return -1
            end = max(end, int(meta[b"workbench.next_offset"]))
        return end

    def tails_cover() -> bool:  # the leader's directory (only leaders write tails): up to the high watermark
        for p, end in hw.items():
            dirs = list(data_dir.glob(f"broker-*/topics/{topic_name}/partition={p}"))
            if not dirs or not any(tail_end(d) >= end for d in dirs):
                return False
        return True

    assert wait_for(tails_cover, timeout=30), "the brokers did not write tail files"
    wire = cluster.sql_engine.wire
    before = wire.records_fetched
    df = cluster.sql(f'SELECT count(*) AS n, count(DISTINCT id) AS d, sum(amount) AS s FROM "{topic_name}"')
    assert df["n"][0] == df["d"][0] == n
    assert df["s"][0] == sum(i % 100 + 0.5 for i in range(n))
    # Everything the tails held came from them; only what was past them (nothing here) came live.
    assert wire.records_fetched - before == 0
