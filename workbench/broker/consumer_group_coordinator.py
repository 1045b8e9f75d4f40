"""KIP-848 consumer groups: the broker-driven rebalance protocol (`group.protocol=consumer`).

Kafka's `GroupMetadataManager` for groups of type "consumer", reduced to what a
single-process coordinator needs. A member heartbeats (ConsumerGroupHeartbeat)
with its subscription; the coordinator owns the assignment:

* the **group epoch** goes up whenever membership or a subscription changes,
  and a server-side assignor (`uniform`, the default, or `range`) computes the
  **target assignment** for that epoch;
* each member converges to its target one heartbeat at a time, and a
  partition moves only after its previous owner has *revoked* it: the owner is
  first answered with its assignment minus the partitions it must give up
  (its member epoch unchanged), and only when it reports them gone (its owned
  partitions in a later heartbeat) may the new owner be given them, with the
  new **member epoch**;
* a heartbeat with a stale epoch is FENCED_MEMBER_EPOCH, an unknown member
  UNKNOWN_MEMBER_ID; epoch -1 leaves, -2 leaves a static member (its instance
  id may rejoin under a new member id and takes over the old member's
  assignment);
* a member silent for `session_timeout_ms` is removed.

Committed offsets are not kept here: OffsetCommit validates the member epoch
with `validate_offset_commit` (KIP-848: STALE_MEMBER_EPOCH) and then goes to
the classic coordinator's offset manager, so offsets live in
`__consumer_offsets` and survive coordinator failover exactly as classic
groups' do. Membership itself is in memory: after a failover the members get
UNKNOWN_MEMBER_ID and rejoin (librdkafka does so), resuming from the committed
offsets.

A group id is either classic or consumer (Kafka's rule): a consumer heartbeat
for a live classic group is GROUP_ID_NOT_FOUND, a JoinGroup for a live
consumer group INCONSISTENT_GROUP_PROTOCOL.

Regex subscriptions (`SubscribedTopicRegex`, v1) are matched with Python's
`re.fullmatch` (Kafka uses RE2/J; the common subset behaves the same).

I/O-free: handlers pass the metadata image's topics (name -> id, partitions).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workbench.protocol.errors import ErrorCode, KafkaProtocolError

__all__ = ["ASSIGNORS", "ConsumerGroup", "ConsumerGroupCoordinator", "ConsumerGroupMember"]

Assignment = dict[str, set[int]]  # topic name -> partitions

DEFAULT_HEARTBEAT_INTERVAL_MS = 1000  # Kafka's default is 5000; a notebook wants quick rebalances
DEFAULT_SESSION_TIMEOUT_MS = 45000  # group.consumer.session.timeout.ms


@dataclass
class ConsumerGroupMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    member_epoch: int = 0
    previous_epoch: int = 0
    rebalance_timeout_ms: int = 300000
    subscribed_topic_names: list[str] = field(default_factory=list)
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    assigned: Assignment = field(default_factory=dict)  # what the member was told it owns
    revoking: Assignment = field(default_factory=dict)  # given up, not yet confirmed by the member
    last_sent: Assignment | None = None
    last_seen: float = 0.0

    def subscribed(self, topics: Mapping[str, Any]) -> set[str]:
        names = {t for t in self.subscribed_topic_names if t in topics}
        if self.subscribed_topic_regex:
            pattern = re.compile(self.subscribed_topic_regex)
            names |= {t for t in topics if not t.startswith("__") and pattern.fullmatch(t)}
        return names


@dataclass
class ConsumerGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    assignor: str = "uniform"
    members: dict[str, ConsumerGroupMember] = field(default_factory=dict)
    target: dict[str, Assignment] = field(default_factory=dict)
    topology: dict[str, int] | None = None  # subscribed topic -> partition count, at the last epoch

    def state(self) -> str:
        """Kafka's ConsumerGroupState names: Empty, Assigning, Reconciling, Stable."""
        if not self.members:
            return "Empty"
        if self.assignment_epoch != self.group_epoch:
            return "Assigning"
        if any(m.member_epoch != self.assignment_epoch or m.revoking for m in self.members.values()):
            return "Reconciling"
        return "Stable"


def _uniform(group: ConsumerGroup, subs: dict[str, set[str]], parts: dict[str, int]) -> dict[str, Assignment]:
    """Sticky and balanced: a partition stays with its current target owner while that
    owner is subscribed and under its share, otherwise goes to the least-loaded member."""
    result: dict[str, Assignment] = {m: {} for m in subs}
    everything = sorted((t, p) for t in {t for s in subs.values() for t in s} for p in range(parts.get(t, 0)))
    if not subs:
        return result
    quota = -(-len(everything) // len(subs))
    load = dict.fromkeys(subs, 0)
    leftover = []
    for t, p in everything:
        owner = next((m for m, a in group.target.items() if p in a.get(t, ()) and m in subs), None)
        if owner is not None and t in subs[owner] and load[owner] < quota:
            result[owner].setdefault(t, set()).add(p)
            load[owner] += 1
        else:
            leftover.append((t, p))
    for t, p in leftover:
        candidates = [m for m in sorted(subs) if t in subs[m]]
        m = min(candidates, key=lambda c: load[c])
        result[m].setdefault(t, set()).add(p)
        load[m] += 1
    return result


def _range(group: ConsumerGroup, subs: dict[str, set[str]], parts: dict[str, int]) -> dict[str, Assignment]:
    """Per topic, contiguous ranges of partitions to the subscribed members in id order."""
    result: dict[str, Assignment] = {m: {} for m in subs}
    for t in sorted({t for s in subs.values() for t in s}):
        members = sorted(m for m in subs if t in subs[m])
        n = parts.get(t, 0)
        per, extra = divmod(n, len(members))
        start = 0
        for i, m in enumerate(members):
            count = per + (1 if i < extra else 0)
            if count:
                result[m][t] = set(range(start, start + count))
            start += count
    return result


ASSIGNORS: dict[str, Callable[[ConsumerGroup, dict[str, set[str]], dict[str, int]], dict[str, Assignment]]] = {
    "uniform": _uniform,
    "range": _range,
}


def _minus(a: Assignment, b: Assignment) -> Assignment:
    out = {t: ps - b.get(t, set()) for t, ps in a.items()}
    return {t: ps for t, ps in out.items() if ps}


def _union(a: Assignment, b: Assignment) -> Assignment:
    out = {t: set(ps) for t, ps in a.items()}
    for t, ps in b.items():
        out.setdefault(t, set()).update(ps)
    return out


class ConsumerGroupCoordinator:
    """The consumer-type groups of one `__consumer_offsets` partition (beside its classic GroupCoordinator)."""

    def __init__(
        self,
        *,
        heartbeat_interval_ms: int = DEFAULT_HEARTBEAT_INTERVAL_MS,
        session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.groups: dict[str, ConsumerGroup] = {}
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.session_timeout_ms = session_timeout_ms
        self._clock = clock

    def is_consumer_group(self, group_id: str) -> bool:
        group = self.groups.get(group_id)
        return group is not None and bool(group.members)

    # ------------------------------------------------------------------ heartbeat

    def heartbeat(
        self,
        body: Any,
        topics: Mapping[str, Any],
        *,
        client_id: str = "",
        client_host: str = "",
    ) -> dict[str, Any]:
        """Serve one ConsumerGroupHeartbeat; returns the response body (a dict).

        `topics` maps topic name -> an object with `.id` (hex) and `.partitions`.
        Raises KafkaProtocolError for request-level errors.
        """
        group_id = body.group_id
        if not group_id:
            raise KafkaProtocolError(ErrorCode.INVALID_REQUEST, "GroupId can't be empty")
        epoch = body.member_epoch
        now = self._clock()
        group = self.groups.get(group_id)
        if group is not None:
            self._expire(group, topics, now)
        if epoch in (-1, -2):
            return self._leave(group, body, topics)
        if group is None:
            if epoch != 0:
                raise KafkaProtocolError(ErrorCode.UNKNOWN_MEMBER_ID, f"no member {body.member_id}")
            group = self.groups[group_id] = ConsumerGroup(group_id)
        member_id = body.member_id or uuid.uuid4().hex
        member = group.members.get(member_id)
        changed = False
        if epoch == 0:
            if member is None:
                member = ConsumerGroupMember(member_id, rebalance_timeout_ms=body.rebalance_timeout_ms)
                if body.instance_id is not None:
                    old = next((m for m in group.members.values() if m.instance_id == body.instance_id), None)
                    if old is not None:
                        if old.member_epoch != -2:
                            raise KafkaProtocolError(
                                ErrorCode.UNRELEASED_INSTANCE_ID,
                                f"instance {body.instance_id} is in use by member {old.member_id}",
                            )
                        # A static member rejoining takes over its old assignment (KIP-848).
                        del group.members[old.member_id]
                        member.assigned, member.member_epoch = old.assigned, 0
                        group.target[member_id] = group.target.pop(old.member_id, {})
                group.members[member_id] = member
                changed = True
            else:
                # The member lost its state and rejoins: it owns nothing now.
                member.assigned, member.revoking, member.last_sent = {}, {}, None
        else:
            if member is None:
                raise KafkaProtocolError(ErrorCode.UNKNOWN_MEMBER_ID, f"unknown member {member_id}")
            if epoch not in (member.member_epoch, member.previous_epoch):
                raise KafkaProtocolError(
                    ErrorCode.FENCED_MEMBER_EPOCH, f"epoch {epoch}, member epoch is {member.member_epoch}"
                )
        member.last_seen = now
        member.client_id, member.client_host = client_id, client_host
        if body.instance_id is not None:
            member.instance_id = body.instance_id
        if body.rack_id is not None:
            member.rack_id = body.rack_id
        if body.rebalance_timeout_ms is not None and body.rebalance_timeout_ms > 0:
            member.rebalance_timeout_ms = body.rebalance_timeout_ms
        if body.subscribed_topic_names is not None:
            names = sorted(body.subscribed_topic_names)
            if names != member.subscribed_topic_names:
                member.subscribed_topic_names, changed = names, True
        regex = getattr(body, "subscribed_topic_regex", None)
        if regex is not None:
            try:
                re.compile(regex)
            except re.error as exc:
                raise KafkaProtocolError(ErrorCode.INVALID_REQUEST, f"SubscribedTopicRegex {regex!r}: {exc}") from None
            regex = regex or None
            if regex != member.subscribed_topic_regex:
                member.subscribed_topic_regex, changed = regex, True
        if body.server_assignor is not None:
            if body.server_assignor not in ASSIGNORS:
                raise KafkaProtocolError(
                    ErrorCode.UNSUPPORTED_ASSIGNOR, f"assignor {body.server_assignor!r}; have {sorted(ASSIGNORS)}"
                )
            if body.server_assignor != member.server_assignor:
                member.server_assignor, changed = body.server_assignor, True
        if body.topic_partitions is not None:
            by_id = {uuid.UUID(hex=info.id): name for name, info in topics.items()}
            owned: Assignment = {}
            for tp in body.topic_partitions:
                name = by_id.get(tp.topic_id)
                if name is not None:
                    owned.setdefault(name, set()).update(tp.partitions)
            # Revocation is complete once the member no longer reports a revoked partition.
            member.revoking = {t: ps & owned.get(t, set()) for t, ps in member.revoking.items()}
            member.revoking = {t: ps for t, ps in member.revoking.items() if ps}
        if changed or self._topology_changed(group, topics):
            self._bump(group, topics)
        self._reconcile(group, member)
        response: dict[str, Any] = {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.NONE,
            "error_message": None,
            "member_id": member_id,
            "member_epoch": member.member_epoch,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "assignment": None,
        }
        if member.last_sent != member.assigned or epoch == 0 or body.topic_partitions is not None:
            member.last_sent = {t: set(ps) for t, ps in member.assigned.items()}
            response["assignment"] = {
                "topic_partitions": [
                    {"topic_id": uuid.UUID(hex=topics[t].id), "partitions": sorted(ps)}
                    for t, ps in sorted(member.assigned.items())
                    if t in topics
                ]
            }
        return response

    def _leave(self, group: ConsumerGroup | None, body: Any, topics: Mapping[str, Any]) -> dict[str, Any]:
        response = {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.NONE,
            "member_id": body.member_id,
            "member_epoch": body.member_epoch,
            "heartbeat_interval_ms": 0,
            "assignment": None,
        }
        member = group.members.get(body.member_id) if group is not None else None
        if group is None or member is None:
            raise KafkaProtocolError(ErrorCode.UNKNOWN_MEMBER_ID, f"unknown member {body.member_id}")
        if body.member_epoch == -2 and member.instance_id is not None:
            # A static member leaving temporarily: keep its place (and assignment) for its instance id.
            member.member_epoch = -2
            return response
        self._remove(group, member.member_id, topics)
        return response

    def _remove(self, group: ConsumerGroup, member_id: str, topics: Mapping[str, Any]) -> None:
        group.members.pop(member_id, None)
        group.target.pop(member_id, None)
        self._bump(group, topics)
        if not group.members:
            group.target.clear()

    def _expire(self, group: ConsumerGroup, topics: Mapping[str, Any], now: float) -> None:
        timeout = self.session_timeout_ms / 1000
        for m in list(group.members.values()):
            if now - m.last_seen > timeout:
                self._remove(group, m.member_id, topics)

    # ------------------------------------------------------------------ assignment

    def _topology(self, group: ConsumerGroup, topics: Mapping[str, Any]) -> dict[str, int]:
        return {t: len(topics[t].partitions) for m in group.members.values() for t in m.subscribed(topics)}

    def _topology_changed(self, group: ConsumerGroup, topics: Mapping[str, Any]) -> bool:
        return group.topology != self._topology(group, topics)

    def _bump(self, group: ConsumerGroup, topics: Mapping[str, Any]) -> None:
        """A new group epoch and its target assignment (Kafka computes it asynchronously; we at once)."""
        group.group_epoch += 1
        live = {mid: m for mid, m in group.members.items()}
        assignors = {m.server_assignor for m in live.values() if m.server_assignor}
        group.assignor = min(assignors) if assignors else "uniform"
        parts = self._topology(group, topics)
        group.topology = parts
        subs = {mid: m.subscribed(topics) for mid, m in live.items()}
        group.target = ASSIGNORS[group.assignor](group, subs, parts)
        group.assignment_epoch = group.group_epoch

    def _reconcile(self, group: ConsumerGroup, member: ConsumerGroupMember) -> None:
        """Move `member` one step toward its target: revoke first, then take what is free."""
        target = group.target.get(member.member_id, {})
        revoke = _minus(member.assigned, target)
        if revoke:
            member.assigned = _minus(member.assigned, revoke)
            member.revoking = _union(member.revoking, revoke)
            return  # epoch unchanged until the member has revoked
        if member.revoking:
            return
        held: Assignment = {}
        for other in group.members.values():
            if other is not member:
                held = _union(held, _union(other.assigned, other.revoking))
        member.assigned = _union(member.assigned, _minus(target, held))
        if member.member_epoch != group.assignment_epoch:
            member.previous_epoch, member.member_epoch = member.member_epoch, group.assignment_epoch

    # ------------------------------------------------------------------ offsets, describe

    def validate_offset_commit(self, group_id: str, member_id: str, member_epoch: int) -> ErrorCode | None:
        """KIP-848's OffsetCommit check for a consumer group; None = go ahead.

        A commit from outside the group (epoch -1, no member id) is allowed only while the group is empty.
        """
        group = self.groups.get(group_id)
        if group is None or not group.members:
            return None if member_epoch < 0 else ErrorCode.STALE_MEMBER_EPOCH
        member = group.members.get(member_id)
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if member_epoch != member.member_epoch:
            return ErrorCode.STALE_MEMBER_EPOCH
        return None

    def describe(self, group_id: str, topics: Mapping[str, Any]) -> dict[str, Any]:
        group = self.groups.get(group_id)
        if group is None:
            return {
                "error_code": ErrorCode.GROUP_ID_NOT_FOUND,
                "error_message": f"Group {group_id} not found.",
                "group_id": group_id,
                "group_state": "Dead",
                "group_epoch": -1,
                "assignment_epoch": -1,
                "assignor_name": "",
                "members": [],
            }

        def tps(a: Assignment) -> dict[str, Any]:
            return {
                "topic_partitions": [
                    {"topic_id": uuid.UUID(hex=topics[t].id), "topic_name": t, "partitions": sorted(ps)}
                    for t, ps in sorted(a.items())
                    if t in topics
                ]
            }

        return {
            "error_code": ErrorCode.NONE,
            "error_message": None,
            "group_id": group_id,
            "group_state": group.state(),
            "group_epoch": group.group_epoch,
            "assignment_epoch": group.assignment_epoch,
            "assignor_name": group.assignor,
            "members": [
                {
                    "member_id": m.member_id,
                    "instance_id": m.instance_id,
                    "rack_id": m.rack_id,
                    "member_epoch": m.member_epoch,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "subscribed_topic_names": m.subscribed_topic_names,
                    "subscribed_topic_regex": m.subscribed_topic_regex,
                    "assignment": tps(m.assigned),
                    "target_assignment": tps(group.target.get(m.member_id, {})),
                }
                for m in group.members.values()
            ],
            "authorized_operations": -2147483648,
        }
