"""librdkafka's built-in mock cluster (C, in-memory), started through ctypes from the librdkafka that
confluent-kafka's wheel bundles. The peer every workbench figure is divided by.

    python benchmarks/mock_cluster.py --brokers 3      # prints "BOOTSTRAP 127.0.0.1:p1,…", runs until stdin closes

`MockCluster` is also usable in-process, but the benchmarks run it in its own process (`spawn`), so the
mock's broker threads and the client never share one interpreter, as with workbench's brokers.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import subprocess
import sys
import time
from pathlib import Path

RD_KAFKA_PRODUCER = 0


def librdkafka_path() -> str:
    """The librdkafka shared object shipped in confluent-kafka's wheel (`confluent_kafka.libs/`)."""
    import confluent_kafka

    site = Path(confluent_kafka.__file__).resolve().parent.parent
    found = sorted(glob.glob(str(site / "confluent_kafka.libs" / "librdkafka*.so*")))
    if not found:
        raise FileNotFoundError(f"no librdkafka*.so under {site / 'confluent_kafka.libs'}")
    return found[0]


class MockCluster:
    """`rd_kafka_mock_cluster_new(rk, n)` on a producer handle that stays alive until `close()`."""

    def __init__(self, brokers: int = 1, topics: dict[str, tuple[int, int]] | None = None) -> None:
        lib = ctypes.CDLL(librdkafka_path())
        lib.rd_kafka_conf_new.restype = ctypes.c_void_p
        lib.rd_kafka_conf_set.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        lib.rd_kafka_new.restype = ctypes.c_void_p
        lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
        lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
        lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
        lib.rd_kafka_mock_topic_create.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
        self._lib = lib
        errstr = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        # The handle only hosts the mock cluster; keep it quiet.
        lib.rd_kafka_conf_set(conf, b"log_level", b"0", errstr, len(errstr))
        self._rk = lib.rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, len(errstr))
        if not self._rk:
            raise RuntimeError(f"rd_kafka_new failed: {errstr.value.decode()}")
        self._mcluster = lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._mcluster:
            lib.rd_kafka_destroy(self._rk)
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        self.bootstrap_servers = lib.rd_kafka_mock_cluster_bootstraps(self._mcluster).decode()
        for name, (partitions, rf) in (topics or {}).items():
            self.create_topic(name, partitions, rf)

    def create_topic(self, name: str, partitions: int, replication_factor: int = 1) -> None:
        err = self._lib.rd_kafka_mock_topic_create(self._mcluster, name.encode(), partitions, replication_factor)
        if err:
            raise RuntimeError(f"rd_kafka_mock_topic_create({name}) failed: error {err}")

    def close(self) -> None:
        if self._mcluster:
            self._lib.rd_kafka_mock_cluster_destroy(self._mcluster)
            self._mcluster = None
        if self._rk:
            self._lib.rd_kafka_destroy(self._rk)
            self._rk = None


class MockClusterProcess:
    """A mock cluster in a child process: `.bootstrap_servers`, `.pid`, `.create_topic()`, `.close()`."""

    def __init__(self, brokers: int = 1) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--brokers", str(brokers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        line = self._proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "BOOTSTRAP":
            self.close()
            raise RuntimeError(f"mock cluster did not start: {line!r}")
        self.bootstrap_servers = line[1]
        self.pid = self._proc.pid

    def create_topic(self, name: str, partitions: int, replication_factor: int = 1) -> None:
        self._proc.stdin.write(f"TOPIC {name} {partitions} {replication_factor}\n")
        self._proc.stdin.flush()
        reply = self._proc.stdout.readline().strip()
        if reply != "OK":
            raise RuntimeError(f"mock topic {name}: {reply}")

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> MockClusterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", type=int, default=1)
    args = ap.parse_args()
    started = time.perf_counter()
    mock = MockCluster(args.brokers)
    print(f"BOOTSTRAP {mock.bootstrap_servers}", flush=True)
    print(
        f"mock cluster of {args.brokers} up in {time.perf_counter() - started:.3f}s (pid {os.getpid()})",
        file=sys.stderr,
    )
    try:
        for line in sys.stdin:  # commands until the parent closes our stdin
            parts = line.split()
            if len(parts) == 4 and parts[0] == "TOPIC":
                try:
                    mock.create_topic(parts[1], int(parts[2]), int(parts[3]))
                    print("OK", flush=True)
                except RuntimeError as e:
                    print(f"ERR {e}", flush=True)
    finally:
        mock.close()


if __name__ == "__main__":
    main()
