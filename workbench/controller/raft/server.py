"""`RaftServer`: a `RaftNode` run over TCP on asyncio, with its state in a directory.

The transport is deliberately plain, since Raft tolerates loss, delay, duplication and
reordering by design:

* a frame is a 4-byte big-endian length and a JSON message (`messages.encode`);
* each server dials one outbound connection per peer and only *writes* on it; it only
  *reads* on connections peers dialled to it. A reply therefore travels on the
  replier's own outbound connection, and no connection needs a handshake;
* an outbound connection reconnects with exponential backoff; while it is down, or
  when its queue is full, messages are dropped (heartbeats and retries resend them);
* a malformed frame closes that inbound connection only;
* a storage failure (a full disk, an I/O error) never closes a connection: the node
  drops the message that needed the write and backs off (see `RaftNode`), and the
  failure is logged at most once per `STORAGE_LOG_INTERVAL_S`.

A tick loop advances the node every `tick_ms`; inbound messages and proposals flush
the node's output at once, so a commit costs one round trip plus one fsync per member.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
from collections.abc import Callable
from typing import Any

from workbench.controller.raft.messages import Entry, MalformedMessage, Message, decode, encode
from workbench.controller.raft.node import NotLeader, RaftNode
from workbench.controller.raft.storage import FileRaftStorage

log = logging.getLogger(__name__)

# Largest frame accepted from a peer: MAX_ENTRIES_PER_APPEND metadata records are far below
# this; a garbage length prefix must not make us buffer gigabytes.
MAX_FRAME_BYTES = 32 * 1024 * 1024
# Messages queued per peer while its connection is down or slow; older ones are useless
# by the time it returns (the leader resends from the follower's next index anyway).
PEER_QUEUE_LIMIT = 1024
RECONNECT_BACKOFF_S = (0.02, 1.0)
# A full metadata disk fails a few writes a second; say so in the log, but not every time.
STORAGE_LOG_INTERVAL_S = 10.0


class RaftServer:
    """One member of a Raft quorum, over TCP. Use `await start()` then `await close()`.

    `voters` maps every member id (this one included) to the address it listens on.
    `on_commit` is called, in log order, with each batch of newly committed entries,
    including Raft's own leader-change control entries (`Entry.is_control`). After a
    restart it is called again from index 1: the log is replayed, as a metadata image
    is rebuilt on start.
    """

    def __init__(
        self,
        node_id: int,
        voters: dict[int, tuple[str, int]],
        directory: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_commit: Callable[[list[Entry]], None] | None = None,
        election_timeout_ms: tuple[int, int] = (300, 600),
        heartbeat_ms: int = 75,
        tick_ms: int = 10,
        rng: random.Random | None = None,
    ) -> None:
        if node_id not in voters:
            raise ValueError(f"node {node_id} is not among the voters {sorted(voters)}")
        self.node_id = node_id
        self.voters = dict(voters)
        self.directory = directory
        self.host = host
        self.port = port or voters[node_id][1]  # port 0 here means "the port in voters"
        self.on_commit = on_commit
        self.tick_ms = tick_ms
        self._node_options: dict[str, Any] = {
            "election_timeout_ms": election_timeout_ms,
            "heartbeat_ms": heartbeat_ms,
            "rng": rng,
        }
        self.node: RaftNode | None = None
        self.storage: FileRaftStorage | None = None
        self.address: tuple[str, int] | None = None
        self.applied_index = 0
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._queues: dict[int, asyncio.Queue[bytes]] = {}
        self._inbound: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._closing = False
        self._proposals: dict[int, tuple[int, asyncio.Future[int]]] = {}
        self._reads: dict[int, asyncio.Future[int]] = {}
        self._read_ids = itertools.count(1)
        self._commit_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._storage_failures_logged = 0
        self._repairing = False
        self._storage_logged_at = -STORAGE_LOG_INTERVAL_S
        #: (term, leader) last logged: each change of leadership is one INFO line, so a start-up that
        #: waited on the quorum (issue 19: ten seconds without an active controller in CI) can be read
        #: from the brokers' logs. With pre-vote, a term only grows when an election can be won.
        self._leadership_logged: tuple[int, int | None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._closing = False
        self.storage = FileRaftStorage(self.directory)
        self.node = RaftNode(self.node_id, list(self.voters), self.storage, **self._node_options)
        self._repairing = self.storage.needs_repair
        if self._repairing:
            log.warning(
                "raft %d: the metadata log in %s was damaged (%s): entries this member acknowledged may be "
                "gone; it neither votes nor campaigns until its repair from the leader is done",
                self.node_id,
                self.directory,
                self.storage.damage or "found on an earlier start",
            )
        self._server = await asyncio.start_server(self._serve_peer, self.host, self.port)
        self.address = self._server.sockets[0].getsockname()[:2]
        for peer in self.node.peers:
            self._queues[peer] = asyncio.Queue(maxsize=PEER_QUEUE_LIMIT)
            self._tasks.append(asyncio.create_task(self._send_to_peer(peer), name=f"raft-{self.node_id}-to-{peer}"))
        self._tasks.append(asyncio.create_task(self._tick_loop(), name=f"raft-{self.node_id}-tick"))

    async def close(self) -> None:
        """Stop at once (like a crash, minus the torn writes); see `transfer_leadership` for a
        graceful hand-over first."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        # Two passes: on Python 3.11 a connection accepted just before `Server.close()` gets
        # its handler task a loop iteration later (it then sees `_closing` and hangs up).
        # Handlers end by closing their connections (reading then hits EOF), not by cancellation:
        # Python 3.11's start_server callback calls `task.exception()` on a cancelled handler and
        # logs "Exception in callback ... CancelledError" for each. Cancel only what still hangs.
        for _ in range(2):
            handlers = list(self._inbound)
            for writer in list(self._inbound.values()):
                writer.close()
            if handlers:
                _done, pending = await asyncio.wait(handlers, timeout=1.0)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*handlers, return_exceptions=True)
            await asyncio.sleep(0)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        error = ConnectionError(f"raft server {self.node_id} closed")
        for fut in (
            [f for _, f in self._proposals.values()] + list(self._reads.values()) + [f for _, f in self._commit_waiters]
        ):
            if not fut.done():
                fut.set_exception(error)
        self._proposals.clear()
        self._reads.clear()
        self._commit_waiters.clear()
        if self.storage is not None:
            self.storage.close()

    # -- state -------------------------------------------------------------------------------
    @property
    def leader_id(self) -> int | None:
        return self.node.leader_id if self.node else None

    @property
    def is_leader(self) -> bool:
        return self.node is not None and self.node.is_leader

    @property
    def term(self) -> int:
        return self.node.term if self.node else 0

    @property
    def commit_index(self) -> int:
        return self.node.commit_index if self.node else 0

    # -- requests ----------------------------------------------------------------------------
    async def propose(self, payload: dict[str, Any], timeout: float = 5.0) -> int:
        """Append `payload` and return its index once it is committed.

        Raises NotLeader (with the known leader) if this member is not the leader, or if the
        entry was overwritten by a new leader's; TimeoutError if not committed in time (it
        may still commit later: proposals are not idempotent, make records replay-safe).
        """
        node = self._running()
        index = node.propose(payload)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        previous = self._proposals.get(index)
        if previous is not None and not previous[1].done():
            previous[1].set_exception(NotLeader(node.leader_id))
        self._proposals[index] = (node.term, future)
        self._flush()
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(f"entry {index} was not committed within {timeout} s") from None
        finally:
            if self._proposals.get(index, (0, None))[1] is future:
                del self._proposals[index]

    async def read_index(self, timeout: float = 5.0) -> int:
        """Linearizable read barrier (ReadIndex, thesis §6.4): returns once this member has
        applied everything committed before the call. Works on followers (asks the leader);
        raises NotLeader(None) when no leader is known, TimeoutError when it takes too long."""
        node = self._running()
        read_id = next(self._read_ids)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads[read_id] = future
        try:
            node.request_read(read_id)
            self._flush()
            # wait_for rather than asyncio.timeout: callers may run outside a task (the Kafka
            # listener starts hot requests eagerly, workbench.broker.server.run_eagerly).
            return await asyncio.wait_for(self._applied_read(future), timeout)
        finally:
            self._reads.pop(read_id, None)

    async def wait_for_commit(self, index: int, timeout: float | None = 5.0) -> None:
        """Wait until entries up to `index` were applied here (passed to `on_commit`)."""
        if self.applied_index >= index:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commit_waiters.append((index, future))
        await asyncio.wait_for(future, timeout)

    async def transfer_leadership(self, target: int | None = None, timeout: float = 2.0) -> int | None:
        """Hand leadership to another member (TimeoutNow) and wait until it has it; for a
        controlled shutdown. Returns the new leader, or None if the transfer timed out."""
        node = self._running()
        node.transfer_leadership(target)
        self._flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if node.leader_id not in (None, self.node_id):
                return node.leader_id
            await asyncio.sleep(self.tick_ms / 1000)
        return None

    # -- internals ---------------------------------------------------------------------------
    def _running(self) -> RaftNode:
        if self.node is None or not self._tasks:
            raise RuntimeError("the raft server is not running")
        return self.node

    def _now_ms(self) -> int:
        return int(asyncio.get_running_loop().time() * 1000)

    async def _tick_loop(self) -> None:
        node = self.node
        assert node is not None
        while True:
            try:
                node.tick(self._now_ms())
                self._flush()
            except Exception:  # the tick loop must never die: a member that stops ticking is lost
                log.exception("raft %d: tick failed", self.node_id)
            await asyncio.sleep(self.tick_ms / 1000)

    def _flush(self) -> None:
        node = self.node
        assert node is not None
        if node.storage_failures != self._storage_failures_logged:
            self._log_storage_failures(node)
        if self._repairing and not node.storage.needs_repair:
            self._repairing = False
            log.warning(
                "raft %d: the damaged metadata log is repaired (caught up with leader %s at entry %d); voting again",
                self.node_id,
                node.leader_id,
                node.commit_index,
            )
        leadership = (node.term, node.leader_id)
        if leadership != self._leadership_logged:
            self._leadership_logged = leadership
            log.info("raft %d: term %d, leader %s", self.node_id, node.term, node.leader_id)
        for out in node.drain():
            body = json.dumps(encode(out.message), separators=(",", ":")).encode()
            try:
                self._queues[out.to].put_nowait(len(body).to_bytes(4, "big") + body)
            except asyncio.QueueFull:
                pass  # Raft resends; a peer this far behind gets the entries on its next response
        committed = node.take_committed()
        if committed:
            self._on_committed(committed)
        for read_id, index in node.take_reads():
            future = self._reads.get(read_id)
            if future is not None and not future.done():
                future.set_result(index)

    def _log_storage_failures(self, node: RaftNode) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._storage_logged_at < STORAGE_LOG_INTERVAL_S:
            return
        log.error(
            "raft %d: %d metadata log write(s) failed in %s (last: %s); nothing was acknowledged "
            "for them, retrying with backoff",
            self.node_id,
            node.storage_failures - self._storage_failures_logged,
            self.directory,
            node.last_storage_error,
        )
        self._storage_failures_logged = node.storage_failures
        self._storage_logged_at = now

    def _on_committed(self, committed: list[Entry]) -> None:
        for entry in committed:
            pending = self._proposals.pop(entry.index, None)
            if pending is not None and not pending[1].done():
                term, future = pending
                if entry.term == term:
                    future.set_result(entry.index)
                else:
                    future.set_exception(NotLeader(self.leader_id))  # a new leader overwrote it
        self.applied_index = committed[-1].index
        if self.on_commit is not None:
            try:
                self.on_commit(committed)
            except Exception:
                log.exception(
                    "raft %d: on_commit failed for entries %d..%d",
                    self.node_id,
                    committed[0].index,
                    committed[-1].index,
                )
        waiting = []
        for index, waiter in self._commit_waiters:
            if waiter.done():
                continue
            if index <= self.applied_index:
                waiter.set_result(None)
            else:
                waiting.append((index, waiter))
        self._commit_waiters = waiting

    async def _send_to_peer(self, peer: int) -> None:
        queue = self._queues[peer]
        backoff = RECONNECT_BACKOFF_S[0]
        while True:
            try:
                reader, writer = await asyncio.open_connection(*self.voters[peer])
            except OSError:
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, RECONNECT_BACKOFF_S[1])
                continue
            backoff = RECONNECT_BACKOFF_S[0]
            try:
                while not reader.at_eof():  # the peer never writes here; EOF means it went away
                    frames = [await queue.get()]
                    while not queue.empty():
                        frames.append(queue.get_nowait())
                    writer.write(b"".join(frames))
                    await writer.drain()
            except (OSError, RuntimeError):
                # OSError from the socket; RuntimeError from uvloop when writing to a transport the
                # peer already closed. Either way: reconnect (the task must never die).
                pass
            finally:
                try:
                    writer.close()
                except RuntimeError:
                    pass

    async def _applied_read(self, future: asyncio.Future[int]) -> int:
        index = await future
        await self.wait_for_commit(index, timeout=None)
        return index

    async def _serve_peer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inbound[task] = writer
        try:
            if self._closing:
                return
            while True:
                header = await reader.readexactly(4)
                length = int.from_bytes(header, "big")
                if length > MAX_FRAME_BYTES:
                    raise MalformedMessage(f"frame of {length} bytes exceeds MAX_FRAME_BYTES")
                body = await reader.readexactly(length)
                try:
                    message: Message = decode(json.loads(body))
                except ValueError as e:  # JSON and UTF-8 errors are ValueErrors, as is MalformedMessage
                    raise MalformedMessage(str(e)) from e
                if self.node is None:
                    return
                self.node.receive(message)
                self._flush()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except MalformedMessage as e:
            log.warning("raft %d: closing connection from %s: %s", self.node_id, writer.get_extra_info("peername"), e)
        finally:
            self._inbound.pop(task, None)
            writer.close()
