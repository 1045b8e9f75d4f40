"""Per-partition log settings, named after Kafka's topic configs (LogConfig)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.protocol.errors import ErrorCode, KafkaProtocolError

_CLEANUP_POLICIES = {"delete", "compact", "compact,delete", "delete,compact"}


@dataclass
class LogConfig:
    """Settings of one partition log.

    With ``compact`` in ``cleanup_policy`` the broker's log cleaner
    (`workbench.storage.log_cleaner`) keeps the latest record per key, under the
    four compaction settings below (Kafka's names and defaults).
    """

    segment_bytes: int = 16 * 1024 * 1024
    segment_ms: int = 10 * 60 * 1000
    retention_ms: int = 7 * 24 * 3600 * 1000  # -1 = forever
    retention_bytes: int = -1  # -1 = unlimited, per partition
    cleanup_policy: str = "delete"
    max_message_bytes: int = 1048588  # largest batch accepted -> MESSAGE_TOO_LARGE
    index_interval_bytes: int = 4096
    hot_segments: int = 2  # sealed raw segments kept after Parquet conversion
    flush_ms: int = 1000  # the broker fsyncs every flush_ms
    min_cleanable_dirty_ratio: float = 0.5  # clean when dirty bytes / all bytes reach this
    min_compaction_lag_ms: int = 0  # a record stays uncompacted at least this long
    max_compaction_lag_ms: int = 2**63 - 1  # ... and at most this long (then cleaned whatever the ratio)
    delete_retention_ms: int = 24 * 3600 * 1000  # tombstones are kept this long after their timestamp
    # fsync before acknowledging once this many messages are unflushed (Kafka's flush.messages;
    # 1 = every acknowledged batch is on disk, with group commit). Kafka's default: never.
    flush_messages: int = 9223372036854775807

    # Kafka topic config name -> (field, smallest legal value); minima follow Kafka's TopicConfig.
    _KAFKA_NAMES: ClassVar[dict[str, tuple[str, int]]] = {
        "segment.bytes": ("segment_bytes", 14),
        "segment.ms": ("segment_ms", 1),
        "retention.ms": ("retention_ms", -1),
        "retention.bytes": ("retention_bytes", -1),
        "max.message.bytes": ("max_message_bytes", 0),
        "index.interval.bytes": ("index_interval_bytes", 0),
        "flush.ms": ("flush_ms", 0),
        "min.compaction.lag.ms": ("min_compaction_lag_ms", 0),
        "max.compaction.lag.ms": ("max_compaction_lag_ms", 1),
        "delete.retention.ms": ("delete_retention_ms", 0),
        "flush.messages": ("flush_messages", 1),
        # Not a Kafka name: how many sealed raw segments stay beside their Parquet files for fast
        # fetches (the local tier of KIP-405's idea, counted in segments).
        "workbench.hot.segments": ("hot_segments", 0),
    }

    @classmethod
    def from_topic_config(cls, configs: dict[str, str]) -> LogConfig:
        """Build from Kafka topic configs (strings); unknown keys are ignored.

        A value that does not parse or is out of range raises INVALID_CONFIG.
        """
        values: dict[str, object] = {}
        for name, raw in configs.items():
            if name == "cleanup.policy":
                policy = ",".join(p.strip() for p in str(raw).split(","))
                if policy not in _CLEANUP_POLICIES:
                    raise KafkaProtocolError(ErrorCode.INVALID_CONFIG, f"cleanup.policy: invalid value {raw!r}")
                values["cleanup_policy"] = policy
                continue
            if name == "min.cleanable.dirty.ratio":
                try:
                    ratio = float(str(raw).strip())
                except ValueError:
                    raise KafkaProtocolError(ErrorCode.INVALID_CONFIG, f"{name}: {raw!r} is not a number") from None
                if not 0.0 <= ratio <= 1.0:
                    raise KafkaProtocolError(ErrorCode.INVALID_CONFIG, f"{name}: {ratio} is not between 0 and 1")
                values["min_cleanable_dirty_ratio"] = ratio
                continue
            spec = cls._KAFKA_NAMES.get(name)
            if spec is None or raw is None:
                continue
            field_name, minimum = spec
            try:
                value = int(str(raw).strip())
            except ValueError:
                raise KafkaProtocolError(ErrorCode.INVALID_CONFIG, f"{name}: {raw!r} is not an integer") from None
            if value < minimum:
                raise KafkaProtocolError(ErrorCode.INVALID_CONFIG, f"{name}: {value} is below {minimum}")
            values[field_name] = value
        return cls(**values)  # type: ignore[arg-type]

    def to_topic_config(self) -> dict[str, str]:
        """The Kafka-named settings as strings (for DescribeConfigs)."""
        out = {name: str(getattr(self, field)) for name, (field, _) in self._KAFKA_NAMES.items()}
        out["cleanup.policy"] = self.cleanup_policy
        out["min.cleanable.dirty.ratio"] = str(self.min_cleanable_dirty_ratio)
        return out

    @property
    def compact(self) -> bool:
        """Whether the log cleaner compacts this log (``compact`` in cleanup.policy)."""
        return "compact" in self.cleanup_policy
