"""`python -m workbench.schema_registry --bootstrap-servers H:P --port N`: the registry process.

Prints `READY <port>` on stdout once it has re-read `_schemas` and serves HTTP. Like a
broker, it exits when its parent goes (stdin closes, or the parent pid changes), so a
kernel restart leaves no orphan.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

from workbench.schema_registry.registry import SchemaRegistry
from workbench.schema_registry.rest import Routes, make_server
from workbench.schema_registry.store import KafkaStore


def _watch_parent(parent_pid: int) -> None:
    def gone(why: str) -> None:
        logging.getLogger(__name__).warning("parent process %d is gone (%s): exiting", parent_pid, why)
        os._exit(0)

    def stdin() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        gone("stdin closed")

    def poll() -> None:
        while True:
            if os.getppid() != parent_pid:
                gone("re-parented")
            time.sleep(0.5)

    if not sys.stdin.isatty():
        threading.Thread(target=stdin, name="parent-watch-stdin", daemon=True).start()
    threading.Thread(target=poll, name="parent-watch-pid", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.schema_registry")
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--replication-factor", type=int, default=3)
    parser.add_argument("--client-config", default="{}", help="extra confluent-kafka settings, as JSON")
    parser.add_argument("--log-file", default=None)
    parser.add_argument("--watch-parent", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        filename=args.log_file,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.watch_parent:
        _watch_parent(os.getppid())
    registry = SchemaRegistry()
    store = KafkaStore(
        args.bootstrap_servers,
        registry.apply,
        replication_factor=args.replication_factor,
        client_conf=json.loads(args.client_config),
    )
    registry.store = store
    store.start()
    server = make_server(Routes(registry), args.host, args.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    print(f"READY {server.server_address[1]}", flush=True)
    # The first JSON Schema registration would otherwise wait for this slow import.
    threading.Thread(target=lambda: __import__("jsonschema"), name="warm-up", daemon=True).start()
    stop.wait()
    server.shutdown()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
