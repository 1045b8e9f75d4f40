"""Share group membership and assignment (KIP-932's ShareGroupHeartbeat and ShareGroupDescribe).

A share group's members all read the partitions of the topics they subscribe to as one queue,
so an assignment does not have to be exclusive: Kafka's ``SimpleAssignor`` spreads partitions
over the members and, when there are more members than partitions, lets several members share
a partition. This does the same in its simplest form: partitions round robin over the members
(sorted by member id), then each member left without a partition shares partitions round robin.
Delivering a record to one member only is the share-partition leader's job
(`workbench.broker.share_partition`), not the assignor's.

Membership is durable, as Kafka keeps it: each change is written to the group's
``__consumer_offsets`` partition as Kafka's share group records (member metadata type 10, group
epoch 11, target assignment epoch 12 and per member 13, current member assignment 14;
`workbench.protocol.kip932`) before the heartbeat that caused it is answered (`persist`), and
`replay` + `finish_load` rebuild the groups when the offsets partition's leadership moves, so the
members keep their ids, epochs and assignments across a coordinator failover (session timers
restart at load) and no rebalance follows. The other durable part of a share group, the
share-partition state, is kept by the partition leaders (`workbench.broker.share_state`).
The coordinator's own logic is I/O-free: the handler passes the clock, the store is a narrow
`RecordStore`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workbench.broker.group_records import DurableGroupRecords, RecordStore
from workbench.protocol import kip932
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

__all__ = ["ShareGroup", "ShareGroupCoordinator", "ShareMember", "assign"]

SESSION_TIMEOUT_MS = 45_000  # group.share.session.timeout.ms
HEARTBEAT_INTERVAL_MS = 1_000  # group.share.heartbeat.interval.ms (Kafka: 5000; quicker joins here)
ASSIGNOR = "simple"
#: Kafka's ShareGroup.PROTOCOL_TYPE: what ListGroups says for a share group.
PROTOCOL_TYPE = "share"
MEMBER_STATE_STABLE = 0  # Kafka's MemberState.STABLE (share members never revoke)


@dataclass
class ShareMember:
    member_id: str
    member_epoch: int = 0
    previous_epoch: int = -1
    client_id: str = ""
    client_host: str = ""
    rack_id: str | None = None
    subscribed: list[str] = field(default_factory=list)
    assignment: dict[str, list[int]] = field(default_factory=dict)  # topic name -> partitions
    last_seen_ms: int = 0


@dataclass
class ShareGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ShareMember] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return "Stable" if self.members else "Empty"


def assign(members: dict[str, list[str]], partitions: dict[str, int]) -> dict[str, dict[str, list[int]]]:
    """Member id -> topic -> partitions, every partition of a subscribed topic to at least one member."""
    out: dict[str, dict[str, list[int]]] = {m: {} for m in members}
    ids = sorted(members)
    for topic in sorted({t for ts in members.values() for t in ts}):
        subscribers = [m for m in ids if topic in members[m]]
        count = partitions.get(topic, 0)
        if not subscribers or not count:
            continue
        for p in range(count):
            out[subscribers[p % len(subscribers)]].setdefault(topic, []).append(p)
        if len(subscribers) > count:  # more members than partitions: the rest share them
            for i, m in enumerate(subscribers[count:]):
                out[m].setdefault(topic, []).append(i % count)
    return out


class ShareGroupCoordinator(DurableGroupRecords):
    """The share groups of one coordinator (one ``__consumer_offsets`` partition)."""

    def __init__(
        self,
        store: RecordStore | None = None,
        *,
        session_timeout_ms: int = SESSION_TIMEOUT_MS,
        heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS,
    ) -> None:
        self.groups: dict[str, ShareGroup] = {}
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        super().__init__(store)
        #: A group's config overrides (the metadata image's, `workbench.broker.group_configs`).
        self.group_configs: Callable[[str], Mapping[str, str]] | None = None

    def group_int(self, group_id: str, name: str) -> int:
        """``share.session.timeout.ms`` / ``share.heartbeat.interval.ms`` of a group: its override
        (a GROUP config), else this coordinator's broker-wide setting."""
        own = self.group_configs(group_id) if self.group_configs is not None else {}
        if name in own:
            return int(own[name])
        return self.session_timeout_ms if name == "share.session.timeout.ms" else self.heartbeat_interval_ms

    def heartbeat(
        self, body: Any, topics: dict[str, Any], now_ms: int, *, client_id: str = "", client_host: str = ""
    ) -> dict[str, Any]:
        """One ShareGroupHeartbeat; ``topics`` is the metadata image's name -> TopicInfo."""
        if not body.group_id:
            raise KafkaProtocolError(ErrorCode.INVALID_REQUEST, "GroupId can't be empty.")
        if not body.member_id:
            raise KafkaProtocolError(ErrorCode.INVALID_REQUEST, "MemberId can't be empty.")
        group = self.groups.setdefault(body.group_id, ShareGroup(body.group_id))
        self._expire(group, topics, now_ms)
        member = group.members.get(body.member_id)
        if body.member_epoch == -1:  # leave
            if member is not None:
                del group.members[body.member_id]
                self._rebalance(group, topics)
            return self._response(group.group_id, body.member_id, -1, None)
        if body.member_epoch == 0:
            if member is None:
                if body.subscribed_topic_names is None:
                    raise KafkaProtocolError(ErrorCode.INVALID_REQUEST, "SubscribedTopicNames must be set on join.")
                member = group.members[body.member_id] = ShareMember(body.member_id)
            member.client_id, member.client_host = client_id, client_host
        elif member is None:
            raise KafkaProtocolError(
                ErrorCode.UNKNOWN_MEMBER_ID, f"{body.member_id} is not a member of {group.group_id}"
            )
        elif body.member_epoch != member.member_epoch:
            raise KafkaProtocolError(ErrorCode.FENCED_MEMBER_EPOCH, f"epoch {body.member_epoch} is not the member's")
        member.last_seen_ms = now_ms
        if body.rack_id is not None:
            member.rack_id = body.rack_id
        changed = body.member_epoch == 0 and member.member_epoch == 0
        if body.subscribed_topic_names is not None and sorted(body.subscribed_topic_names) != member.subscribed:
            member.subscribed = sorted(body.subscribed_topic_names)
            changed = True
        if changed or self._partition_counts_changed(group, topics):
            self._rebalance(group, topics)
        # A member learns a new assignment (and the group epoch with it) on its next heartbeat;
        # share groups have no revocation phase, so it takes it at once.
        send = body.member_epoch == 0 or member.member_epoch != group.group_epoch
        if member.member_epoch != group.group_epoch:
            member.previous_epoch, member.member_epoch = member.member_epoch, group.group_epoch
        assignment = self._assignment(member, topics) if send else None
        return self._response(group.group_id, member.member_id, member.member_epoch, assignment)

    def _partition_counts_changed(self, group: ShareGroup, topics: dict[str, Any]) -> bool:
        want = assign({m.member_id: m.subscribed for m in group.members.values()}, _counts(group, topics))
        return any(want[m.member_id] != m.assignment for m in group.members.values())

    def _rebalance(self, group: ShareGroup, topics: dict[str, Any]) -> None:
        group.group_epoch += 1
        want = assign({m.member_id: m.subscribed for m in group.members.values()}, _counts(group, topics))
        for m in group.members.values():
            m.assignment = want[m.member_id]
        group.assignment_epoch = group.group_epoch

    def _expire(self, group: ShareGroup, topics: dict[str, Any], now_ms: int) -> None:
        timeout = self.group_int(group.group_id, "share.session.timeout.ms")
        gone = [m for m in group.members.values() if now_ms - m.last_seen_ms > timeout]
        for m in gone:
            del group.members[m.member_id]
        if gone:
            self._rebalance(group, topics)

    @staticmethod
    def _assignment(member: ShareMember, topics: dict[str, Any]) -> dict[str, Any]:
        return {
            "topic_partitions": [
                {"topic_id": uuid.UUID(hex=topics[t].id), "partitions": sorted(ps)}
                for t, ps in sorted(member.assignment.items())
                if t in topics
            ]
        }

    def _response(self, group_id: str, member_id: str, epoch: int, assignment: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "throttle_time_ms": 0,
            "error_code": 0,
            "error_message": None,
            "member_id": member_id,
            "member_epoch": epoch,
            "heartbeat_interval_ms": self.group_int(group_id, "share.heartbeat.interval.ms"),
            "assignment": assignment,
        }

    # ------------------------------------------------------------------ durable state

    def records(self, group_id: str, topics: Mapping[str, Any]) -> dict[bytes, bytes]:
        """The group's state as Kafka's share group records (key -> value); empty for an unknown group.
        Partitions of topics the metadata no longer knows are left out."""
        group = self.groups.get(group_id)
        if group is None:
            return {}
        key, value = kip932.encode_share_record_key, kip932.encode_share_record_value

        def tps(a: dict[str, list[int]]) -> list[dict[str, Any]]:
            return [
                {"topic_id": uuid.UUID(hex=topics[t].id), "partitions": sorted(ps)}
                for t, ps in sorted(a.items())
                if t in topics and ps
            ]

        out = {
            key(11, group_id): value(11, epoch=group.group_epoch),
            key(12, group_id): value(12, assignment_epoch=group.assignment_epoch),
        }
        for m in group.members.values():
            mid = m.member_id
            out[key(10, group_id, mid)] = value(
                10,
                rack_id=m.rack_id,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=list(m.subscribed),
            )
            out[key(13, group_id, mid)] = value(13, topic_partitions=tps(m.assignment))
            out[key(14, group_id, mid)] = value(
                14,
                member_epoch=m.member_epoch,
                previous_member_epoch=m.previous_epoch,
                state=MEMBER_STATE_STABLE,
                assigned_partitions=tps(m.assignment),
            )
        return out

    decode_key = staticmethod(kip932.decode_share_record_key)

    async def delete_empty_group(self, group_id: str, topics: Mapping[str, Any]) -> None:
        """DeleteGroups of a share group with no members: its records are tombstoned, durably, and the
        id is free for any group type again. NON_EMPTY_GROUP while it has members."""
        group = self.groups.get(group_id)
        if group is None:
            raise KafkaProtocolError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
        if group.members:
            raise KafkaProtocolError(ErrorCode.NON_EMPTY_GROUP, f"Share group {group_id} has members.")
        del self.groups[group_id]
        try:
            await self.persist(group_id, topics)
        except BaseException:
            self.groups[group_id] = group  # not deleted until its tombstones are written
            raise

    def finish_load(self, topics: Mapping[str, Any], now_ms: int) -> None:
        """Rebuild the replayed groups (members last seen ``now_ms``: their session timers restart, as
        Kafka's do at load); topic ids the metadata no longer knows are dropped."""
        by_id = {uuid.UUID(hex=info.id): name for name, info in topics.items()}

        def assignment(tps: Iterable[Any] | None) -> dict[str, list[int]]:
            out: dict[str, list[int]] = {}
            for tp in tps or ():
                name = by_id.get(tp.topic_id)
                if name is not None and tp.partitions:
                    out.setdefault(name, []).extend(tp.partitions)
            return {t: sorted(set(ps)) for t, ps in out.items()}

        for group_id, records in self._replayed.items():
            if not records:
                continue  # every record tombstoned: the group was deleted
            group = ShareGroup(group_id)
            for key, raw in records.items():
                record_type, _gid, member_id = kip932.decode_share_record_key(key)
                v = kip932.decode_share_record_value(record_type, raw)
                if record_type == 11:
                    group.group_epoch = v.epoch
                elif record_type == 12:
                    group.assignment_epoch = v.assignment_epoch
                if member_id is None:
                    continue
                m = group.members.get(member_id)
                if m is None:
                    m = group.members[member_id] = ShareMember(member_id, last_seen_ms=now_ms)
                if record_type == 10:
                    m.rack_id, m.client_id, m.client_host = v.rack_id, v.client_id, v.client_host
                    m.subscribed = sorted(v.subscribed_topic_names or [])
                elif record_type == 14:
                    m.member_epoch, m.previous_epoch = v.member_epoch, v.previous_member_epoch
                    m.assignment = assignment(v.assigned_partitions)
            self.groups[group_id] = group
            self._written[group_id] = dict(records)
        self._replayed.clear()

    def describe(self, group_id: str, topics: dict[str, Any]) -> dict[str, Any]:
        group = self.groups.get(group_id)
        if group is None:
            raise KafkaProtocolError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
        members = []
        for m in sorted(group.members.values(), key=lambda m: m.member_id):
            members.append(
                {
                    "member_id": m.member_id,
                    "rack_id": m.rack_id,
                    "member_epoch": m.member_epoch,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "subscribed_topic_names": m.subscribed,
                    "assignment": {
                        "topic_partitions": [
                            {"topic_id": uuid.UUID(hex=topics[t].id), "topic_name": t, "partitions": sorted(ps)}
                            for t, ps in sorted(m.assignment.items())
                            if t in topics
                        ]
                    },
                }
            )
        return {
            "error_code": 0,
            "error_message": None,
            "group_id": group_id,
            "group_state": group.state,
            "group_epoch": group.group_epoch,
            "assignment_epoch": group.assignment_epoch,
            "assignor_name": ASSIGNOR,
            "members": members,
            "authorized_operations": -2147483648,
        }


def _counts(group: ShareGroup, topics: dict[str, Any]) -> dict[str, int]:
    wanted = {t for m in group.members.values() for t in m.subscribed}
    return {t: len(topics[t].partitions) for t in wanted if t in topics and not t.startswith("__")}
