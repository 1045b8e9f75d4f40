"""The `workbench` command.

    workbench up --brokers 3 [--port 9092] [--data DIR] [--schema-registry] [--config num.partitions=3 ...]

runs a cluster in the foreground, prints `bootstrap.servers=...` once every
broker listens (and `schema.registry.url=...` with `--schema-registry`), and
stops the brokers and exits 0 on Ctrl-C or SIGTERM.
`--config NAME=VALUE` (repeatable) sets a broker setting, by Kafka's name
(`num.partitions`) or the `Cluster(config=...)` one (`num_partitions`); the
value is read as JSON when it parses (`3`, `true`), else as a string.

    workbench cache clear|prune

empties the `workbench.connect(...)` SQL cache, or removes what was unused for a week.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import typing
from typing import Any

from workbench.cluster import Cluster, ClusterError
from workbench.cluster_config import broker_settings


def parse_config(items: list[str]) -> dict[str, Any]:
    """`["num.partitions=3", "auto_create_topics_enable=false"]` -> broker settings."""
    config: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--config takes NAME=VALUE, e.g. --config num.partitions=3, not {item!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        key = name.strip().replace(".", "_")
        if isinstance(value, str) and typing.get_origin(broker_settings().get(key)) is list:
            value = [v.strip() for v in value.split(",") if v.strip()]  # Kafka's list form: a,b
        config[key] = value
    return config


def _up(args: argparse.Namespace) -> int:
    try:
        config = parse_config(args.config)
    except ValueError as exc:
        print(f"workbench: {exc}", file=sys.stderr)
        return 2
    if args.no_auto_create:
        config["auto_create_topics_enable"] = False
    try:
        cluster = Cluster(
            brokers=args.brokers,
            data_dir=args.data,
            port=args.port,
            config=config,
            schema_registry=args.schema_registry,
        )
    except (ClusterError, ValueError) as exc:
        print(f"workbench: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"bootstrap.servers={cluster.bootstrap_servers}", flush=True)
    if cluster.schema_registry_url:
        print(f"schema.registry.url={cluster.schema_registry_url}", flush=True)
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
    up.add_argument(
        "--schema-registry", action="store_true", help="also run a schema registry (prints schema.registry.url=...)"
    )
    up.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a broker setting, e.g. num.partitions=3 (repeatable; Kafka's names or Cluster(config=) ones)",
    )
    cache = sub.add_parser("cache", help="the workbench.connect(...) SQL cache (~/.cache/workbench)")
    cache.add_argument("action", choices=["clear", "prune"], help="clear: remove all; prune: unused for a week")
    args = parser.parse_args(argv)
    if args.command == "up":
        return _up(args)
    if args.command == "cache":
        from workbench.sql.cache_dirs import cache_base, prune_cache

        removed = prune_cache(max_age_days=0 if args.action == "clear" else None)
        print(f"removed {len(removed)} cache director{'y' if len(removed) == 1 else 'ies'} from {cache_base()}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
