"""`QuorumMetadataLog`: the cluster metadata log, replicated by the controller quorum (KRaft's idea).

Voters (up to five brokers) each run a `RaftServer`; every committed entry is
`{"records": [...]}`, a batch of metadata records applied atomically to this
broker's `MetadataImage`. The Raft leader is the **active controller**: only it
turns controller operations into records (`workbench.controller.ops`), one at
a time, against an image that has applied everything committed before it
(a ReadIndex barrier), so no two controllers ever act in the same term and a
decision is never made on stale state. Losing any one of three voters loses
nothing: a committed batch is on a majority, and the next leader has it.

Brokers that are not voters are *observers*: they fetch committed entries
from the active controller (`fetch_entries`) and apply them the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.controller.image import MetadataImage
from workbench.controller.raft.messages import Entry
from workbench.controller.raft.server import RaftServer

log = logging.getLogger(__name__)

ELECTION_TIMEOUT_MS = (200, 400)
HEARTBEAT_MS = 50


class QuorumMetadataLog:
    def __init__(self, node_id: int, voters: dict[int, tuple[str, int]], directory: Path) -> None:
        self.node_id = node_id
        self.voters = voters
        self.directory = Path(directory)
        self.image = MetadataImage()
        self.applied_index = 0
        self._listeners: list[Callable[[MetadataImage], None]] = []
        self._applied_waiters: list[tuple[int, asyncio.Future]] = []
        self.raft: RaftServer | None = None
        if node_id in voters:
            host, port = voters[node_id]
            # Election timeouts shorter than Raft's usual 150-300 ms x2: every voter is on this
            # machine, so a missed heartbeat means a dead process, not a slow network.
            self.raft = RaftServer(
                node_id,
                voters,
                self.directory,
                host=host,
                port=port,
                on_commit=self._on_commit,
                election_timeout_ms=ELECTION_TIMEOUT_MS,
                heartbeat_ms=HEARTBEAT_MS,
            )

    @property
    def is_voter(self) -> bool:
        return self.raft is not None

    def add_listener(self, listener: Callable[[MetadataImage], None]) -> None:
        self._listeners.append(listener)

    def catch_up(self) -> bool:
        return False  # entries arrive by push (voters) or by the observer's fetch loop

    async def start(self) -> None:
        if self.raft is not None:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            await self.raft.start()

    async def close(self) -> None:
        if self.raft is not None:
            await self.raft.close()
        for _, fut in self._applied_waiters:
            if not fut.done():
                fut.set_exception(ConnectionError("metadata log closed"))
        self._applied_waiters.clear()

    # -- leadership -----------------------------------------------------------------------------

    @property
    def leader_id(self) -> int | None:
        return self.raft.leader_id if self.raft is not None else self._observed_leader

    _observed_leader: int | None = None

    @property
    def is_leader(self) -> bool:
        return self.raft is not None and self.raft.is_leader

    async def barrier(self, timeout: float = 5.0) -> int:
        """Return once this node has applied everything committed before the call (voters only)."""
        assert self.raft is not None
        return await self.raft.read_index(timeout)

    async def append(self, records: list[dict[str, Any]], timeout: float = 5.0) -> int:
        """As active controller: commit a batch of records; returns its index once applied here."""
        assert self.raft is not None
        index = await self.raft.propose({"records": records}, timeout)
        await self.wait_applied(index, timeout)
        return index

    # -- applying ---------------------------------------------------------------------------------

    def _on_commit(self, entries: list[Entry]) -> None:
        self.apply_entries([(e.index, e.payload) for e in entries])

    def observe_leader(self, leader: int | None) -> None:
        """As an observer (not a voter): the active controller a voter reported."""
        self._observed_leader = leader

    def apply_entries(self, entries: list[tuple[int, dict]]) -> None:
        changed = False
        for index, payload in entries:
            if index <= self.applied_index:
                continue
            for record in payload.get("records", ()):
                self.image.apply(record)
                changed = True
            if payload.get("t") == "raft.leader_change":
                self._observed_leader = payload.get("leader")
            self.applied_index = index
        if changed:
            for listener in self._listeners:
                listener(self.image)
        waiting = []
        for index, fut in self._applied_waiters:
            if fut.done():
                continue
            if index <= self.applied_index:
                fut.set_result(None)
            else:
                waiting.append((index, fut))
        self._applied_waiters = waiting

    async def wait_applied(self, index: int, timeout: float | None = 5.0) -> None:
        if self.applied_index >= index:
            return
        fut = asyncio.get_running_loop().create_future()
        self._applied_waiters.append((index, fut))
        await asyncio.wait_for(fut, timeout)

    def committed_entries(self, start: int, limit: int = 1000) -> list[tuple[int, dict]]:
        """Committed entries from `start` (for observers), read from the leader's Raft log."""
        assert self.raft is not None and self.raft.storage is not None
        stop = min(self.raft.applied_index, start + limit - 1)
        if stop < start:
            return []
        return [(e.index, e.payload) for e in self.raft.storage.entries(start, stop + 1)]
