"""Raft under faults: many seeded runs on a simulated network, checking safety at every event.

Each run draws its own fault rates from the seed: message loss (up to 20%), duplication
(up to 10%), delays up to 150 ms (so heavy reordering, against a 75 ms heartbeat and a
300-600 ms election timeout), plus random crashes and restarts from persisted storage,
random partitions, isolating the current leader, and healing. Proposals go to whichever
node believes it leads.

`InvariantChecker` (workbench/controller/raft/testing.py) asserts, on every append,
truncation, commit and role change: election safety, log matching, state machine safety
(applied sequences are prefixes of one another) and leader completeness. After the fault
phase the network heals and every node restarts: a leader must emerge and commit new
proposals on every node within a bounded virtual time.
"""

from __future__ import annotations

import random

import pytest

from workbench.controller.raft.messages import RequestVoteResponse
from workbench.controller.raft.node import NotLeader, RaftNode, Role
from workbench.controller.raft.testing import InvariantChecker, SimulatedNetwork

FAULT_STEPS = 3000  # x 10 ms of virtual time = 30 s of faults per run
ELECT_WITHIN = 300  # steps (3 s) for a leader to emerge once the network is healthy
COMMIT_WITHIN = 200  # steps (2 s) for proposals to reach every node after that


def stable_leader(net: SimulatedNetwork) -> RaftNode | None:
    leaders = net.leaders()
    if len(leaders) != 1:
        return None
    leader = leaders[0]
    if leader.term < max(n.term for n in net.live()):
        return None
    # It knows what is committed once an entry of its own term is (its leader-change entry).
    return leader if leader.storage.term_at(leader.commit_index) == leader.term else None


def run_scenario(seed: int, n: int, damage: bool = False) -> dict[str, int]:
    rng = random.Random(seed * 7919 + n)
    checker = InvariantChecker()
    net = SimulatedNetwork(
        n,
        seed,
        drop=rng.uniform(0, 0.2),
        duplicate=rng.uniform(0, 0.1),
        delay_ms=(1, rng.choice([5, 20, 60, 150])),
        checker=checker,
    )
    stats = {"proposed": 0, "crashes": 0, "partitions": 0, "leaders": 0, "damaged": 0}
    for step in range(FAULT_STEPS):
        r = rng.random()
        if r < 0.004:
            live = [i for i in net.ids if net.nodes[i] is not None]
            if live:
                net.crash(rng.choice(live))
                stats["crashes"] += 1
        elif r < 0.010:
            dead = [i for i in net.ids if net.nodes[i] is None]
            if dead:
                node = rng.choice(dead)
                lose_from = None
                # A damaged log (issue 12): the restarted node finds its log cut somewhere; one
                # damaged node at a time (damage on a majority can lose what they alone held).
                if damage and rng.random() < 0.5 and not any(s.needs_repair for s in net.storages.values()):
                    lose_from = rng.randint(1, max(1, net.storages[node].last_index()))
                    stats["damaged"] += 1
                net.restart(node, lose_from)
        elif r < 0.013:
            shuffled = net.ids[:]
            rng.shuffle(shuffled)
            cut = rng.randint(1, n - 1)
            net.partition(shuffled[:cut], shuffled[cut:])
            stats["partitions"] += 1
        elif r < 0.015 and net.leaders():
            net.isolate(rng.choice(net.leaders()).node_id)
            stats["partitions"] += 1
        elif r < 0.020:
            net.heal()
        if step % 3 == 0:
            for leader in net.leaders():
                try:
                    leader.propose({"t": "test", "seed": seed, "n": stats["proposed"]})
                    stats["proposed"] += 1
                except NotLeader:
                    pass
        net.step()

    # Liveness: heal everything; a leader must emerge and commit fresh proposals everywhere.
    net.heal()
    for i in net.ids:
        net.restart(i)
    net.drop, net.duplicate, net.delay_ms = 0.0, 0.0, (1, 10)
    net.run_until(lambda: stable_leader(net) is not None, ELECT_WITHIN)
    leader = stable_leader(net)
    assert leader is not None
    payloads = [{"t": "final", "k": k} for k in range(5)]
    last = max(leader.propose(p) for p in payloads)
    net.run_until(lambda: all(len(net.applied[i]) >= last for i in net.ids), COMMIT_WITHIN)
    assert [e.payload for e in checker.committed[last - 5 : last]] == payloads
    net.run(20)  # a heartbeat carrying the final commit index
    repairing = [i for i in net.ids if net.storages[i].needs_repair]
    assert not repairing, f"nodes {repairing} still wait for their repair"
    stats["leaders"] = len(checker.leaders)
    stats["committed"] = len(checker.committed)
    stats["delivered"] = net.delivered
    return stats


@pytest.mark.parametrize("n,seeds", [(3, range(200)), (5, range(1000, 1080))])
def test_safety_and_liveness_under_faults(n, seeds):
    totals: dict[str, int] = {}
    for seed in seeds:
        try:
            stats = run_scenario(seed, n)
        except AssertionError as e:
            raise AssertionError(f"seed {seed}, n={n}: {e}") from e
        for k, v in stats.items():
            totals[k] = totals.get(k, 0) + v
    # The runs must actually exercise the protocol, not idle.
    assert totals["leaders"] > len(seeds) * 3 and totals["committed"] > len(seeds) * 50, totals
    print(f"n={n}: {len(seeds)} seeds x {FAULT_STEPS} steps: {totals}")


@pytest.mark.parametrize("n,seeds", [(3, range(2000, 2060)), (5, range(3000, 3020))])
def test_safety_and_liveness_when_restarted_nodes_find_their_log_damaged(n, seeds):
    """A node's log loses a random suffix on restart (a bit flip found on open): no committed
    entry may be lost, and every damaged node is repaired once the network heals."""
    totals: dict[str, int] = {}
    for seed in seeds:
        try:
            stats = run_scenario(seed, n, damage=True)
        except AssertionError as e:
            raise AssertionError(f"seed {seed}, n={n}, damaged logs: {e}") from e
        for k, v in stats.items():
            totals[k] = totals.get(k, 0) + v
    assert totals["damaged"] > len(seeds), totals
    assert totals["committed"] > len(seeds) * 50, totals


# The real methods, for mutants that wrap them.
ORIGINAL = {name: getattr(RaftNode, name) for name in ("_on_request_vote", "_on_append_entries", "_become_leader")}


def _vote_without_log_check(self, m):
    self._last_log_id = lambda: (0, 0)  # every candidate looks up to date
    ORIGINAL["_on_request_vote"](self, m)


def _grant_every_vote(self, m):
    self._send(m.src, RequestVoteResponse(m.term if m.pre_vote else self.term, self.node_id, True, m.pre_vote))


def _commit_beyond_match(self, m):
    ORIGINAL["_on_append_entries"](self, m)
    if self.commit_index < m.leader_commit <= self.last_index:
        self._advance_commit(m.leader_commit)  # ignores that our tail may not match the leader


def _commit_by_counting_any_term(self):
    if self.role is Role.LEADER:
        candidate = sorted([self.last_index, *self._match.values()], reverse=True)[self._majority - 1]
        if candidate > self.commit_index:
            self._advance_commit(candidate)  # the Figure 8 mistake


def _become_leader_without_entry(self):
    append = self._append_local
    self._append_local = lambda payload: self.last_index  # no leader-change entry
    try:
        ORIGINAL["_become_leader"](self)
    finally:
        self._append_local = append


MUTANTS = {
    "vote ignores the log up-to-date check": [("_on_request_vote", _vote_without_log_check)],
    "votes twice in a term": [("_on_request_vote", _grant_every_vote)],
    "follower commits past the matching prefix": [("_on_append_entries", _commit_beyond_match)],
    "old-term entries committed by counting": [
        ("_maybe_commit", _commit_by_counting_any_term),
        ("_become_leader", _become_leader_without_entry),
    ],
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_the_checker_catches_a_broken_raft(monkeypatch, mutant):
    """The checker is only worth something if it fails on real bugs: break one rule at a time
    and expect some seed to violate an invariant."""
    for name, replacement in MUTANTS[mutant]:
        monkeypatch.setattr(RaftNode, name, replacement)
    for seed in range(100):
        try:
            run_scenario(seed, 5)
        except AssertionError:
            return
    pytest.fail(f"no seed exposed the mutant {mutant!r}")
