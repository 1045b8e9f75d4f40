"""Every topic config Kafka accepts, with its type, default and validator (Kafka's `TopicConfig` / `LogConfig`).

CreateTopics, AlterConfigs and IncrementalAlterConfigs validate against this
catalogue the way Kafka's `ConfigDef` does (type, range, allowed values), and
DescribeConfigs lists every entry with its default and type. The list is Kafka
4.x's `LogConfig` plus the configs Kafka 3.x still accepted and old clients and
test suites set (`message.format.version`, `message.timestamp.difference.max.ms`,
`message.downconversion.enable`): accepted, validated, stored and shown, and
marked deprecated.

Where a config has meaning here it is applied (see `APPLIED`); the others are
stored and returned so that tools which set them (Terraform providers, Strimzi,
client test suites) work, but change nothing. Defaults are Kafka's, except the
few where the workbench deliberately differs (smaller segments, a periodic
fsync), noted beside them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from workbench.protocol.errors import ErrorCode, KafkaProtocolError

LONG_MAX = 9223372036854775807
INT_MAX = 2147483647

# DescribeConfigs `config_type` (KIP-569), Kafka's DescribeConfigsResponse.ConfigType.
TYPE_BOOLEAN, TYPE_STRING, TYPE_INT, TYPE_LONG, TYPE_DOUBLE, TYPE_LIST = 1, 2, 3, 5, 6, 7

_KIND_TYPE = {"boolean": TYPE_BOOLEAN, "string": TYPE_STRING, "int": TYPE_INT, "long": TYPE_LONG}
_KIND_TYPE.update({"double": TYPE_DOUBLE, "list": TYPE_LIST})


@dataclass(frozen=True, slots=True)
class TopicConfigDef:
    """One topic config: its ConfigDef type, default, and what values are legal."""

    name: str
    kind: str  # boolean | string | int | long | double | list
    default: str
    minimum: float | None = None
    maximum: float | None = None
    choices: frozenset[str] | None = None  # for strings; for lists, each item
    deprecated: bool = False
    doc: str = ""

    @property
    def config_type(self) -> int:
        return _KIND_TYPE[self.kind]

    def validate(self, value: str | None) -> str:
        """The value as stored, or INVALID_CONFIG with Kafka's wording."""
        if value is None:
            raise _invalid(self.name, value, "a value is required")
        text = value.strip()
        if self.kind == "boolean":
            if text.lower() not in ("true", "false"):
                raise _invalid(self.name, value, "Expected value to be either true or false")
            return text.lower()
        if self.kind in ("int", "long"):
            try:
                number: float = int(text)
            except ValueError:
                raise _invalid(
                    self.name, value, f"Expected value to be a {'32' if self.kind == 'int' else '64'}-bit integer"
                ) from None
            limit = INT_MAX if self.kind == "int" else LONG_MAX
            if not -limit - 1 <= number <= limit:
                raise _invalid(
                    self.name, value, f"Expected value to be a {'32' if self.kind == 'int' else '64'}-bit integer"
                )
            self._check_range(value, number)
            return str(int(number))
        if self.kind == "double":
            try:
                number = float(text)
            except ValueError:
                raise _invalid(self.name, value, "Expected value to be a double") from None
            self._check_range(value, number)
            return text
        if self.kind == "list":
            items = [item.strip() for item in text.split(",") if item.strip()]
            if self.choices is not None:
                for item in items:
                    if item not in self.choices:
                        raise _invalid(self.name, value, f"String must be one of: {', '.join(sorted(self.choices))}")
            if self.name.endswith("replication.throttled.replicas"):
                _check_throttled_replicas(self.name, value, items)
            return ",".join(items)
        if self.choices is not None and text not in self.choices:
            raise _invalid(self.name, value, f"String must be one of: {', '.join(sorted(self.choices))}")
        if self.name == "message.format.version" and not _VERSION.match(text):
            raise _invalid(self.name, value, "Version must look like 0.10.0, 2.8 or 3.0-IV1")
        return text

    def _check_range(self, value: str, number: float) -> None:
        if self.minimum is not None and number < self.minimum:
            raise _invalid(self.name, value, f"Value must be at least {_fmt(self.minimum)}")
        if self.maximum is not None and number > self.maximum:
            raise _invalid(self.name, value, f"Value must be no more than {_fmt(self.maximum)}")


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _invalid(name: str, value: Any, why: str) -> KafkaProtocolError:
    # Kafka's ConfigException: "Invalid value <v> for configuration <name>: <why>"
    return KafkaProtocolError(ErrorCode.INVALID_CONFIG, f"Invalid value {value} for configuration {name}: {why}")


_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?(-IV\d+)?$")
_THROTTLE_ITEM = re.compile(r"^\d+:\d+$")


def _check_throttled_replicas(name: str, value: str, items: list[str]) -> None:
    # Kafka's ThrottledReplicaListValidator: "*" or a list of partition:broker pairs.
    if items == ["*"] or all(_THROTTLE_ITEM.match(i) for i in items):
        return
    raise _invalid(name, value, "must be the literal '*' or a list of replicas in the form 'partitionId:brokerId'")


def _d(name: str, kind: str, default: Any, **kw: Any) -> TopicConfigDef:
    if isinstance(default, bool):
        default = str(default).lower()
    return TopicConfigDef(name, kind, str(default), **kw)


_COMPRESSION = frozenset({"uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"})

CATALOGUE: dict[str, TopicConfigDef] = {
    d.name: d
    for d in (
        _d("cleanup.policy", "list", "delete", choices=frozenset({"delete", "compact"})),
        _d("compression.type", "string", "producer", choices=_COMPRESSION),
        # Confluent Server's broker-side schema validation (TopicNameStrategy subjects only).
        _d("confluent.key.schema.validation", "boolean", False),
        _d("confluent.value.schema.validation", "boolean", False),
        _d("compression.gzip.level", "int", -1, minimum=-1, maximum=9),  # KIP-390; -1: the codec's default
        _d("compression.lz4.level", "int", 9, minimum=1, maximum=17),
        _d("compression.zstd.level", "int", 3, minimum=-131072, maximum=22),
        _d("delete.retention.ms", "long", 86400000, minimum=0),
        _d("file.delete.delay.ms", "long", 60000, minimum=0),
        _d("flush.messages", "long", LONG_MAX, minimum=1),
        # Kafka leaves flushing to the OS (Long.MAX); the workbench fsyncs every second.
        _d("flush.ms", "long", 1000, minimum=0),
        _d("follower.replication.throttled.replicas", "list", ""),
        _d("index.interval.bytes", "int", 4096, minimum=0),
        _d("leader.replication.throttled.replicas", "list", ""),
        _d("local.retention.bytes", "long", -2, minimum=-2),  # KIP-405
        _d("local.retention.ms", "long", -2, minimum=-2),
        _d("max.compaction.lag.ms", "long", LONG_MAX, minimum=1),
        _d("max.message.bytes", "int", 1048588, minimum=0),
        _d("message.downconversion.enable", "boolean", True, deprecated=True),  # removed in Kafka 4.0
        _d("message.format.version", "string", "3.0-IV1", deprecated=True),  # removed in Kafka 4.0
        _d("message.timestamp.after.max.ms", "long", LONG_MAX, minimum=0),  # KIP-937
        _d("message.timestamp.before.max.ms", "long", LONG_MAX, minimum=0),
        _d("message.timestamp.difference.max.ms", "long", LONG_MAX, minimum=0, deprecated=True),
        _d("message.timestamp.type", "string", "CreateTime", choices=frozenset({"CreateTime", "LogAppendTime"})),
        _d("min.cleanable.dirty.ratio", "double", 0.5, minimum=0, maximum=1),
        _d("min.compaction.lag.ms", "long", 0, minimum=0),
        _d("min.insync.replicas", "int", 1, minimum=1),
        _d("preallocate", "boolean", False),
        _d("remote.log.copy.disable", "boolean", False),  # KIP-950
        _d("remote.log.delete.on.disable", "boolean", False),
        _d("remote.storage.enable", "boolean", False),
        _d("retention.bytes", "long", -1),
        _d("retention.ms", "long", 7 * 24 * 3600 * 1000, minimum=-1),
        # Kafka's default segment is 1 GiB and rolls weekly; the workbench rolls small segments often so
        # that they reach the Parquet tier (what SQL reads) within minutes.
        _d("segment.bytes", "int", 16 * 1024 * 1024, minimum=14),
        _d("segment.index.bytes", "int", 10485760, minimum=4),
        _d("segment.jitter.ms", "long", 0, minimum=0),
        _d("segment.ms", "long", 10 * 60 * 1000, minimum=1),
        _d("unclean.leader.election.enable", "boolean", False),
        # Not a Kafka config: sealed raw segments kept beside their Parquet files for fast fetches.
        _d("workbench.hot.segments", "int", 2, minimum=0),
    )
}

# The configs with an effect in the workbench; the rest are stored and described only.
APPLIED = frozenset(
    {
        "cleanup.policy",
        "compression.type",
        "confluent.key.schema.validation",
        "confluent.value.schema.validation",
        "flush.messages",
        "flush.ms",
        "index.interval.bytes",
        "max.message.bytes",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.difference.max.ms",
        "message.timestamp.type",
        "min.insync.replicas",
        "retention.bytes",
        "retention.ms",
        "segment.bytes",
        "segment.ms",
        "unclean.leader.election.enable",
        "workbench.hot.segments",
    }
)

DEFAULTS: dict[str, str] = {name: d.default for name, d in CATALOGUE.items()}


def validate_topic_config(name: str, value: str | None) -> str:
    """Validate one topic config as Kafka would; returns the value to store."""
    spec = CATALOGUE.get(name)
    if spec is None:
        raise KafkaProtocolError(ErrorCode.INVALID_CONFIG, f"Unknown topic config name: {name}")
    return spec.validate(value)
