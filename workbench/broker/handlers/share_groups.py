"""KIP-932 share groups: ShareGroupHeartbeat (76), ShareGroupDescribe (77), ShareFetch (78),
ShareAcknowledge (79).

Membership is kept by the group's coordinator (a `ShareGroupCoordinator` beside each classic
`GroupCoordinator`, ``classic.share``, as the KIP-848 one is, persisted in the same
``__consumer_offsets`` partition); records are handed out and acknowledged by each
partition's leader (`workbench.broker.share_state.SharePartitionManager`), which persists the
share-partition state before it answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from workbench.broker import group_configs
from workbench.broker.share_group_coordinator import ShareGroupCoordinator
from workbench.broker.share_state import SharePartitionManager, ShareSession
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.records import iter_batch_headers

if TYPE_CHECKING:
    from workbench.broker.group_coordinator import GroupCoordinator
    from workbench.broker.handlers.context import BrokerContext as Broker
    from workbench.broker.server import Connection
    from workbench.protocol.codec import Request

_MANAGERS: weakref.WeakKeyDictionary[Any, SharePartitionManager] = weakref.WeakKeyDictionary()

#: Share sessions kept per broker (Kafka's group.share.max.share.sessions, 2000); beyond it the
#: least recently used session is closed and its records released.
MAX_SHARE_SESSIONS = 2000
#: How often a waiting ShareFetch re-checks for released or expired records (they wake no waiter).
_RECHECK_S = 0.1


def share_coordinator(classic: GroupCoordinator) -> ShareGroupCoordinator:
    """The KIP-932 coordinator beside `classic` (one per offsets partition)."""
    return classic.share


def share_partitions(broker: Broker) -> SharePartitionManager:
    """This broker's share-partition manager."""
    mgr = _MANAGERS.get(broker)
    if mgr is None:
        mgr = _MANAGERS[broker] = SharePartitionManager(broker)
    return mgr


def publish_share_partitions(broker: Broker, path: Any) -> None:
    """Write this broker's share partitions (`SharePartitionManager.published`) to ``path`` when
    they changed (the notebook's `wb.share_groups` reads it)."""
    mgr = _MANAGERS.get(broker)
    if mgr is None:
        return
    text = json.dumps(mgr.published(), sort_keys=True)
    if text == getattr(mgr, "_published", None):
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    mgr._published = text  # type: ignore[attr-defined]


def _lock_ms(mgr: SharePartitionManager, group: str) -> int:
    """The group's acquisition lock duration (AcquisitionLockTimeoutMs in responses)."""
    return mgr.group_config(group or None)[0]


async def describe_group_configs(broker: Broker, group: str, keys: list[str] | None) -> list[dict]:
    """DescribeConfigs of a GROUP resource: every group config (`workbench.broker.group_configs`),
    set on the group or the broker's default."""
    if not group:
        raise KafkaProtocolError(ErrorCode.INVALID_REQUEST, "a group resource needs a group id")
    broker.refresh_metadata()
    return group_configs.describe_entries(broker.config, broker.image.group_configs.get(group, {}), keys)


async def alter_group_configs(
    broker: Broker, group: str, changes: list[tuple[str, int, str | None]], *, replace: bool, validate_only: bool
) -> None:
    """(Incremental)AlterConfigs of a GROUP resource: SET (0) and DELETE (1); ``replace`` is
    AlterConfigs' "these are all the configs". Validated as Kafka's GroupConfig validates (INVALID_CONFIG),
    then written to the metadata log by the controller, as Kafka keeps group configs."""
    if not group:
        raise KafkaProtocolError(ErrorCode.INVALID_REQUEST, "a group resource needs a group id")
    broker.refresh_metadata()
    current = broker.image.group_configs.get(group, {})
    configs = group_configs.validate(broker.config, group_configs.altered(current, changes, replace=replace))
    if not validate_only and configs != current:
        await broker.controller.submit({"op": "alter_group_configs", "group": group, "configs": configs})


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


async def share_group_heartbeat(broker: Broker, req: Request, conn: Connection) -> dict:
    b = req.body
    try:
        classic = await broker.groups.coordinator_for_soon(b.group_id)
        if classic.describe_group(b.group_id).state not in ("", "Empty", "Dead"):
            raise KafkaProtocolError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {b.group_id} is not a share group.")
        if classic.consumer.is_consumer_group(b.group_id):
            raise KafkaProtocolError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {b.group_id} is not a share group.")
        broker.refresh_metadata()
        topics = broker.image.topics
        sgc = share_coordinator(classic)
        try:
            return sgc.heartbeat(
                b, topics, _now_ms(), client_id=req.client_id or "", client_host=f"/{conn.peer.rsplit(':', 1)[0]}"
            )
        finally:
            # Whatever the heartbeat changed (an expired member is removed even when the heartbeat
            # itself is refused) is durable before the answer.
            await sgc.persist(b.group_id, topics)
    except KafkaProtocolError as exc:
        return {
            "throttle_time_ms": 0,
            "error_code": exc.code,
            "error_message": exc.message or None,
            "member_id": None,
            "member_epoch": -1,
            "heartbeat_interval_ms": 0,
            "assignment": None,
        }


async def share_group_describe(broker: Broker, req: Request, conn: Connection) -> dict:
    groups: list[dict[str, Any]] = []
    broker.refresh_metadata()
    for group_id in req.body.group_ids:
        try:
            classic = await broker.groups.coordinator_for_soon(group_id)
            sgc = share_coordinator(classic)
            if group_id not in sgc.groups and (
                classic.consumer.is_consumer_group(group_id)
                or classic.describe_group(group_id).state not in ("", "Empty", "Dead")
            ):
                raise KafkaProtocolError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a share group.")
            groups.append(sgc.describe(group_id, broker.image.topics))
        except KafkaProtocolError as exc:
            groups.append(
                {
                    "error_code": exc.code,
                    "error_message": exc.message or None,
                    "group_id": group_id,
                    "group_state": "Dead",
                    "group_epoch": -1,
                    "assignment_epoch": -1,
                    "assignor_name": "",
                    "members": [],
                    "authorized_operations": -2147483648,
                }
            )
    return {"throttle_time_ms": 0, "groups": groups}


def _topic_names(broker: Broker) -> dict[uuid.UUID, str]:
    return {uuid.UUID(hex=info.id): name for name, info in broker.image.topics.items()}


def _leader(broker: Broker, topic: str, partition: int) -> dict[str, int]:
    info = broker.image.topics.get(topic)
    p = info.partitions.get(partition) if info is not None else None
    return {"leader_id": p.leader if p else -1, "leader_epoch": p.leader_epoch if p else -1}


async def _acknowledge(
    broker: Broker, group: str, member: str, topic: str, partition: int, batches: list[Any]
) -> tuple[int, str | None]:
    mgr = share_partitions(broker)
    try:
        led = await mgr.get(group, topic, partition)
    except KafkaProtocolError as exc:
        return exc.code, exc.message
    async with led.lock:
        plan = [(b.first_offset, b.last_offset, list(b.acknowledge_types)) for b in batches]
        code = led.sp.acknowledge(member, plan, _now_ms())
        if code == ErrorCode.NONE:
            await mgr.persist((group, topic, partition), led)
            mgr.changed.set()
    return code, None


async def _release_session(broker: Broker, session: ShareSession) -> None:
    mgr = share_partitions(broker)
    for topic, partition in sorted(session.partitions):
        led = mgr.partitions.get((session.group_id, topic, partition))
        if led is None:
            continue
        async with led.lock:
            if led.sp.release_member(session.member_id):
                await mgr.persist((session.group_id, topic, partition), led)
                mgr.changed.set()


def _session(mgr: SharePartitionManager, group: str, member: str, epoch: int) -> ShareSession:
    key = (group, member)
    if epoch == 0:
        mgr.sessions.pop(key, None)
        session = mgr.sessions[key] = ShareSession(group, member, 1)
        return session
    session_or_none = mgr.sessions.get(key)
    if session_or_none is not None:
        mgr.sessions[key] = mgr.sessions.pop(key)  # most recently used last (eviction order)
    if session_or_none is None:
        raise KafkaProtocolError(ErrorCode.SHARE_SESSION_NOT_FOUND, f"no share session for {member}")
    if epoch == -1:
        return mgr.sessions.pop(key)
    if epoch != session_or_none.epoch:
        raise KafkaProtocolError(
            ErrorCode.INVALID_SHARE_SESSION_EPOCH, f"share session epoch {epoch}, expected {session_or_none.epoch}"
        )
    session_or_none.epoch = epoch + 1 if epoch < 0x7FFFFFFF else 1
    return session_or_none


def _read_acquired(plog: Any, ranges: list[tuple[int, int, int]], upper: int) -> bytes:
    """The whole batches holding the acquired offsets, each batch once, in offset order."""
    out: list[bytes] = []
    seen: set[int] = set()
    for first, last, _count in ranges:
        offset = first
        while offset <= last:
            data = plog.read(offset, 1 << 20, upper_bound=upper)
            if not len(data):
                break
            buf = bytes(data)
            moved = False
            for h in iter_batch_headers(buf):
                if h.next_offset <= offset:
                    continue
                if h.base_offset > last:
                    break
                if h.base_offset not in seen:
                    seen.add(h.base_offset)
                    out.append(buf[h.position : h.position + 12 + h.batch_length])
                offset = h.next_offset
                moved = True
            if not moved:
                break
    return b"".join(out)


def _without_aborted(plog: Any, sp: Any, ranges: list[tuple[int, int, int]], upper: int) -> list[tuple[int, int, int]]:
    """read_committed: archive the acquired records of aborted transactions (Kafka's SharePartition
    does the same) and return the acquired ranges without them."""
    spans = plog.aborted_spans(ranges[0][0], upper)
    if not spans:
        return ranges
    aborted: set[int] = set()
    for first, last, _count in ranges:
        offset = first
        while offset <= last:
            data = plog.read(offset, 1 << 20, upper_bound=upper)
            if not len(data):
                break
            buf, moved = bytes(data), False
            for h in iter_batch_headers(buf):
                if h.next_offset <= offset:
                    continue
                if h.base_offset > last:
                    break
                in_aborted = any(pid == h.producer_id and lo <= h.base_offset <= hi for pid, lo, hi in spans)
                if h.is_transactional and not h.is_control and in_aborted:
                    aborted.update(range(max(h.base_offset, first), min(h.next_offset - 1, last) + 1))
                offset, moved = h.next_offset, True
            if not moved:
                break
    if not aborted:
        return ranges
    sp.archive_acquired(aborted)
    kept: list[tuple[int, int, int]] = []
    for first, last, count in ranges:
        run: int | None = None
        for o in range(first, last + 1):
            if o in aborted:
                if run is not None:
                    kept.append((run, o - 1, count))
                    run = None
            elif run is None:
                run = o
        if run is not None:
            kept.append((run, last, count))
    return kept


async def share_fetch(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    mgr = share_partitions(broker)
    group, member = body.group_id or "", body.member_id or ""
    lock_ms = _lock_ms(mgr, group)
    broker.refresh_metadata()
    names = _topic_names(broker)

    def top(code: int, message: str | None) -> dict:
        return {
            "throttle_time_ms": 0,
            "error_code": code,
            "error_message": message,
            "acquisition_lock_timeout_ms": lock_ms,
            "responses": [],
            "node_endpoints": [],
        }

    if not group or not member:
        return top(ErrorCode.INVALID_REQUEST, "GroupId and MemberId are required")
    try:
        session = _session(mgr, group, member, body.share_session_epoch)
    except KafkaProtocolError as exc:
        return top(exc.code, exc.message)
    while len(mgr.sessions) > MAX_SHARE_SESSIONS:  # evict the least recently used, as a closed one
        await _release_session(broker, mgr.sessions.pop(next(iter(mgr.sessions))))

    results: dict[tuple[str, int], dict[str, Any]] = {}
    ids: dict[str, uuid.UUID] = {}

    def result(topic: str, partition: int) -> dict[str, Any]:
        r = results.get((topic, partition))
        if r is None:
            r = results[(topic, partition)] = {
                "partition_index": partition,
                "error_code": 0,
                "error_message": None,
                "acknowledge_error_code": 0,
                "acknowledge_error_message": None,
                "current_leader": _leader(broker, topic, partition),
                "records": None,
                "acquired_records": [],
            }
        return r

    unknown: list[tuple[uuid.UUID, int]] = []
    for t in body.topics:
        name = names.get(t.topic_id)
        for p in t.partitions:
            if name is None:
                unknown.append((t.topic_id, p.partition_index))
                continue
            ids[name] = t.topic_id
            if body.share_session_epoch == 0:
                mgr.mark_stale(group, name, p.partition_index)
            if body.share_session_epoch != -1:
                session.partitions.add((name, p.partition_index))
            if p.acknowledgement_batches and body.share_session_epoch != 0:
                code, message = await _acknowledge(
                    broker, group, member, name, p.partition_index, p.acknowledgement_batches
                )
                r = result(name, p.partition_index)
                r["acknowledge_error_code"], r["acknowledge_error_message"] = code, message
    for ft in body.forgotten_topics_data or []:
        name = names.get(ft.topic_id)
        for index in ft.partitions:
            if name is not None:
                session.partitions.discard((name, index))
    if body.share_session_epoch == -1:
        await _release_session(broker, session)
    else:
        for name, _index in session.partitions:
            if name in broker.image.topics:
                ids.setdefault(name, uuid.UUID(hex=broker.image.topics[name].id))
        await _fetch_into(broker, session, body, result)

    by_topic: dict[uuid.UUID, list[dict]] = {}
    for (topic, _partition), r in sorted(results.items()):
        by_topic.setdefault(ids[topic], []).append(r)
    for topic_id, index in unknown:
        by_topic.setdefault(topic_id, []).append(
            {
                "partition_index": index,
                "error_code": ErrorCode.UNKNOWN_TOPIC_ID,
                "error_message": None,
                "acknowledge_error_code": ErrorCode.UNKNOWN_TOPIC_ID,
                "acknowledge_error_message": None,
                "current_leader": {"leader_id": -1, "leader_epoch": -1},
                "records": None,
                "acquired_records": [],
            }
        )
    resp = top(0, None)
    resp["responses"] = [{"topic_id": t, "partitions": ps} for t, ps in by_topic.items()]
    resp["node_endpoints"] = _endpoints(broker, resp["responses"])
    return resp


def _endpoints(broker: Broker, responses: list[dict]) -> list[dict]:
    nodes = {
        p["current_leader"]["leader_id"]
        for t in responses
        for p in t["partitions"]
        if p["error_code"] == ErrorCode.NOT_LEADER_OR_FOLLOWER and p["current_leader"]["leader_id"] >= 0
    }
    out = []
    for node in sorted(nodes):
        info = broker.image.brokers.get(node)
        if info is not None:
            out.append({"node_id": node, "host": info.host, "port": info.port, "rack": getattr(info, "rack", None)})
    return out


async def _fetch_into(broker: Broker, session: ShareSession, body: Any, result: Any) -> None:
    """Acquire records for the session's member, waiting up to MaxWaitMs for some to exist."""
    mgr = share_partitions(broker)
    group, member = session.group_id, session.member_id
    max_records = body.max_records if getattr(body, "max_records", 0) and body.max_records > 0 else 500
    deadline = time.monotonic() + max(0, body.max_wait_ms) / 1000.0
    while True:
        got = 0
        waiting: list[tuple[str, int]] = []
        for topic, partition in sorted(session.partitions):
            if got >= max_records:
                break
            try:
                led = await mgr.get(group, topic, partition)
            except KafkaProtocolError as exc:
                r = result(topic, partition)
                r["error_code"], r["error_message"] = exc.code, exc.message
                continue
            plog = broker.replicas.get(topic, partition)
            if plog is None:
                continue
            async with led.lock:
                # share.isolation.level=read_committed: records up to the last stable offset only,
                # and those of aborted transactions archived (`_without_aborted`), as in Kafka.
                committed = mgr.group_config(group or None)[3] == "read_committed"
                hw = plog.last_stable_offset if committed else plog.high_watermark
                ranges = led.sp.acquire(member, hw, max_records - got, _now_ms(), log_start=plog.log_start_offset)
                acquired = bool(ranges)
                if committed and ranges:
                    ranges = _without_aborted(plog, led.sp, ranges, hw)
                if acquired:  # archived aborted records are state to keep too
                    await mgr.persist((group, topic, partition), led)
            if not ranges:
                waiting.append((topic, partition))
                continue
            r = result(topic, partition)
            try:
                r["records"] = _read_acquired(plog, ranges, hw)
            except KafkaProtocolError as exc:  # deleted under us (retention): the locks expire
                r["error_code"], r["error_message"] = exc.code, exc.message
                continue
            r["acquired_records"] = [{"first_offset": f, "last_offset": la, "delivery_count": c} for f, la, c in ranges]
            got += sum(la - f + 1 for f, la, _c in ranges)
        left = deadline - time.monotonic()
        if got or left <= 0 or not session.partitions or broker.is_stopping():
            return
        mgr.changed.clear()
        wait_data = asyncio.ensure_future(broker.replicas.wait_for_data(waiting, min(left, _RECHECK_S * 5)))
        wait_release = asyncio.ensure_future(mgr.changed.wait())
        _done, pending = await asyncio.wait({wait_data, wait_release}, timeout=min(left, _RECHECK_S))
        for f in pending:
            f.cancel()


async def share_acknowledge(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    mgr = share_partitions(broker)
    group, member = body.group_id or "", body.member_id or ""
    broker.refresh_metadata()
    names = _topic_names(broker)
    lock_ms = _lock_ms(mgr, group)

    def top(code: int, message: str | None) -> dict:
        return {
            "throttle_time_ms": 0,
            "error_code": code,
            "error_message": message,
            "acquisition_lock_timeout_ms": lock_ms,
            "responses": [],
            "node_endpoints": [],
        }

    if body.share_session_epoch == 0:
        return top(ErrorCode.INVALID_SHARE_SESSION_EPOCH, "ShareAcknowledge cannot open a share session")
    try:
        session = _session(mgr, group, member, body.share_session_epoch)
    except KafkaProtocolError as exc:
        return top(exc.code, exc.message)
    responses = []
    for t in body.topics:
        name = names.get(t.topic_id)
        parts = []
        for p in t.partitions:
            if name is None:
                code, message = int(ErrorCode.UNKNOWN_TOPIC_ID), None
                leader = {"leader_id": -1, "leader_epoch": -1}
            else:
                code, message = await _acknowledge(
                    broker, group, member, name, p.partition_index, p.acknowledgement_batches
                )
                leader = _leader(broker, name, p.partition_index)
            parts.append(
                {
                    "partition_index": p.partition_index,
                    "error_code": code,
                    "error_message": message,
                    "current_leader": leader,
                }
            )
        responses.append({"topic_id": t.topic_id, "partitions": parts})
    if body.share_session_epoch == -1:
        await _release_session(broker, session)
    resp = top(0, None)
    resp["responses"] = responses
    resp["node_endpoints"] = _endpoints(broker, responses)
    return resp


# -- the admin APIs (KIP-932): served by the group's coordinator ------------------------------


def _share_group_members(broker: Broker, group_id: str) -> int:
    """Members of ``group_id`` (raises NOT_COORDINATOR when another broker coordinates it)."""
    classic = broker.groups.coordinator_for(group_id)
    group = share_coordinator(classic).groups.get(group_id)
    return len(group.members) if group is not None else 0


async def describe_share_group_offsets(broker: Broker, req: Request, conn: Connection) -> dict:
    """The share-partition start offset of each partition a share group has state for."""
    mgr = share_partitions(broker)
    broker.refresh_metadata()
    topics = broker.image.topics
    groups = []
    for g in req.body.groups:
        try:
            _share_group_members(broker, g.group_id)
            state = await mgr.group_state(g.group_id)
        except KafkaProtocolError as exc:
            groups.append({"group_id": g.group_id, "topics": [], "error_code": exc.code, "error_message": exc.message})
            continue
        wanted: dict[str, list[int]] = {}
        if g.topics is None:
            for topic, partition in sorted(state):
                wanted.setdefault(topic, []).append(partition)
        else:
            wanted = {t.topic_name: list(t.partitions) for t in g.topics}
        out = []
        for topic, partitions in wanted.items():
            info = topics.get(topic)
            parts = []
            for index in partitions:
                snap = state.get((topic, index))
                p = info.partitions.get(index) if info is not None else None
                parts.append(
                    {
                        "partition_index": index,
                        "start_offset": int(snap["start_offset"]) if snap is not None else -1,
                        "leader_epoch": p.leader_epoch if p is not None else -1,
                        "error_code": 0 if p is not None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                        "error_message": None,
                    }
                )
            topic_id = uuid.UUID(hex=info.id) if info is not None else uuid.UUID(int=0)
            out.append({"topic_name": topic, "topic_id": topic_id, "partitions": parts})
        groups.append({"group_id": g.group_id, "topics": out, "error_code": 0, "error_message": None})
    return {"throttle_time_ms": 0, "groups": groups}


async def alter_share_group_offsets(broker: Broker, req: Request, conn: Connection) -> dict:
    """Set share-partition start offsets of an empty share group (its in-flight state is dropped)."""
    body = req.body
    mgr = share_partitions(broker)
    broker.refresh_metadata()
    try:
        members = _share_group_members(broker, body.group_id)
        error = ErrorCode.NON_EMPTY_GROUP if members else ErrorCode.NONE
    except KafkaProtocolError as exc:
        error = exc.code
    responses = []
    for t in body.topics:
        info = broker.image.topics.get(t.topic_name)
        parts = []
        for p in t.partitions:
            code = error
            if code == ErrorCode.NONE:
                if info is None or p.partition_index not in info.partitions:
                    code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                elif p.start_offset < 0:
                    code = ErrorCode.INVALID_REQUEST
                else:
                    snap = {"start_offset": p.start_offset, "next_offset": p.start_offset, "state_batches": []}
                    await mgr.write_state(body.group_id, t.topic_name, p.partition_index, snap)
            parts.append({"partition_index": p.partition_index, "error_code": code, "error_message": None})
        topic_id = uuid.UUID(hex=info.id) if info is not None else uuid.UUID(int=0)
        responses.append({"topic_name": t.topic_name, "topic_id": topic_id, "partitions": parts})
    return {"throttle_time_ms": 0, "responses": responses}


async def delete_share_group(broker: Broker, sgc: ShareGroupCoordinator, group_id: str) -> None:
    """DeleteGroups of an empty share group: its share-partition state first (so a failure leaves the
    group to delete again), then its membership records."""
    group = sgc.groups.get(group_id)
    if group is not None and group.members:
        raise KafkaProtocolError(ErrorCode.NON_EMPTY_GROUP, f"Share group {group_id} has members.")
    mgr = share_partitions(broker)
    for topic, index in sorted(await mgr.group_state(group_id)):
        await mgr.write_state(group_id, topic, index, None)
    broker.refresh_metadata()
    await sgc.delete_empty_group(group_id, broker.image.topics)


async def delete_share_group_offsets(broker: Broker, req: Request, conn: Connection) -> dict:
    """Delete an empty share group's state for whole topics: the next member starts afresh
    (share.auto.offset.reset)."""
    body = req.body
    mgr = share_partitions(broker)
    broker.refresh_metadata()
    try:
        if _share_group_members(broker, body.group_id):
            raise KafkaProtocolError(ErrorCode.NON_EMPTY_GROUP, f"share group {body.group_id} has members")
        state = await mgr.group_state(body.group_id)
    except KafkaProtocolError as exc:
        return {"throttle_time_ms": 0, "error_code": exc.code, "error_message": exc.message, "responses": []}
    responses = []
    for t in body.topics:
        info = broker.image.topics.get(t.topic_name)
        parts = []
        for topic, index in sorted(state):
            if topic == t.topic_name:
                await mgr.write_state(body.group_id, topic, index, None)
                parts.append({"partition_index": index, "error_code": 0, "error_message": None})
        if info is None:
            parts = [{"partition_index": -1, "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "error_message": None}]
        topic_id = uuid.UUID(hex=info.id) if info is not None else uuid.UUID(int=0)
        responses.append({"topic_name": t.topic_name, "topic_id": topic_id, "partitions": parts})
    return {"throttle_time_ms": 0, "error_code": 0, "error_message": None, "responses": responses}
