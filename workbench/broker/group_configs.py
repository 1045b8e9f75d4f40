"""Per-group config overrides (KIP-848 / KIP-932 group configs; Kafka 4.x's ``GroupConfig``).

A GROUP config resource (ConfigResource.Type.GROUP, 32 on the wire; 16 is CLIENT_METRICS) holds
overrides of the group coordinator's broker defaults for one group id: the consumer protocol's
session timeout and heartbeat interval, the share protocol's session timeout, heartbeat
interval, record lock duration, delivery count limit, auto offset reset and isolation level. As
in Kafka they live in the cluster metadata log (Kafka: a ConfigRecord of resource type GROUP;
here a ``group_config`` record, full replacement of the group's overrides,
`workbench.controller.image`), so every broker sees the same overrides and they survive any
broker's loss.

Validation is Kafka's ``GroupConfig.validate``: a known name, a value of the config's type, within
the broker's ``group.{consumer,share}.{min,max}.*`` bounds, and a session timeout above the heartbeat
interval of the same protocol, checked on the group's overrides as they would be after the change
(defaults filled in). Pure functions of the broker config and the overrides: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workbench.protocol.errors import ErrorCode, KafkaProtocolError

__all__ = ["GROUP_CONFIGS", "GroupConfigDef", "describe_entries", "effective", "validate"]

# DescribeConfigs ConfigType / ConfigSource values (KIP-336 / KIP-226)
_TYPE_STRING, _TYPE_INT = 2, 3
SOURCE_GROUP_CONFIG = 8
SOURCE_DEFAULT_CONFIG = 5


@dataclass(frozen=True)
class GroupConfigDef:
    """One group config: its broker default (a `BrokerConfig` field) and how it is checked."""

    default_field: str
    #: For an int config, the `BrokerConfig` fields holding its (min, max); None: fixed bounds below.
    bound_fields: tuple[str, str] | None = None
    bounds: tuple[int, int] | None = None
    choices: tuple[str, ...] | None = None  # a string config's allowed values

    @property
    def is_int(self) -> bool:
        return self.choices is None


GROUP_CONFIGS: dict[str, GroupConfigDef] = {
    "consumer.session.timeout.ms": GroupConfigDef(
        "group_consumer_session_timeout_ms",
        ("group_consumer_min_session_timeout_ms", "group_consumer_max_session_timeout_ms"),
    ),
    "consumer.heartbeat.interval.ms": GroupConfigDef(
        "group_consumer_heartbeat_interval_ms",
        ("group_consumer_min_heartbeat_interval_ms", "group_consumer_max_heartbeat_interval_ms"),
    ),
    "share.session.timeout.ms": GroupConfigDef(
        "group_share_session_timeout_ms",
        ("group_share_min_session_timeout_ms", "group_share_max_session_timeout_ms"),
    ),
    "share.heartbeat.interval.ms": GroupConfigDef(
        "group_share_heartbeat_interval_ms",
        ("group_share_min_heartbeat_interval_ms", "group_share_max_heartbeat_interval_ms"),
    ),
    "share.record.lock.duration.ms": GroupConfigDef(
        "group_share_record_lock_duration_ms",
        ("group_share_min_record_lock_duration_ms", "group_share_max_record_lock_duration_ms"),
    ),
    # Kafka 4.2 (group.share.{min,max}.delivery.count.limit: 2 and 10)
    "share.delivery.count.limit": GroupConfigDef("group_share_delivery_count_limit", bounds=(2, 10)),
    # Kafka 4.1 also takes "by_duration:<ISO-8601 duration>"; not here.
    "share.auto.offset.reset": GroupConfigDef("group_share_auto_offset_reset", choices=("latest", "earliest")),
    "share.isolation.level": GroupConfigDef(
        "group_share_isolation_level", choices=("read_uncommitted", "read_committed")
    ),
}

#: (session timeout, heartbeat interval) pairs Kafka checks against each other.
_SESSION_ABOVE_HEARTBEAT = (
    ("consumer.session.timeout.ms", "consumer.heartbeat.interval.ms"),
    ("share.session.timeout.ms", "share.heartbeat.interval.ms"),
)


def _default(cfg: Any, name: str) -> str:
    return str(getattr(cfg, GROUP_CONFIGS[name].default_field))


def effective(cfg: Any, overrides: Mapping[str, str]) -> dict[str, str]:
    """Every group config of a group: its override, else the broker's default."""
    return {name: overrides.get(name, _default(cfg, name)) for name in GROUP_CONFIGS}


def _invalid(message: str) -> KafkaProtocolError:
    return KafkaProtocolError(ErrorCode.INVALID_CONFIG, message)


def validate(cfg: Any, overrides: Mapping[str, str]) -> dict[str, str]:
    """The overrides, checked as Kafka's ``GroupConfig.validate`` checks them; INVALID_CONFIG otherwise."""
    for name in overrides:
        if name not in GROUP_CONFIGS:
            raise _invalid(f"Unknown group config name: {name}")
    values = effective(cfg, overrides)
    ints: dict[str, int] = {}
    for name, d in GROUP_CONFIGS.items():
        value = values[name]
        if d.choices is not None:
            if value not in d.choices:
                raise _invalid(
                    f"Invalid value {value} for configuration {name}: String must be one of: " + ", ".join(d.choices)
                )
            continue
        try:
            n = int(value)
        except ValueError:
            raise _invalid(f"Invalid value {value} for configuration {name}: Not a number of type INT") from None
        if d.bound_fields is not None:
            lo, hi = (int(getattr(cfg, f)) for f in d.bound_fields)
            lo_name, hi_name = (f.replace("_", ".") for f in d.bound_fields)
        else:
            assert d.bounds is not None
            lo, hi = d.bounds
            lo_name, hi_name = str(lo), str(hi)
        if n < lo:
            raise _invalid(f"{name} must be greater than or equal to {lo_name} ({lo})")
        if n > hi:
            raise _invalid(f"{name} must be less than or equal to {hi_name} ({hi})")
        ints[name] = n
    for session, heartbeat in _SESSION_ABOVE_HEARTBEAT:
        if ints[session] <= ints[heartbeat]:
            raise _invalid(f"{session} must be greater than {heartbeat}")
    return {name: str(ints.get(name, overrides[name])) for name in overrides}


def altered(current: Mapping[str, str], changes: list[tuple[str, int, str | None]], *, replace: bool) -> dict[str, str]:
    """The overrides after (Incremental)AlterConfigs ``changes`` (SET 0, DELETE 1; ``replace``:
    AlterConfigs' "these are all the configs"). Names are checked here; values by `validate`."""
    configs = {} if replace else dict(current)
    for name, op, value in changes:
        if name not in GROUP_CONFIGS:
            raise _invalid(f"Unknown group config name: {name}")
        if op == 1:
            configs.pop(name, None)
        elif op != 0:
            raise _invalid(f"{name} is not a list: only SET and DELETE apply")
        elif value is None:
            raise _invalid(f"Invalid value null for configuration {name}")
        else:
            configs[name] = value
    return configs


def describe_entries(cfg: Any, overrides: Mapping[str, str], keys: list[str] | None) -> list[dict[str, Any]]:
    """DescribeConfigs entries of a GROUP resource: every group config, set (GROUP_CONFIG) or default."""
    entries = []
    for name, d in sorted(GROUP_CONFIGS.items()):
        if keys is not None and name not in keys:
            continue
        set_here = name in overrides
        entries.append(
            {
                "name": name,
                "value": overrides[name] if set_here else _default(cfg, name),
                "read_only": False,
                "config_source": SOURCE_GROUP_CONFIG if set_here else SOURCE_DEFAULT_CONFIG,
                "is_default": not set_here,
                "is_sensitive": False,
                "synonyms": [],
                "config_type": _TYPE_INT if d.is_int else _TYPE_STRING,
                "documentation": None,
            }
        )
    return entries
