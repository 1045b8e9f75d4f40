"""`BrokerContext`: the broker as request handlers see it (the parts Kafka's `KafkaApis` is given).

Handlers are plain async functions `(broker, request, connection) -> response dict`. They get
the broker's parts through this Protocol rather than `workbench.broker.broker.Broker` itself, so
the layering stays one way (`broker.py` imports the handlers, never the reverse) and what a
handler may reach is written down in one place: add a member here when a handler needs more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from workbench.broker.config import BrokerConfig
    from workbench.broker.controller_channel import ControllerChannel
    from workbench.broker.groups_manager import GroupCoordinatorManager
    from workbench.broker.replica_manager import ReplicaManager
    from workbench.broker.schema_ids import SchemaIds
    from workbench.broker.server import Connection
    from workbench.broker.transaction_coordinator import TransactionCoordinator
    from workbench.broker.txn_verification import TransactionVerifier
    from workbench.controller.image import MetadataImage
    from workbench.controller.quorum import QuorumMetadataLog
    from workbench.protocol.codec import Request


class BrokerContext(Protocol):
    """What handlers use: metadata, the replica manager, the group and transaction coordinators, the controller."""

    node_id: int
    config: BrokerConfig
    metadata: QuorumMetadataLog  # the replicated cluster metadata (leader of the quorum, image)
    replicas: ReplicaManager  # this broker's partitions and their logs
    groups: GroupCoordinatorManager  # the consumer groups this broker coordinates
    controller: ControllerChannel  # `submit(op)`: have the active controller change metadata
    txn: TransactionCoordinator  # the transactional ids this broker coordinates (KIP-98)
    txn_verifier: TransactionVerifier  # KIP-890: is a partition in a producer's transaction? (asks `txn`s)
    schema_ids: SchemaIds  # schema ids per subject from `_schemas` (confluent.*.schema.validation)

    @property
    def image(self) -> MetadataImage: ...

    def refresh_metadata(self) -> None: ...

    def note_write(self) -> None: ...

    def is_stopping(self) -> bool: ...

    async def allocate_producer_id(self) -> int: ...


# A request handler: decoded request in, response fields out (None: no response, Produce acks=0).
Handler = Callable[[BrokerContext, "Request", "Connection"], Awaitable["dict[str, Any] | None"]]
