"""RaftNode as a specification: elections, replication, commit rules, pre-vote, check-quorum.

Messages are delivered by hand (no network, no clock but the one we pass to `tick`),
so each test states exactly which messages reach whom.
"""

from __future__ import annotations

import random

import pytest

from workbench.controller.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    RequestVote,
)
from workbench.controller.raft.node import NotLeader, RaftNode, Role
from workbench.controller.raft.storage import MemoryRaftStorage

TIMEOUT = (300, 600)


class Bench:
    """Nodes 1..n; `deliver()` moves queued messages until none are left (or only over open links)."""

    def __init__(
        self,
        n: int = 3,
        logs: dict[int, list[tuple[int, int]]] | None = None,
        terms: dict[int, int] | None = None,
    ) -> None:
        self.ids = list(range(1, n + 1))
        self.storages = {i: MemoryRaftStorage() for i in self.ids}
        for i, log in (logs or {}).items():
            self.storages[i].append([Entry(term, index, {"t": "x", "v": f"{term}.{index}"}) for term, index in log])
        for i, term in (terms or {}).items():
            self.storages[i].save_term_and_vote(term, None)
        self.nodes = {
            i: RaftNode(
                i,
                self.ids,
                self.storages[i],
                election_timeout_ms=TIMEOUT,
                heartbeat_ms=75,
                rng=random.Random(i),
            )
            for i in self.ids
        }
        self.now = 0
        self.cut: set[int] = set()  # nodes whose messages are lost in both directions
        self.committed: dict[int, list[Entry]] = {i: [] for i in self.ids}
        for node in self.nodes.values():
            node.tick(0)

    def tick(self, ms: int, only: list[int] | None = None) -> None:
        self.now += ms
        for i in only or self.ids:
            self.nodes[i].tick(self.now)

    def deliver(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            moved = False
            for node in list(self.nodes.values()):
                self.committed[node.node_id] += node.take_committed()
                for out in node.drain():
                    if node.node_id in self.cut or out.to in self.cut:
                        continue
                    self.nodes[out.to].receive(out.message)
                    moved = True
            if not moved:
                return

    def elect(self, i: int) -> None:
        """Fire `i`'s election timer only, and let the election run."""
        self.now += TIMEOUT[1] + 1
        self.nodes[i].tick(self.now)
        self.deliver()

    def leader(self) -> RaftNode:
        leaders = [n for n in self.nodes.values() if n.role is Role.LEADER and n.node_id not in self.cut]
        assert len(leaders) == 1, [(n.node_id, n.role, n.term) for n in self.nodes.values()]
        return leaders[0]

    def log(self, i: int) -> list[tuple[int, int]]:
        s = self.storages[i]
        return [(e.term, e.index) for e in s.entries(1, s.last_index() + 1)]


def test_first_election_uses_pre_vote_then_vote_and_commits_a_leader_change_entry():
    b = Bench()
    b.now += TIMEOUT[1] + 1
    b.nodes[1].tick(b.now)
    assert b.nodes[1].role is Role.PRE_CANDIDATE and b.nodes[1].term == 0  # pre-vote raises no term
    pre_votes = b.nodes[1].drain()
    assert {o.to for o in pre_votes} == {2, 3}
    assert all(isinstance(o.message, RequestVote) and o.message.pre_vote and o.message.term == 1 for o in pre_votes)
    for o in pre_votes:
        b.nodes[o.to].receive(o.message)
    assert b.nodes[2].term == 0 and b.nodes[2].voted_for is None  # granting a pre-vote changes nothing
    b.deliver()
    leader = b.leader()
    assert leader.node_id == 1 and leader.term == 1
    assert all(n.leader_id == 1 and n.term == 1 for n in b.nodes.values())
    assert leader.commit_index == 1
    assert b.committed[1][0].payload == {"t": "raft.leader_change", "leader": 1, "term": 1}
    assert b.committed[1][0].is_control


def test_replication_commits_on_a_majority_and_followers_learn_the_commit_index():
    b = Bench()
    b.elect(1)
    b.cut = {3}
    index = b.nodes[1].propose({"t": "topic", "name": "a"})
    assert index == 2
    b.deliver()
    assert b.nodes[1].commit_index == 2  # leader + node 2 are a majority
    assert b.nodes[3].last_index == 1
    b.tick(75, only=[1])  # heartbeat carries the commit index
    b.deliver()
    assert b.nodes[2].commit_index == 2
    assert [e.payload for e in b.committed[2]][-1] == {"t": "topic", "name": "a"}
    b.cut = set()
    b.tick(75, only=[1])
    b.deliver()
    assert b.log(3) == b.log(1) and b.nodes[3].commit_index == 2


def test_followers_reject_proposals_with_a_leader_hint():
    b = Bench()
    b.elect(2)
    with pytest.raises(NotLeader) as info:
        b.nodes[1].propose({"t": "x"})
    assert info.value.leader_hint == 2


def test_conflicting_entries_are_truncated_and_fast_backtracking_skips_whole_terms():
    # Node 3 holds a long tail of term-2 entries no one else has (an old leader's), so the
    # new leader must truncate it; the conflict hint skips the term in one round trip.
    base = [(1, 1), (1, 2)]
    b = Bench(
        logs={1: [*base, (3, 3)], 2: [*base, (3, 3)], 3: base + [(2, i) for i in range(3, 40)]},
        terms={1: 3, 2: 3, 3: 2},
    )
    b.cut = {3}
    b.elect(1)
    assert b.leader().node_id == 1 and b.nodes[1].term == 4
    b.cut = set()
    rejections = []
    original = b.nodes[1].receive

    def spy(m):
        if isinstance(m, AppendEntriesResponse) and not m.success:
            rejections.append(m)
        original(m)

    b.nodes[1].receive = spy  # type: ignore[method-assign]
    b.tick(75, only=[1])
    b.deliver()
    assert b.log(3) == b.log(1) == [*base, (3, 3), (4, 4)]
    assert len(rejections) <= 2  # not one per conflicting entry
    assert b.nodes[3].commit_index == 4


def test_a_candidate_with_a_stale_log_cannot_win():
    b = Bench(logs={1: [(1, 1), (2, 2)], 2: [(1, 1), (2, 2)], 3: [(1, 1)]}, terms={1: 2, 2: 2, 3: 2})
    b.elect(3)
    assert b.nodes[3].role is not Role.LEADER
    assert b.nodes[3].term == 2  # its pre-vote failed, so it did not even raise its term
    b.elect(1)
    assert b.leader().node_id == 1


def test_figure_8_an_old_term_entry_on_a_majority_is_not_committed_by_counting():
    # Raft paper Figure 8 (c)-(d). S1 leads term 4 and holds (2, 2), which S2 and S3 also
    # hold: a majority of five. Counting replicas must not commit it, because S5, with (3, 2),
    # can still be elected and overwrite index 2 everywhere.
    logs = {1: [(1, 1), (2, 2)], 2: [(1, 1), (2, 2)], 3: [(1, 1), (2, 2)], 4: [(1, 1)], 5: [(1, 1), (3, 2)]}
    b = Bench(n=5, logs=logs, terms={1: 3, 2: 3, 3: 3, 4: 3, 5: 3})
    b.cut = {4, 5}
    b.now += TIMEOUT[1] + 1
    s1 = b.nodes[1]
    s1.tick(b.now)
    # Run the election but lose every AppendEntries S1 sends as leader.
    for _ in range(10):
        for node in b.nodes.values():
            for out in node.drain():
                if node.node_id in b.cut or out.to in b.cut or isinstance(out.message, AppendEntries):
                    continue
                b.nodes[out.to].receive(out.message)
    assert s1.role is Role.LEADER and s1.term == 4 and s1.last_index == 3  # 3: its leader-change entry
    for follower in (2, 3):  # they confirm they match S1 up to index 2
        s1.receive(AppendEntriesResponse(4, follower, True, match_index=2))
    assert s1.commit_index == 0 and s1.take_committed() == []

    # S1 crashes; S5 is elected with S2, S3 and S4, and overwrites index 2.
    b.cut = {1}
    for node in b.nodes.values():
        node.drain()  # S1's lost AppendEntries stay lost
    for _ in range(3):
        b.elect(5)
        if b.nodes[5].role is Role.LEADER:
            break
    assert b.nodes[5].role is Role.LEADER
    b.tick(75, only=[5])
    b.deliver()
    for i in (2, 3, 4, 5):
        assert b.log(i)[:2] == [(1, 1), (3, 2)]
    assert [(e.term, e.index) for e in b.committed[2]][:2] == [(1, 1), (3, 2)]


def test_pre_vote_keeps_a_rejoining_node_from_disrupting_the_leader():
    b = Bench()
    b.elect(1)
    term = b.nodes[1].term
    b.cut = {3}
    for _ in range(20):  # node 3 times out again and again while partitioned
        b.tick(200)
        b.deliver()
    assert b.nodes[3].term == term  # pre-votes never raise its term
    assert b.nodes[3].role is Role.PRE_CANDIDATE
    b.cut = set()
    b.tick(75)
    b.deliver()
    assert b.leader().node_id == 1 and b.nodes[1].term == term
    assert b.nodes[3].leader_id == 1 and b.nodes[3].role is Role.FOLLOWER


def test_votes_are_ignored_while_a_leader_is_heard_from():
    b = Bench()
    b.elect(1)
    b.tick(75, only=[1])
    b.deliver()
    # Node 3 (say, after a TimeoutNow from a stale leader or a bug) asks for a real vote.
    b.nodes[2].receive(RequestVote(b.nodes[2].term + 1, 3, 10, 10))
    assert b.nodes[2].term == 1 and b.nodes[2].drain() == []


def test_check_quorum_makes_an_isolated_leader_step_down():
    b = Bench()
    b.elect(1)
    b.cut = {1}
    for _ in range(10):
        b.tick(100, only=[1])
        b.deliver()
    assert b.nodes[1].role is Role.FOLLOWER and b.nodes[1].leader_id is None
    with pytest.raises(NotLeader):
        b.nodes[1].propose({"t": "x"})
    # Meanwhile the majority side elects a new leader in a higher term.
    for _ in range(30):
        b.tick(100, only=[2, 3])
        b.deliver()
    assert b.leader().node_id in (2, 3) and b.nodes[1].term == 1


def test_a_leader_hearing_from_a_majority_keeps_leading():
    b = Bench()
    b.elect(1)
    b.cut = {3}
    for _ in range(20):
        b.tick(75)
        b.deliver()
    assert b.nodes[1].role is Role.LEADER and b.nodes[1].term == 1


def test_a_stale_leader_learns_the_new_term_from_an_append_response():
    b = Bench()
    b.elect(1)
    b.nodes[2].storage.save_term_and_vote(5, None)  # node 2's term moved on meanwhile
    b.tick(75, only=[1])
    b.deliver()
    assert b.nodes[1].role is Role.FOLLOWER and b.nodes[1].term == 5


def test_leadership_transfer_with_timeout_now():
    b = Bench()
    b.elect(1)
    b.nodes[1].propose({"t": "x"})
    b.deliver()
    assert b.nodes[1].transfer_leadership(3) == 3
    with pytest.raises(NotLeader) as info:
        b.nodes[1].propose({"t": "y"})
    assert info.value.leader_hint == 3
    b.deliver()
    assert b.leader().node_id == 3 and b.nodes[3].term == 2


def test_read_index_on_leader_and_through_a_follower():
    b = Bench()
    b.elect(1)
    b.nodes[1].propose({"t": "x"})
    b.deliver()
    b.nodes[1].request_read(7)
    assert b.nodes[1].take_reads() == []  # needs a heartbeat round to confirm leadership
    b.deliver()
    assert b.nodes[1].take_reads() == [(7, 2)]
    b.nodes[2].request_read(8)
    b.deliver()
    assert b.nodes[2].take_reads() == [(8, 2)]
    fresh = Bench()
    with pytest.raises(NotLeader):
        fresh.nodes[1].request_read(1)


def test_single_voter_elects_itself_and_commits_alone():
    storage = MemoryRaftStorage()
    node = RaftNode(1, [1], storage, rng=random.Random(0))
    node.tick(0)
    node.tick(1000)
    assert node.role is Role.LEADER
    assert node.propose({"t": "x"}) == 2 and node.commit_index == 2
    assert [e.index for e in node.take_committed()] == [1, 2]


def test_restart_keeps_term_vote_and_log_and_replays_committed_entries():
    b = Bench()
    b.elect(1)
    b.nodes[1].propose({"t": "x"})
    b.deliver()
    b.tick(75, only=[1])
    b.deliver()
    survivor = b.storages[2].crash()
    node = RaftNode(2, b.ids, survivor, rng=random.Random(5))
    assert (node.term, node.voted_for, node.last_index) == (1, 1, 2)
    assert node.commit_index == 0  # volatile: relearned from the leader
    b.nodes[2] = node
    b.storages[2] = survivor
    b.committed[2] = []
    node.tick(b.now)
    b.tick(75, only=[1])
    b.deliver()
    assert [e.index for e in b.committed[2]] == [1, 2]


def test_proposals_must_be_json_objects():
    b = Bench()
    b.elect(1)
    with pytest.raises(TypeError):
        b.nodes[1].propose({"t": object()})


def _restart_damaged(b: Bench, i: int, lost_from: int) -> None:
    """Node `i` crashes and restarts with its log cut at `lost_from` by damage found on open."""
    survivor = b.storages[i].crash()
    survivor.lose_entries_from(lost_from)
    b.storages[i] = survivor
    b.nodes[i] = RaftNode(i, b.ids, survivor, election_timeout_ms=TIMEOUT, heartbeat_ms=75, rng=random.Random(9))
    b.committed[i] = []
    b.nodes[i].tick(b.now)


def test_a_voter_whose_log_lost_acknowledged_entries_neither_votes_nor_campaigns_until_repaired():
    # Issue 12: an acknowledged CreateTopics must survive a damaged Raft log on a voter.
    b = Bench()
    b.elect(1)
    b.cut = {3}
    index = b.nodes[1].propose({"t": "topic", "name": "acked"})
    b.deliver()
    assert b.nodes[1].commit_index == index  # committed on nodes 1 and 2 only
    _restart_damaged(b, 2, lost_from=index)  # node 2's copy is gone (a flipped bit, cut on open)
    assert b.nodes[2].storage.needs_repair
    b.cut = {1}  # the leader, the only other copy, is down
    b.elect(3)
    b.elect(2)
    # Node 3 lacks the entry; node 2's shortened log must not count it as up to date.
    assert all(n.role is not Role.LEADER for i, n in b.nodes.items() if i != 1), [
        (n.node_id, n.role) for n in b.nodes.values()
    ]
    b.cut = set()  # the old leader is back: it is the one that can win, and it repairs node 2
    b.elect(1)
    b.tick(75, only=[1])
    b.deliver()
    leader = b.leader()
    assert leader.node_id == 1
    for i in (2, 3):
        assert {"t": "topic", "name": "acked"} in [e.payload for e in b.committed[i]], i
    assert not b.nodes[2].storage.needs_repair  # caught up with the leader: a voter again


def test_a_leader_repairs_a_follower_whose_log_got_shorter_than_it_acknowledged():
    b = Bench()
    b.elect(1)
    for n in range(5):
        b.nodes[1].propose({"t": "x", "n": n})
    b.deliver()
    b.tick(75, only=[1])
    b.deliver()
    assert b.log(3) == b.log(1) and len(b.log(1)) == 6
    _restart_damaged(b, 3, lost_from=3)
    assert b.nodes[3].last_index == 2
    for _ in range(3):
        b.tick(75, only=[1])
        b.deliver()
    # The leader's match index for node 3 was 6; it must go back to where node 3's log ends.
    assert b.log(3) == b.log(1)
    assert not b.nodes[3].storage.needs_repair
    assert [e.index for e in b.committed[3]] == list(range(1, 7))
