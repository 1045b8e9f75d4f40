"""The `workbench` command.

    workbench up --brokers 3 [--port 9092] [--data DIR]

runs a cluster in the foreground, prints `bootstrap.servers=...` once every
broker listens, and stops the brokers and exits 0 on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from workbench.cluster import Cluster, ClusterError


def _up(args: argparse.Namespace) -> int:
    config = {}
    if args.no_auto_create:
        config["auto_create_topics_enable"] = False
    try:
        cluster = Cluster(brokers=args.brokers, data_dir=args.data, port=args.port, config=config)
    except (ClusterError, ValueError) as exc:
        print(f"workbench: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"bootstrap.servers={cluster.bootstrap_servers}", flush=True)
    try:
        while not stop.wait(0.5):
            dead = [b.node_id for b in cluster.brokers.values() if not b.alive]
            if dead and len(dead) == len(cluster.brokers):
                print(
                    f"workbench: every broker has exited; see the broker logs in {cluster.data_dir}",
                    file=sys.stderr,
                )
                cluster.stop()
                return 1
    finally:
        cluster.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench", description="A Jupyter-first Kafka workbench.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run a cluster in the foreground")
    up.add_argument("--brokers", type=int, default=None, help="number of brokers (default 1, or as many as --data had)")
    up.add_argument("--port", type=int, default=None, help="base port: brokers listen on PORT, PORT+1, ...")
    up.add_argument("--data", default=None, help="data directory (default: a temporary one, removed on exit)")
    up.add_argument("--no-auto-create", action="store_true", help="do not create topics on first use")
    args = parser.parse_args(argv)
    if args.command == "up":
        return _up(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
