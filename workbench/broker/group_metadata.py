"""In-memory state of one classic consumer group: Kafka's ``GroupMetadata``/``MemberMetadata``.

Plain data plus the small rules that depend only on it (protocol support and
selection, leader choice, static-member mapping).  Timers and waiting live in
`workbench.broker.group_coordinator`; committed offsets are not group state but
`workbench.broker.offset_metadata_manager`'s (as in Kafka's new coordinator).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class GroupState(Enum):
    """Group states, with the names Kafka puts in DescribeGroups/ListGroups."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


CONSUMER_PROTOCOL_TYPE = "consumer"


@dataclass(eq=False)
class MemberMetadata:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    # Kafka's `isNew`: joined but never completed a rebalance; such a member that
    # stays parked in JoinGroup is expelled after NEW_MEMBER_JOIN_TIMEOUT_MS.
    is_new: bool = False
    joined_at: float = 0.0
    last_heartbeat: float = 0.0
    # Parked JoinGroup / SyncGroup requests (Kafka's awaitingJoin/SyncCallback).
    join_future: asyncio.Future[Any] | None = None
    sync_future: asyncio.Future[Any] | None = None

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    @property
    def awaiting_join(self) -> bool:
        return self.join_future is not None

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_future is not None

    def metadata_for(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        """Same protocols, same order, same metadata (Kafka's ``MemberMetadata.matches``)."""
        return [(n, bytes(m)) for n, m in protocols] == [(n, bytes(m)) for n, m in self.protocols]

    def vote(self, candidates: set[str]) -> str:
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise ValueError(f"member {self.member_id} supports none of {candidates}")


@dataclass(eq=False)
class GroupMetadata:
    group_id: str
    state: GroupState = GroupState.EMPTY
    state_since: float = 0.0  # wall-clock ms of the last transition (currentStateTimestamp)
    protocol_type: str | None = None
    protocol_name: str | None = None
    generation_id: int = 0
    leader_id: str | None = None
    members: dict[str, MemberMetadata] = field(default_factory=dict)
    pending_members: dict[str, float] = field(default_factory=dict)  # member id -> expiry (monotonic)
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    # Topics of the consumer-protocol subscriptions; None = unknown (undecodable).
    subscribed_topics: set[str] | None = field(default_factory=set)
    rebalance_deadline: float | None = None  # monotonic deadline of the delayed join
    initial_delay_remaining_ms: int = 0  # InitialDelayedJoin: how much more it may be extended
    initial_delay_ms: int = 0
    in_initial_delay: bool = False
    new_member_added: bool = False
    sync_deadline: float | None = None  # members in pending_sync_members are removed then
    pending_sync_members: set[str] = field(default_factory=set)

    # --- membership ---------------------------------------------------------

    def is_(self, state: GroupState) -> bool:
        return self.state is state

    def add(self, member: MemberMetadata) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id

    def remove(self, member_id: str) -> MemberMetadata | None:
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        if member.group_instance_id is not None and self.static_members.get(member.group_instance_id) == member_id:
            del self.static_members[member.group_instance_id]
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        return member

    def replace_static_member(self, instance_id: str, old_id: str, new_id: str) -> MemberMetadata:
        member = self.members.pop(old_id)
        member.member_id = new_id
        self.members[new_id] = member
        self.static_members[instance_id] = new_id
        if self.leader_id == old_id:
            self.leader_id = new_id
        return member

    def num_awaiting_join(self) -> int:
        return sum(1 for m in self.members.values() if m.awaiting_join)

    def has_all_members_joined(self) -> bool:
        return len(self.members) == self.num_awaiting_join() and not self.pending_members

    def not_yet_rejoined(self) -> list[MemberMetadata]:
        return [m for m in self.members.values() if not m.awaiting_join]

    def maybe_elect_new_joined_leader(self) -> bool:
        """Keep the leader if it rejoined, else pick a member that did (Kafka's rule)."""
        leader = self.members.get(self.leader_id) if self.leader_id else None
        if leader is not None and leader.awaiting_join:
            return True
        for m in self.members.values():
            if m.awaiting_join:
                self.leader_id = m.member_id
                return True
        return False

    @property
    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    # --- protocols ----------------------------------------------------------

    def _support_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self.members.values():
            for name in {n for n, _ in m.protocols}:
                counts[name] = counts.get(name, 0) + 1
        return counts

    def supports_protocols(self, protocol_type: str, protocols: list[tuple[str, bytes]]) -> bool:
        """Kafka's ``supportsProtocols``: an empty group takes anything non-empty."""
        if self.state is GroupState.EMPTY or not self.members:
            return bool(protocol_type) and bool(protocols)
        counts = self._support_counts()
        n = len(self.members)
        return self.protocol_type == protocol_type and any(counts.get(name, 0) == n for name, _ in protocols)

    def select_protocol(self) -> str:
        """A protocol all members support, chosen by one vote per member.

        Each member votes for its most preferred candidate; the most votes win.
        Kafka breaks ties by hash-map order; we break them by the leader's
        preference order (then name), which is deterministic.
        """
        counts = self._support_counts()
        candidates = {name for name, c in counts.items() if c == len(self.members)}
        if not candidates:
            raise ValueError("no protocol supported by all members")
        votes: dict[str, int] = {}
        for m in self.members.values():
            v = m.vote(candidates)
            votes[v] = votes.get(v, 0) + 1
        leader = self.members.get(self.leader_id or "") or next(iter(self.members.values()))
        rank = {name: i for i, (name, _) in enumerate(leader.protocols)}
        return min(votes, key=lambda p: (-votes[p], rank.get(p, len(rank)), p))

    def compute_subscribed_topics(self) -> set[str] | None:
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE or self.protocol_name is None:
            return set()
        topics: set[str] = set()
        for m in self.members.values():
            decoded = decode_subscription_topics(m.metadata_for(self.protocol_name))
            if decoded is None:
                return None
            topics.update(decoded)
        return topics

    def is_subscribed_to(self, topic: str) -> bool:
        return True if self.subscribed_topics is None else topic in self.subscribed_topics


def decode_subscription_topics(metadata: bytes) -> list[str] | None:
    """Topics of a ConsumerProtocolSubscription (any version: they all start the same).

    ``version int16, topics [string]``; None when the bytes are not a subscription.
    """
    try:
        (_version, count) = struct.unpack_from(">hi", metadata, 0)
        pos = 6
        topics = []
        for _ in range(count):
            (n,) = struct.unpack_from(">h", metadata, pos)
            pos += 2
            if n < 0 or pos + n > len(metadata):
                return None
            topics.append(metadata[pos : pos + n].decode("utf-8"))
            pos += n
        return topics
    except (struct.error, UnicodeDecodeError):
        return None
