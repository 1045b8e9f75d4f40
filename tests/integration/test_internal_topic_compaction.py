"""`__consumer_offsets` is compacted: hundreds of commits of one group shrink to the latest one per
partition, and the latest committed offset survives the cleaning and a broker restart."""

from __future__ import annotations

import json

from confluent_kafka import Consumer, TopicPartition

from tests.conftest import FAST_GROUPS
from tests.support import wait_until
from workbench.storage.log_cleaner import CLEANER_STATE_FILE

CONFIG = {
    **FAST_GROUPS,
    "offsets_topic_num_partitions": 1,
    "log_cleaner_backoff_ms": 200,
    # Broker-wide defaults (log.* configs): the offsets topic rolls and is cleaned within seconds.
    "log_defaults": {"segment.ms": "300", "min.cleanable.dirty.ratio": "0.01"},
}


def committed(bootstrap: str, group: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
    finally:
        c.close()


def offsets_cleaner_state(cluster) -> dict:
    for path in cluster.data_dir.glob(f"broker-*/{CLEANER_STATE_FILE}"):
        for st in json.loads(path.read_text() or "[]"):
            if st["topic"] == "__consumer_offsets":
                return st
    return {}


def test_consumer_offsets_are_compacted_and_the_latest_commit_survives(fresh_cluster, topic_name):
    cluster = fresh_cluster(1, config=CONFIG)
    cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    group = f"g-{topic_name}"
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": group, "enable.auto.commit": False})
    try:
        for i in range(1, 301):
            c.commit(offsets=[TopicPartition(topic_name, 0, i)], asynchronous=False)
    finally:
        c.close()
    assert committed(cluster.bootstrap_servers, group, topic_name) == 300

    wait_until(
        lambda: offsets_cleaner_state(cluster).get("records_removed", 0) >= 250,
        timeout=60,
        message=lambda: f"__consumer_offsets not compacted: {offsets_cleaner_state(cluster)}",
    )
    assert committed(cluster.bootstrap_servers, group, topic_name) == 300
    # The coordinator reloads the group from the compacted log.
    cluster.restart_broker(1)
    assert committed(cluster.bootstrap_servers, group, topic_name) == 300
