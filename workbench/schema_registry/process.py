"""`SchemaRegistryProcess`: starts and stops the registry process for `Cluster`.

Like `BrokerProcess`, it holds the child's Popen and nothing else knows its pid. The child
gets a stdin pipe only this process holds, so it exits when we do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from workbench._ready import await_ready_port

STARTUP_TIMEOUT_S = 60.0


class SchemaRegistryError(RuntimeError):
    """The registry process did not start."""


class SchemaRegistryProcess:
    """One registry process for the brokers at `bootstrap_servers`; `url` once started."""

    def __init__(
        self,
        bootstrap_servers: str,
        log_dir: Path,
        *,
        port: int = 0,
        replication_factor: int = 3,
        client_conf: dict | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.log_dir = Path(log_dir)
        self.port = port
        self.replication_factor = replication_factor
        self.client_conf = dict(client_conf or {})
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.alive:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_dir / "schema-registry.log"
        cmd = [
            sys.executable,
            "-m",
            "workbench.schema_registry",
            "--bootstrap-servers",
            self.bootstrap_servers,
            "--port",
            str(self.port),
            "--replication-factor",
            str(self.replication_factor),
            "--client-config",
            json.dumps(self.client_conf),
            "--log-file",
            str(log_file),
            "--watch-parent",
        ]
        stderr = open(self.log_dir / "schema-registry.stderr.log", "ab")
        try:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                close_fds=True,
                start_new_session=True,
            )
        finally:
            stderr.close()
        self._await_ready(log_file)

    def _await_ready(self, log_file: Path) -> None:
        assert self.process is not None
        port = await_ready_port(self.process, STARTUP_TIMEOUT_S)
        if port is not None:
            self.port = port
            return
        self.stop(signal.SIGKILL)
        tail = []
        for path in (self.log_dir / "schema-registry.stderr.log", log_file):
            if path.exists():
                tail += path.read_text(errors="replace").splitlines()[-15:]
        raise SchemaRegistryError("the schema registry did not start. Last lines of its log:\n" + "\n".join(tail))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL after `timeout`). Idempotent."""
        p = self.process
        if p is None:
            return
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            except ProcessLookupError:
                pass
        for stream in (p.stdin, p.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
