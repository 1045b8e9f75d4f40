"""Broker processes: start, stop, orphans, the CLI, and a data directory's single owner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from confluent_kafka import Producer

from tests.support import wait_until
from workbench import Cluster, ClusterError, ClusterStoppedError
from workbench.cluster import MAX_BROKERS


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
    return wait_until(lambda: not any(pid_alive(p) for p in pids), timeout, 0.1, fail=False)


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
    from workbench.cluster import _free_port, _port_is_free

    # Below the ephemeral range, as the cluster picks its own: a bind(0) port's neighbour is often
    # some client's source port a moment later ("broker 2 did not start", CI of 2 December).
    base = next(p for p in iter(_free_port, None) if _port_is_free(p + 1))
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


# ---- issue 18: the API after stop(), and arguments checked before anything starts -------------------


def test_every_call_after_stop_raises_a_clear_error_at_once(tmp_path, topic_name):
    """Before: create_topic hung 30 s and raised an empty TimeoutError, topics() a raw KafkaException
    after 10 s, send_and_wait waited 30 s, restart_broker started a broker nobody owned."""
    c = Cluster(brokers=1, data_dir=tmp_path / "d")
    c.create_topic(topic_name)
    producer = c.producer()
    consumer = c.consumer("g", topic_name)
    pids = list(c.broker_pids().values())
    c.stop()
    calls = {
        "create_topic": lambda: c.create_topic("another"),
        "topics": c.topics,
        "describe": c.describe,
        "delete_topic": lambda: c.delete_topic(topic_name),
        "producer": c.producer,
        "consumer": lambda: c.consumer("g2", topic_name),
        "admin": c.admin,
        "leader_history": c.leader_history,
        "restart_broker": lambda: c.restart_broker(1),
        "kill_broker": lambda: c.kill_broker(1),
        "stop_broker": lambda: c.stop_broker(1),
        "start": c.start,
        "send": lambda: producer.send(topic_name, {"late": True}),
        "send_and_wait": lambda: producer.send_and_wait(topic_name, {"late": True}),
        "poll": lambda: consumer.poll(1.0),
        "read": lambda: consumer.read(10),
    }
    for name, call in calls.items():
        with pytest.raises(ClusterStoppedError, match="the cluster is stopped") as info:
            call()
        assert "reopens it" in str(info.value), (name, str(info.value))
    with pytest.raises(Exception, match="stopped"):
        c.sql("SELECT 1")
    assert all(pid is None for pid in c.broker_pids().values()), "restart_broker started an orphan"
    assert wait_gone(pids, 1)
    assert producer.flush(1) >= 0  # flushing a stopped cluster's producer returns at once


def test_create_topic_exist_ok_makes_a_cell_rerunnable(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=2)
    cluster.create_topic(topic_name, partitions=2, exist_ok=True)
    with pytest.raises(ValueError, match="already exists"):
        cluster.create_topic(topic_name, partitions=2)


def test_config_is_checked_before_any_broker_starts(tmp_path):
    cases = {
        "num_partitions": ({"num_partitions": "many"}, r"config\['num_partitions'\] must be an integer"),
        "unknown": ({"num_partiton": 3}, r"unknown broker setting.*did you mean 'num_partitions'"),
        "bool": ({"auto_create_topics_enable": "no"}, r"auto_create_topics_enable.*True or False"),
        "zero": ({"num_partitions": 0}, r"at least 1"),
        "reserved": ({"port": 9092}, r"Cluster\(port=...\)"),
    }
    for name, (config, pattern) in cases.items():
        with pytest.raises(ValueError, match=pattern):
            Cluster(brokers=1, data_dir=tmp_path / name, config=config)
        assert not (tmp_path / name).exists(), f"{name}: a directory was made before the config was checked"


def test_too_many_brokers_is_refused_up_front(tmp_path):
    with pytest.raises(ValueError, match=f"up to {MAX_BROKERS} are supported"):
        Cluster(brokers=100, data_dir=tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_reopening_a_data_dir_with_another_broker_count_is_refused(tmp_path):
    with Cluster(brokers=2, data_dir=tmp_path / "d"):
        pass
    with pytest.raises(ClusterError, match=r"holds a cluster of 2 broker\(s\).*brokers=2"):
        Cluster(brokers=1, data_dir=tmp_path / "d")
    with Cluster(brokers=2, data_dir=tmp_path / "d") as c:  # the refusal left the directory usable
        assert len(c.brokers) == 2


def test_describe_answers_while_one_broker_is_paused(fresh_cluster, topic_name):
    """A SIGSTOPped broker still accepts TCP connections; describe() used to pick it (the first
    bootstrap broker) and fail after 5 s."""
    cluster = fresh_cluster(3)
    cluster.create_topic(topic_name, partitions=3, replication_factor=3)
    first = min(cluster.brokers)
    pid = cluster.broker_pids()[first]
    os.kill(pid, signal.SIGSTOP)
    try:
        description = cluster.describe()
        assert set(description.brokers["id"]) == {1, 2, 3}
        rows = description.partitions[description.partitions.topic == topic_name]
        assert len(rows) == 3
        # Partitions led by the live brokers still have their offsets.
        live = rows[rows.leader != first]
        assert live.high_watermark.notna().all()
    finally:
        os.kill(pid, signal.SIGCONT)


def test_cli_up_config_sets_broker_settings(tmp_path, topic_name):
    """`workbench up --config num.partitions=3`: auto-created topics get three partitions."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "up", "--brokers", "1", "--config", "num.partitions=3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("bootstrap.servers="), proc.stderr.read().decode()[-2000:]
        bootstrap = line.split("=", 1)[1]
        p = Producer({"bootstrap.servers": bootstrap})
        p.produce(topic_name, b"x")
        assert p.flush(15) == 0
        assert len(p.list_topics(topic_name, timeout=10).topics[topic_name].partitions) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_up_refuses_a_bad_config_with_its_name():
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "up", "--config", "num.partitions=many"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "config['num_partitions'] must be an integer" in out.stderr
