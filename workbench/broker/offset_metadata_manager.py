"""Committed offsets of the groups of one ``__consumer_offsets`` partition (Kafka's OffsetMetadataManager).

Kafka's group coordinator (the ``group-coordinator`` module, 3.6+) keeps two
managers side by side: ``GroupMetadataManager`` (membership and rebalances;
here `workbench.broker.group_coordinator.GroupCoordinator`) and
``OffsetMetadataManager`` (this module): the committed offset of each
(group, topic, partition), how a commit is validated and made durable, how
OffsetFetch reads it, and which offsets expire (KIP-211, KIP-496).

Who may commit (member id, generation) is a membership question: the group
coordinator answers it before calling `commit`. A commit becomes visible only
after the store (the ``__consumer_offsets`` partition) has appended its
records: an answer of NONE means the offset is durable, and a failed append
changes nothing here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

from workbench.broker.group_metadata import CONSUMER_PROTOCOL_TYPE, GroupMetadata, GroupState
from workbench.broker.group_offsets import (
    OffsetKey,
    OffsetStore,
    decode_offset_value,
    encode_offset_key,
    encode_offset_value,
)
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

log = logging.getLogger(__name__)

NO_OFFSET = -1
NO_LEADER_EPOCH = -1
NO_METADATA = ""

TopicPartition = tuple[str, int]
#: (topic, partition, offset, leader_epoch, metadata) as OffsetCommit carries it.
OffsetCommit = tuple[str, int, int, int, "str | None"]


class OffsetAndMetadata(NamedTuple):
    """A committed offset (Kafka's OffsetAndMetadata)."""

    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp_ms: int


def store_error_for_commit(code: ErrorCode) -> ErrorCode:
    """How Kafka's GroupMetadataManager.storeOffsets maps a failed append."""
    if code in (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.REQUEST_TIMED_OUT,
    ):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    if code in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE, ErrorCode.INVALID_FETCH_SIZE):
        return ErrorCode.INVALID_COMMIT_OFFSET_SIZE
    return ErrorCode.UNKNOWN_SERVER_ERROR


class OffsetMetadataManager:
    """Committed offsets by group id; written through ``store``, rebuilt from it by `replay`."""

    def __init__(self, store: OffsetStore, *, metadata_max_bytes: int, wall_ms: Callable[[], int]) -> None:
        self._store = store
        self.metadata_max_bytes = metadata_max_bytes  # offset.metadata.max.bytes
        self._wall_ms = wall_ms
        self._offsets: dict[str, dict[TopicPartition, OffsetAndMetadata]] = {}

    # -- state ---------------------------------------------------------------------------

    def replay(self, key: OffsetKey, value: bytes | None) -> None:
        """Apply one ``__consumer_offsets`` offset record (a ``None`` value is a tombstone)."""
        tp = (key.topic, key.partition)
        if value is None:
            committed = self._offsets.get(key.group)
            if committed is not None:
                committed.pop(tp, None)
                if not committed:
                    del self._offsets[key.group]
            return
        v = decode_offset_value(value)
        self._offsets.setdefault(key.group, {})[tp] = OffsetAndMetadata(
            v.offset, v.leader_epoch, v.metadata, v.commit_timestamp_ms
        )

    def group_ids(self) -> list[str]:
        """Groups that have at least one committed offset."""
        return list(self._offsets)

    def has_offsets(self, group_id: str) -> bool:
        return bool(self._offsets.get(group_id))

    def partitions(self, group_id: str) -> list[TopicPartition]:
        return list(self._offsets.get(group_id, {}))

    def clear(self) -> None:
        self._offsets.clear()

    # -- OffsetCommit / OffsetFetch ----------------------------------------------------------

    async def commit(self, group_id: str, offsets: list[OffsetCommit]) -> tuple[list[tuple[str, int, ErrorCode]], bool]:
        """Store ``offsets`` for a commit the group coordinator has already allowed.

        Returns the per-partition results and whether records were appended
        (the group then exists in the log even if it was deleted meanwhile).
        Metadata longer than offset.metadata.max.bytes is refused per partition
        (OFFSET_METADATA_TOO_LARGE); the rest are appended in one batch and
        applied only once the append returns.
        """
        now_ms = self._wall_ms()
        errors: dict[TopicPartition, ErrorCode] = {}
        records: list[tuple[bytes, bytes | None]] = []
        accepted: list[tuple[TopicPartition, OffsetAndMetadata]] = []
        for topic, partition, offset, leader_epoch, metadata in offsets:
            # Kafka compares String.length(); Python len() counts the same for BMP text.
            if metadata is not None and len(metadata) > self.metadata_max_bytes:
                errors[(topic, partition)] = ErrorCode.OFFSET_METADATA_TOO_LARGE
                continue
            epoch = NO_LEADER_EPOCH if leader_epoch is None else leader_epoch
            records.append(
                (
                    encode_offset_key(group_id, topic, partition),
                    encode_offset_value(offset, epoch, metadata, now_ms),
                )
            )
            accepted.append(((topic, partition), OffsetAndMetadata(offset, epoch, metadata or NO_METADATA, now_ms)))
        stored = False
        if records:
            code = ErrorCode.NONE
            try:
                await self._store.append(records)
            except KafkaProtocolError as e:
                code = store_error_for_commit(e.code)
            except Exception:
                log.exception("storing offsets of group %s failed", group_id)
                code = ErrorCode.UNKNOWN_SERVER_ERROR
            if code is ErrorCode.NONE:
                stored = True
                committed = self._offsets.setdefault(group_id, {})
                for tp, value in accepted:
                    committed[tp] = value
            for tp, _ in accepted:
                errors[tp] = code
        return [(t, p, errors[(t, p)]) for t, p, *_ in offsets], stored

    def fetch(
        self, group_id: str, partitions: list[TopicPartition] | None
    ) -> list[tuple[str, int, int, int, str, ErrorCode]]:
        """Committed (topic, partition, offset, leader_epoch, metadata, error); None = all, sorted.

        Unknown partitions (or groups) read as offset -1, epoch -1, metadata "",
        error NONE, as in Kafka.
        """
        committed = self._offsets.get(group_id, {})
        keys = sorted(committed) if partitions is None else [(t, p) for t, p in partitions]
        out = []
        for tp in keys:
            value = committed.get(tp)
            if value is None:
                out.append((tp[0], tp[1], NO_OFFSET, NO_LEADER_EPOCH, NO_METADATA, ErrorCode.NONE))
            else:
                out.append((tp[0], tp[1], value.offset, value.leader_epoch, value.metadata, ErrorCode.NONE))
        return out

    # -- expiry and deletion -------------------------------------------------------------------

    def expired_partitions(self, group: GroupMetadata, retention_ms: int, now_ms: int) -> list[TopicPartition]:
        """Offsets of ``group`` past offsets.retention (Kafka's offsetExpirationCondition).

        * an Empty "simple" group (no protocol type): each offset by its own commit time;
        * an Empty consumer group: all of them, once it has been Empty for the retention (KIP-211);
        * a live consumer group: offsets of topics it no longer subscribes to (KIP-496);
        * anything else: none.
        """
        committed = self._offsets.get(group.group_id, {})
        if group.is_(GroupState.EMPTY):
            if group.protocol_type is None:  # "simple" group: per-commit timestamps
                return [tp for tp, v in committed.items() if v.commit_timestamp_ms + retention_ms <= now_ms]
            if group.state_since + retention_ms <= now_ms:  # consumer group empty for long enough
                return list(committed)
            return []
        if group.protocol_type == CONSUMER_PROTOCOL_TYPE and group.subscribed_topics is not None:
            return [
                tp
                for tp, v in committed.items()
                if tp[0] not in group.subscribed_topics and v.commit_timestamp_ms + retention_ms <= now_ms
            ]
        return []

    def remove(self, group_id: str, partitions: list[TopicPartition]) -> list[tuple[bytes, bytes | None]]:
        """Forget ``partitions`` of ``group_id``; the tombstones to append for those it had."""
        committed = self._offsets.get(group_id)
        tombstones: list[tuple[bytes, bytes | None]] = []
        if committed is None:
            return tombstones
        for tp in partitions:
            if committed.pop(tp, None) is not None:
                tombstones.append((encode_offset_key(group_id, tp[0], tp[1]), None))
        if not committed:
            del self._offsets[group_id]
        return tombstones
