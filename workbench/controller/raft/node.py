"""`RaftNode`: the Raft consensus algorithm as a state machine with no I/O.

Like h11's `Connection`, the node never touches a socket, a clock or a thread.
The caller feeds it time (`tick(now_ms)`), messages from peers (`receive`) and
proposals (`propose`), and collects what it produced: messages to send
(`drain()`), newly committed entries (`take_committed()`) and answered reads
(`take_reads()`). Every rule is therefore testable with plain objects, and a
simulated network can drive thousands of seeded runs in seconds.

What is implemented (section numbers are Ongaro's thesis, "Consensus: Bridging
Theory and Practice", 2014):

* leader election with the log up-to-date check (§3.4, §3.6.1);
* pre-vote (§9.6): a node first asks whether it *could* win, without raising
  any term, so a node rejoining after a partition does not depose a healthy
  leader;
* ignoring RequestVote while hearing from a leader (§4.2.3), and check-quorum
  (§6.2): a leader that has not heard from a majority within an election
  timeout steps down, so a partitioned leader stops claiming leadership;
* log replication with the consistency check, conflict truncation and the
  conflict term/index hint for fast backtracking (§3.5);
* commitment only by counting replicas of entries of the current term (§3.6.2,
  the Figure 8 rule) and a leader-change entry on becoming leader, which is
  how a new leader learns what is committed;
* ReadIndex (§6.4) for reads at least as fresh as anything committed before
  the read was requested, on the leader or via a follower;
* leadership transfer with TimeoutNow (§3.10), for controlled shutdown.

Deliberately not supported: membership changes (the voter set is static, as
for a fixed three-member controller quorum), snapshots and log compaction (the
metadata log is small; the whole log is replayed on start), and leader leases.

Durability contract: the storage writes synchronously (see `storage.py`), and
the node writes `(term, voted_for)` and log entries *before* it queues any
message that depends on them, so whatever `drain()` returns may be sent at once.

A storage write that fails (`OSError`: a full disk, an I/O error) changes
nothing and is never answered as a success: the message that needed it is
dropped, as if lost on the network (Raft resends), a leader whose own append
fails refuses the proposal with `NotLeader` (one that cannot write its
leader-change entry steps down), and a candidate
that cannot record its vote does not campaign. A follower then writes nothing
for `STORAGE_BACKOFF_MS` (doubling up to a cap; reset by a write that works),
so a full disk costs a few failed writes a second, not one per message.
Failures are counted in `storage_failures` (the last in `last_storage_error`)
for the caller to log.

A member whose log was damaged (`RaftStorage.needs_repair`: entries it may have acknowledged
are gone, see `storage.py`) neither grants votes (pre-votes included) nor campaigns until it
has caught up with a leader: its log matches the leader's up to the leader's commit index, and
that index holds an entry of the leader's term (so it covers everything committed before the
term). A leader, in turn, lowers its match index for a follower that rejects an AppendEntries
sent after the one whose success set it (the follower's log got shorter than it said), and
sends again from where the follower's log now ends; before, it never went below the stale
match and the follower was never repaired.

Volatile state (commit index, what was emitted) is not persisted: a restarted
node emits committed entries again from index 1 as it learns the commit index,
which is exactly the replay a metadata image needs.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from workbench.controller.raft.messages import (
    LEADER_CHANGE,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    Message,
    OutboundMessage,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from workbench.controller.raft.storage import RaftStorage

# Entries per AppendEntries: bounds a message (metadata records are ~100 bytes) while a
# lagging follower still catches up a thousand entries in a handful of round trips.
MAX_ENTRIES_PER_APPEND = 128
# After a failed storage write, skip writes for this long, doubling per failure up to the
# cap: a full disk then costs a few failed writes per second however fast the leader resends.
STORAGE_BACKOFF_MS = (50, 2000)


class Role(StrEnum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"  # asking for pre-votes (thesis §9.6); term not yet raised
    CANDIDATE = "candidate"
    LEADER = "leader"


class NotLeader(Exception):
    """This node cannot take the request; `leader_hint` is the leader it knows, if any."""

    def __init__(self, leader_hint: int | None) -> None:
        super().__init__(f"not the leader (leader hint: {leader_hint})")
        self.leader_hint = leader_hint


@dataclass(slots=True)
class _PendingRead:
    read_id: int
    requester: int
    needed_seq: int  # a majority must acknowledge an AppendEntries sent at or after this


class RaftNode:
    """One Raft member as a pure state machine (see the module docstring)."""

    def __init__(
        self,
        node_id: int,
        voters: list[int],
        storage: RaftStorage,
        *,
        election_timeout_ms: tuple[int, int] = (300, 600),
        heartbeat_ms: int = 75,
        rng: random.Random | None = None,
    ) -> None:
        if node_id not in voters or len(set(voters)) != len(voters):
            raise ValueError(f"node {node_id} must be one of the distinct voters {voters}")
        low, high = election_timeout_ms
        if not 0 < heartbeat_ms < low <= high:
            raise ValueError("need 0 < heartbeat_ms < election timeout low <= high")
        self.node_id = node_id
        self.voters = sorted(voters)
        self.peers = [v for v in self.voters if v != node_id]
        self.storage = storage
        self.election_timeout_ms = (low, high)
        self.heartbeat_ms = heartbeat_ms
        self._rng = rng or random.Random()
        self._majority = len(self.voters) // 2 + 1

        self.role = Role.FOLLOWER
        self.leader_id: int | None = None
        self.commit_index = 0
        self._emitted = 0
        self._now = 0
        self._election_deadline: int | None = None  # set by the first tick
        self._last_leader_contact: int | None = None
        self._votes: dict[int, bool] = {}

        self._outbox: list[OutboundMessage] = []
        self._committed: list[Entry] = []
        self._reads_done: list[tuple[int, int]] = []

        # Leader state (reset by _become_leader).
        self._next: dict[int, int] = {}
        self._match: dict[int, int] = {}
        self._match_seq: dict[int, int] = {}  # seq of the AppendEntries whose success set _match
        self._acked_seq: dict[int, int] = {}
        self._seq = 0
        self._heard: set[int] = set()
        self._check_deadline = 0
        self._heartbeat_deadline = 0
        self._term_start_index = 0
        self._pending_reads: list[_PendingRead] = []
        self._transfer_target: int | None = None
        self._transfer_deadline = 0

        # Storage failures (see the module docstring).
        self.storage_failures = 0
        self.last_storage_error: OSError | None = None
        self._storage_backoff_ms = 0
        self._storage_retry_at = 0

    # -- observed state --------------------------------------------------------------------
    @property
    def term(self) -> int:
        return self.storage.term

    @property
    def voted_for(self) -> int | None:
        return self.storage.voted_for

    @property
    def last_index(self) -> int:
        return self.storage.last_index()

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    # -- outputs ---------------------------------------------------------------------------
    def drain(self) -> list[OutboundMessage]:
        """Messages to send, in order. Everything they depend on is already durable."""
        out, self._outbox = self._outbox, []
        return out

    def take_committed(self) -> list[Entry]:
        """Entries committed since the last call, in log order (control entries included)."""
        out, self._committed = self._committed, []
        return out

    def take_reads(self) -> list[tuple[int, int]]:
        """`(read_id, read_index)` for reads requested with `request_read` that are now safe:
        serve them once the local commit index reaches `read_index`."""
        out, self._reads_done = self._reads_done, []
        return out

    # -- inputs ----------------------------------------------------------------------------
    def tick(self, now_ms: int) -> None:
        """Advance the node's clock; fires election, heartbeat and check-quorum timers."""
        self._now = now_ms
        try:
            self._tick()
        except OSError as e:
            self._storage_failed(e)

    def _tick(self) -> None:
        now_ms = self._now
        if self._election_deadline is None:
            self._reset_election_timer()
        if self.role is Role.LEADER:
            if now_ms >= self._check_deadline:
                # Check-quorum (thesis §6.2): a leader cut off from a majority steps down.
                if len(self._heard) + 1 < self._majority:
                    self._become_follower(self.term, None)
                    return
                self._heard = set()
                self._check_deadline = now_ms + self.election_timeout_ms[0]
            if self._transfer_target is not None and now_ms >= self._transfer_deadline:
                self._transfer_target = None  # the transfer failed; accept proposals again
            if now_ms >= self._heartbeat_deadline:
                self._broadcast_append()
        elif now_ms >= self._election_deadline:  # type: ignore[operator]
            if self.storage.needs_repair:
                if self.peers:
                    self._reset_election_timer()  # a damaged log may lack committed entries: no campaign
                    return
                self.storage.set_needs_repair(False)  # a single voter has no one to repair from
            self._start_pre_vote()

    def propose(self, payload: dict[str, Any]) -> int:
        """Append `payload` to the log as leader; returns its index (committed later, maybe
        never: watch `take_committed()` for an entry at that index *and this term*)."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        if self._transfer_target is not None:
            raise NotLeader(self._transfer_target)
        # A round trip through JSON: the leader keeps exactly what followers will decode.
        record = json.loads(json.dumps(payload))
        if not isinstance(record, dict):
            raise TypeError("a payload must be a JSON object")
        try:
            index = self._append_local(record)
        except OSError as e:
            # Not appended: refuse it (callers retry NotLeader until their deadline). Leadership
            # stays: stepping down on every failed proposal churned the controller (and with it
            # partition leadership) for as long as the disk was full.
            self._storage_failed(e)
            raise NotLeader(self.leader_id) from e
        for peer in self.peers:
            if self._next[peer] == index:
                self._send_append(peer)
        self._maybe_commit()
        return index

    def request_read(self, read_id: int) -> None:
        """Start a ReadIndex read (thesis §6.4); the answer appears in `take_reads()`.

        On a follower the request goes to the leader; on a leaderless node it raises
        NotLeader(None). A read whose leader steps down is never answered: callers time out.
        """
        if self.role is Role.LEADER:
            self._pending_reads.append(_PendingRead(read_id, self.node_id, self._seq + 1))
            self._broadcast_append()
            self._check_reads()
        elif self.leader_id is not None:
            self._send(self.leader_id, ReadIndexRequest(self.term, self.node_id, read_id))
        else:
            raise NotLeader(None)

    def transfer_leadership(self, target: int | None = None) -> int:
        """Hand leadership to `target` (default: the most up-to-date peer) with TimeoutNow
        (thesis §3.10). Proposals are refused until the transfer ends; returns the target."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        if not self.peers:
            raise ValueError("a single-voter quorum cannot transfer leadership")
        if target is None:
            target = max(self.peers, key=lambda p: self._match[p])
        if target not in self.peers:
            raise ValueError(f"{target} is not a peer")
        self._transfer_target = target
        self._transfer_deadline = self._now + self.election_timeout_ms[1]
        if self._match[target] == self.last_index:
            self._send(target, TimeoutNow(self.term, self.node_id))
        else:
            self._send_append(target)
        return target

    def receive(self, message: Message) -> None:
        """Handle one message from a peer (any order, duplicates and stale ones included).

        A storage write the message needs that fails drops the message (nothing is
        answered, nothing changed); see the module docstring.
        """
        try:
            self._receive(message)
        except OSError as e:
            self._storage_failed(e)

    def _receive(self, message: Message) -> None:
        m = message
        if m.src not in self.voters or m.src == self.node_id:
            return
        if m.term > self.term:
            if isinstance(m, RequestVote):
                in_lease = self.role is Role.LEADER or (
                    self.leader_id is not None
                    and self._last_leader_contact is not None
                    and self._now - self._last_leader_contact < self.election_timeout_ms[0]
                )
                if in_lease and not m.transfer:
                    return  # thesis §4.2.3: a leader is alive; do not let this node disrupt it
                if not m.pre_vote:
                    self._become_follower(m.term, None)
            elif isinstance(m, RequestVoteResponse) and m.pre_vote and m.granted:
                pass  # a granted pre-vote carries the term we would campaign in
            else:
                self._become_follower(m.term, m.src if isinstance(m, (AppendEntries, TimeoutNow)) else None)
        elif m.term < self.term:
            # A stale sender. Answer requests with our term so a deposed leader or a stale
            # candidate learns it (with check-quorum, this is how a node whose term advanced
            # during a partition gets the cluster to move to its term).
            if isinstance(m, AppendEntries):
                self._send(
                    m.src,
                    AppendEntriesResponse(self.term, self.node_id, False, rejected_index=m.prev_log_index),
                )
            elif isinstance(m, RequestVote):
                self._send(m.src, RequestVoteResponse(self.term, self.node_id, False, m.pre_vote))
            return

        if isinstance(m, AppendEntries):
            self._on_append_entries(m)
        elif isinstance(m, AppendEntriesResponse):
            self._on_append_response(m)
        elif isinstance(m, RequestVote):
            self._on_request_vote(m)
        elif isinstance(m, RequestVoteResponse):
            self._on_vote_response(m)
        elif isinstance(m, TimeoutNow):
            if self.role is Role.FOLLOWER and m.src == self.leader_id and not self.storage.needs_repair:
                self._become_candidate(transfer=True)
        elif isinstance(m, ReadIndexRequest):
            if self.role is Role.LEADER:
                self._heard.add(m.src)
                self._pending_reads.append(_PendingRead(m.read_id, m.src, self._seq + 1))
                self._broadcast_append()
                self._check_reads()
        elif isinstance(m, ReadIndexResponse):
            self._reads_done.append((m.read_id, m.index))

    # -- elections -------------------------------------------------------------------------
    def _reset_election_timer(self) -> None:
        low, high = self.election_timeout_ms
        self._election_deadline = self._now + self._rng.randint(low, high)

    def _last_log_id(self) -> tuple[int, int]:
        last = self.last_index
        return self.storage.term_at(last), last

    def _start_pre_vote(self) -> None:
        if not self.peers:
            self._become_candidate()
            return
        self.role = Role.PRE_CANDIDATE
        self.leader_id = None
        self._votes = {self.node_id: True}
        self._reset_election_timer()
        last_term, last_index = self._last_log_id()
        for peer in self.peers:
            self._send(peer, RequestVote(self.term + 1, self.node_id, last_index, last_term, pre_vote=True))

    def _become_candidate(self, transfer: bool = False) -> None:
        try:
            self.storage.save_term_and_vote(self.term + 1, self.node_id)  # durable before RequestVote
        except OSError:
            self._reset_election_timer()  # no campaign without a durable vote; retry a timeout later
            raise
        self.role = Role.CANDIDATE
        self.leader_id = None
        self._votes = {self.node_id: True}
        self._reset_election_timer()
        if len(self._votes) >= self._majority:
            self._become_leader()
            return
        last_term, last_index = self._last_log_id()
        for peer in self.peers:
            self._send(peer, RequestVote(self.term, self.node_id, last_index, last_term, transfer=transfer))

    def _become_follower(self, term: int, leader_id: int | None) -> None:
        if term > self.term:
            self.storage.save_term_and_vote(term, None)
        self.role = Role.FOLLOWER
        self.leader_id = leader_id
        if leader_id is not None:
            self._last_leader_contact = self._now
        self._pending_reads = []
        self._transfer_target = None
        self._reset_election_timer()

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader_id = self.node_id
        next_index = self.last_index + 1
        self._next = {p: next_index for p in self.peers}
        self._match = {p: 0 for p in self.peers}
        self._match_seq = {p: 0 for p in self.peers}
        self._acked_seq = {p: 0 for p in self.peers}
        self._heard = set()
        self._check_deadline = self._now + self.election_timeout_ms[0]
        self._pending_reads = []
        self._transfer_target = None
        # The leader-change entry: committing it commits every earlier entry (§3.6.2).
        try:
            self._term_start_index = self._append_local({"t": LEADER_CHANGE, "leader": self.node_id, "term": self.term})
        except OSError:
            self._become_follower(self.term, None)  # a leader that cannot write its log must not lead
            raise
        self._broadcast_append()
        self._maybe_commit()

    def _on_request_vote(self, m: RequestVote) -> None:
        last_term, last_index = self._last_log_id()
        # A damaged log is shorter than what this member acknowledged: judged by it, a candidate
        # lacking a committed entry could look up to date. No vote until repaired.
        up_to_date = (m.last_log_term, m.last_log_index) >= (last_term, last_index) and not self.storage.needs_repair
        if m.pre_vote:
            # No state changes for a pre-vote; grant what we would grant in a real election.
            granted = m.term > self.term and up_to_date
            self._send(
                m.src,
                RequestVoteResponse(m.term if granted else self.term, self.node_id, granted, pre_vote=True),
            )
            return
        granted = self.voted_for in (None, m.src) and up_to_date
        if granted:
            self.storage.save_term_and_vote(self.term, m.src)  # durable before the grant leaves
            self._reset_election_timer()
        self._send(m.src, RequestVoteResponse(self.term, self.node_id, granted))

    def _on_vote_response(self, m: RequestVoteResponse) -> None:
        if self.role is Role.PRE_CANDIDATE and m.pre_vote:
            # Count grants for the term we would campaign in, and rejections at our term.
            if (m.granted and m.term == self.term + 1) or (not m.granted and m.term == self.term):
                self._votes[m.src] = m.granted
        elif self.role is Role.CANDIDATE and not m.pre_vote:
            self._votes[m.src] = m.granted
        else:
            return
        grants = sum(self._votes.values())
        if grants >= self._majority:
            if self.role is Role.PRE_CANDIDATE:
                self._become_candidate()
            else:
                self._become_leader()
        elif len(self._votes) - grants >= self._majority:
            self._become_follower(self.term, None)

    # -- replication -----------------------------------------------------------------------
    def _append_local(self, payload: dict[str, Any]) -> int:
        index = self.last_index + 1
        self.storage.append([Entry(self.term, index, payload)])
        return index

    def _broadcast_append(self) -> None:
        for peer in self.peers:
            self._send_append(peer)
        self._heartbeat_deadline = self._now + self.heartbeat_ms

    def _send_append(self, peer: int) -> None:
        next_index = self._next[peer]
        prev = next_index - 1
        entries = self.storage.entries(next_index, min(self.last_index, prev + MAX_ENTRIES_PER_APPEND) + 1)
        self._seq += 1
        self._send(
            peer,
            AppendEntries(
                self.term,
                self.node_id,
                prev,
                self.storage.term_at(prev),
                tuple(entries),
                self.commit_index,
                self._seq,
            ),
        )
        if entries:
            self._next[peer] = entries[-1].index + 1  # optimistic: pipeline the next batch

    def _on_append_entries(self, m: AppendEntries) -> None:
        if self.role is Role.LEADER:
            return  # impossible by election safety: two leaders in one term
        if self.role is not Role.FOLLOWER or self.leader_id != m.src:
            self._become_follower(self.term, m.src)
        self.leader_id = m.src
        self._last_leader_contact = self._now
        self._reset_election_timer()

        last = self.last_index
        if m.prev_log_index > last:
            self._send(
                m.src,
                AppendEntriesResponse(
                    self.term,
                    self.node_id,
                    False,
                    rejected_index=m.prev_log_index,
                    conflict_index=last + 1,
                    seq=m.seq,
                ),
            )
            return
        if self.storage.term_at(m.prev_log_index) != m.prev_log_term:
            conflict_term = self.storage.term_at(m.prev_log_index)
            conflict_index = m.prev_log_index
            while conflict_index > 1 and self.storage.term_at(conflict_index - 1) == conflict_term:
                conflict_index -= 1
            self._send(
                m.src,
                AppendEntriesResponse(
                    self.term,
                    self.node_id,
                    False,
                    rejected_index=m.prev_log_index,
                    conflict_index=conflict_index,
                    conflict_term=conflict_term,
                    seq=m.seq,
                ),
            )
            return
        entries = m.entries
        i = 0
        term_at = self.storage.term_at
        while i < len(entries) and entries[i].index <= last and term_at(entries[i].index) == entries[i].term:
            i += 1
        if i < len(entries):
            if self._now < self._storage_retry_at:
                return  # backing off after a failed write: as if the message were lost
            if entries[i].index <= last:
                if entries[i].index <= self.commit_index:
                    raise AssertionError(f"leader {m.src} would overwrite committed entry {entries[i].index}")
                self.storage.truncate_from(entries[i].index)
            # Durable before the success response leaves; an OSError here answers nothing.
            self.storage.append(entries[i:])
            self._storage_backoff_ms = 0
        match = m.prev_log_index + len(entries)
        # Only up to `match`: beyond it our log may still hold entries the leader lacks.
        if min(m.leader_commit, match) > self.commit_index:
            self._advance_commit(min(m.leader_commit, match))
        if (
            self.storage.needs_repair
            and 0 < m.leader_commit <= match
            and self.storage.term_at(m.leader_commit) == self.term
        ):
            # Our log matches the leader's up to its commit index, an entry of its term: every
            # entry committed so far (the ones we lost included) is back. We may vote again.
            self.storage.set_needs_repair(False)
        self._send(m.src, AppendEntriesResponse(self.term, self.node_id, True, match_index=match, seq=m.seq))

    def _on_append_response(self, m: AppendEntriesResponse) -> None:
        if self.role is not Role.LEADER:
            return
        peer = m.src
        self._heard.add(peer)
        if m.seq > self._acked_seq[peer]:
            self._acked_seq[peer] = m.seq
            self._check_reads()
        if m.success:
            if m.match_index > self._match[peer]:
                self._match[peer] = m.match_index
                self._match_seq[peer] = m.seq
                self._maybe_commit()
            self._next[peer] = max(self._next[peer], self._match[peer] + 1)
            if self._transfer_target == peer and self._match[peer] == self.last_index:
                self._send(peer, TimeoutNow(self.term, self.node_id))
            elif self._next[peer] <= self.last_index:
                self._send_append(peer)
            return
        if m.rejected_index <= self._match[peer] and m.seq > self._match_seq[peer]:
            # Rejected at or below the match index, answering an AppendEntries sent after the one
            # that set it: the follower's log got shorter (damage found on its restart). Lower
            # the match (never the commit index) to where its log now ends, and resend from there.
            # A reordered rejection lowers it needlessly; the next success raises it again.
            ends = (m.conflict_index - 1) if m.conflict_index and not m.conflict_term else m.rejected_index - 1
            self._match[peer] = max(0, min(self._match[peer], ends))
            self._next[peer] = self._match[peer] + 1
        elif m.rejected_index < self._match[peer]:
            return  # a stale rejection (reordered or duplicated): that prefix matches already
        hint = m.conflict_index
        if m.conflict_term:
            # Skip the follower's whole conflicting term, unless we have entries of it too.
            index = min(m.rejected_index, self.last_index)
            while index > 0 and self.storage.term_at(index) > m.conflict_term:
                index -= 1
            if index > 0 and self.storage.term_at(index) == m.conflict_term:
                hint = index + 1
        self._next[peer] = max(self._match[peer] + 1, min(self._next[peer], hint))
        self._send_append(peer)

    def _maybe_commit(self) -> None:
        if self.role is not Role.LEADER:
            return
        matches = sorted([self.last_index, *self._match.values()], reverse=True)
        candidate = matches[self._majority - 1]
        # Raft §3.6.2 / Figure 8: count replicas only for entries of the current term.
        if candidate > self.commit_index and self.storage.term_at(candidate) == self.term:
            self._advance_commit(candidate)
            self._check_reads()

    def _advance_commit(self, index: int) -> None:
        self.commit_index = index
        if index > self._emitted:
            self._committed.extend(self.storage.entries(self._emitted + 1, index + 1))
            self._emitted = index

    # -- reads -----------------------------------------------------------------------------
    def _check_reads(self) -> None:
        if not self._pending_reads or self.commit_index < self._term_start_index:
            return  # until our first entry commits we do not know the commit index (§6.4)
        still_pending = []
        for read in self._pending_reads:
            acks = 1 + sum(1 for p in self.peers if self._acked_seq[p] >= read.needed_seq)
            if acks < self._majority:
                still_pending.append(read)
            elif read.requester == self.node_id:
                self._reads_done.append((read.read_id, self.commit_index))
            else:
                self._send(
                    read.requester,
                    ReadIndexResponse(self.term, self.node_id, read.read_id, self.commit_index),
                )
        self._pending_reads = still_pending

    def _storage_failed(self, error: OSError) -> None:
        self.storage_failures += 1
        self.last_storage_error = error
        low, high = STORAGE_BACKOFF_MS
        self._storage_backoff_ms = min(high, max(low, self._storage_backoff_ms * 2))
        self._storage_retry_at = self._now + self._storage_backoff_ms

    def _send(self, to: int, message: Message) -> None:
        self._outbox.append(OutboundMessage(to, message))
