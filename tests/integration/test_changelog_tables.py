"""Tables from changelogs: `cluster.table(topic)` and `latest."<topic>"` give the latest value per key,
tombstones applied, live tail included, compacted or not; `watch()` follows the table as it changes."""

from __future__ import annotations

import json

from tests.support import wait_until
from workbench.storage.log_cleaner import CLEANER_STATE_FILE
from workbench.widgets import TopicBrowser


def cdc(cluster, topic: str) -> dict[str, dict]:
    """Inserts, updates and deletes (tombstones) of 30 customers over 3 partitions; the expected table."""
    producer = cluster.producer(linger_ms=0)
    expected: dict[str, dict] = {}
    for version in range(4):
        for i in range(30):
            key = f"customer-{i}"
            row = {"id": i, "name": f"c{i}", "version": version}
            producer.send(topic, row, key=key)
            expected[key] = row
    for i in range(0, 30, 7):  # deletes
        producer.send(topic, None, key=f"customer-{i}")
        del expected[f"customer-{i}"]
    producer.send(topic, {"id": -1}, key=None)  # a keyless record is not part of the table
    assert producer.flush() == 0
    return expected


def as_rows(frame) -> dict[str, dict]:
    return {k: json.loads(v) for k, v in zip(frame["key"], frame["value"], strict=True)}


def test_table_gives_the_latest_value_per_key_with_tombstones_applied(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=3, replication_factor=1, config={"segment.bytes": "4096"})
    expected = cdc(cluster, topic_name)
    table = cluster.table(topic_name)
    assert as_rows(table) == expected
    assert table["key"].is_unique
    assert list(table.sort_values(["partition", "offset"]).index) == list(table.index)  # partition, offset order
    # The same in SQL, joined like any table; flattened columns are there too.
    n = cluster.sql(f'SELECT count(*) AS n, max(version) AS v FROM latest."{topic_name}"')
    assert int(n["n"][0]) == len(expected) and int(n["v"][0]) == 3
    # The live tail: an update and a delete acknowledged just now are in the next read.
    producer = cluster.producer(linger_ms=0)
    producer.send_and_wait(topic_name, {"id": 1, "name": "new", "version": 9}, key="customer-1")
    producer.send_and_wait(topic_name, None, key="customer-2")
    expected["customer-1"] = {"id": 1, "name": "new", "version": 9}
    del expected["customer-2"]
    assert as_rows(cluster.table(topic_name)) == expected


def test_table_of_a_compacted_topic_is_the_same_before_and_after_cleaning(cluster, topic_name):
    config = {
        "cleanup.policy": "compact",
        "segment.bytes": "2048",
        "segment.ms": "300",
        "min.cleanable.dirty.ratio": "0.01",
    }
    cluster.create_topic(topic_name, partitions=1, replication_factor=1, config=config)
    producer = cluster.producer(**{"batch.size": 1000, "linger.ms": 0})  # batches below segment.bytes
    expected: dict[str, dict] = {}
    for version in range(6):
        for i in range(20):
            producer.send(topic_name, {"id": i, "version": version}, key=f"k{i}")
            expected[f"k{i}"] = {"id": i, "version": version}
    producer.send(topic_name, None, key="k3")
    del expected["k3"]
    assert producer.flush() == 0
    assert as_rows(cluster.table(topic_name)) == expected

    def cleaned() -> bool:
        for path in cluster.data_dir.glob(f"broker-*/{CLEANER_STATE_FILE}"):
            for st in json.loads(path.read_text() or "[]"):
                if st["topic"] == topic_name and st["first_dirty_offset"] >= 121:
                    return True
        return False

    wait_until(cleaned, timeout=60, message="the log cleaner did not clean the topic")
    row = cluster.describe().partitions.query("topic == @topic_name").iloc[0]
    assert row["cleaned_up_to"] >= 121 and row["records_removed"] > 0 and 0 <= row["dirty_ratio"] <= 1
    browser = TopicBrowser(cluster, topic_name)  # the topic browser shows the cleaner's progress too
    try:
        browser.refresh()
        assert "compacted · dirty ratio" in browser.info.value
    finally:
        browser.close()
    cluster.close_sql()  # a new engine reads the compacted files
    assert as_rows(cluster.table(topic_name)) == expected


def test_watch_follows_the_table_as_it_changes(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    producer = cluster.producer(linger_ms=0)
    producer.send_and_wait(topic_name, {"qty": 1}, key="a")
    producer.send_and_wait(topic_name, {"qty": 1}, key="b")
    w = cluster.watch(f'SELECT key, qty FROM latest."{topic_name}" ORDER BY key', every="100ms", display=False)
    try:
        assert w.next(20)["key"].tolist() == ["a", "b"]
        producer.send_and_wait(topic_name, None, key="a")  # delete a
        producer.send_and_wait(topic_name, {"qty": 5}, key="b")  # update b
        frame = w.next(20)
        assert frame["key"].tolist() == ["b"] and frame["qty"].tolist() == [5]
    finally:
        w.stop()


def test_the_plain_view_shows_the_cleaned_rows_after_a_cleaning_pass(cluster, topic_name):
    """The SQL engine copied the records into its cache before the cleaner ran; the broker's files
    changed (rewritten, merged) and the next query reads them again: the plain view is what a
    consumer from the beginning sees, without restarting the SQL engine."""
    config = {
        "cleanup.policy": "compact",
        "segment.bytes": "2048",
        "segment.ms": "300",
        "min.cleanable.dirty.ratio": "0.01",
    }
    cluster.create_topic(topic_name, partitions=1, replication_factor=1, config=config)
    producer = cluster.producer(**{"batch.size": 1000, "linger.ms": 0})
    for version in range(6):
        for i in range(20):
            producer.send(topic_name, {"id": i, "version": version}, key=f"k{i}")
    producer.send(topic_name, None, key="k3")
    assert producer.flush() == 0
    assert int(cluster.sql(f'SELECT count(*) AS n FROM "{topic_name}"')["n"][0]) == 121

    def cleaned() -> bool:
        for path in cluster.data_dir.glob(f"broker-*/{CLEANER_STATE_FILE}"):
            for st in json.loads(path.read_text() or "[]"):
                if st["topic"] == topic_name and st["first_dirty_offset"] >= 121:
                    return True
        return False

    wait_until(cleaned, timeout=60, message="the log cleaner did not clean the topic")
    # Latest per key: version 5 at offsets 100..119, k3's tombstone at 120 supersedes offset 103.
    expected = [o for o in range(100, 120) if o != 103] + [120]

    def offsets() -> list[int]:
        return [int(o) for o in cluster.sql(f'SELECT "offset" FROM "{topic_name}" ORDER BY 1')["offset"]]

    assert offsets() == expected
    n = cluster.sql(f'SELECT count(*) AS n FROM latest."{topic_name}"')
    assert int(n["n"][0]) == 19
