"""Checking `Cluster(config=...)` before any broker starts.

A broker setting is a field of `workbench.broker.config.BrokerConfig` (Kafka's broker config
name with `_` for `.`, e.g. `num_partitions` for `num.partitions`). A wrong name or a value of
the wrong type used to reach the broker subprocess, which died with a traceback in its log (or,
for `num_partitions="many"`, started and then failed every auto-created topic); here it is a
`ValueError` naming the setting, what it expects and, for a misspelling, the closest names.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

from workbench.broker.config import BrokerConfig, check_consumer_group_settings

#: Settings `Cluster` itself decides, with the argument to use instead.
RESERVED = {
    "node_id": "brokers are numbered 1..N by Cluster(brokers=N)",
    "cluster_dir": "use Cluster(data_dir=...)",
    "host": "brokers listen on 127.0.0.1",
    "port": "use Cluster(port=...)",
    "raft_port": "Cluster picks the controller quorum's ports",
    "voters": "the controller quorum is the first five brokers",
}
#: Settings that count something and must be at least 1 (the others may be 0).
AT_LEAST_ONE = {
    "num_partitions",
    "default_replication_factor",
    "offsets_topic_num_partitions",
    "group_consumer_heartbeat_interval_ms",
    "group_consumer_max_size",
}


def broker_settings() -> dict[str, Any]:
    """Every setting `config=` accepts, with its type (a typing annotation)."""
    hints = typing.get_type_hints(BrokerConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(BrokerConfig) if f.name not in RESERVED}


def _expects(hint: Any) -> tuple[tuple[type, ...], str]:
    """(accepted Python types, how to say it) for a field's annotation."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        types_, names = [], []
        for arg in typing.get_args(hint):
            if arg is type(None):
                types_.append(type(None))
                names.append("None")
            else:
                t, n = _expects(arg)
                types_ += t
                names.append(n)
        return tuple(types_), " or ".join(names)
    base = origin or hint
    if base is float:
        return (int, float), "a number"
    if base is int:
        return (int,), "an integer"
    if base is bool:
        return (bool,), "True or False"
    if base is str:
        return (str,), "a string"
    if base is dict:
        return (dict,), "a dict"
    if base is list:
        return (list, tuple), "a list"
    return (object,), "a value"


def validate_broker_config(config: dict[str, Any]) -> None:
    """Raise ValueError naming the first setting of `config` a broker would refuse or misread."""
    settings = broker_settings()
    for key, value in config.items():
        if not isinstance(key, str):
            raise ValueError(f"config keys are broker setting names (strings), not {key!r}")
        if key in RESERVED:
            raise ValueError(f"config[{key!r}] cannot be set: {RESERVED[key]}")
        if key not in settings:
            guess = difflib.get_close_matches(key.replace(".", "_"), settings, n=3)
            hint = f"; did you mean {' or '.join(map(repr, guess))}?" if guess else ""
            raise ValueError(
                f"unknown broker setting config[{key!r}]{hint} Broker settings are the fields of "
                "workbench.broker.config.BrokerConfig (Kafka's names with '_' for '.', e.g. "
                "'num_partitions'); topic defaults go in config['log_defaults'] with Kafka's topic "
                "config names"
            )
        accepted, said = _expects(settings[key])
        ok = isinstance(value, accepted)
        if ok and isinstance(value, bool) and bool not in accepted:
            ok = False  # True is an int to Python, not a partition count
        if not ok:
            raise ValueError(f"config[{key!r}] must be {said}, not {value!r}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            least = 1 if key in AT_LEAST_ONE else 0
            if value < least:
                raise ValueError(f"config[{key!r}] must be at least {least}, not {value!r}")
    # Settings checked against each other (the KIP-848 group.consumer.* ones), over the defaults.
    hints = typing.get_type_hints(BrokerConfig)
    merged = {
        f.name: config.get(f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
        for f in dataclasses.fields(BrokerConfig)
        if f.name.startswith("group_consumer_") and f.name in hints
    }
    check_consumer_group_settings(types.SimpleNamespace(**merged))
    defaults = config.get("log_defaults") or {}
    for name in defaults:
        if not isinstance(name, str) or "_" in name:
            raise ValueError(
                f"config['log_defaults'] takes Kafka topic config names such as 'retention.ms', not {name!r}"
            )
