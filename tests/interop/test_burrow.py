"""Burrow (Debian's `burrow` 1.2.1) monitors the embedded cluster with its default Kafka settings.

Burrow reads every commit from `__consumer_offsets` (Fetch, message format
down-converted for its sarama client) and the partitions' end offsets
(ListOffsets v0, `old_style_offsets`), then serves clusters, topics, groups and
lag over HTTP. The lag it reports must match `wb.consumer_lag`. Burrow
coordinates through ZooKeeper, so the test starts Debian's `zookeeper` too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.conftest import require_tool
from tests.support import wait_until

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, timeout: float = 90.0):
    errors: list[Exception] = []

    def attempt():
        try:
            return check()
        except Exception as exc:  # not up yet, or not there yet
            errors[:] = [exc]
            return None

    return wait_until(attempt, timeout, 0.5, message=lambda: f"{what} (last error: {errors[-1:]!r})")


@pytest.fixture
def zookeeper(tmp_path):
    java = require_tool("java")
    if not ZOOKEEPER_JAR.exists():
        message = "ZooKeeper is not installed (apt-get install zookeeper)"
        if os.environ.get("WORKBENCH_REQUIRE_ALL") == "1":
            pytest.fail(message + "; WORKBENCH_REQUIRE_ALL=1 turns this skip into a failure")
        pytest.skip(message)
    port = _free_port()
    proc = subprocess.Popen(
        [
            java,
            "-Xmx128m",
            "-Dzookeeper.admin.enableServer=false",
            "-Dzookeeper.4lw.commands.whitelist=srvr",
            "-cp",
            f"{ZOOKEEPER_JAR}:/etc/zookeeper/conf",
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            str(port),
            str(tmp_path / "zk"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"srvr")
            return b"Mode:" in s.recv(1000)

    try:
        _wait("ZooKeeper start", up, 60)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def burrow(cluster, zookeeper, tmp_path):
    binary = require_tool("Burrow")
    http_port = _free_port()
    servers = ", ".join(f'"{s}"' for s in cluster.bootstrap_servers.split(","))
    conf = tmp_path / "burrow"
    conf.mkdir()
    # Kafka settings left at Burrow's defaults (no kafka-version): the client profile is sarama's oldest.
    (conf / "burrow.toml").write_text(
        f"""
[general]
pidfile="{conf}/burrow.pid"
[logging]
filename="{conf}/burrow.log"
level="info"
[zookeeper]
servers=["{zookeeper}"]
timeout=6
root-path="/burrow"
[cluster.wb]
class-name="kafka"
servers=[{servers}]
topic-refresh=2
offset-refresh=2
[consumer.wb]
class-name="kafka"
cluster="wb"
servers=[{servers}]
[httpserver.default]
address="127.0.0.1:{http_port}"
[storage.default]
class-name="inmemory"
workers=4
intervals=10
min-distance=1
"""
    )
    procs = []
    base = f"http://127.0.0.1:{http_port}/v3/kafka"

    def get(path: str = "") -> dict:
        with urllib.request.urlopen(base + path, timeout=5) as resp:
            return json.load(resp)

    log = conf / "burrow.log"

    def log_tail() -> str:
        return log.read_text()[-3000:] if log.exists() else "(no log)"

    def start():
        """Start Burrow (once `__consumer_offsets` exists: Burrow gives up without it, as with Kafka)."""
        procs.append(
            subprocess.Popen(
                [binary, "-config-dir", str(conf)], cwd=conf, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
        )
        try:
            _wait("Burrow's HTTP API", lambda: get().get("clusters") is not None, 60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nBurrow's log:\n{log_tail()}") from None
        return get

    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_burrow_sees_cluster_topics_groups_and_the_lag_wb_reports(cluster, burrow, topic_name):
    cluster.create_topic(topic_name, partitions=2)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    for i in range(10):
        p.produce(topic_name, f"v{i}".encode(), partition=i % 2)
    assert p.flush(15) == 0
    group = f"burrow-g-{uuid.uuid4().hex[:6]}"
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": group, "enable.auto.commit": False})
    # Committed 2 of partition 0's 5 records and 4 of partition 1's: lag 3 and 1.
    c.commit(offsets=[TopicPartition(topic_name, 0, 2), TopicPartition(topic_name, 1, 4)], asynchronous=False)

    burrow = burrow()
    assert burrow()["clusters"] == ["wb"]
    _wait("Burrow lists the topic", lambda: topic_name in burrow("/wb/topic")["topics"])
    assert burrow(f"/wb/topic/{topic_name}")["offsets"] == [5, 5]
    _wait("Burrow lists the group", lambda: group in burrow("/wb/consumer")["consumers"])

    def lag_by_partition():
        status = burrow(f"/wb/consumer/{group}/lag")["status"]
        parts = {p["partition"]: p["current_lag"] for p in status["partitions"] if p["topic"] == topic_name}
        return parts if len(parts) == 2 else None

    burrow_lag = _wait("Burrow reports the group's lag", lag_by_partition)
    wb_lag = cluster.sql(f"SELECT partition, lag FROM wb.consumer_lag WHERE group_id = '{group}' ORDER BY partition")
    assert burrow_lag == {0: 3, 1: 1}
    assert dict(zip(wb_lag["partition"], wb_lag["lag"], strict=True)) == burrow_lag
    c.close()
