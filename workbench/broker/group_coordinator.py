"""The classic consumer-group coordinator (JoinGroup/SyncGroup/Heartbeat/LeaveGroup, offsets).

A port of Apache Kafka's ``GroupCoordinator`` (core/src/main/scala/kafka/coordinator/
group, 3.x) for one set of groups, without sockets: the protocol handler decodes
a request, awaits a method here with plain values, and encodes the result.

Split as Kafka's ``group-coordinator`` module splits it (3.6+): this class is
the ``GroupMetadataManager`` part (members, generations, rebalances, group
records) and the entry point for every group API; committed offsets (commit,
fetch, delete, expiry, offset records) are `OffsetMetadataManager`'s
(`workbench.broker.offset_metadata_manager`), asked only after membership
checks here. Group state is `workbench.broker.group_metadata`; the
``__consumer_offsets`` record format and store interface are
`workbench.broker.group_offsets`.
Parked requests (JoinGroup during a rebalance, a follower's SyncGroup) are
awaited futures; Kafka's purgatories become deadlines checked by `tick()`,
which `start()` runs periodically.

Implemented, with the KIP that introduced each behaviour:
* eager rebalance protocol, delayed initial join (KIP-134), member id required
  for JoinGroup v4+ (KIP-394), static membership and FENCED_INSTANCE_ID
  (KIP-345), batch LeaveGroup v3+ (KIP-345), group.max.size (KIP-389),
  skipAssignment for a static leader rejoining (JoinGroup v9, KIP-814),
  removal of members that never send SyncGroup (KAFKA-13766), OffsetDelete
  (KIP-496), offset expiry of empty groups (KIP-211) and of unsubscribed
  topics (KIP-496).
* KIP-429 (cooperative rebalancing) needs nothing from the coordinator: it is a
  client-side protocol carried in the opaque metadata/assignment bytes.

The KIP-848 groups of the same offsets partition are `self.consumer`
(`workbench.broker.consumer_group_coordinator`) and its KIP-932 share groups
`self.share` (`workbench.broker.share_group_coordinator`), loaded by the same replay.

Not implemented: quotas on group metadata size.

Error codes that are not per-partition (NOT_COORDINATOR after `close()`,
INVALID_GROUP_ID) are raised as `KafkaProtocolError` from `fetch_offsets`;
every other method returns them in its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from workbench.broker.consumer_group_coordinator import ConsumerGroupCoordinator
from workbench.broker.group_metadata import (
    CONSUMER_PROTOCOL_TYPE,
    GroupMetadata,
    GroupState,
    MemberMetadata,
)
from workbench.broker.group_offsets import (
    GroupKey,
    GroupRecord,
    MemberRecord,
    OffsetKey,
    OffsetStore,
    decode_group_value,
    decode_key,
    encode_group_key,
    encode_group_value,
)
from workbench.broker.offset_metadata_manager import (
    OffsetCommit,
    OffsetMetadataManager,
    TopicPartition,
    store_error_for_commit,
)
from workbench.broker.share_group_coordinator import ShareGroupCoordinator
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Leading int16 of the `__consumer_offsets` keys of KIP-848 groups (ConsumerGroup*Key, types 3-8).
_CONSUMER_GROUP_RECORD_TYPES = frozenset(t.to_bytes(2, "big") for t in range(3, 9))
_SHARE_GROUP_RECORD_TYPES = frozenset(t.to_bytes(2, "big") for t in range(10, 15))

# Kafka's GroupCoordinator.NewMemberJoinTimeoutMs: a new member parked in JoinGroup
# cannot heartbeat; if it disconnected it will retry, so expire the stale entry.
NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000

# How long close() waits for in-flight store appends before cancelling them.
CLOSE_GRACE_S = 2.0

UNKNOWN_MEMBER_ID = ""
NO_GENERATION = -1

Empty = GroupState.EMPTY
Preparing = GroupState.PREPARING_REBALANCE
Completing = GroupState.COMPLETING_REBALANCE
Stable = GroupState.STABLE
Dead = GroupState.DEAD


@dataclass
class GroupConfig:
    """Broker settings for groups, named after Kafka's broker configs."""

    initial_rebalance_delay_ms: int = 3000  # group.initial.rebalance.delay.ms
    min_session_timeout_ms: int = 6000  # group.min.session.timeout.ms
    max_session_timeout_ms: int = 1800000  # group.max.session.timeout.ms
    max_size: int = 2**31 - 1  # group.max.size
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000  # offsets.retention.minutes
    offsets_retention_check_interval_ms: int = 600000  # offsets.retention.check.interval.ms
    offset_metadata_max_bytes: int = 4096  # offset.metadata.max.bytes
    # KIP-848 groups (the ConsumerGroupCoordinator beside this one), group.consumer.*:
    consumer_session_timeout_ms: int = 45000  # group.consumer.session.timeout.ms
    consumer_heartbeat_interval_ms: int = 1000  # group.consumer.heartbeat.interval.ms
    consumer_assignors: tuple[str, ...] = ("uniform", "range")  # group.consumer.assignors
    consumer_max_size: int = 2**31 - 1  # group.consumer.max.size
    # KIP-932 share groups (the ShareGroupCoordinator beside this one), group.share.*:
    share_session_timeout_ms: int = 45000  # group.share.session.timeout.ms
    share_heartbeat_interval_ms: int = 1000  # group.share.heartbeat.interval.ms (Kafka: 5000)


@dataclass
class JoinResult:
    """JoinGroup response fields; ``members`` is non-empty only for the leader."""

    error_code: ErrorCode
    generation_id: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    member_id: str = ""
    members: list[tuple[str, str | None, bytes]] = field(default_factory=list)
    skip_assignment: bool = False


@dataclass
class SyncResult:
    error_code: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass
class MemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass
class GroupDescription:
    error_code: ErrorCode
    group_id: str
    state: str
    protocol_type: str
    protocol_name: str
    members: list[MemberDescription] = field(default_factory=list)


def _store_error_for_group(code: ErrorCode) -> ErrorCode:
    """How Kafka's GroupMetadataManager.storeGroup maps a failed append."""
    if code is ErrorCode.REQUEST_TIMED_OUT:
        return ErrorCode.REBALANCE_IN_PROGRESS
    mapped = store_error_for_commit(code)
    return ErrorCode.UNKNOWN_SERVER_ERROR if mapped is ErrorCode.INVALID_COMMIT_OFFSET_SIZE else mapped


def _resolve(fut: asyncio.Future[Any] | None, value: Any) -> None:
    if fut is not None and not fut.done():
        fut.set_result(value)


class GroupCoordinator:
    """Classic group membership and committed offsets for the groups of one offsets store.

    Membership and rebalances are Kafka's GroupMetadataManager and live here;
    committed offsets are held by an `OffsetMetadataManager` (``self.offsets``),
    which this class consults after it has checked who may commit.
    """

    def __init__(
        self,
        offsets: OffsetStore,
        config: GroupConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        tick_interval_s: float = 0.05,
    ) -> None:
        self._store = offsets
        self.config = config or GroupConfig()
        self._clock = clock  # seconds, for timers
        self._wall_clock = wall_clock  # seconds, for commit/state timestamps
        self._tick_interval_s = tick_interval_s
        self._groups: dict[str, GroupMetadata] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._closed = False
        self._next_retention_check = 0.0
        self.offsets = OffsetMetadataManager(
            offsets, metadata_max_bytes=self.config.offset_metadata_max_bytes, wall_ms=self._wall_ms
        )
        #: The KIP-848 groups of the same offsets partition: same store, loaded by the same replay.
        self.consumer = ConsumerGroupCoordinator(
            offsets,
            heartbeat_interval_ms=self.config.consumer_heartbeat_interval_ms,
            session_timeout_ms=self.config.consumer_session_timeout_ms,
            assignors=self.config.consumer_assignors,
            max_size=self.config.consumer_max_size,
            clock=clock,
        )
        #: The KIP-932 share groups of the same offsets partition: same store, same replay.
        self.share = ShareGroupCoordinator(
            offsets,
            session_timeout_ms=self.config.share_session_timeout_ms,
            heartbeat_interval_ms=self.config.share_heartbeat_interval_ms,
        )

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> None:
        """Rebuild offsets and group metadata from the store (call before serving)."""
        now = self._clock()
        groups: dict[str, GroupMetadata] = {}
        has_record: set[str] = set()
        for key, value in self._store.replay():
            if key[:2] in _CONSUMER_GROUP_RECORD_TYPES:
                self.consumer.replay(key, value)  # a KIP-848 group's record (types 3-8)
                continue
            if key[:2] in _SHARE_GROUP_RECORD_TYPES:
                self.share.replay(key, value)  # a KIP-932 share group's record (types 10-14)
                continue
            try:
                k = decode_key(key)
            except ValueError:
                log.warning("skipping undecodable __consumer_offsets key %r", key[:32])
                continue
            group = groups.get(k.group)
            if group is None:
                group = groups[k.group] = GroupMetadata(k.group, state_since=self._wall_ms())
            if isinstance(k, OffsetKey):
                self.offsets.replay(k, value)
            elif isinstance(k, GroupKey):
                if value is None:
                    has_record.discard(k.group)
                    self._restore_group(group, None, now)
                else:
                    has_record.add(k.group)
                    self._restore_group(group, decode_group_value(value), now)
        for gid, group in groups.items():
            if self.offsets.has_offsets(gid) or group.members or gid in has_record:
                self._groups[gid] = group

    def _restore_group(self, group: GroupMetadata, rec: GroupRecord | None, now: float) -> None:
        group.members.clear()
        group.static_members.clear()
        group.leader_id = None
        if rec is None:
            group.protocol_type, group.protocol_name, group.generation_id = None, None, 0
            group.state = Empty
            return
        group.protocol_type = rec.protocol_type or None
        group.protocol_name = rec.protocol
        group.generation_id = rec.generation
        if rec.current_state_timestamp_ms >= 0:
            group.state_since = rec.current_state_timestamp_ms
        for m in rec.members:
            member = MemberMetadata(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout_ms,
                m.session_timeout_ms,
                rec.protocol_type,
                [(rec.protocol or "", m.subscription)],
                assignment=m.assignment,
                last_heartbeat=now,
            )
            group.add(member)
        group.leader_id = rec.leader if rec.leader in group.members else group.leader_id
        group.state = Stable if group.members else Empty
        group.subscribed_topics = group.compute_subscribed_topics()

    async def start(self) -> None:
        """Start the timer task (session expiry, delayed joins, offset retention)."""
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._run_ticker())

    async def close(self, grace: float | None = None) -> None:
        """Stop serving: parked requests get NOT_COORDINATOR, later calls too. In-flight appends get
        `grace` seconds (default `CLOSE_GRACE_S`; 0 when the whole cluster stops, as no follower
        remains to replicate them and no client connection remains to hear the answer)."""
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for group in self._groups.values():
            for member in group.members.values():
                _resolve(member.join_future, JoinResult(ErrorCode.NOT_COORDINATOR, member_id=member.member_id))
                _resolve(member.sync_future, SyncResult(ErrorCode.NOT_COORDINATOR))
                member.join_future = member.sync_future = None
            group.state = Dead
        self._groups.clear()
        self.offsets.clear()
        # Let in-flight appends finish (a commit that became durable reports success),
        # but do not hang on a stuck store.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_GRACE_S if grace is None else grace)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run_ticker(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # a bug in one timer must not stop all groups
                log.exception("group coordinator tick failed")
            await asyncio.sleep(self._tick_interval_s)

    def tick(self) -> None:
        """Fire every due timer: member/pending expiry, join and sync deadlines, retention."""
        if self._closed:
            return
        now = self._clock()
        for group in list(self._groups.values()):
            self._expire_members(group, now)
            self._check_join(group)
            if group.sync_deadline is not None and now >= group.sync_deadline:
                self._expire_pending_sync(group)
        if now >= self._next_retention_check:
            self._next_retention_check = now + self.config.offsets_retention_check_interval_ms / 1000
            self._spawn(self._expire_offsets())
        if self.consumer.expiry_due():
            self._spawn(self.consumer.expire_all())  # KIP-848 groups' session/rebalance timers

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _shielded(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run state-changing work to completion even if the request is cancelled."""
        return await asyncio.shield(self._spawn(coro))

    # ------------------------------------------------------------------ helpers

    def _wall_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    def _transition(self, group: GroupMetadata, state: GroupState) -> None:
        group.state = state
        group.state_since = self._wall_ms()

    def _validate_group_id(self, group_id: str | None, *, allow_empty: bool = False) -> ErrorCode | None:
        if self._closed:
            return ErrorCode.NOT_COORDINATOR
        # Kafka's isValidGroupId: OffsetCommit/OffsetFetch/Describe/DeleteGroups accept "".
        if group_id is None or (not group_id and not allow_empty):
            return ErrorCode.INVALID_GROUP_ID
        return None

    @staticmethod
    def _validate_current_member(
        group: GroupMetadata, member_id: str, group_instance_id: str | None
    ) -> ErrorCode | None:
        """Kafka's validateCurrentMember: instance id maps to this member id; member exists."""
        if group_instance_id is not None:
            current = group.static_members.get(group_instance_id)
            if current is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if current != member_id:
                return ErrorCode.FENCED_INSTANCE_ID
            return None
        if member_id not in group.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return None

    def _touch(self, member: MemberMetadata) -> None:
        member.last_heartbeat = self._clock()

    def _member_list(self, group: GroupMetadata) -> list[tuple[str, str | None, bytes]]:
        return [(m.member_id, m.group_instance_id, m.metadata_for(group.protocol_name)) for m in group.members.values()]

    def _generation_result(self, group: GroupMetadata, member: MemberMetadata) -> JoinResult:
        return JoinResult(
            ErrorCode.NONE,
            generation_id=group.generation_id,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader_id=group.leader_id or "",
            member_id=member.member_id,
            members=self._member_list(group) if member.member_id == group.leader_id else [],
        )

    # ------------------------------------------------------------------ JoinGroup

    async def join_group(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        client_id: str,
        client_host: str,
        *,
        require_known_member_id: bool,
        reason: str | None = None,
        supports_skip_assignment: bool = False,
    ) -> JoinResult:
        """Join (or rejoin) a group; returns when the rebalance completes.

        ``rebalance_timeout_ms`` is the session timeout for JoinGroup v0 (the
        handler passes it).  ``require_known_member_id`` is JoinGroup v4+ without
        an instance id; ``supports_skip_assignment`` is JoinGroup v9+.
        """
        err = self._validate_group_id(group_id)
        if err is not None:
            return JoinResult(err, member_id=member_id)
        if not self.config.min_session_timeout_ms <= session_timeout_ms <= self.config.max_session_timeout_ms:
            return JoinResult(ErrorCode.INVALID_SESSION_TIMEOUT, member_id=member_id)
        protocols = [(name, bytes(meta or b"")) for name, meta in protocols]
        unknown = member_id == UNKNOWN_MEMBER_ID
        group = self._groups.get(group_id)
        if group is None:
            if not unknown:
                return JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id=member_id)
            if not (protocol_type and protocols):
                # Kafka would create the group first; we do not keep a group for a refused join.
                return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id=member_id)
            group = self._groups[group_id] = GroupMetadata(group_id, state_since=self._wall_ms())
        if group.is_(Dead):
            return JoinResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id=member_id)
        if not self._accept_joining_member(group, member_id, group_instance_id):
            return JoinResult(ErrorCode.GROUP_MAX_SIZE_REACHED, member_id=UNKNOWN_MEMBER_ID)
        if not group.supports_protocols(protocol_type, protocols):
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id=member_id)
        args = (client_id, client_host, session_timeout_ms, rebalance_timeout_ms, protocol_type, protocols)
        if unknown:
            new_id = f"{client_id}-{uuid.uuid4()}"
            if group_instance_id is not None:
                old_id = group.static_members.get(group_instance_id)
                if old_id is None:
                    return await self._add_member_and_rebalance(group, new_id, group_instance_id, *args)
                return await self._update_static_member_and_rebalance(
                    group, old_id, new_id, group_instance_id, *args, supports_skip_assignment
                )
            if require_known_member_id:
                # KIP-394: hand out the id, park nothing; the member must rejoin with it.
                group.pending_members[new_id] = self._clock() + session_timeout_ms / 1000
                return JoinResult(ErrorCode.MEMBER_ID_REQUIRED, member_id=new_id)
            return await self._add_member_and_rebalance(group, new_id, None, *args)

        if member_id in group.pending_members:
            del group.pending_members[member_id]
            return await self._add_member_and_rebalance(group, member_id, group_instance_id, *args)
        err = self._validate_current_member(group, member_id, group_instance_id)
        if err is not None:
            return JoinResult(err, member_id=member_id)
        member = group.members[member_id]
        if group.is_(Preparing):
            return await self._update_member_and_rebalance(group, member, *args)
        if group.is_(Completing):
            if member.matches(protocols):
                # The member probably lost the JoinGroup response: resend this generation's.
                return self._generation_result(group, member)
            return await self._update_member_and_rebalance(group, member, *args)
        if group.is_(Stable):
            if member_id == group.leader_id or not member.matches(protocols):
                # The leader rejoining means it wants a new assignment (e.g. metadata changed).
                return await self._update_member_and_rebalance(group, member, *args)
            return self._generation_result(group, member)
        return JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id=member_id)

    def _accept_joining_member(self, group: GroupMetadata, member_id: str, instance_id: str | None) -> bool:
        """KIP-389 group.max.size, as Kafka's acceptJoiningMember."""
        if group.state in (Empty, Dead):
            return True
        if instance_id is not None and instance_id in group.static_members:
            return True
        member = group.members.get(member_id)
        if group.is_(Preparing):
            return (member is not None and member.awaiting_join) or (group.num_awaiting_join() < self.config.max_size)
        return member is not None or len(group.members) < self.config.max_size

    def _park_join(self, member: MemberMetadata) -> asyncio.Future[JoinResult]:
        """Park the member's JoinGroup; a duplicate request shares the same answer."""
        if member.join_future is None or member.join_future.done():
            member.join_future = asyncio.get_running_loop().create_future()
        return member.join_future

    async def _add_member_and_rebalance(
        self,
        group: GroupMetadata,
        member_id: str,
        instance_id: str | None,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
    ) -> JoinResult:
        now = self._clock()
        member = MemberMetadata(
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            protocol_type,
            protocols,
            is_new=True,
            joined_at=now,
            last_heartbeat=now,
        )
        if group.is_(Preparing) and group.generation_id == 0:
            group.new_member_added = True  # lets InitialDelayedJoin extend its delay
        fut = self._park_join(member)
        group.add(member)
        self._maybe_prepare_rebalance(group)
        self._check_join(group)
        return await asyncio.shield(fut)

    async def _update_member_and_rebalance(
        self,
        group: GroupMetadata,
        member: MemberMetadata,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
    ) -> JoinResult:
        member.protocols = protocols
        member.session_timeout_ms = session_timeout_ms
        member.rebalance_timeout_ms = rebalance_timeout_ms
        fut = self._park_join(member)
        self._maybe_prepare_rebalance(group)
        self._check_join(group)
        return await asyncio.shield(fut)

    async def _update_static_member_and_rebalance(
        self,
        group: GroupMetadata,
        old_id: str,
        new_id: str,
        instance_id: str,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        supports_skip_assignment: bool,
    ) -> JoinResult:
        """KIP-345: a known instance id rejoining with an empty member id replaces the old id."""
        current_leader = group.leader_id
        member = group.members[old_id]
        # The previous incarnation's parked requests are fenced.
        _resolve(member.join_future, JoinResult(ErrorCode.FENCED_INSTANCE_ID, member_id=old_id))
        _resolve(member.sync_future, SyncResult(ErrorCode.FENCED_INSTANCE_ID))
        member.join_future = member.sync_future = None
        group.replace_static_member(instance_id, old_id, new_id)
        old_protocols, metadata_unchanged = member.protocols, member.matches(protocols)
        old_timeouts = (member.session_timeout_ms, member.rebalance_timeout_ms)
        member.protocols = protocols
        member.session_timeout_ms, member.rebalance_timeout_ms = session_timeout_ms, rebalance_timeout_ms
        self._touch(member)
        if group.is_(Stable) and metadata_unchanged and group.select_protocol() == group.protocol_name:
            # No rebalance: persist the new member id and answer with the current
            # generation.  The old leader id is returned so that a rejoining leader
            # does not compute an assignment a stable group would never deliver,
            # unless the client understands skipAssignment (KIP-814).
            assignment = {m.member_id: m.assignment for m in group.members.values()}
            err = await self._shielded(self._store_group(group, assignment))
            if err is not ErrorCode.NONE:
                group.replace_static_member(instance_id, new_id, old_id)
                member.protocols = old_protocols
                member.session_timeout_ms, member.rebalance_timeout_ms = old_timeouts
                return JoinResult(err, member_id=UNKNOWN_MEMBER_ID)
            result = JoinResult(
                ErrorCode.NONE,
                generation_id=group.generation_id,
                protocol_type=group.protocol_type,
                protocol_name=group.protocol_name,
                leader_id=current_leader or "",
                member_id=new_id,
            )
            if supports_skip_assignment and current_leader == old_id:
                result.leader_id = new_id
                result.members = self._member_list(group)
                result.skip_assignment = True
            return result
        fut = self._park_join(member)
        if group.state in (Stable, Completing):
            # In CompletingRebalance the leader may be assigning to the old member
            # id, so a new rebalance is needed (Kafka does the same).
            self._prepare_rebalance(group)
        self._check_join(group)
        return await asyncio.shield(fut)

    # ------------------------------------------------------------------ rebalance machinery

    def _maybe_prepare_rebalance(self, group: GroupMetadata) -> None:
        if group.state in (Stable, Completing, Empty):
            self._prepare_rebalance(group)

    def _prepare_rebalance(self, group: GroupMetadata) -> None:
        if group.is_(Completing):
            self._reset_and_propagate_assignment_error(group, ErrorCode.REBALANCE_IN_PROGRESS)
        group.sync_deadline = None
        group.pending_sync_members.clear()
        now = self._clock()
        if group.is_(Empty):
            # Kafka's InitialDelayedJoin (KIP-134): wait for more members of a new
            # group, extended while they keep coming, up to the rebalance timeout.
            delay = self.config.initial_rebalance_delay_ms
            group.initial_delay_ms = delay
            group.initial_delay_remaining_ms = max(group.rebalance_timeout_ms - delay, 0)
            group.in_initial_delay = True
            group.rebalance_deadline = now + delay / 1000
        else:
            group.in_initial_delay = False
            group.rebalance_deadline = now + group.rebalance_timeout_ms / 1000
        group.new_member_added = False
        self._transition(group, Preparing)

    def _check_join(self, group: GroupMetadata) -> None:
        """Complete the delayed join if it may complete now (DelayedJoin.tryComplete/expiry)."""
        if not group.is_(Preparing) or group.rebalance_deadline is None:
            return
        now = self._clock()
        if group.in_initial_delay:
            if now < group.rebalance_deadline:
                return
            if group.new_member_added and group.initial_delay_remaining_ms > 0:
                delay = min(group.initial_delay_ms, group.initial_delay_remaining_ms)
                group.initial_delay_remaining_ms = max(group.initial_delay_remaining_ms - delay, 0)
                group.new_member_added = False
                group.rebalance_deadline = now + delay / 1000
                return
            self._complete_join(group)
        elif group.has_all_members_joined() or now >= group.rebalance_deadline:
            self._complete_join(group)

    def _complete_join(self, group: GroupMetadata) -> None:
        """Kafka's onCompleteJoin: drop dynamic members that did not rejoin, start a generation."""
        for member in group.not_yet_rejoined():
            if not member.is_static:
                self._remove_member(group, member, reevaluate=False)
        if not group.maybe_elect_new_joined_leader() and group.members:
            # Nobody rejoined (only absent static members): wait another rebalance
            # timeout for session expiry to remove them.
            group.in_initial_delay = False
            group.rebalance_deadline = self._clock() + group.rebalance_timeout_ms / 1000
            return
        group.rebalance_deadline = None
        group.in_initial_delay = False
        group.generation_id += 1
        if group.members:
            group.protocol_name = group.select_protocol()
            group.subscribed_topics = group.compute_subscribed_topics()
            self._transition(group, Completing)
        else:
            group.protocol_name = None
            group.subscribed_topics = set()
            self._transition(group, Empty)
            self._spawn(self._store_group(group, {}))
            return
        now = self._clock()
        for member in group.members.values():
            fut, member.join_future = member.join_future, None
            _resolve(fut, self._generation_result(group, member))
            member.last_heartbeat = now
            member.is_new = False
            group.pending_sync_members.add(member.member_id)
        # KAFKA-13766: members that never send SyncGroup are removed after the
        # rebalance timeout, so a dead leader cannot stall the group.
        group.sync_deadline = now + group.rebalance_timeout_ms / 1000

    def _expire_pending_sync(self, group: GroupMetadata) -> None:
        group.sync_deadline = None
        if group.state not in (Completing, Stable) or not group.pending_sync_members:
            group.pending_sync_members.clear()
            return
        for member_id in list(group.pending_sync_members):
            member = group.members.get(member_id)
            if member is not None:
                self._remove_member(group, member, reevaluate=False)
        group.pending_sync_members.clear()
        self._prepare_rebalance(group)
        self._check_join(group)

    def _reset_and_propagate_assignment_error(self, group: GroupMetadata, error: ErrorCode) -> None:
        now = self._clock()
        for member in group.members.values():
            member.assignment = b""
            fut, member.sync_future = member.sync_future, None
            if fut is not None:
                # It was alive while parked: its session restarts now.
                member.last_heartbeat = now
                _resolve(fut, SyncResult(error))

    def _remove_member(self, group: GroupMetadata, member: MemberMetadata, *, reevaluate: bool = True) -> None:
        """Kafka's removeMemberAndUpdateGroup: parked requests fail with UNKNOWN_MEMBER_ID."""
        _resolve(member.join_future, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id=UNKNOWN_MEMBER_ID))
        _resolve(member.sync_future, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
        member.join_future = member.sync_future = None
        group.remove(member.member_id)
        group.pending_sync_members.discard(member.member_id)
        if not reevaluate:
            return
        if group.state in (Stable, Completing):
            self._maybe_prepare_rebalance(group)
            self._check_join(group)
        elif group.is_(Preparing):
            self._check_join(group)

    def _expire_members(self, group: GroupMetadata, now: float) -> None:
        for member_id, deadline in list(group.pending_members.items()):
            if now >= deadline:
                del group.pending_members[member_id]
                self._check_join(group)
        for member in list(group.members.values()):
            if member.awaiting_join:
                # Parked in JoinGroup it cannot heartbeat; only a never-joined member times out.
                expired = member.is_new and now - member.joined_at >= NEW_MEMBER_JOIN_TIMEOUT_MS / 1000
            elif member.awaiting_sync:
                expired = False
            else:
                expired = now - member.last_heartbeat >= member.session_timeout_ms / 1000
            if expired and member.member_id in group.members:
                log.info("group %s: member %s session expired", group.group_id, member.member_id)
                self._remove_member(group, member)

    # ------------------------------------------------------------------ SyncGroup

    async def sync_group(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: list[tuple[str, bytes]],
    ) -> SyncResult:
        """Deliver each member its assignment; followers wait for the leader's SyncGroup."""
        err = self._validate_group_id(group_id)
        if err is not None:
            return SyncResult(err)
        group = self._groups.get(group_id)
        if group is None:
            return SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)
        if group.is_(Dead):
            return SyncResult(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        err = self._validate_current_member(group, member_id, group_instance_id)
        if err is not None:
            return SyncResult(err)
        if generation_id != group.generation_id:
            return SyncResult(ErrorCode.ILLEGAL_GENERATION)
        if protocol_type is not None and protocol_type != group.protocol_type:
            return SyncResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        if protocol_name is not None and protocol_name != group.protocol_name:
            return SyncResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        member = group.members[member_id]
        if group.is_(Empty):
            return SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)
        if group.is_(Preparing):
            return SyncResult(ErrorCode.REBALANCE_IN_PROGRESS)
        group.pending_sync_members.discard(member_id)
        if group.is_(Stable):
            self._touch(member)
            return SyncResult(ErrorCode.NONE, group.protocol_type, group.protocol_name, member.assignment)
        # CompletingRebalance
        if member.sync_future is None or member.sync_future.done():
            member.sync_future = asyncio.get_running_loop().create_future()
        fut = member.sync_future
        if member_id == group.leader_id:
            given = {mid: bytes(a or b"") for mid, a in assignments}
            assignment = {mid: given.get(mid, b"") for mid in group.members}
            self._spawn(self._complete_sync(group, generation_id, assignment))
        return await asyncio.shield(fut)

    async def _complete_sync(self, group: GroupMetadata, generation_id: int, assignment: dict[str, bytes]) -> None:
        err = await self._store_group(group, assignment)
        # Another member may have joined while the store was written.
        if not group.is_(Completing) or group.generation_id != generation_id:
            return
        if err is not ErrorCode.NONE:
            self._reset_and_propagate_assignment_error(group, err)
            self._maybe_prepare_rebalance(group)
            self._check_join(group)
            return
        now = self._clock()
        for member in group.members.values():
            member.assignment = assignment.get(member.member_id, b"")
            fut, member.sync_future = member.sync_future, None
            if fut is not None:
                _resolve(
                    fut,
                    SyncResult(ErrorCode.NONE, group.protocol_type, group.protocol_name, member.assignment),
                )
                member.last_heartbeat = now
        self._transition(group, Stable)

    async def _store_group(self, group: GroupMetadata, assignment: dict[str, bytes]) -> ErrorCode:
        rec = GroupRecord(
            protocol_type=group.protocol_type or "",
            generation=group.generation_id,
            protocol=group.protocol_name,
            leader=group.leader_id,
            current_state_timestamp_ms=int(group.state_since),
            members=[
                MemberRecord(
                    m.member_id,
                    m.group_instance_id,
                    m.client_id,
                    m.client_host,
                    m.rebalance_timeout_ms,
                    m.session_timeout_ms,
                    m.metadata_for(group.protocol_name),
                    assignment.get(m.member_id, b""),
                )
                for m in group.members.values()
            ],
        )
        try:
            await self._store.append([(encode_group_key(group.group_id), encode_group_value(rec))])
        except KafkaProtocolError as e:
            return _store_error_for_group(e.code)
        except Exception:
            log.exception("storing group %s failed", group.group_id)
            return ErrorCode.UNKNOWN_SERVER_ERROR
        return ErrorCode.NONE

    # ------------------------------------------------------------------ Heartbeat / LeaveGroup

    def heartbeat(self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None) -> ErrorCode:
        """Keep a session alive; REBALANCE_IN_PROGRESS tells the member to rejoin."""
        err = self._validate_group_id(group_id)
        if err is not None:
            return err
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.is_(Dead):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        err = self._validate_current_member(group, member_id, group_instance_id)
        if err is not None:
            return err
        if generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if group.is_(Empty):
            return ErrorCode.UNKNOWN_MEMBER_ID
        self._touch(group.members[member_id])
        if group.is_(Preparing):
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    async def leave_group(
        self, group_id: str, members: list[tuple[str | None, str | None]]
    ) -> tuple[ErrorCode, list[tuple[str, str | None, ErrorCode]]]:
        """Remove members, given as (member_id, group_instance_id) pairs.

        An empty member id with an instance id removes that static member (admin
        removal, LeaveGroup v3+).  A member id alone removes the member even if it
        is static, as Kafka does (static clients simply do not send LeaveGroup).
        """
        err = self._validate_group_id(group_id)
        if err is not None:
            return err, []
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.NONE, [(m or "", i, ErrorCode.UNKNOWN_MEMBER_ID) for m, i in members]
        if group.is_(Dead):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, []
        results: list[tuple[str, str | None, ErrorCode]] = []
        for member_id, instance_id in members:
            member_id = member_id or UNKNOWN_MEMBER_ID
            if member_id == UNKNOWN_MEMBER_ID:
                current = group.static_members.get(instance_id) if instance_id is not None else None
                if current is None:
                    results.append((member_id, instance_id, ErrorCode.UNKNOWN_MEMBER_ID))
                    continue
                self._remove_member(group, group.members[current])
                results.append((member_id, instance_id, ErrorCode.NONE))
            elif member_id in group.pending_members:
                del group.pending_members[member_id]
                self._check_join(group)
                results.append((member_id, instance_id, ErrorCode.NONE))
            else:
                err = self._validate_current_member(group, member_id, instance_id)
                if err is None:
                    self._remove_member(group, group.members[member_id])
                results.append((member_id, instance_id, err or ErrorCode.NONE))
        return ErrorCode.NONE, results

    # ------------------------------------------------------------------ offsets

    async def commit_offsets(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        offsets: list[OffsetCommit],
    ) -> list[tuple[str, int, ErrorCode]]:
        """Commit (topic, partition, offset, leader_epoch, metadata); durable when it returns.

        generation -1 with an empty member id is a "simple" commit, allowed only
        while the group has no members (standalone consumers, admin tools).
        """
        member_id = member_id or UNKNOWN_MEMBER_ID

        def all_(code: ErrorCode) -> list[tuple[str, int, ErrorCode]]:
            return [(t, p, code) for t, p, *_ in offsets]

        err = self._validate_group_id(group_id, allow_empty=True)
        if err is not None:
            return all_(err)
        group = self._groups.get(group_id)
        if group is None:
            if generation_id >= 0:
                # Not a group we manage, or a commit from an older generation.
                return all_(ErrorCode.ILLEGAL_GENERATION)
            group = self._groups[group_id] = GroupMetadata(group_id, state_since=self._wall_ms())
        err = self._validate_offset_commit(group, generation_id, member_id, group_instance_id)
        if err is not None:
            return all_(err)
        if group.is_(Completing):
            # The member has the new generation but not its assignment yet.
            return all_(ErrorCode.REBALANCE_IN_PROGRESS)
        if group.state in (Stable, Preparing) and member_id in group.members:
            self._touch(group.members[member_id])
        return await self._shielded(self._store_offsets(group, offsets))

    def _validate_offset_commit(
        self, group: GroupMetadata, generation_id: int, member_id: str, instance_id: str | None
    ) -> ErrorCode | None:
        if group.is_(Dead):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation_id >= 0 or member_id != UNKNOWN_MEMBER_ID or instance_id is not None:
            err = self._validate_current_member(group, member_id, instance_id)
            if err is not None:
                return err
            if generation_id != group.generation_id:
                return ErrorCode.ILLEGAL_GENERATION
            return None
        if not group.is_(Empty):
            return ErrorCode.UNKNOWN_MEMBER_ID  # only members may commit to a non-empty group
        return None

    async def _store_offsets(
        self, group: GroupMetadata, offsets: list[OffsetCommit]
    ) -> list[tuple[str, int, ErrorCode]]:
        results, stored = await self.offsets.commit(group.group_id, offsets)
        if stored:
            # The group may have been deleted meanwhile; the log now says it has offsets.
            target = self._groups.setdefault(group.group_id, group)
            if target.is_(Dead):
                self._groups[group.group_id] = GroupMetadata(group.group_id, state_since=self._wall_ms())
        return results

    def validate_transactional_commit(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> ErrorCode | None:
        """[txn] TxnOffsetCommit's group checks (KIP-447: a zombie of an old generation is
        fenced by its generation and member id). None when the commit may go ahead."""
        err = self._validate_group_id(group_id)
        if err is not None:
            return err
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.ILLEGAL_GENERATION if generation_id >= 0 else None
        if generation_id < 0 and not member_id and group_instance_id is None:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE if group.is_(Dead) else None  # pre-KIP-447 client
        return self._validate_offset_commit(group, generation_id, member_id or UNKNOWN_MEMBER_ID, group_instance_id)

    def apply_committed_records(self, records: list[tuple[bytes, bytes | None]]) -> None:
        """[txn] Offsets of a committed transaction, as `load` applies them."""
        for key, value in records:
            k = decode_key(key)
            if not isinstance(k, OffsetKey):
                continue
            group = self._groups.get(k.group)
            if group is None or group.is_(Dead):
                self._groups[k.group] = GroupMetadata(k.group, state_since=self._wall_ms())
            self.offsets.replay(k, value)

    def fetch_offsets(
        self, group_id: str, partitions: list[TopicPartition] | None
    ) -> list[tuple[str, int, int, int, str, ErrorCode]]:
        """Committed (topic, partition, offset, leader_epoch, metadata, error); None = all.

        Unknown partitions (or groups) read as offset -1, epoch -1, metadata "",
        error NONE, as in Kafka.  Raises KafkaProtocolError for group-level errors.
        """
        err = self._validate_group_id(group_id, allow_empty=True)
        if err is not None:
            raise KafkaProtocolError(err, f"group {group_id!r}")
        return self.offsets.fetch(group_id, partitions)

    async def _expire_offsets(self) -> None:
        """Offset retention (KIP-211, KIP-496) and removal of empty groups without offsets."""
        now_ms = self._wall_ms()
        retention = self.config.offsets_retention_ms
        for group in list(self._groups.values()):
            expired = self.offsets.expired_partitions(group, retention, now_ms)
            if expired or (
                group.is_(Empty) and not self.offsets.has_offsets(group.group_id) and not group.pending_members
            ):
                await self._cleanup_group(group, expired)

    async def _cleanup_group(self, group: GroupMetadata, partitions: list[TopicPartition]) -> ErrorCode:
        """Tombstone offsets; an Empty group left without offsets becomes Dead and is removed."""
        tombstones = self.offsets.remove(group.group_id, partitions)
        if group.is_(Empty) and not self.offsets.has_offsets(group.group_id) and not group.members:
            self._transition(group, Dead)
            if self._groups.get(group.group_id) is group:
                del self._groups[group.group_id]
            tombstones.append((encode_group_key(group.group_id), None))
        if not tombstones:
            return ErrorCode.NONE
        try:
            await self._store.append(tombstones)
        except KafkaProtocolError as e:
            return store_error_for_commit(e.code)
        except Exception:
            log.exception("writing tombstones for group %s failed", group.group_id)
            return ErrorCode.UNKNOWN_SERVER_ERROR
        return ErrorCode.NONE

    async def delete_offsets(
        self, group_id: str, partitions: list[tuple[str, int]]
    ) -> tuple[ErrorCode, list[tuple[str, int, ErrorCode]]]:
        """OffsetDelete (KIP-496): refuse partitions of topics the live group consumes."""
        err = self._validate_group_id(group_id)
        if err is not None:
            return err, []
        group = self._groups.get(group_id)
        if group is None or group.is_(Dead):
            return ErrorCode.GROUP_ID_NOT_FOUND, []
        errors: dict[tuple[str, int], ErrorCode] = {}
        if group.is_(Empty):
            eligible = list(partitions)
        elif group.protocol_type == CONSUMER_PROTOCOL_TYPE:
            eligible = []
            for tp in partitions:
                if group.is_subscribed_to(tp[0]):
                    errors[tp] = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
                else:
                    eligible.append(tp)
        else:
            return ErrorCode.NON_EMPTY_GROUP, []
        if eligible:
            code = await self._shielded(self._cleanup_group(group, eligible))
            for tp in eligible:
                errors[tp] = code
        return ErrorCode.NONE, [(t, p, errors[(t, p)]) for t, p in partitions]

    # ------------------------------------------------------------------ admin

    def list_groups(self, states: list[str] | None = None) -> list[tuple[str, str, str]]:
        """(group_id, protocol_type, state) of live groups; ``states`` filter is case-insensitive."""
        if self._closed:
            return []
        wanted = {s.lower() for s in states} if states else None
        return [
            (g.group_id, g.protocol_type or "", g.state.value)
            for g in self._groups.values()
            if not g.is_(Dead) and (wanted is None or g.state.value.lower() in wanted)
        ]

    def describe_group(self, group_id: str) -> GroupDescription:
        """Kafka's GroupSummary: metadata and assignments only when Stable; unknown = "Dead"."""
        err = self._validate_group_id(group_id, allow_empty=True)
        if err is not None:
            return GroupDescription(err, group_id, "", "", "")
        group = self._groups.get(group_id)
        if group is None:
            return GroupDescription(ErrorCode.NONE, group_id, Dead.value, "", "")
        stable = group.is_(Stable)
        members = [
            MemberDescription(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.metadata_for(group.protocol_name) if stable else b"",
                m.assignment if stable else b"",
            )
            for m in group.members.values()
        ]
        return GroupDescription(
            ErrorCode.NONE,
            group_id,
            group.state.value,
            group.protocol_type or "",
            (group.protocol_name or "") if stable else "",
            members,
        )

    async def delete_groups(self, group_ids: list[str]) -> list[tuple[str, ErrorCode]]:
        """Delete empty groups and their offsets (tombstones)."""
        results: dict[str, ErrorCode] = {}
        eligible: list[GroupMetadata] = []
        for gid in group_ids:
            err = self._validate_group_id(gid, allow_empty=True)
            if err is not None:
                results[gid] = err
                continue
            group = self._groups.get(gid)
            if group is None or group.is_(Dead):
                results[gid] = ErrorCode.GROUP_ID_NOT_FOUND
            elif group.is_(Empty):
                eligible.append(group)
            else:
                results[gid] = ErrorCode.NON_EMPTY_GROUP
        for group in eligible:
            group.members.clear()
            group.pending_members.clear()
            results[group.group_id] = await self._shielded(
                self._cleanup_group(group, self.offsets.partitions(group.group_id))
            )
        return [(gid, results[gid]) for gid in group_ids]

    def group_ids(self) -> list[str]:
        """Ids of the live groups this coordinator holds (for routing and tests)."""
        return [g.group_id for g in self._groups.values() if not g.is_(Dead)]
