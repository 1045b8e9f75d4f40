"""KIP-848 APIs: ConsumerGroupHeartbeat (68) and ConsumerGroupDescribe (69).

Each `__consumer_offsets` partition's classic `GroupCoordinator` has its
`ConsumerGroupCoordinator` beside it (`classic.consumer`, loaded from the same
partition's records, so a coordinator move keeps the groups); these handlers
route a group to it or answer NOT_COORDINATOR as the classic APIs do. A
heartbeat is answered once the records of the state it changed are durable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workbench.broker.consumer_group_coordinator import ConsumerGroupCoordinator
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

if TYPE_CHECKING:
    from workbench.broker.group_coordinator import GroupCoordinator
    from workbench.broker.handlers.context import BrokerContext as Broker
    from workbench.broker.server import Connection
    from workbench.protocol.codec import Request


def consumer_coordinator(classic: GroupCoordinator) -> ConsumerGroupCoordinator:
    """The KIP-848 coordinator beside `classic` (one per offsets partition)."""
    return classic.consumer


def consumer_coordinator_if_any(classic: GroupCoordinator) -> ConsumerGroupCoordinator | None:
    return classic.consumer


def _classic_is_live(classic: GroupCoordinator, group_id: str) -> bool:
    """A classic group with members (an empty one may be taken over by the consumer protocol, as in Kafka)."""
    return classic.describe_group(group_id).state not in ("", "Empty", "Dead")


async def consumer_group_heartbeat(broker: Broker, req: Request, conn: Connection) -> dict:
    b = req.body
    try:
        classic = await broker.groups.coordinator_for_soon(b.group_id)
        if _classic_is_live(classic, b.group_id) or b.group_id in classic.share.groups:
            # A group id is of one type (Kafka's rule): a share group is not a consumer group.
            raise KafkaProtocolError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {b.group_id} is not a consumer group.")
        broker.refresh_metadata()
        topics = broker.image.topics
        cgc = consumer_coordinator(classic)
        try:
            response = cgc.heartbeat(
                b, topics, client_id=req.client_id or "", client_host=f"/{conn.peer.rsplit(':', 1)[0]}"
            )
        finally:
            # Whatever the heartbeat changed (an expired member is removed even when the heartbeat
            # itself is refused) is written before the answer.
            await cgc.persist(b.group_id, topics)
        return response
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


async def consumer_group_describe(broker: Broker, req: Request, conn: Connection) -> dict:
    groups: list[dict[str, Any]] = []
    broker.refresh_metadata()
    for group_id in req.body.group_ids:
        try:
            classic = await broker.groups.coordinator_for_soon(group_id)
            cgc: ConsumerGroupCoordinator | None = consumer_coordinator(classic)
            if cgc is None or group_id not in cgc.groups:
                if _classic_is_live(classic, group_id) or group_id in classic.share.groups:
                    raise KafkaProtocolError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")
                cgc = ConsumerGroupCoordinator()
            groups.append(cgc.describe(group_id, broker.image.topics))
        except KafkaProtocolError as exc:
            groups.append(
                {
                    "error_code": exc.code,
                    "error_message": exc.message or None,
                    "group_id": group_id,
                    "group_state": "",
                    "group_epoch": -1,
                    "assignment_epoch": -1,
                    "assignor_name": "",
                    "members": [],
                    "authorized_operations": -2147483648,
                }
            )
    return {"throttle_time_ms": 0, "groups": groups}
