"""A deterministic simulated network for `RaftNode`: seeded faults on a virtual clock.

Messages are dropped, delayed (hence reordered) and duplicated at per-network rates;
links can be cut (`partition`, `isolate`) and nodes crashed and restarted from what
their `MemoryRaftStorage` persisted. An optional `InvariantChecker` sees every append,
truncation, commit and role, and raises `AssertionError` the moment a Raft safety
property breaks. Used by `tests/unit/test_raft_faults.py`; kept in the package so the
controller's own tests can drive a quorum the same way.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from workbench.controller.raft.messages import Entry, Message
from workbench.controller.raft.node import RaftNode, Role
from workbench.controller.raft.storage import MemoryRaftStorage


class InvariantChecker:
    """Checks Raft's safety properties (Raft Figure 3) incrementally as the run goes.

    * election safety: at most one leader per term;
    * log matching: every `(index, term)` ever written anywhere has the same payload and
      the same previous term everywhere (which, by induction, makes logs that share an
      entry identical up to it);
    * state machine safety: each node applies entries 1, 2, 3... in order, and every
      applied entry equals the one any other node applied at that index, so applied
      sequences are prefixes of one another;
    * leader completeness: a new leader's log holds every entry applied anywhere so far,
      and no node ever truncates an entry that is known to be committed.
    """

    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}  # term -> leader
        self.written: dict[tuple[int, int], tuple[Any, int]] = {}  # (index, term) -> (payload, prev term)
        self.committed: list[Entry] = []  # the one applied sequence every node must follow
        self.applied: dict[int, int] = {}  # node -> last applied index (this incarnation)

    def on_append(self, node_id: int, prev_term: int, entries: Sequence[Entry]) -> None:
        for entry in entries:
            key = (entry.index, entry.term)
            seen = self.written.setdefault(key, (entry.payload, prev_term))
            assert seen == (entry.payload, prev_term), (
                f"log matching: node {node_id} wrote {key} as {(entry.payload, prev_term)}, elsewhere {seen}"
            )
            prev_term = entry.term

    def on_truncate(self, node_id: int, removed: Sequence[Entry]) -> None:
        for entry in removed:
            if entry.index <= len(self.committed):
                assert self.committed[entry.index - 1] != entry, f"node {node_id} truncated committed entry {entry}"

    def on_restart(self, node_id: int) -> None:
        self.applied[node_id] = 0  # a restarted node replays the log from the start

    def on_committed(self, node_id: int, entries: Iterable[Entry]) -> None:
        for entry in entries:
            expected = self.applied.get(node_id, 0) + 1
            assert entry.index == expected, f"node {node_id} applied {entry.index}, expected {expected}"
            if entry.index <= len(self.committed):
                assert self.committed[entry.index - 1] == entry, (
                    f"state machine safety: node {node_id} applied {entry}, "
                    f"another applied {self.committed[entry.index - 1]}"
                )
            else:
                self.committed.append(entry)
            self.applied[node_id] = entry.index

    def on_leader(self, node: RaftNode) -> None:
        leader = self.leaders.setdefault(node.term, node.node_id)
        assert leader == node.node_id, f"election safety: term {node.term} has leaders {leader}, {node.node_id}"
        if leader == node.node_id and getattr(node, "_checked_complete_term", None) != node.term:
            node._checked_complete_term = node.term  # type: ignore[attr-defined]
            storage = node.storage
            assert storage.last_index() >= len(self.committed), "leader completeness: leader log too short"
            for entry in self.committed:
                assert storage.entry(entry.index) == entry, f"leader completeness: {node.node_id} lacks {entry}"


class CheckedStorage(MemoryRaftStorage):
    """`MemoryRaftStorage` that reports every write to an `InvariantChecker`."""

    def __init__(self, node_id: int, checker: InvariantChecker | None) -> None:
        super().__init__()
        self.node_id = node_id
        self.checker = checker

    def append(self, entries: Sequence[Entry]) -> None:
        if self.checker is not None and entries:
            self.checker.on_append(self.node_id, self.term_at(entries[0].index - 1), entries)
        super().append(entries)

    def truncate_from(self, index: int) -> None:
        if self.checker is not None:
            self.checker.on_truncate(self.node_id, self.entries(index, self.last_index() + 1))
        super().truncate_from(index)


class SimulatedNetwork:
    """Nodes `1..n` on a virtual clock advanced `tick_ms` per `step()`."""

    def __init__(
        self,
        n: int,
        seed: int,
        *,
        drop: float = 0.0,
        duplicate: float = 0.0,
        delay_ms: tuple[int, int] = (1, 10),
        tick_ms: int = 10,
        election_timeout_ms: tuple[int, int] = (300, 600),
        heartbeat_ms: int = 75,
        checker: InvariantChecker | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.ids = list(range(1, n + 1))
        self.drop, self.duplicate, self.delay_ms = drop, duplicate, delay_ms
        self.tick_ms = tick_ms
        self.now = 0
        self.checker = checker
        self._node_options = {"election_timeout_ms": election_timeout_ms, "heartbeat_ms": heartbeat_ms}
        self.storages: dict[int, MemoryRaftStorage] = {i: CheckedStorage(i, checker) for i in self.ids}
        self.nodes: dict[int, RaftNode | None] = {i: self._make_node(i) for i in self.ids}
        self.applied: dict[int, list[Entry]] = {i: [] for i in self.ids}
        self.cut: set[tuple[int, int]] = set()  # directed links that lose every message
        self._in_flight: list[tuple[int, int, int, Message]] = []  # (deliver at, seq, to, message)
        self._seq = 0
        self.delivered = 0

    def _make_node(self, node_id: int) -> RaftNode:
        return RaftNode(
            node_id,
            self.ids,
            self.storages[node_id],
            rng=random.Random(self.rng.random()),
            **self._node_options,  # type: ignore[arg-type]
        )

    # -- faults -----------------------------------------------------------------------------
    def partition(self, *groups: Iterable[int]) -> None:
        """Only nodes in the same group can talk (nodes in no group are isolated)."""
        group_of = {n: g for g, members in enumerate(groups) for n in members}
        self.cut = {
            (a, b)
            for a in self.ids
            for b in self.ids
            if a != b and (group_of.get(a, -1 - a) != group_of.get(b, -1 - b))
        }

    def isolate(self, node_id: int) -> None:
        self.partition([n for n in self.ids if n != node_id])

    def heal(self) -> None:
        self.cut = set()

    def crash(self, node_id: int) -> None:
        """The process dies: its volatile state is gone, its storage survives."""
        if self.nodes[node_id] is not None:
            self.nodes[node_id] = None
            self.storages[node_id] = self.storages[node_id].crash()

    def restart(self, node_id: int, lose_from: int | None = None) -> None:
        """Start a crashed node from its storage; `lose_from`: its log was found damaged at that
        index on open (the entries from it on are gone and it needs repair, see storage.py)."""
        if self.nodes[node_id] is None:
            if lose_from is not None and lose_from <= self.storages[node_id].last_index():
                self.storages[node_id].lose_entries_from(max(1, lose_from))
            self.nodes[node_id] = self._make_node(node_id)
            self.applied[node_id] = []
            if self.checker is not None:
                self.checker.on_restart(node_id)

    # -- running ----------------------------------------------------------------------------
    def live(self) -> list[RaftNode]:
        return [n for n in self.nodes.values() if n is not None]

    def leaders(self) -> list[RaftNode]:
        return [n for n in self.live() if n.role is Role.LEADER]

    def step(self) -> None:
        """Deliver what is due, then tick every live node."""
        self.now += self.tick_ms
        while self._in_flight and self._in_flight[0][0] <= self.now:
            _, _, to, message = heapq.heappop(self._in_flight)
            node = self.nodes[to]
            if node is not None and (message.src, to) not in self.cut:
                self.delivered += 1
                node.receive(message)
                self._collect(node)
        for node in self.live():
            node.tick(self.now)
            self._collect(node)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()

    def run_until(self, predicate: Callable[[], bool], max_steps: int) -> int:
        """Step until `predicate()` holds; returns the steps taken or raises AssertionError."""
        for taken in range(max_steps + 1):
            if predicate():
                return taken
            self.step()
        raise AssertionError(f"condition not reached within {max_steps} steps (t={self.now} ms)")

    def _collect(self, node: RaftNode) -> None:
        for out in node.drain():
            if (node.node_id, out.to) in self.cut or self.rng.random() < self.drop:
                continue
            copies = 2 if self.rng.random() < self.duplicate else 1
            for _ in range(copies):
                self._seq += 1
                at = self.now + self.rng.randint(*self.delay_ms)
                heapq.heappush(self._in_flight, (at, self._seq, out.to, out.message))
        committed = node.take_committed()
        if committed:
            self.applied[node.node_id].extend(committed)
            if self.checker is not None:
                self.checker.on_committed(node.node_id, committed)
        if self.checker is not None and node.role is Role.LEADER:
            self.checker.on_leader(node)
