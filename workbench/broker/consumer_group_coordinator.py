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
groups' do.

Membership is durable too, as Kafka keeps it: each change is written to the
group's `__consumer_offsets` partition as Kafka's KIP-848 records (group epoch
type 3, member subscription 5, target assignment epoch 6 and per member 7,
current member assignment 8; `workbench.protocol.kip848`), before the
heartbeat that caused it is answered. `records()` is the group's record set;
`persist()` appends what changed since the last write (tombstones for what is
gone), and `replay()` + `finish_load()` rebuild the groups when the offsets
partition's leadership moves, so members keep their ids, epochs and
assignments across a coordinator failover (session timers restart at load).

Timeouts, as Kafka's timers: a member silent for `session_timeout_ms` is
removed; a member asked to revoke partitions that has not done so within its
`rebalance_timeout_ms` (librdkafka sends `max.poll.interval.ms`) is fenced,
so the partitions go on to their new owners. Both are checked on every
heartbeat of the group and about once a second by `expire_all` (run from the
classic coordinator's ticker), so a group whose members all died empties too.

Static membership (`group.instance.id`, KIP-848's form of KIP-345): a member
leaving with epoch -2 keeps its assignment for its instance id; a member
joining with that instance id (a new member id, epoch 0) takes it over with no
new group epoch, so the other members see no rebalance. A second live member
with the same instance id is refused (UNRELEASED_INSTANCE_ID); a heartbeat of a
member id whose instance id now belongs to another member is FENCED_INSTANCE_ID.

A group id is either classic or consumer (Kafka's rule): a consumer heartbeat
for a live classic group is GROUP_ID_NOT_FOUND, a JoinGroup for a live
consumer group INCONSISTENT_GROUP_PROTOCOL. An EMPTY group converts either way,
keeping its committed offsets (Kafka converts empty groups whatever
`group.consumer.migration.policy` says): a consumer heartbeat for an empty
classic group starts a consumer group (the offsets, in the classic
coordinator's offset manager, are shared anyway), and a classic JoinGroup for
an empty consumer group deletes it first (`delete_empty_group`). Converting a
group WITH members (Kafka's online migration under the `upgrade`/`downgrade`/
`bidirectional` policies) is not done: it is refused as above, which is what
Kafka does under `disabled`.

Regex subscriptions (`SubscribedTopicRegex`, v1) are matched with Python's
`re.fullmatch` (Kafka uses RE2/J; the common subset behaves the same).

I/O-free: handlers pass the metadata image's topics (name -> id, partitions).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workbench.broker.group_records import DurableGroupRecords, RecordStore
from workbench.protocol import kip848
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

log = logging.getLogger(__name__)

__all__ = ["ASSIGNORS", "ConsumerGroup", "ConsumerGroupCoordinator", "ConsumerGroupMember"]

Assignment = dict[str, set[int]]  # topic name -> partitions

DEFAULT_HEARTBEAT_INTERVAL_MS = 1000  # Kafka's default is 5000; a notebook wants quick rebalances
DEFAULT_SESSION_TIMEOUT_MS = 45000  # group.consumer.session.timeout.ms


# Kafka's MemberState byte in ConsumerGroupCurrentMemberAssignmentValue.
MEMBER_STATE_STABLE = 1
MEMBER_STATE_UNREVOKED_PARTITIONS = 2
MEMBER_STATE_UNRELEASED_PARTITIONS = 3


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
    revoke_deadline: float | None = None  # monotonic time by which `revoking` must be empty

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
    """Sticky and balanced: a partition stays with its current target owner while that owner is
    subscribed and under its share (n // members, and n % members of them one more), otherwise
    goes to the least-loaded subscribed member."""
    result: dict[str, Assignment] = {m: {} for m in subs}
    everything = sorted((t, p) for t in {t for s in subs.values() for t in s} for p in range(parts.get(t, 0)))
    if not subs:
        return result
    base, extra = divmod(len(everything), len(subs))
    load = dict.fromkeys(subs, 0)
    sticky: list[tuple[str, str, int]] = []
    leftover = []
    for t, p in everything:
        owner = next((m for m, a in group.target.items() if p in a.get(t, ()) and m in subs), None)
        if owner is not None and t in subs[owner]:
            sticky.append((owner, t, p))
        else:
            leftover.append((t, p))
    over: list[tuple[str, str, int]] = []
    for owner, t, p in sticky:
        if load[owner] < base:
            result[owner].setdefault(t, set()).add(p)
            load[owner] += 1
        else:
            over.append((owner, t, p))
    for owner, t, p in over:  # the n % members who may hold one more keep one of theirs
        if load[owner] == base and extra > 0:
            result[owner].setdefault(t, set()).add(p)
            load[owner] += 1
            extra -= 1
        else:
            leftover.append((t, p))
    for t, p in sorted(leftover):
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


class ConsumerGroupCoordinator(DurableGroupRecords):
    """The consumer-type groups of one `__consumer_offsets` partition (beside its classic GroupCoordinator)."""

    def __init__(
        self,
        store: RecordStore | None = None,
        *,
        heartbeat_interval_ms: int = DEFAULT_HEARTBEAT_INTERVAL_MS,
        session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
        assignors: tuple[str, ...] = ("uniform", "range"),
        max_size: int = 2**31 - 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.groups: dict[str, ConsumerGroup] = {}
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.session_timeout_ms = session_timeout_ms
        #: group.consumer.assignors: the ones members may name; the first is used when none is named.
        self.assignors = tuple(assignors)
        self.max_size = max_size  # group.consumer.max.size: a member beyond it is GROUP_MAX_SIZE_REACHED
        self._clock = clock
        super().__init__(store)
        #: The metadata image's topics (name -> `.id`, `.partitions`), for the timers (`expire_all`).
        self.topics: Callable[[], Mapping[str, Any]] | None = None
        # record key -> (the fields it was encoded from, the encoded value): see `records`
        self._encoded: dict[bytes, tuple[tuple, bytes]] = {}
        self._keys: dict[tuple[int, str, str | None], bytes] = {}
        self._next_expiry = 0.0
        #: A group's config overrides (the metadata image's, `workbench.broker.group_configs`).
        self.group_configs: Callable[[str], Mapping[str, str]] | None = None

    def group_int(self, group_id: str, name: str) -> int:
        """``consumer.session.timeout.ms`` / ``consumer.heartbeat.interval.ms`` of a group: its
        override (a GROUP config), else this coordinator's broker-wide setting."""
        own = self.group_configs(group_id) if self.group_configs is not None else {}
        if name in own:
            return int(own[name])
        return self.session_timeout_ms if name == "consumer.session.timeout.ms" else self.heartbeat_interval_ms

    def is_consumer_group(self, group_id: str) -> bool:
        group = self.groups.get(group_id)
        return group is not None and bool(group.members)

    async def delete_empty_group(self, group_id: str, topics: Mapping[str, Any]) -> bool:
        """KIP-848's downgrade of an empty group: a classic JoinGroup for the id of a consumer group with
        no members deletes the consumer group (tombstones for its records), and the id is a classic
        group from then on; the committed offsets are not touched. False if there was nothing to delete."""
        group = self.groups.get(group_id)
        if group is None or group.members:
            return False
        del self.groups[group_id]
        try:
            await self.persist(group_id, topics)
        except BaseException:
            self.groups[group_id] = group  # not deleted until its tombstones are written
            raise
        return True

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
        if body.server_assignor is not None and body.server_assignor not in self.assignors:
            # Checked before anything changes (Kafka validates the request first).
            raise KafkaProtocolError(
                ErrorCode.UNSUPPORTED_ASSIGNOR, f"assignor {body.server_assignor!r}; have {list(self.assignors)}"
            )
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
        static = self._static_member(group, body.instance_id)
        if epoch == 0:
            if member is None:
                if (static is None or static.member_epoch != -2) and len(group.members) >= self.max_size:
                    raise KafkaProtocolError(
                        ErrorCode.GROUP_MAX_SIZE_REACHED, f"group {group_id} has {self.max_size} members"
                    )
                member = ConsumerGroupMember(member_id, rebalance_timeout_ms=body.rebalance_timeout_ms)
                if static is not None:
                    if static.member_epoch != -2:
                        raise KafkaProtocolError(
                            ErrorCode.UNRELEASED_INSTANCE_ID,
                            f"instance {body.instance_id} is in use by member {static.member_id}",
                        )
                    # A static member rejoining takes over its old place: its subscription, target
                    # and owned partitions under the new member id, with no new group epoch (KIP-848).
                    del group.members[static.member_id]
                    member.subscribed_topic_names = static.subscribed_topic_names
                    member.subscribed_topic_regex = static.subscribed_topic_regex
                    member.server_assignor = static.server_assignor
                    member.assigned, member.revoking = static.assigned, static.revoking
                    member.previous_epoch = member.member_epoch = group.assignment_epoch
                    group.target[member_id] = group.target.pop(static.member_id, {})
                else:
                    changed = True
                group.members[member_id] = member
            else:
                # The member lost its state and rejoins: it owns nothing now.
                member.assigned, member.revoking, member.last_sent = {}, {}, None
        else:
            if static is not None and static.member_id != member_id:
                raise KafkaProtocolError(
                    ErrorCode.FENCED_INSTANCE_ID,
                    f"instance {body.instance_id} belongs to member {static.member_id} now",
                )
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
        if body.server_assignor is not None and body.server_assignor != member.server_assignor:
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
            "heartbeat_interval_ms": self.group_int(group_id, "consumer.heartbeat.interval.ms"),
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
        static = self._static_member(group, body.instance_id) if group is not None else None
        if static is not None and static.member_id != body.member_id:
            raise KafkaProtocolError(
                ErrorCode.FENCED_INSTANCE_ID, f"instance {body.instance_id} belongs to member {static.member_id} now"
            )
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

    def expiry_due(self) -> bool:
        """Whether `expire_all` has work to do now (checked by the ticker before spawning it)."""
        return bool(self.groups) and self.topics is not None and self._clock() >= self._next_expiry

    async def expire_all(self) -> None:
        """The session and rebalance timers of every group, with no heartbeat needed (a group whose
        members all died loses them after the session timeout); changes are persisted. Run about once
        a second from the classic coordinator's ticker."""
        now = self._clock()
        if now < self._next_expiry or self.topics is None:
            return
        self._next_expiry = now + 1.0
        topics = self.topics()
        for group_id, group in list(self.groups.items()):
            if group.members:
                before = len(group.members)
                self._expire(group, topics, now)
                if len(group.members) != before:
                    try:
                        await self.persist(group_id, topics)
                    except KafkaProtocolError as exc:  # leadership moved: the next leader's timers run
                        log.info("expiring members of %s not persisted: %s", group_id, exc)

    @staticmethod
    def _static_member(group: ConsumerGroup | None, instance_id: str | None) -> ConsumerGroupMember | None:
        if group is None or instance_id is None:
            return None
        return next((m for m in group.members.values() if m.instance_id == instance_id), None)

    def _expire(self, group: ConsumerGroup, topics: Mapping[str, Any], now: float) -> None:
        """Kafka's session and rebalance timers: remove silent members and members that did not
        revoke in time (their partitions are then free for their new owners)."""
        timeout = self.group_int(group.group_id, "consumer.session.timeout.ms") / 1000
        for m in list(group.members.values()):
            late_revoke = bool(m.revoking) and m.revoke_deadline is not None and now > m.revoke_deadline
            if now - m.last_seen > timeout or late_revoke:
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
        group.assignor = min(assignors) if assignors else self.assignors[0]
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
            if not member.revoking:
                member.revoke_deadline = self._clock() + member.rebalance_timeout_ms / 1000
            member.assigned = _minus(member.assigned, revoke)
            member.revoking = _union(member.revoking, revoke)
            return  # epoch unchanged until the member has revoked
        if member.revoking:
            return
        member.revoke_deadline = None
        held: Assignment = {}
        for other in group.members.values():
            if other is not member:
                held = _union(held, _union(other.assigned, other.revoking))
        member.assigned = _union(member.assigned, _minus(target, held))
        if member.member_epoch != group.assignment_epoch:
            member.previous_epoch, member.member_epoch = member.member_epoch, group.assignment_epoch

    # ------------------------------------------------------------------ durable state

    def records(self, group_id: str, topics: Mapping[str, Any]) -> dict[bytes, bytes]:
        """The group's state as Kafka's KIP-848 records (key -> value); empty for an unknown group.

        Called on every heartbeat, so each value is encoded only when what it holds changed (a cache
        keyed by the record key, checked against a tuple of the fields): encoding every member's
        records each time cost ~25 ms per heartbeat in a 50-member group."""
        group = self.groups.get(group_id)
        if group is None:
            return {}

        def frozen(a: Assignment) -> tuple:
            return tuple((topics[t].id, tuple(sorted(ps))) for t, ps in sorted(a.items()) if t in topics and ps)

        def tps(f: tuple) -> list[dict[str, Any]]:
            return [{"topic_id": uuid.UUID(hex=tid), "partitions": list(ps)} for tid, ps in f]

        value = kip848.encode_record_value
        cache, keys = self._encoded, self._keys

        def key(record_type: int, gid: str, mid: str | None = None) -> bytes:
            k = keys.get((record_type, gid, mid))
            if k is None:
                k = keys[(record_type, gid, mid)] = kip848.encode_record_key(record_type, gid, mid)
            return k

        def cached(k: bytes, sig: tuple, build: Callable[[tuple], bytes]) -> bytes:
            """`build(sig)`, unless the value cached for `k` was built from an equal `sig`."""
            hit = cache.get(k)
            if hit is not None and hit[0] == sig:
                return hit[1]
            v = build(sig)
            cache[k] = (sig, v)
            return v

        out = {
            key(3, group_id): cached(key(3, group_id), (group.group_epoch,), lambda g: value(3, epoch=g[0])),
            key(6, group_id): cached(
                key(6, group_id), (group.assignment_epoch,), lambda g: value(6, assignment_epoch=g[0])
            ),
        }
        for m in group.members.values():
            mid = m.member_id
            meta = (
                m.instance_id,
                m.rack_id,
                m.client_id,
                m.client_host,
                tuple(m.subscribed_topic_names),
                m.subscribed_topic_regex,
                m.rebalance_timeout_ms,
                m.server_assignor,
            )
            out[key(5, group_id, mid)] = cached(
                key(5, group_id, mid),
                meta,
                lambda f: value(
                    5,
                    instance_id=f[0],
                    rack_id=f[1],
                    client_id=f[2],
                    client_host=f[3],
                    subscribed_topic_names=list(f[4]),
                    subscribed_topic_regex=f[5],
                    rebalance_timeout_ms=f[6],
                    server_assignor=f[7],
                ),
            )
            target = frozen(group.target.get(mid, {}))
            out[key(7, group_id, mid)] = cached(
                key(7, group_id, mid), target, lambda f: value(7, topic_partitions=tps(f))
            )
            if m.revoking:
                state = MEMBER_STATE_UNREVOKED_PARTITIONS
            elif m.member_epoch != group.assignment_epoch and m.member_epoch >= 0:
                state = MEMBER_STATE_UNRELEASED_PARTITIONS
            else:
                state = MEMBER_STATE_STABLE
            current = (m.member_epoch, m.previous_epoch, state, frozen(m.assigned), frozen(m.revoking))
            out[key(8, group_id, mid)] = cached(
                key(8, group_id, mid),
                current,
                lambda c: value(
                    8,
                    member_epoch=c[0],
                    previous_member_epoch=c[1],
                    state=c[2],
                    assigned_partitions=tps(c[3]),
                    partitions_pending_revocation=tps(c[4]),
                ),
            )
        return out

    decode_key = staticmethod(kip848.decode_record_key)

    def _forget_key(self, key: bytes) -> None:
        self._encoded.pop(key, None)
        record_type, gid, mid = kip848.decode_record_key(key)
        self._keys.pop((record_type, gid, mid), None)

    def finish_load(self, topics: Mapping[str, Any]) -> None:
        """Rebuild the replayed groups; topic ids the metadata no longer knows are dropped."""
        by_id = {uuid.UUID(hex=info.id): name for name, info in topics.items()}

        def assignment(tps: Any) -> Assignment:
            out: Assignment = {}
            for tp in tps or ():
                name = by_id.get(tp.topic_id)
                if name is not None and tp.partitions:
                    out.setdefault(name, set()).update(tp.partitions)
            return out

        now = self._clock()
        for group_id, records in self._replayed.items():
            if not records:
                continue  # every record tombstoned: the group was deleted
            group = ConsumerGroup(group_id)
            members: dict[str, ConsumerGroupMember] = {}
            for key, raw in records.items():
                record_type, _gid, member_id = kip848.decode_record_key(key)
                v = kip848.decode_record_value(record_type, raw)
                if record_type == 3:
                    group.group_epoch = v.epoch
                elif record_type == 6:
                    group.assignment_epoch = v.assignment_epoch
                    continue
                if member_id is None:
                    continue
                m = members.setdefault(member_id, ConsumerGroupMember(member_id, last_seen=now))
                if record_type == 5:
                    m.instance_id, m.rack_id = v.instance_id, v.rack_id
                    m.client_id, m.client_host = v.client_id, v.client_host
                    m.subscribed_topic_names = sorted(v.subscribed_topic_names or [])
                    m.subscribed_topic_regex = v.subscribed_topic_regex
                    m.server_assignor = v.server_assignor
                    if v.rebalance_timeout_ms > 0:
                        m.rebalance_timeout_ms = v.rebalance_timeout_ms
                elif record_type == 7:
                    group.target[member_id] = assignment(v.topic_partitions)
                elif record_type == 8:
                    m.member_epoch, m.previous_epoch = v.member_epoch, v.previous_member_epoch
                    m.assigned = assignment(v.assigned_partitions)
                    m.revoking = assignment(v.partitions_pending_revocation)
            for m in members.values():
                # The rebalance timer restarts at load, as Kafka's timers do.
                m.revoke_deadline = now + m.rebalance_timeout_ms / 1000 if m.revoking else None
                group.members[m.member_id] = m
            group.target = {mid: a for mid, a in group.target.items() if mid in group.members}
            assignors = {m.server_assignor for m in group.members.values() if m.server_assignor}
            group.assignor = min(assignors) if assignors else self.assignors[0]
            group.topology = self._topology(group, topics)
            self.groups[group_id] = group
            self._written[group_id] = dict(records)
        self._replayed.clear()

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

    def validate_offset_fetch(self, group_id: str, member_id: str | None, member_epoch: int) -> ErrorCode | None:
        """OffsetFetch v9's check (Kafka's `ConsumerGroup.validateOffsetFetch`); None = go ahead.

        A fetch from outside the group (no member id, epoch -1: an admin client) is always allowed;
        a member's must carry its current member epoch (STALE_MEMBER_EPOCH)."""
        if not member_id and member_epoch < 0:
            return None
        group = self.groups.get(group_id)
        if group is None or not group.members:
            return ErrorCode.UNKNOWN_MEMBER_ID if member_id else None
        member = group.members.get(member_id or "")
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
