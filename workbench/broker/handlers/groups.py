"""Consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete.

These decode the request, route to the `GroupCoordinator` that owns the
group on this broker (or answer NOT_COORDINATOR), and encode its results.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from workbench.broker.groups_manager import OFFSETS_TOPIC
from workbench.broker.handlers.consumer_groups import consumer_coordinator_if_any
from workbench.broker.handlers.share_groups import delete_share_group
from workbench.broker.handlers.transactions import KEY_TYPE_TRANSACTION, find_transaction_coordinator
from workbench.broker.share_group_coordinator import PROTOCOL_TYPE as SHARE_PROTOCOL_TYPE
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

if TYPE_CHECKING:
    from workbench.broker.handlers.context import BrokerContext as Broker
    from workbench.broker.server import Connection
    from workbench.protocol.codec import Request

KEY_TYPE_GROUP = 0


#: How long FindCoordinator waits for `__consumer_offsets` to be created before answering
#: COORDINATOR_NOT_AVAILABLE.
OFFSETS_TOPIC_CREATE_WAIT_S = 5.0


async def _offsets_topic_led(broker: Broker, key: str) -> None:
    """Create `__consumer_offsets` if needed, then wait until this broker's metadata names a
    live leader for `key`'s partition.

    Right after the creation the partitions have no leader in the local image yet; answering
    COORDINATOR_NOT_AVAILABLE then is correct but needless, and clients with few retries (sarama's
    offset manager retries it three times in 750 ms) give up on a cluster that is a moment from
    ready. The caller bounds the whole wait."""
    await broker.groups.ensure_offsets_topic()
    while broker.image.brokers.get(broker.groups.coordinator_node(key)) is None:
        await asyncio.sleep(0.05)


async def _find_one(broker: Broker, key: str, key_type: int) -> dict:
    if key_type == KEY_TYPE_TRANSACTION:
        return await find_transaction_coordinator(broker, key)
    if key_type != KEY_TYPE_GROUP:
        return {
            "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
            "error_message": f"unknown coordinator key type {key_type}",
            "node_id": -1,
            "host": "",
            "port": -1,
            "key": key,
        }
    if not key:
        return {
            "error_code": ErrorCode.INVALID_GROUP_ID,
            "error_message": "empty group id",
            "node_id": -1,
            "host": "",
            "port": -1,
            "key": key,
        }
    try:
        # Bounded: a client's FindCoordinator must not wait out its own timeout on a controller
        # that has no majority (it is answered, and retried, instead).
        await asyncio.wait_for(_offsets_topic_led(broker, key), OFFSETS_TOPIC_CREATE_WAIT_S)
    except (KafkaProtocolError, TimeoutError) as exc:
        # Creating __consumer_offsets failed (no controller majority, too few live brokers): the
        # coordinator is not available yet, which clients retry, as Kafka answers it.
        return {
            "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
            "error_message": (
                f"no live leader for group {key}'s {OFFSETS_TOPIC} partition yet"
                if OFFSETS_TOPIC in broker.image.topics
                else f"cannot create {OFFSETS_TOPIC} yet: {exc}"
            ),
            "node_id": -1,
            "host": "",
            "port": -1,
            "key": key,
        }
    node = broker.groups.coordinator_node(key)
    info = broker.image.brokers.get(node)
    if info is None:
        return {
            "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
            "error_message": None,
            "node_id": -1,
            "host": "",
            "port": -1,
            "key": key,
        }
    return {
        "error_code": 0,
        "error_message": None,
        "node_id": info.id,
        "host": info.host,
        "port": info.port,
        "key": key,
    }


async def find_coordinator(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    if req.api_version >= 4:
        return {
            "throttle_time_ms": 0,
            "coordinators": [await _find_one(broker, k, body.key_type) for k in body.coordinator_keys],
        }
    one = await _find_one(broker, body.key, body.key_type if req.api_version >= 1 else 0)
    one.pop("key")
    return {"throttle_time_ms": 0, **one}


async def join_group(broker: Broker, req: Request, conn: Connection) -> dict:
    b = req.body
    try:
        coordinator = await broker.groups.coordinator_for_soon(b.group_id)
        cgc = consumer_coordinator_if_any(coordinator)
        if cgc is not None and cgc.is_consumer_group(b.group_id):
            # KIP-848: a group id is classic or consumer, never both.
            raise KafkaProtocolError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, f"{b.group_id} is a consumer group")
        if cgc is not None and b.group_id in cgc.groups:
            # An empty consumer group becomes a classic group (its offsets stay): Kafka's empty downgrade.
            broker.refresh_metadata()
            await cgc.delete_empty_group(b.group_id, broker.image.topics)
    except KafkaProtocolError as exc:
        return {
            "throttle_time_ms": 0,
            "error_code": exc.code,
            "generation_id": -1,
            "protocol_type": None,
            "protocol_name": None if req.api_version >= 7 else "",
            "leader": "",
            "member_id": b.member_id,
            "members": [],
        }
    rebalance_timeout = b.rebalance_timeout_ms if req.api_version >= 1 else b.session_timeout_ms
    result = await coordinator.join_group(
        b.group_id,
        b.member_id,
        b.group_instance_id,
        b.protocol_type,
        [(p.name, bytes(p.metadata)) for p in b.protocols],
        b.session_timeout_ms,
        rebalance_timeout,
        req.client_id or "",
        conn.peer.rsplit(":", 1)[0],
        require_known_member_id=req.api_version >= 4,
        reason=b.reason,
    )
    protocol_name = result.protocol_name
    if protocol_name is None and req.api_version < 7:
        protocol_name = ""
    return {
        "throttle_time_ms": 0,
        "error_code": result.error_code,
        "generation_id": result.generation_id,
        "protocol_type": result.protocol_type,
        "protocol_name": protocol_name,
        "leader": result.leader_id or "",
        "member_id": result.member_id or "",
        "members": [{"member_id": m, "group_instance_id": inst, "metadata": meta} for m, inst, meta in result.members],
    }


async def sync_group(broker: Broker, req: Request, conn: Connection) -> dict:
    b = req.body
    try:
        coordinator = await broker.groups.coordinator_for_soon(b.group_id)
    except KafkaProtocolError as exc:
        return {"throttle_time_ms": 0, "error_code": exc.code, "assignment": b""}
    result = await coordinator.sync_group(
        b.group_id,
        b.generation_id,
        b.member_id,
        b.group_instance_id,
        b.protocol_type,
        b.protocol_name,
        [(a.member_id, bytes(a.assignment)) for a in b.assignments],
    )
    return {
        "throttle_time_ms": 0,
        "error_code": result.error_code,
        "protocol_type": result.protocol_type,
        "protocol_name": result.protocol_name,
        "assignment": result.assignment or b"",
    }


async def heartbeat(broker: Broker, req: Request, conn: Connection) -> dict:
    b = req.body
    try:
        coordinator = await broker.groups.coordinator_for_soon(b.group_id)
        error = coordinator.heartbeat(b.group_id, b.generation_id, b.member_id, b.group_instance_id)
    except KafkaProtocolError as exc:
        error = exc.code
    return {"throttle_time_ms": 0, "error_code": error}


async def leave_group(broker: Broker, req: Request, conn: Connection) -> dict:
    b = req.body
    members: list[tuple[str | None, str | None]] = (
        [(m.member_id, m.group_instance_id) for m in b.members] if req.api_version >= 3 else [(b.member_id, None)]
    )
    try:
        coordinator = await broker.groups.coordinator_for_soon(b.group_id)
        error, results = await coordinator.leave_group(b.group_id, members)
    except KafkaProtocolError as exc:
        error, results = exc.code, []
    if req.api_version < 3 and results and error == ErrorCode.NONE:
        error = results[0][2]
    return {
        "throttle_time_ms": 0,
        "error_code": error,
        "members": [{"member_id": m, "group_instance_id": inst, "error_code": e} for m, inst, e in results],
    }


async def offset_commit(broker: Broker, req: Request, conn: Connection) -> dict:
    b = req.body
    # Kafka's KafkaApis.handleOffsetCommitRequest: a partition the metadata does not know is
    # answered UNKNOWN_TOPIC_OR_PARTITION on its own, and only the others are committed.
    broker.refresh_metadata()
    topics = broker.image.topics
    unknown: list[tuple[str, int, int]] = []
    offsets = []
    for t in b.topics:
        info = topics.get(t.name)
        for p in t.partitions:
            if info is None or p.partition_index not in info.partitions:
                unknown.append((t.name, p.partition_index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
            else:
                offsets.append(
                    (t.name, p.partition_index, p.committed_offset, p.committed_leader_epoch, p.committed_metadata)
                )
    try:
        coordinator = await broker.groups.coordinator_for_soon(b.group_id)
        cgc = consumer_coordinator_if_any(coordinator)
        if cgc is not None and cgc.is_consumer_group(b.group_id):
            # KIP-848: the member epoch is checked by the consumer group; the offsets go to the same store.
            err = cgc.validate_offset_commit(b.group_id, b.member_id, b.generation_id_or_member_epoch)
            if err is not None:
                raise KafkaProtocolError(err, f"group {b.group_id}")
            # To the classic side it is a commit from outside any classic generation.
            results = await coordinator.commit_offsets(b.group_id, -1, "", None, offsets) if offsets else []
        else:
            results = (
                await coordinator.commit_offsets(
                    b.group_id, b.generation_id_or_member_epoch, b.member_id, b.group_instance_id, offsets
                )
                if offsets
                else []
            )
    except KafkaProtocolError as exc:
        results = [(t, p, exc.code) for t, p, *_ in offsets]
    all_results: list[tuple[str, int, int]] = [*results, *unknown]
    by_topic: dict[str, list[dict]] = {}
    for topic, partition, error in all_results:
        by_topic.setdefault(topic, []).append({"partition_index": partition, "error_code": error})
    return {"throttle_time_ms": 0, "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()]}


async def _fetch_group(
    broker: Broker,
    group_id: str,
    topics: Any,
    require_stable: bool = False,
    member: tuple[str | None, int] | None = None,
) -> tuple[ErrorCode, dict[str, list[dict]]]:
    """One group's OffsetFetch; `member` is v9's (member id, member epoch), checked by a KIP-848 group."""
    partitions = None if topics is None else [(t.name, p) for t in topics for p in t.partition_indexes]
    try:
        coordinator = await broker.groups.coordinator_for_soon(group_id)
        cgc = consumer_coordinator_if_any(coordinator)
        if member is not None and cgc is not None and cgc.is_consumer_group(group_id):
            err = cgc.validate_offset_fetch(group_id, *member)
            if err is not None:
                raise KafkaProtocolError(err, f"group {group_id}")
        rows = coordinator.fetch_offsets(group_id, partitions)
    except KafkaProtocolError as exc:
        return exc.code, {}
    # KIP-447: with require_stable, an offset an open transaction is committing is not answered yet.
    unstable = broker.groups.pending_transactional_offsets(group_id) if require_stable else set()
    by_topic: dict[str, list[dict]] = {}
    for topic, partition, offset, epoch, metadata, error in rows:
        if (topic, partition) in unstable:
            offset, error = -1, ErrorCode.UNSTABLE_OFFSET_COMMIT
        by_topic.setdefault(topic, []).append(
            {
                "partition_index": partition,
                "committed_offset": offset,
                "committed_leader_epoch": epoch,
                "metadata": metadata,
                "error_code": error,
            }
        )
    return ErrorCode.NONE, by_topic


async def offset_fetch(broker: Broker, req: Request, conn: Connection) -> dict:
    b = req.body
    if req.api_version >= 8:
        groups = []
        for g in b.groups:
            member = (g.member_id, g.member_epoch) if req.api_version >= 9 else None
            error, by_topic = await _fetch_group(broker, g.group_id, g.topics, bool(b.require_stable), member)
            groups.append(
                {
                    "group_id": g.group_id,
                    "error_code": error,
                    "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()],
                }
            )
        return {"throttle_time_ms": 0, "groups": groups}
    error, by_topic = await _fetch_group(broker, b.group_id, b.topics, req.api_version >= 7 and bool(b.require_stable))
    topics = [{"name": t, "partitions": ps} for t, ps in by_topic.items()]
    if error and req.api_version < 2 and b.topics:
        # v0-1 have no top-level error: report it per partition.
        topics = [
            {
                "name": t.name,
                "partitions": [
                    {"partition_index": p, "committed_offset": -1, "metadata": "", "error_code": error}
                    for p in t.partition_indexes
                ],
            }
            for t in b.topics
        ]
    return {"throttle_time_ms": 0, "topics": topics, "error_code": error}


async def list_groups(broker: Broker, req: Request, conn: Connection) -> dict:
    """ListGroups; v5 (KIP-848) adds the group type ("classic", "consumer" or "share") and a types filter.

    A KIP-932 share group is listed with protocol type and group type "share" and its state
    (Empty or Stable), as Kafka's ShareGroup.asListedGroup lists it; older versions list it too
    (Kafka's listGroups does not filter by version)."""
    b = req.body
    states = {s.lower() for s in b.states_filter} if req.api_version >= 4 and b.states_filter else None
    types = {t.lower() for t in b.types_filter} if req.api_version >= 5 and b.types_filter else None
    groups = []
    for coordinator in broker.groups.all_coordinators():
        classic = coordinator.list_groups(None)
        live_classic = {gid for gid, _pt, state in classic if state not in ("Empty", "Dead")}
        cgc = consumer_coordinator_if_any(coordinator)
        modern = {gid: g for gid, g in cgc.groups.items() if gid not in live_classic} if cgc is not None else {}
        share = {gid: g for gid, g in coordinator.share.groups.items() if gid not in live_classic and gid not in modern}
        found = [(gid, pt, state, "classic") for gid, pt, state in classic if gid not in modern and gid not in share]
        # KIP-848 groups are listed with protocol type "consumer" and type "consumer", as Kafka lists them.
        found += [(gid, "consumer", g.state(), "consumer") for gid, g in modern.items()]
        found += [(gid, SHARE_PROTOCOL_TYPE, g.state, "share") for gid, g in share.items()]
        for group_id, protocol_type, state, group_type in found:
            if (states is None or state.lower() in states) and (types is None or group_type in types):
                groups.append(
                    {
                        "group_id": group_id,
                        "protocol_type": protocol_type,
                        "group_state": state,
                        "group_type": group_type,
                    }
                )
    return {"throttle_time_ms": 0, "error_code": 0, "groups": groups}


async def describe_groups(broker: Broker, req: Request, conn: Connection) -> dict:
    out = []
    for group_id in req.body.groups:
        try:
            coordinator = await broker.groups.coordinator_for_soon(group_id)
            d = coordinator.describe_group(group_id)
            out.append(
                {
                    "error_code": d.error_code,
                    "group_id": group_id,
                    "group_state": d.state,
                    "protocol_type": d.protocol_type or "",
                    "protocol_data": d.protocol_name or "",
                    "members": [
                        {
                            "member_id": m.member_id,
                            "group_instance_id": m.group_instance_id,
                            "client_id": m.client_id,
                            "client_host": m.client_host,
                            "member_metadata": m.metadata or b"",
                            "member_assignment": m.assignment or b"",
                        }
                        for m in d.members
                    ],
                }
            )
        except KafkaProtocolError as exc:
            out.append(
                {
                    "error_code": exc.code,
                    "group_id": group_id,
                    "group_state": "",
                    "protocol_type": "",
                    "protocol_data": "",
                    "members": [],
                }
            )
    return {"throttle_time_ms": 0, "groups": out}


async def delete_groups(broker: Broker, req: Request, conn: Connection) -> dict:
    """DeleteGroups; a KIP-932 share group (empty) loses its membership records and its share-partition
    state, as Kafka deletes both."""
    results = []
    for group_id in req.body.groups_names:
        try:
            coordinator = await broker.groups.coordinator_for_soon(group_id)
            if group_id in coordinator.share.groups:
                await delete_share_group(broker, coordinator.share, group_id)
                error = ErrorCode.NONE
            else:
                [(_gid, error)] = await coordinator.delete_groups([group_id])
        except KafkaProtocolError as exc:
            error = exc.code
        results.append({"group_id": group_id, "error_code": error})
    return {"throttle_time_ms": 0, "results": results}


async def offset_delete(broker: Broker, req: Request, conn: Connection) -> dict:
    b = req.body
    partitions = [(t.name, p.partition_index) for t in b.topics for p in t.partitions]
    try:
        coordinator = await broker.groups.coordinator_for_soon(b.group_id)
        error, results = await coordinator.delete_offsets(b.group_id, partitions)
    except KafkaProtocolError as exc:
        error, results = exc.code, []
    by_topic: dict[str, list[dict]] = {}
    for topic, partition, perr in results:
        by_topic.setdefault(topic, []).append({"partition_index": partition, "error_code": perr})
    return {
        "error_code": error,
        "throttle_time_ms": 0,
        "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()],
    }
