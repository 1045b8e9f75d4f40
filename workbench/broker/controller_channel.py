"""How a broker talks to the active controller, and how the cluster notices dead brokers.

`ControllerChannel.submit(op)` gets a controller operation
(`workbench.controller.ops`) carried out by the active controller (the Raft
leader of the controller quorum): locally when this broker is it, otherwise
forwarded over the Kafka listener with a private request (API key
`CONTROLLER_API_KEY`, never advertised, JSON body), as KRaft brokers forward
to their controller. It returns the records once this broker's image has
them.

The channel gets the few things it uses, not the broker: this node's id and
config, the metadata log (`QuorumMetadataLog`), the inter-broker SASL login and
a `ready_to_unfence()` question.

Liveness, the role ZooKeeper sessions played: every broker heartbeats to the
active controller every `HEARTBEAT_S`; the controller fences any broker that
has not heartbeated within `broker_session_timeout_ms`, which elects new
leaders for its partitions from their ISRs in the same committed batch. A
newly elected controller first gives every broker one session timeout of
grace, and so does a controller whose own process did not run for a while
(SIGSTOP, a stalled machine: the heartbeats that arrived meantime are still
unread). Liveness is judged only by the active controller on its own clock:
a fencing decision is executed locally, after the Raft barrier and a second
look at the heartbeats, never forwarded. (A controller resuming from a pause
still believed it led and forwarded "fence" for every broker it had not heard
from to the new controller, which fenced healthy brokers and set off a storm of
elections; issue 12.) A broker that starts, or finds itself fenced while alive, opens its
logs and asks to be unfenced. Every `LEADER_REBALANCE_S` the controller moves
leadership back to preferred replicas that are in sync
(`auto.leader.rebalance.enable`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from workbench.broker.config import BrokerConfig
from workbench.broker.network_client import BrokerConnection, SaslLogin
from workbench.controller.ops import execute
from workbench.controller.quorum import QuorumMetadataLog
from workbench.controller.raft.node import NotLeader
from workbench.protocol.api_keys import CONTROLLER_API_KEY
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

log = logging.getLogger(__name__)

HEARTBEAT_S = 0.2
CONTROLLER_CHECK_S = 0.1
LEADER_REBALANCE_S = 5.0
SUBMIT_TIMEOUT_S = 10.0


class ControllerChannel:
    """Submits controller operations, serves forwarded ones, heartbeats and fences (see the module doc)."""

    def __init__(
        self,
        node_id: int,
        config: BrokerConfig,
        quorum: QuorumMetadataLog,
        *,
        sasl_login: SaslLogin | None = None,
        ready_to_unfence: Callable[[], bool] = lambda: True,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.quorum = quorum
        self._sasl_login = sasl_login
        self._ready_to_unfence = ready_to_unfence
        self._lock = asyncio.Lock()
        self._heartbeats: dict[int, float] = {}
        self._leader_since: float | None = None
        #: When this process last found its own event loop stalled (a sleep that overslept).
        self._stalled_at: float | None = None
        self._last_rebalance = time.monotonic()
        self._conns: dict[int, BrokerConnection] = {}

    # -- submitting operations --------------------------------------------------------------------

    async def submit(self, op: dict[str, Any], timeout: float = SUBMIT_TIMEOUT_S) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            if self.quorum.is_leader:
                try:
                    records, _index = await self._execute(op)
                    return records
                except (NotLeader, TimeoutError, ConnectionError):
                    pass
            else:
                leader = self.quorum.leader_id
                if leader is not None and leader != self.node_id:
                    try:
                        reply = await self.call(
                            leader, {"kind": "op", "op": op}, timeout=max(0.5, deadline - time.monotonic())
                        )
                    except (OSError, TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                        reply = None
                    if reply is not None:
                        if "error" not in reply:
                            await self.quorum.wait_applied(reply["index"], max(0.5, deadline - time.monotonic()))
                            return reply["records"]
                        if reply["error"] != ErrorCode.NOT_CONTROLLER:
                            raise KafkaProtocolError(ErrorCode(reply["error"]), reply.get("message", ""))
            if time.monotonic() >= deadline:
                raise KafkaProtocolError(
                    ErrorCode.REQUEST_TIMED_OUT, "no active controller: the controller quorum has no majority"
                )
            await asyncio.sleep(0.05)

    async def _execute(
        self, op: dict[str, Any], still_wanted: Callable[[], bool] | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """As active controller: decide against an up-to-date image, then commit.

        `still_wanted`, asked after the barrier (while requests that were waiting, such as
        heartbeats, have been read), can call the operation off: nothing is committed."""
        async with self._lock:
            await self.quorum.barrier()
            if still_wanted is not None and not still_wanted():
                return [], self.quorum.applied_index
            records = execute(self.quorum.image, op, default_rf=self.config.default_replication_factor)
            if not records or op.get("validate_only"):
                return records, self.quorum.applied_index
            index = await self.quorum.append(records)
            return records, index

    # -- the private controller request ---------------------------------------------------------

    def controller_address(self, node_id: int) -> tuple[str, int]:
        """Where to reach `node_id`'s Kafka listener: from the voters config, else its registration."""
        voter = self.config.voters.get(node_id)
        if voter:
            return voter[0], int(voter[1])
        info = self.quorum.image.brokers[node_id]
        return info.host, info.port

    def voter_ids(self) -> list[int]:
        return sorted(int(k) for k in self.config.voters) or [self.node_id]

    async def call(self, node_id: int, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        host, port = self.controller_address(node_id)
        conn = self._conns.get(node_id)
        if conn is None or (conn.host, conn.port) != (host, port):
            if conn is not None:
                conn.close()
            conn = self._conns[node_id] = BrokerConnection(
                host,
                port,
                client_id=f"broker-{self.node_id}",
                sasl=self._sasl_login,
            )
        body = await conn.request_raw(CONTROLLER_API_KEY, json.dumps(message).encode(), timeout=timeout)
        return json.loads(body)

    async def handle(self, payload: bytes) -> bytes:
        """Serve a forwarded request (we may or may not be the active controller)."""
        try:
            message = json.loads(payload)
            kind = message["kind"]
        except (ValueError, KeyError, TypeError):
            return json.dumps({"error": int(ErrorCode.INVALID_REQUEST), "message": "bad controller request"}).encode()
        if kind == "fetch_entries":
            if not self.quorum.is_voter:
                return json.dumps({"error": int(ErrorCode.NOT_CONTROLLER)}).encode()
            return json.dumps(
                {
                    "entries": self.quorum.committed_entries(int(message["from"])),
                    "leader": self.quorum.leader_id,
                }
            ).encode()
        if not self.quorum.is_leader:
            return json.dumps({"error": int(ErrorCode.NOT_CONTROLLER)}).encode()
        if kind == "heartbeat":
            self._heartbeats[int(message["id"])] = time.monotonic()
            return b'{"ok":true}'
        if kind == "op":
            try:
                records, index = await self._execute(message["op"])
            except KafkaProtocolError as exc:
                return json.dumps({"error": int(exc.code), "message": exc.message}).encode()
            except (NotLeader, TimeoutError, ConnectionError):
                return json.dumps({"error": int(ErrorCode.NOT_CONTROLLER)}).encode()
            return json.dumps({"records": records, "index": index}).encode()
        return json.dumps({"error": int(ErrorCode.INVALID_REQUEST), "message": f"unknown kind {kind}"}).encode()

    # -- liveness ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Heartbeat; follow metadata as an observer; unfence ourselves; do the controller's duties."""
        node = self.node_id
        last_beat = 0.0
        while True:
            try:
                now = time.monotonic()
                if not self.quorum.is_voter:
                    await self.observe()
                if now - last_beat >= HEARTBEAT_S:
                    last_beat = now
                    await self._heartbeat()
                me = self.quorum.image.brokers.get(node)
                if me is not None and me.fenced and self._ready_to_unfence():
                    await self.submit({"op": "unfence_broker", "id": node}, timeout=2.0)
                if self.quorum.is_leader:
                    await self._controller_duties()
                else:
                    self._leader_since = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("controller channel: %s", exc)
            before = time.monotonic()
            await asyncio.sleep(CONTROLLER_CHECK_S)
            # A sleep that overslept by half a session timeout: our own process was stalled.
            if time.monotonic() - before > CONTROLLER_CHECK_S + self.config.broker_session_timeout_ms / 2000.0:
                self._stalled_at = time.monotonic()

    async def _heartbeat(self) -> None:
        node = self.node_id
        if self.quorum.is_leader:
            self._heartbeats[node] = time.monotonic()
            return
        leader = self.quorum.leader_id
        if leader is None:
            return
        try:
            await self.call(leader, {"kind": "heartbeat", "id": node}, timeout=1.0)
        except (OSError, TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass

    async def observe(self) -> None:
        """Observers (brokers that are not voters) copy committed entries from any voter."""
        for voter in self.voter_ids():
            try:
                reply = await self.call(
                    voter, {"kind": "fetch_entries", "from": self.quorum.applied_index + 1}, timeout=1.0
                )
            except (OSError, TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                continue
            if "entries" in reply:
                self.quorum.observe_leader(reply.get("leader"))
                self.quorum.apply_entries([(i, p) for i, p in reply["entries"]])
                return

    async def _controller_duties(self) -> None:
        now = time.monotonic()
        if self._leader_since is None or self._stalled_at is not None:
            # Just became the active controller, or this process itself did not run for a while
            # (the heartbeats sent meantime are still unread): every broker gets a full session
            # of grace rather than being judged by a clock that stopped.
            if self._stalled_at is not None and self._leader_since is not None:
                log.info("controller %d was stalled: every broker gets a session of grace", self.node_id)
            self._stalled_at = None
            self._leader_since = now
            self._heartbeats = {b: now for b in self.quorum.image.brokers}
            self._heartbeats[self.node_id] = now
            return
        timeout = self.config.broker_session_timeout_ms / 1000.0
        image = self.quorum.image
        for bid in image.live_brokers():
            if bid != self.node_id and now - self._heartbeats.get(bid, self._leader_since) > timeout:
                await self._fence_if_silent(bid, timeout)
        if now - self._last_rebalance >= LEADER_REBALANCE_S:
            self._last_rebalance = now
            if self.config.auto_leader_rebalance_enable:
                await self.submit({"op": "elect_leaders", "type": 0, "partitions": None})

    async def _fence_if_silent(self, bid: int, timeout: float) -> None:
        """Fence broker `bid` if it is still silent once our leadership is confirmed (the Raft
        barrier) and the heartbeats waiting meanwhile are read. Executed here or not at all:
        a controller that lost its leadership must not have its stale judgement carried out
        by the next one (`submit` would forward it)."""

        def silent() -> bool:
            if self._stalled_at is not None:
                return False  # we stalled while waiting: judge again after a session of grace
            last = self._heartbeats.get(bid, self._leader_since or time.monotonic())
            return time.monotonic() - last > timeout

        op = {"op": "fence_broker", "id": bid, "reason": f"broker {bid} stopped heartbeating"}
        try:
            records, _ = await self._execute(op, still_wanted=silent)
        except (NotLeader, TimeoutError, ConnectionError) as exc:
            log.info("not fencing broker %d: no longer the active controller (%s)", bid, exc)
            return
        if records:
            log.warning("broker %d missed its session timeout: fenced it", bid)

    async def controlled_shutdown(self, timeout: float = 3.0) -> None:
        """Move leadership away before stopping, so clients see no errors; hand over the quorum."""
        try:
            await self.submit({"op": "controlled_shutdown", "id": self.node_id}, timeout=timeout)
        except Exception as exc:
            log.info("controlled shutdown request failed: %s", exc)
        if self.quorum.is_leader and self.quorum.raft is not None:
            try:
                await self.quorum.raft.transfer_leadership(timeout=1.0)
            except Exception:
                pass

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
