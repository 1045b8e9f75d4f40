"""Every topic is a SQL table: counts, JSON flattening, binary values, read-your-writes,
retention, errors, time travel, the plain-DuckDB catalog and watch()."""

from __future__ import annotations

import functools
import json
import time

import duckdb
import pandas as pd
import pytest

from tests.support import wait_until
from workbench.sql import ReadOnlyTopicError, SqlError, UnknownTopicError

SMALL_SEGMENTS = {"segment.bytes": 4096}
SMALL_BATCHES = {"batch.size": 1000, "linger.ms": 0}


def q(name: str) -> str:
    return '"' + name + '"'


# Returns the last value instead of failing: callers assert on it (or only wait).
wait_for = functools.partial(wait_until, interval=0.1, fail=False)


def produce(cluster, topic, values, **kwargs):
    producer = cluster.producer(**SMALL_BATCHES)
    for v in values:
        producer.send(topic, v, **kwargs)
    assert producer.flush() == 0
    return producer


def test_counts_and_aggregates_match_what_was_produced_including_the_live_tail(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=3, config=SMALL_SEGMENTS)
    events = [{"id": i, "kind": "ab"[i % 2], "amount": i * 0.5} for i in range(3000)]
    producer = produce(cluster, topic_name, events)
    df = cluster.sql(
        f"SELECT kind, count(*) AS n, sum(amount) AS total FROM {q(topic_name)} GROUP BY kind ORDER BY kind"
    )
    assert df["n"].tolist() == [1500, 1500]
    assert df["total"].tolist() == [sum(e["amount"] for e in events if e["kind"] == k) for k in "ab"]
    # Read-your-writes: acknowledged a moment before the query, visible to it.
    for i in range(5):
        delivery = producer.send_and_wait(topic_name, {"id": 10_000 + i, "kind": "c", "amount": 1.0})
        row = cluster.sql(
            f"SELECT count(*) AS n, max(id) AS top FROM {q(topic_name)} "
            f'WHERE partition = {delivery.partition} AND "offset" = {delivery.offset}'
        )
        assert row["n"][0] == 1 and row["top"][0] == 10_000 + i
    # Sealed segments become cache files (background compaction); totals never change.
    assert wait_for(
        lambda: any(ps.cache.files for ps in cluster.sql_engine.topic_states()[topic_name].partitions.values())
    )
    total = cluster.sql(f'SELECT count(*) n, count(DISTINCT (partition, "offset")) d FROM {q(topic_name)}')
    assert total["n"][0] == total["d"][0] == 3005


def test_table_shape_nested_fields_and_new_fields_later(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    produce(
        cluster,
        topic_name,
        [{"id": 1, "user": {"name": "ada", "address": {"city": "London"}}, "tags": ["x"]}],
        key="k1",
    )
    df = cluster.sql(f"SELECT key, id, user.name AS name, user.address.city AS city, tags FROM {q(topic_name)}")
    assert df.to_dict("records")[0] | {"tags": list(df["tags"][0])} == {
        "key": "k1",
        "id": 1,
        "name": "ada",
        "city": "London",
        "tags": ["x"],
    }
    types = dict(cluster.sql(f"DESCRIBE {q(topic_name)}")[["column_name", "column_type"]].values.tolist())
    assert types["partition"] == "INTEGER" and types["offset"] == "BIGINT"
    assert types["timestamp"] == "TIMESTAMP WITH TIME ZONE" and types["key_bytes"] == "BLOB"
    produce(cluster, topic_name, [{"id": 2, "score": 9.5, "user": {"name": "bob", "email": "b@x"}}])
    df = cluster.sql(f"SELECT id, score, user.email AS email FROM {q(topic_name)} ORDER BY id")
    assert df["score"].isna().tolist() == [True, False] and df["email"].tolist()[1] == "b@x"


def test_binary_and_non_json_values_stay_available(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    producer = cluster.producer()
    producer.send(topic_name, b"\xff\x00\xfe", key=b"\x80")
    producer.send(topic_name, "plain text")
    producer.send(topic_name, {"a": 1})
    producer.send(topic_name, None, key="tombstone")
    producer.flush()
    df = cluster.sql(f'SELECT key, key_bytes, value, value_bytes, a FROM {q(topic_name)} ORDER BY "offset"')
    assert pd.isna(df["key"][0]) and bytes(df["key_bytes"][0]) == b"\x80"
    assert pd.isna(df["value"][0]) and bytes(df["value_bytes"][0]) == b"\xff\x00\xfe"
    assert df["value"][1] == "plain text" and df["a"][2] == 1
    assert pd.isna(df["value_bytes"][3]) and df["key"][3] == "tombstone"


def test_explicit_schema_and_flattening_off(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    produce(cluster, topic_name, [{"id": "7", "happened": "2024-05-01T12:00:00Z", "other": 1}])
    cluster.sql_schema(topic_name, {"id": "INTEGER", "happened": "TIMESTAMPTZ"})
    df = cluster.sql(f"SELECT id, happened FROM {q(topic_name)}")
    assert df["id"][0] == 7 and df["happened"][0].year == 2024
    assert "other" not in cluster.sql(f"SELECT * FROM {q(topic_name)}").columns
    cluster.sql_schema(topic_name, flatten=False)
    cols = list(cluster.sql(f"SELECT * FROM {q(topic_name)}").columns)
    assert cols == ["partition", "offset", "timestamp", "key", "value", "headers", "key_bytes", "value_bytes"]
    cluster.sql_schema(topic_name)  # inference again
    assert "other" in cluster.sql(f"SELECT * FROM {q(topic_name)}").columns


def test_retention_deleted_prefix_keeps_the_view_working(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1, config={**SMALL_SEGMENTS, "retention.ms": 3_600_000})
    old = int(time.time() * 1000) - 86_400_000  # a day old: their sealed segments expire at once
    producer = cluster.producer(**SMALL_BATCHES)
    for i in range(200):
        producer.send(topic_name, {"i": i, "pad": "x" * 50}, timestamp=old)
    for i in range(200, 400):
        producer.send(topic_name, {"i": i, "pad": "x" * 50})
    assert producer.flush() == 0
    first = cluster.sql(f"SELECT count(*) n FROM {q(topic_name)}")["n"][0]
    assert 0 < first <= 400

    def log_start():
        return cluster.sql(f"SELECT log_start_offset s FROM wb.partitions WHERE topic = '{topic_name}'")["s"][0]

    assert wait_for(lambda: log_start() > 0)
    wait_for(lambda: cluster.sql_engine.topic_states()[topic_name].partitions[0].cache.files, 5)
    for _ in range(3):  # before and after the compactor caught up: never broken, never below the start
        lso = log_start()
        df = cluster.sql(f'SELECT count(*) n, min("offset") lo, max("offset") hi, min(i) first_i FROM {q(topic_name)}')
        assert df["lo"][0] >= lso and df["hi"][0] == 399 and df["n"][0] == 400 - df["lo"][0]
        assert df["first_i"][0] == df["lo"][0]
        time.sleep(1)


def test_topic_tables_are_read_only_and_errors_are_short(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    produce(cluster, topic_name, [{"a": 1}])
    with pytest.raises(ReadOnlyTopicError, match="read-only"):
        cluster.sql(f"INSERT INTO {q(topic_name)} (partition) VALUES (1)")
    with pytest.raises(ReadOnlyTopicError):
        cluster.sql(f"DROP VIEW {q(topic_name)}")
    with pytest.raises(UnknownTopicError, match=topic_name) as info:
        cluster.sql("SELECT * FROM no_such_topic_here")
    assert "Topics:" in str(info.value)
    with pytest.raises(SqlError, match="Binder Error") as info:
        cluster.sql(f"SELECT nonexistent_column FROM {q(topic_name)}")
    assert info.value.__cause__ is None and info.value._render_traceback_()[0].count("\n") < 5
    with pytest.raises(SqlError, match='"offset"'):
        cluster.sql(f"SELECT offset FROM {q(topic_name)}")
    # Scratch tables of one's own are fine.
    cluster.sql(f"CREATE OR REPLACE TABLE scratch AS SELECT * FROM {q(topic_name)}")
    assert cluster.sql("SELECT count(*) n FROM scratch")["n"][0] == 1


def test_time_travel_by_offset_and_timestamp(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    producer = cluster.producer()
    base = 1_700_000_000_000
    for i in range(10):
        producer.send(topic_name, {"i": i}, timestamp=base + i * 1000)
    producer.flush()
    assert cluster.as_of(offset=4).sql(f"SELECT count(*) n FROM {q(topic_name)}")["n"][0] == 5
    assert cluster.as_of(offset={0: 0}).sql(f"SELECT max(i) m FROM {q(topic_name)}")["m"][0] == 0
    at = cluster.as_of(timestamp=base + 6500).sql(f"SELECT count(*) n, max(i) m FROM {q(topic_name)}")
    assert at["n"][0] == 7 and at["m"][0] == 6
    assert cluster.sql(f"SELECT count(*) n FROM {q(topic_name)}")["n"][0] == 10  # unchanged


def test_plain_duckdb_opens_the_catalog_without_the_workbench(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=2, config=SMALL_SEGMENTS)
    produce(cluster, topic_name, [{"i": i, "pad": "y" * 40} for i in range(600)])
    cluster.sql(f"SELECT count(*) FROM {q(topic_name)}")
    state = cluster.sql_engine.topic_states()[topic_name]
    assert wait_for(lambda: sum(f.rows for ps in state.partitions.values() for f in ps.cache.files) >= 300)
    cached = sum(f.rows for ps in state.partitions.values() for f in ps.cache.files)
    catalog = cluster.data_dir / "workbench.duckdb"
    import subprocess
    import sys

    script = (
        f"import duckdb; c = duckdb.connect({str(catalog)!r}, read_only=True); "
        f"print(c.execute('SELECT count(*), sum(i) FROM \"{topic_name}\"').fetchall()[0][0])"
    )
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= cached > 0  # sealed, converted history; the live tail needs the workbench
    # The documented glob works too.
    glob = str(cluster.data_dir / "sql" / "topics" / topic_name / "partition=*" / "*.parquet")
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}', union_by_name=true)").fetchall()[0][0]
    assert n >= cached


def test_watch_reevaluates_as_data_arrives_and_stops(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    producer = cluster.producer()
    producer.send_and_wait(topic_name, {"v": 1})
    w = cluster.watch(f"SELECT count(*) AS n FROM {q(topic_name)}", every="100ms")
    try:
        assert w.next(10)["n"][0] == 1
        producer.send_and_wait(topic_name, {"v": 2})
        assert w.next(10)["n"][0] == 2
    finally:
        w.stop()
    assert not w.running


def test_watch_reruns_a_windowed_query_as_data_arrives(cluster, topic_name):
    # tumble() made the table names unreadable, so the watch never saw new records.
    cluster.create_topic(topic_name, partitions=1)
    producer = cluster.producer()
    producer.send_and_wait(topic_name, {"v": 1})
    w = cluster.watch(
        f"SELECT tumble(timestamp, INTERVAL 1 hour) AS window, count(*) AS n FROM {q(topic_name)} GROUP BY ALL",
        every="100ms",
    )
    try:
        assert w.next(10)["n"].sum() == 1
        producer.send_and_wait(topic_name, {"v": 2})
        assert w.next(10)["n"].sum() == 2
    finally:
        w.stop()


def test_windowed_aggregations_over_event_time(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    producer = cluster.producer()
    base = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
    for i in range(12):
        producer.send(topic_name, {"v": 1}, timestamp=base + i * 10_000)  # one every 10 s, 2 minutes
    producer.flush()
    tumbling = cluster.sql(
        f"SELECT tumble(timestamp, INTERVAL 1 minute) w, count(*) n FROM {q(topic_name)} GROUP BY w ORDER BY w"
    )
    assert tumbling["n"].tolist() == [6, 6]
    hopping = cluster.sql(
        f"SELECT w, count(*) n FROM {q(topic_name)}, "
        "unnest(hop(timestamp, INTERVAL 1 minute, INTERVAL 30 second)) AS t(w) "
        "GROUP BY w ORDER BY w"
    )
    assert hopping["n"].tolist() == [3, 6, 6, 6, 3]


def test_schema_file_is_json(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    produce(cluster, topic_name, [{"z": True}])
    cluster.sql(f"SELECT * FROM {q(topic_name)}")
    path = cluster.data_dir / "sql" / "topics" / topic_name / "_schema.json"
    assert json.loads(path.read_text())["structure"] == {"z": "BOOLEAN"}
