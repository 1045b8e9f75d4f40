"""Bad input in the Python API: each mistake gives a clear error naming the problem and the fix,
and changes nothing (no topic, no record, the other cluster untouched)."""

from __future__ import annotations

import math

import pytest

from workbench import Cluster
from workbench.client import ProduceError
from workbench.cluster import ClusterError


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(
        brokers=2,
        data_dir=tmp_path_factory.mktemp("bad-input"),
        config={"group_initial_rebalance_delay_ms": 0},
    ) as c:
        yield c


@pytest.mark.parametrize(
    "name, words",
    [
        ("has space", ["' '", "letters, digits"]),
        ("ümlaut", ["'ü'", "letters, digits"]),
        ("a/b", ["'/'", "a-b"]),
        ("", ["non-empty"]),
        (".", ["not allowed"]),
        ("x" * 250, ["250 characters", "249"]),
        (None, ["non-empty string"]),
    ],
)
def test_invalid_topic_names(cluster, name, words):
    before = cluster.topics()
    with pytest.raises(ValueError) as info:
        cluster.create_topic(name)
    for w in words:
        assert w in str(info.value), str(info.value)
    with pytest.raises(ValueError):
        cluster.producer().send(name, {"a": 1})
    assert cluster.topics() == before


@pytest.mark.parametrize("partitions", [0, -1, 1.5, "3", True])
def test_bad_partition_counts(cluster, topic_name, partitions):
    with pytest.raises(ValueError, match=r"partitions must be a positive integer \(1 or more\)"):
        cluster.create_topic(topic_name, partitions=partitions)
    assert topic_name not in cluster.topics()


def test_replication_factor_above_broker_count(cluster, topic_name):
    with pytest.raises(ValueError) as info:
        cluster.create_topic(topic_name, partitions=1, replication_factor=5)
    message = str(info.value)
    assert "replication factor 5" in message and "2 available broker" in message, message
    assert topic_name not in cluster.topics()
    with pytest.raises(ValueError, match="replication_factor must be a positive integer"):
        cluster.create_topic(topic_name, replication_factor=0)
    assert topic_name not in cluster.topics()


def test_bad_topic_config(cluster, topic_name):
    with pytest.raises(ValueError, match="config must be a dict"):
        cluster.create_topic(topic_name, config="retention.ms=5")
    with pytest.raises(ValueError) as info:
        cluster.create_topic(topic_name, config={"retention.mss": "5"})
    assert "retention.mss" in str(info.value)
    assert topic_name not in cluster.topics()


class NotJson:
    pass


@pytest.mark.parametrize("value", [NotJson(), {"x": NotJson()}, math.nan, {"x": math.inf}, object])
def test_values_without_a_json_form(cluster, topic_name, value):
    cluster.create_topic(topic_name)
    producer = cluster.producer()
    with pytest.raises(TypeError) as info:
        producer.send(topic_name, value)
    message = str(info.value)
    assert "as JSON" in message and "pass bytes or str" in message, message
    producer.flush()
    assert producer.send_and_wait(topic_name, "valid").offset == 0  # nothing was sent before it


def test_json_friendly_values_still_work(cluster, topic_name):
    import datetime
    import decimal
    import uuid

    cluster.create_topic(topic_name)
    p = cluster.producer()
    p.send_and_wait(
        topic_name,
        {
            "at": datetime.date(2024, 5, 1),
            "amount": decimal.Decimal("9.50"),
            "id": uuid.UUID(int=1),
            "tags": {"a"},
        },
    )
    [rec] = cluster.consumer(None, topic_name).read(1, timeout=10)
    assert rec.value == {"at": "2024-05-01", "amount": "9.50", "id": str(uuid.UUID(int=1)), "tags": ["a"]}


def test_value_over_max_message_bytes(cluster, topic_name):
    cluster.create_topic(topic_name, config={"max.message.bytes": 2000})
    producer = cluster.producer(linger_ms=0)
    with pytest.raises(ProduceError) as info:
        producer.send_and_wait(topic_name, "x" * 5000, timeout=15)
    assert "max.message.bytes" in str(info.value), str(info.value)
    # Over the producer's own limit: refused before sending, naming both settings.
    with pytest.raises(ValueError) as info:
        producer.send(topic_name, b"y" * 2_000_000)
    assert "message.max.bytes" in str(info.value) and "max.message.bytes" in str(info.value)
    # Nothing stored; a small record still goes through at offset 0.
    assert producer.send_and_wait(topic_name, "small").offset == 0


def test_bad_partition_argument(cluster, topic_name):
    cluster.create_topic(topic_name)
    with pytest.raises(ValueError, match="partition must be a non-negative integer"):
        cluster.producer().send(topic_name, 1, partition=-3)


def test_data_dir_in_use_by_another_cluster(cluster, topic_name):
    cluster.create_topic(topic_name)
    before = sorted(p.name for p in cluster.data_dir.iterdir())
    with pytest.raises(ClusterError) as info:
        Cluster(brokers=1, data_dir=cluster.data_dir)
    message = str(info.value)
    assert "in use by another running cluster" in message and "cluster.stop()" in message
    assert "another data_dir" in message
    # Nothing changed: same files, the running cluster still serves.
    assert sorted(p.name for p in cluster.data_dir.iterdir()) == before
    assert cluster.producer().send_and_wait(topic_name, "still here").offset == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"brokers": 0}, "brokers must be a positive integer"),
        ({"brokers": -2}, "brokers must be a positive integer"),
        ({"brokers": 1, "port": 70000}, "port must be between 0 and 65535"),
    ],
)
def test_bad_cluster_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Cluster(data_dir=tmp_path / "c", **kwargs)
    assert not (tmp_path / "c").exists()
