"""`python -m workbench.broker`: run one broker process.

Started by `workbench.Cluster`. Prints `READY <port>` on stdout once it
listens, logs to `<broker_dir>/broker.log`, stops cleanly on SIGTERM/SIGINT
(a controlled shutdown first: its leaderships move to other brokers) or on SIGUSR1
(`Cluster.stop()`: the whole cluster is stopping, so there is nobody to hand
leadership to and the broker only flushes its logs), and exits by itself
when the process that started it dies (its stdin pipe closes, or its parent
pid changes), so brokers never outlive a notebook kernel or a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from workbench._malloc import keep_large_buffers_in_the_heap
from workbench.broker.broker import Broker
from workbench.broker.config import BrokerConfig


def parse_args(argv: list[str] | None = None) -> BrokerConfig:
    parser = argparse.ArgumentParser(prog="python -m workbench.broker")
    parser.add_argument("--node-id", type=int, required=True)
    parser.add_argument("--cluster-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--raft-port", type=int, default=0)
    parser.add_argument(
        "--voters",
        default="{}",
        help='JSON: {"<node id>": ["host", kafka_port, raft_port], ...} (the controller quorum)',
    )
    parser.add_argument("--config", default="{}", help="JSON object of BrokerConfig overrides")
    args = parser.parse_args(argv)
    overrides = json.loads(args.config)
    voters = {int(k): v for k, v in json.loads(args.voters).items()}
    return BrokerConfig(
        node_id=args.node_id,
        cluster_dir=args.cluster_dir,
        host=args.host,
        port=args.port,
        raft_port=args.raft_port,
        voters=voters,
        **overrides,
    )


async def _watch_parent(stop: asyncio.Event, parent_pid: int) -> None:
    """Exit when the parent goes: stdin (a pipe from the parent) reaches EOF, or we are re-parented."""
    loop = asyncio.get_running_loop()
    if not sys.stdin.isatty():

        def on_stdin() -> None:
            try:
                data = os.read(0, 4096)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(0)
                stop.set()

        try:
            loop.add_reader(0, on_stdin)
        except (OSError, ValueError, PermissionError):
            pass
    while not stop.is_set():
        if os.getppid() != parent_pid:
            stop.set()
            return
        await asyncio.sleep(0.5)


async def run(config: BrokerConfig) -> None:
    broker = Broker(config)
    port = await broker.start()
    print(f"READY {port}", flush=True)
    stop = asyncio.Event()
    whole_cluster = False
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def on_cluster_stop() -> None:
        nonlocal whole_cluster
        whole_cluster = True
        stop.set()

    loop.add_signal_handler(signal.SIGUSR1, on_cluster_stop)
    watcher = loop.create_task(_watch_parent(stop, os.getppid()))
    await stop.wait()
    watcher.cancel()
    await broker.stop(controlled=not whole_cluster)


def main(argv: list[str] | None = None) -> None:
    keep_large_buffers_in_the_heap()  # see workbench._malloc: halves the CPU of a 1 MB produce
    config = parse_args(argv)
    config.broker_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logging.basicConfig(
        filename=str(config.broker_dir / "broker.log"),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s [broker %(process)d] %(name)s: %(message)s",
    )
    try:
        import uvloop  # a faster event loop (libuv), where available
    except ImportError:
        asyncio.run(run(config))
    else:
        uvloop.run(run(config))
    # `Broker.stop()` has closed every log, index and the metadata log: what remains is tearing down
    # the interpreter (freeing a heap of segments, pyarrow, modules), which took about half a second
    # of `Cluster.stop()` and has nothing left to write. Flush what buffers we own and leave now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
