"""`Cluster`: Kafka-protocol broker processes in the background of a notebook or test.

    from workbench import Cluster
    cluster = Cluster(brokers=3, data_dir="data/demo")
    cluster.create_topic("orders", partitions=6)

Each broker is its own OS process (`python -m workbench.broker`) listening on
127.0.0.1. This class is the only place that knows process ids; everything
else talks to brokers through the Kafka protocol. Brokers watch their parent
(stdin pipe + parent pid) and exit when it dies, so a kernel restart or a
killed test leaves no orphans; `stop()`, the context manager, garbage
collection and interpreter exit stop them too.

`data_dir` layout:

    cluster.json                 broker ids and ports (reused on reopen)
    metadata/log.jsonl           the cluster metadata log
    broker-<id>/topics/<topic>/partition=<p>/   segments, indexes, *.parquet
    broker-<id>/broker.log       the broker's log
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import random
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench._ready import await_ready_port
from workbench.client import AdminClient, Consumer, KafkaConnection, Producer
from workbench.cluster_config import validate_broker_config
from workbench.errors import ClusterError, ClusterStoppedError
from workbench.schema_registry.process import SchemaRegistryProcess
from workbench.security.authorizer import parse_acl
from workbench.security.credentials import build_credentials
from workbench.security.sasl import MECHANISMS

__all__ = ["MAX_BROKERS", "BrokerProcess", "Cluster", "ClusterError", "ClusterStoppedError"]

STARTUP_TIMEOUT_S = 30.0

MAX_VOTERS = 5  # controller quorum size: every broker up to five, the first five beyond that
#: Each broker is a Python process (about 50 MB resident, its own event loop and threads) on one
#: machine; past 16 of them a laptop or a Binder pod spends minutes starting them and the brokers
#: starve each other of CPU (only the first five are controller voters anyway).
MAX_BROKERS = 16
#: `stop()` sends this to every broker at once: the whole cluster is stopping, so a broker skips
#: controlled shutdown (there is no other broker left to take its leaderships, and waiting for a
#: quorum that is itself stopping took five seconds) and just flushes its logs and exits.
CLUSTER_STOP_SIGNAL = signal.SIGUSR1


@dataclass
class BrokerProcess:
    node_id: int
    port: int
    raft_port: int = 0
    process: subprocess.Popen | None = None
    ready: bool = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


#: Where listening ports are picked: below the kernel's ephemeral range. A port from bind(0) lies
#: inside that range, so while its broker is down (killed, restarting) any outgoing connection on the
#: machine may take it as its source port, and the restarted broker fails with EADDRINUSE. Ports below
#: the range are never handed out implicitly.
_LISTEN_PORT_FLOOR = 10_000


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _free_port() -> int:
    """A free TCP port on 127.0.0.1 outside the ephemeral range (see `_LISTEN_PORT_FLOOR`)."""
    low, _ = _ephemeral_range()
    if low - _LISTEN_PORT_FLOOR >= 1000:
        rng = random.SystemRandom()
        for _ in range(200):
            port = rng.randrange(_LISTEN_PORT_FLOOR, low)
            if _port_is_free(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Cluster(KafkaConnection):
    """A cluster of broker processes on 127.0.0.1.

    Args:
        brokers: number of brokers (ids 1..N). Reopening a `data_dir` without
            `brokers` brings back as many as it had.
        data_dir: where topics, offsets and metadata live. Default: a temporary
            directory removed by `stop()`. An existing directory is reopened with
            its topics and data.
        port: base port; broker i listens on `port + i - 1`. Default: free
            ports (reused when a `data_dir` is reopened, if still free).
        config: broker settings (`workbench.broker.config.BrokerConfig` fields),
            e.g. `{"auto_create_topics_enable": False, "num_partitions": 3}`; topic
            defaults go in `log_defaults` with Kafka's topic config names.
        users: `{"alice": "secret", ...}`: turns on SASL authentication (brokers keep
            only salted SCRAM credentials). Clients then need `sasl_username` and
            `sasl_password` (or use `cluster.as_user(name, password)`).
        sasl_mechanisms: default `["PLAIN", "SCRAM-SHA-256"]` when `users` is given.
        acls: `[{"principal": "User:alice", "operation": "Read", "topic": "orders"}, ...]`
            (see `workbench.security.authorizer`); with ACLs, anything not allowed is denied.
        super_users: `["User:admin"]`: principals that bypass ACLs.
        schema_registry: also run a Confluent-compatible schema registry
            (`workbench.schema_registry`), its own process storing schemas in the `_schemas`
            topic; its URL is `cluster.schema_registry_url`. Default False (one process less).
    """

    #: Brokers this process runs (`workbench.embedded.EmbeddedCluster`): kill, restart, local Parquet.
    embedded = True

    def __init__(
        self,
        brokers: int | None = None,
        data_dir: str | os.PathLike | None = None,
        *,
        port: int | None = None,
        config: dict[str, Any] | None = None,
        start: bool = True,
        users: dict[str, str] | None = None,
        acls: list[dict] | None = None,
        super_users: list[str] | None = None,
        sasl_mechanisms: list[str] | None = None,
        schema_registry: bool = False,
    ) -> None:
        if not isinstance(schema_registry, bool):
            raise ValueError(f"schema_registry must be True or False, not {schema_registry!r}")
        if schema_registry and users:
            raise ValueError(
                "schema_registry=True is not supported with users=... yet (the registry's own clients "
                "would need SASL credentials); run it without users, or use an external registry"
            )
        if brokers is not None and (not isinstance(brokers, int) or isinstance(brokers, bool) or brokers < 1):
            raise ValueError(f"brokers must be a positive integer, not {brokers!r}")
        if brokers is not None and brokers > MAX_BROKERS:
            raise ValueError(
                f"brokers={brokers} is more than this machine should run: each broker is its own Python "
                f"process, and up to {MAX_BROKERS} are supported; for a bigger cluster use a real one "
                "with workbench.connect(...)"
            )
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"config must be a dict of broker settings, not {type(config).__name__}")
        validate_broker_config(config or {})
        if port is not None and (not isinstance(port, int) or not 0 <= port <= 65535):
            raise ValueError(f"port must be between 0 and 65535, not {port!r}")
        self._temporary = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="workbench-")) if data_dir is None else Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _make_owner_only(self.data_dir)
        self._security = _security_settings(users, acls, super_users, sasl_mechanisms, config)
        self._lock_file = self._take_lock()
        self.config = dict(config or {})
        state = self._read_state()
        known = {int(k): v for k, v in state.get("brokers", {}).items()}
        known_raft = {int(k): v for k, v in state.get("raft_ports", {}).items()}
        if known and brokers is not None and brokers != len(known):
            self._lock_file.close()
            raise ClusterError(
                f"data directory {str(self.data_dir)!r} holds a cluster of {len(known)} broker(s) "
                f"(ids {sorted(known)}), not {brokers}: its partitions, replicas and controller quorum "
                f"are laid out over those brokers. Reopen it with brokers={len(known)} (or leave brokers "
                "out), or choose another data_dir for a cluster of a different size"
            )
        count = brokers if brokers is not None else (len(known) or 1)
        self.brokers: dict[int, BrokerProcess] = {}
        taken: set[int] = set()
        for node_id in range(1, count + 1):
            if port:
                p = port + node_id - 1
            else:
                p = known.get(node_id, 0)
                if not p or not _port_is_free(p):
                    p = _free_port()
            taken.add(p)
            rp = known_raft.get(node_id, 0)
            if not rp or rp in taken or not _port_is_free(rp):
                rp = _free_port()
                while rp in taken:
                    rp = _free_port()
            taken.add(rp)
            self.brokers[node_id] = BrokerProcess(node_id, p, rp)
        self._mutex = threading.RLock()
        self._stopped = False
        super().__init__("")
        self._registry: SchemaRegistryProcess | None = None
        if schema_registry:
            self._registry = SchemaRegistryProcess(
                self.bootstrap_servers, self.data_dir / "schema-registry", replication_factor=min(3, count)
            )
            weakref.finalize(self, self._registry.stop, signal.SIGKILL)
        self._finalizer = weakref.finalize(
            self, _terminate_all, self.brokers, self._lock_file, self.data_dir if self._temporary else None
        )
        if start:
            self.start()

    # -- lifecycle --------------------------------------------------------------------------------

    def _take_lock(self):
        lock = open(self.data_dir / ".lock", "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ClusterError(
                f"data directory {str(self.data_dir)!r} is in use by another running cluster; stop that "
                "cluster first (cluster.stop() or Ctrl-C on `workbench up`) or choose another data_dir"
            ) from None
        return lock

    def _read_state(self) -> dict:
        path = self.data_dir / "cluster.json"
        if path.exists():
            try:
                return json.loads(path.read_text())
            except ValueError:
                return {}
        return {}

    def _write_state(self) -> None:
        state = {
            "brokers": {str(b.node_id): b.port for b in self.brokers.values()},
            "raft_ports": {str(b.node_id): b.raft_port for b in self.brokers.values()},
        }
        tmp = self.data_dir / "cluster.json.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.data_dir / "cluster.json")

    def start(self) -> Cluster:
        """Start every broker that is not running and wait until all serve."""
        with self._mutex:
            self._ensure_running("start")
            pending = [b for b in self.brokers.values() if not b.alive]
            for b in pending:
                self._spawn(b)
            for b in self.brokers.values():
                if b.process is not None and not getattr(b, "ready", False):
                    self._await_ready(b)
            self._stopped = False
            self._write_state()
            if self._registry is not None and not self._registry.alive:
                self._registry.start()
                self._schema_registry_url = self._registry.url
        return self

    def _spawn(self, b: BrokerProcess) -> None:
        broker_dir = self.data_dir / f"broker-{b.node_id}"
        broker_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _make_owner_only(broker_dir)
        config = dict(self.config)
        security_file = broker_dir / "security.json"
        if self._security is not None:
            # Credentials and the inter-broker secret go in an owner-only file, not on the
            # command line (which every local user can read with `ps`).
            _write_private(security_file, json.dumps(self._security))
            config["security_file"] = str(security_file)
        elif security_file.exists():
            security_file.unlink()
        cmd = [
            sys.executable,
            "-m",
            "workbench.broker",
            "--node-id",
            str(b.node_id),
            "--cluster-dir",
            str(self.data_dir),
            "--port",
            str(b.port),
            "--raft-port",
            str(b.raft_port),
            "--voters",
            json.dumps(self.voters),
            "--config",
            json.dumps(config),
        ]
        stderr = open(broker_dir / "stderr.log", "ab")
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        b.ready = False
        try:
            b.process = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                close_fds=True,
                start_new_session=True,
            )
        finally:
            stderr.close()

    def _await_ready(self, b: BrokerProcess) -> None:
        assert b.process is not None
        port = await_ready_port(b.process, STARTUP_TIMEOUT_S)
        if port is not None:
            b.port = port
            b.ready = True
            return
        log_tail = self._log_tail(b.node_id)
        self._kill(b)
        raise ClusterError(f"broker {b.node_id} did not start (port {b.port}). Last lines of its log:\n{log_tail}")

    def _log_tail(self, node_id: int, lines: int = 15) -> str:
        out = []
        for name in ("stderr.log", "broker.log"):
            path = self.data_dir / f"broker-{node_id}" / name
            if path.exists():
                out.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(out)

    def _kill(self, b: BrokerProcess, sig: int = signal.SIGKILL) -> None:
        if b.process is not None and b.process.poll() is None:
            try:
                b.process.send_signal(sig)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """Stop every broker cleanly and at once, then SIGKILL any still running after 10 s. Idempotent.

        Every broker is told the whole cluster is stopping (`CLUSTER_STOP_SIGNAL`): each flushes
        its logs and exits without a controlled shutdown, in parallel, so three brokers stop in
        well under a second. Afterwards every call on this object raises `ClusterStoppedError`
        at once; `Cluster(data_dir=...)` reopens the data."""
        with self._mutex:
            if self._stopped:
                return
            self._stopped = True
            # Watches first: one caught between two evaluations ends now, instead of starting a
            # query against brokers that are going away (and waiting out its client timeouts).
            for w in list(self.__dict__.get("_sql_watches", ())):
                w.request_stop()
            if self._registry is not None:
                self._registry.stop()
            for b in self.brokers.values():
                self._kill(b, CLUSTER_STOP_SIGNAL)
            try:
                self.close_sql()
            except Exception:
                pass
            for b in self.brokers.values():
                _reap(b)
        self._finalizer()
        self._notify_stopped()

    def _closed_reason(self) -> str | None:
        if not self._stopped:
            return None
        again = (
            "Cluster(...) starts a new one"
            if self._temporary
            else f"Cluster(data_dir={str(self.data_dir)!r}) reopens it with its data"
        )
        return f"the cluster is stopped (cluster.stop() ran) and its brokers are gone; {again}"

    close = stop

    def stop_broker(self, node_id: int) -> None:
        """Stop one broker gracefully (SIGTERM: flushes its logs before exiting)."""
        self._ensure_running(f"stop broker {node_id}")
        b = self._broker(node_id)
        self._kill(b, signal.SIGTERM)
        _reap(b)

    def kill_broker(self, node_id: int) -> None:
        """SIGKILL one broker: a real crash, no flush, no goodbye."""
        self._ensure_running(f"kill broker {node_id}")
        b = self._broker(node_id)
        self._kill(b, signal.SIGKILL)
        _reap(b)

    def restart_broker(self, node_id: int) -> None:
        """Start a stopped or killed broker again, on the same port and data.

        Returns once it serves, when a majority of the controller quorum is running
        with it; otherwise (say, every broker was killed) it returns at once and the
        broker becomes ready when enough others start: `cluster.start()` restarts
        every stopped broker together."""
        b = self._broker(node_id)
        with self._mutex:
            self._ensure_running(f"restart broker {node_id}")
            if b.alive:
                self._kill(b, signal.SIGTERM)
                _reap(b)
            self._spawn(b)
            voters = [int(v) for v in self.voters]
            running = sum(1 for v in voters if self.brokers[v].alive)
            if node_id not in voters or running * 2 > len(voters):
                self._await_ready(b)

    def _broker(self, node_id: int) -> BrokerProcess:
        if node_id not in self.brokers:
            raise ValueError(f"no broker {node_id!r}; this cluster has brokers {sorted(self.brokers)}")
        return self.brokers[node_id]

    # -- facts ------------------------------------------------------------------------------------

    @property
    def voters(self) -> dict[str, list]:
        """The controller quorum: the first `MAX_VOTERS` brokers, with their Kafka and Raft ports."""
        ids = sorted(self.brokers)[:MAX_VOTERS]
        return {str(i): ["127.0.0.1", self.brokers[i].port, self.brokers[i].raft_port] for i in ids}

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{b.port}" for b in self.brokers.values())

    @property
    def stopped(self) -> bool:
        """True once `stop()` ran (widgets and watches use it to end their threads)."""
        return self._stopped

    # -- clients on a secured cluster ---------------------------------------------------------------

    @property
    def secured(self) -> bool:
        """True when the brokers require SASL authentication."""
        return self._security is not None

    def _client_conf(self, conf: dict[str, Any]) -> dict[str, Any]:
        if self._security is None:
            return conf
        dotted = {k.replace("_", "."): v for k, v in conf.items()}
        if not dotted.get("sasl.username") or not dotted.get("sasl.password"):
            raise ClusterError(
                "this cluster requires SASL authentication: pass sasl_username=... and sasl_password=... "
                "(e.g. cluster.producer(sasl_username='alice', sasl_password='...')), or use "
                "cluster.as_user('alice', '...').producer()"
            )
        mechanisms = self._security["sasl_mechanisms"]
        dotted.setdefault("security.protocol", "SASL_PLAINTEXT")
        dotted.setdefault("sasl.mechanism", "SCRAM-SHA-256" if "SCRAM-SHA-256" in mechanisms else mechanisms[0])
        return dotted

    def producer(self, **conf: Any) -> Producer:
        return super().producer(**self._client_conf(conf))

    def consumer(self, group: str | None = None, topics=None, **conf: Any) -> Consumer:
        return super().consumer(group, topics, **self._client_conf(conf))

    def admin(self, **conf: Any) -> AdminClient:
        return super().admin(**self._client_conf(conf))

    def as_user(self, username: str, password: str) -> KafkaConnection:
        """The same producer/consumer/admin/create_topic/topics façade, authenticated as `username`."""
        return _UserConnection(self, username, password)

    def _known_brokers(self) -> dict[int, str]:
        return {b.node_id: f"127.0.0.1:{b.port}" for b in self.brokers.values()}

    def _replica_notes(self) -> dict[int, dict]:
        """The `replica-states.json` each running broker publishes in its directory (catching up
        after a restart, damaged ranges, an offline log directory; see describe.replica_states)."""
        notes: dict[int, dict] = {}
        for b in self.brokers.values():
            if not b.alive:
                continue
            try:
                notes[b.node_id] = json.loads(
                    (self.data_dir / f"broker-{b.node_id}" / "replica-states.json").read_text()
                )
            except (OSError, ValueError):
                continue
        return notes

    def describe(self, *, internal: bool = False):
        """As `KafkaConnection.describe`, plus the log cleaner's state of each compacted partition's
        leader (`dirty_ratio`, `cleaned_up_to`, `records_removed`, `bytes_reclaimed`; see
        `workbench.cleaner_state`)."""
        from workbench.cleaner_state import add_to_description

        return add_to_description(super().describe(internal=internal), self.data_dir)

    def broker_pids(self) -> dict[int, int | None]:
        return {b.node_id: b.pid if b.alive else None for b in self.brokers.values()}

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        alive = sum(b.alive for b in self.brokers.values())
        return f"Cluster(brokers={len(self.brokers)}, alive={alive}, bootstrap_servers={self.bootstrap_servers!r})"


class _UserConnection(KafkaConnection):
    """`Cluster.as_user(...)`: every client it makes carries the user's SASL credentials."""

    def __init__(self, cluster: Cluster, username: str, password: str) -> None:
        super().__init__(cluster.bootstrap_servers)
        self._cluster = cluster
        self._login = {"sasl.username": username, "sasl.password": password}

    def _closed_reason(self) -> str | None:
        return self._cluster._closed_reason()

    def _with_login(self, conf: dict[str, Any]) -> dict[str, Any]:
        return self._cluster._client_conf({**self._login, **{k.replace("_", "."): v for k, v in conf.items()}})

    def producer(self, **conf: Any) -> Producer:
        self._ensure_running()
        return self._adopt(Producer(self.bootstrap_servers, **self._with_login(conf)))

    def consumer(self, group: str | None = None, topics=None, **conf: Any) -> Consumer:
        self._ensure_running()
        return self._adopt(Consumer(self.bootstrap_servers, group, topics, **self._with_login(conf)))

    def admin(self, **conf: Any) -> AdminClient:
        return KafkaConnection.admin(self, **self._with_login(conf))

    def __repr__(self) -> str:
        return f"{self._cluster!r}.as_user({self._login['sasl.username']!r})"


_SECURITY_KEYS = (
    "sasl_mechanisms",
    "scram_credentials",
    "acls",
    "super_users",
    "inter_broker_secret",
    "security_file",
)


def _security_settings(users, acls, super_users, sasl_mechanisms, config) -> dict[str, Any] | None:
    """Validate the security arguments; the settings every broker gets (None: no security)."""
    misplaced = [k for k in _SECURITY_KEYS if k in (config or {})]
    if misplaced:
        raise ValueError(
            f"{misplaced} do not go in config=: use Cluster(users=..., acls=..., super_users=..., sasl_mechanisms=...)"
        )
    if users is None:
        if acls is not None or super_users or sasl_mechanisms:
            raise ValueError(
                "acls, super_users and sasl_mechanisms need users: Cluster(users={'alice': 'secret'}, acls=[...])"
            )
        return None
    if not users:
        raise ValueError("users must name at least one user, e.g. users={'alice': 'secret'}")
    mechanisms = list(sasl_mechanisms) if sasl_mechanisms is not None else list(MECHANISMS)
    bad = [m for m in mechanisms if m not in MECHANISMS]
    if bad or not mechanisms:
        raise ValueError(f"sasl_mechanisms must be a non-empty subset of {list(MECHANISMS)}, not {mechanisms!r}")
    for acl in acls or []:
        parse_acl(acl)
    for su in super_users or []:
        if not isinstance(su, str) or not su.startswith("User:"):
            raise ValueError(f"super user {su!r} must look like 'User:admin'")
    return {
        "sasl_mechanisms": mechanisms,
        "scram_credentials": build_credentials(users),
        "acls": None if acls is None else list(acls),
        "super_users": list(super_users or []),
        "inter_broker_secret": secrets.token_urlsafe(32),
    }


def _make_owner_only(path: Path) -> None:
    """Data directories are 0700: other local users cannot read topics, offsets or credentials."""
    try:
        st = path.stat()
        ours = path.name.startswith("broker-") or not any(path.iterdir()) or (path / "cluster.json").exists()
        if ours and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(path, 0o700)
    except OSError:
        pass


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _reap(b: BrokerProcess, timeout: float = 10.0) -> None:
    proc = b.process
    if proc is None:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


def _terminate_all(brokers: dict[int, BrokerProcess], lock_file, temp_dir: Path | None) -> None:
    """Finalizer: no broker outlives its Cluster object or the interpreter."""
    for b in brokers.values():
        if b.process is not None and b.process.poll() is None:
            try:
                b.process.terminate()
            except ProcessLookupError:
                pass
    for b in brokers.values():
        _reap(b, timeout=5.0)
    try:
        lock_file.close()
    except Exception:
        pass
    if temp_dir is not None:
        shutil.rmtree(temp_dir, ignore_errors=True)


atexit.register(lambda: None)  # weakref.finalize runs registered finalizers at exit
