"""Broker processes: start, stop, orphans, the CLI, and a data directory's single owner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import Producer

from workbench import Cluster, ClusterError


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(pid_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_brokers_die_with_the_process_that_started_them(tmp_path):
    script = (
        "import json, sys, time\n"
        "from workbench import Cluster\n"
        f"c = Cluster(brokers=2, data_dir={str(tmp_path / 'd')!r})\n"
        "print(json.dumps(list(c.broker_pids().values())), flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    pids = json.loads(parent.stdout.readline())
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)
    parent.kill()  # SIGKILL: no atexit, no finalizers, like a crashed kernel
    parent.wait()
    assert wait_gone(pids), "brokers outlived their parent"


def test_stop_is_clean_and_idempotent(tmp_path):
    c = Cluster(brokers=2, data_dir=tmp_path / "d")
    pids = [p for p in c.broker_pids().values()]
    c.stop()
    assert wait_gone(pids, 1)
    c.stop()
    assert all(pid is None for pid in c.broker_pids().values())


def test_temporary_cluster_removes_its_directory():
    with Cluster(brokers=1) as c:
        data = c.data_dir
        assert data.exists()
    assert not data.exists()


def test_data_dir_in_use_by_another_cluster_is_refused(tmp_path):
    with (
        Cluster(brokers=1, data_dir=tmp_path / "d"),
        pytest.raises(ClusterError, match="in use by another running cluster"),
    ):
        Cluster(brokers=1, data_dir=tmp_path / "d")


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="brokers must be a positive integer"):
        Cluster(brokers=0)
    with pytest.raises(ValueError, match="port must be between"):
        Cluster(brokers=1, port=70000)


def test_given_base_port_is_used(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
    with Cluster(brokers=2, data_dir=tmp_path / "d", port=base) as c:
        assert c.bootstrap_servers == f"127.0.0.1:{base},127.0.0.1:{base + 1}"


def test_cli_up_prints_bootstrap_and_exits_zero_on_sigint(tmp_path, topic_name):
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "up", "--brokers", "2", "--data", str(tmp_path / "d")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("bootstrap.servers=127.0.0.1:")
        bootstrap = line.split("=", 1)[1]
        assert len(bootstrap.split(",")) == 2
        p = Producer({"bootstrap.servers": bootstrap})
        p.produce(topic_name, b"hello from outside")
        assert p.flush(15) == 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    # The same data directory comes back with the topic.
    with Cluster(data_dir=tmp_path / "d") as c:
        assert len(c.brokers) == 2
        assert topic_name in c.topics()


def test_cli_exits_zero_on_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "up", "--brokers", "1"], stdout=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"bootstrap.servers=")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_client_logs_stay_off_stderr_while_a_broker_is_down(fresh_cluster, topic_name, capfd):
    """librdkafka's "Connect ... failed" lines go to the `workbench.kafka` logger, which prints nothing
    unless logging is configured: a notebook cell running while a broker is down shows no red text
    (this once broke nbval's output check of notebook 03)."""
    cluster = fresh_cluster(brokers=3)
    cluster.create_topic(topic_name, partitions=3, replication_factor=3)
    producer = cluster.producer()
    for i in range(50):
        producer.send(topic_name, {"i": i})
    producer.flush()
    cluster.kill_broker(3)
    capfd.readouterr()
    for i in range(50, 100):
        producer.send(topic_name, {"i": i})
    producer.flush(60)
    # (Consumers see up to the high watermark, which may still wait for the dead replica to leave the ISR.)
    assert int(cluster.sql(f'SELECT count(*) AS n FROM "{topic_name}"').n[0]) >= 50
    err = capfd.readouterr().err
    assert "Connection refused" not in err and "rdkafka" not in err, err[-2000:]
