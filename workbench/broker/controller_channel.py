"""How a broker asks for metadata changes, and how the cluster notices dead brokers.

`ControllerChannel.submit(op)` runs a controller operation
(`workbench.controller.ops`) against the latest metadata and appends the
records it produces, atomically; it returns the records once this broker's
image has them.

Liveness, in the role ZooKeeper's sessions played: every broker refreshes a
heartbeat (a file under `metadata/heartbeats/`) every `HEARTBEAT_S`; the
*active controller* (the lowest-id broker that is alive and unfenced) fences
any broker whose heartbeat is older than `broker_session_timeout_ms`, which
moves the leadership of its partitions to other ISR members in the same
change. A broker that starts (or finds itself fenced while alive) registers,
opens its logs and then asks to be unfenced. Every ~5 s the active controller
also moves leadership back to preferred replicas that are in sync (Kafka's
`auto.leader.rebalance.enable`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from workbench.controller.ops import execute

if TYPE_CHECKING:
    from workbench.broker.broker import Broker

log = logging.getLogger(__name__)

HEARTBEAT_S = 0.2
CONTROLLER_CHECK_S = 0.1
LEADER_REBALANCE_S = 5.0


class ControllerChannel:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.heartbeat_dir = broker.config.cluster_dir / "metadata" / "heartbeats"
        self.heartbeat_dir.mkdir(parents=True, exist_ok=True)
        self._my_heartbeat = self.heartbeat_dir / f"broker-{broker.node_id}"
        self._last_rebalance = time.monotonic()
        self._started_at = time.time()

    # -- changes ----------------------------------------------------------------------------------

    async def submit(self, op: dict[str, Any]) -> list[dict[str, Any]]:
        default_rf = self.broker.config.default_replication_factor
        validate_only = bool(op.get("validate_only"))
        computed: list[dict[str, Any]] = []

        def change(image) -> list[dict[str, Any]]:
            computed[:] = execute(image, op, default_rf=default_rf)
            return [] if validate_only else computed

        self.broker.metadata.commit(change)
        self.broker.refresh_metadata()
        return computed

    # -- liveness ---------------------------------------------------------------------------------

    def heartbeat(self) -> None:
        now = time.time()
        try:
            os.utime(self._my_heartbeat, (now, now))
        except FileNotFoundError:
            self._my_heartbeat.touch()

    def last_heartbeat(self, broker_id: int) -> float:
        try:
            return os.stat(self.heartbeat_dir / f"broker-{broker_id}").st_mtime
        except FileNotFoundError:
            return 0.0

    def alive(self, broker_id: int, now: float) -> bool:
        timeout = self.broker.config.broker_session_timeout_ms / 1000.0
        return now - self.last_heartbeat(broker_id) <= timeout

    def active_controller(self) -> int:
        """The lowest-id broker that is unfenced and heartbeating (-1 if none)."""
        now = time.time()
        image = self.broker.image
        for bid in image.live_brokers():
            if self.alive(bid, now):
                return bid
        # Nobody unfenced is alive: the lowest heartbeating broker takes over.
        for bid in sorted(image.brokers):
            if self.alive(bid, now):
                return bid
        return -1

    async def run(self) -> None:
        """Heartbeat, unfence ourselves when needed, and act as controller when we are the active one."""
        node = self.broker.node_id
        last_beat = 0.0
        while True:
            try:
                now_m = time.monotonic()
                if now_m - last_beat >= HEARTBEAT_S:
                    self.heartbeat()
                    last_beat = now_m
                me = self.broker.image.brokers.get(node)
                if me is not None and me.fenced and self.broker.ready_to_unfence():
                    await self.submit({"op": "unfence_broker", "id": node})
                if self.active_controller() == node:
                    await self._controller_duties()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("controller duties failed")
            await asyncio.sleep(CONTROLLER_CHECK_S)

    async def _controller_duties(self) -> None:
        now = time.time()
        image = self.broker.image
        grace = self.broker.config.broker_session_timeout_ms / 1000.0
        if now - self._started_at < grace:
            return  # just took over: give every broker one session to show up
        for bid in image.live_brokers():
            if bid != self.broker.node_id and not self.alive(bid, now):
                log.warning("broker %d missed its session timeout: fencing it", bid)
                await self.submit({"op": "fence_broker", "id": bid,
                                   "reason": f"broker {bid} stopped heartbeating"})
        if time.monotonic() - self._last_rebalance >= LEADER_REBALANCE_S:
            self._last_rebalance = time.monotonic()
            if self.broker.config.auto_leader_rebalance_enable:
                await self.submit({"op": "elect_leaders", "type": 0, "partitions": None})

    async def controlled_shutdown(self, timeout: float = 5.0) -> None:
        """Move leadership away before stopping, so clients see no errors (KIP-143's idea)."""
        try:
            await self.submit({"op": "controlled_shutdown", "id": self.broker.node_id})
        except Exception:
            log.exception("controlled shutdown request failed")
        try:
            os.unlink(self._my_heartbeat)
        except FileNotFoundError:
            pass
