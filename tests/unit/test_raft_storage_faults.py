"""The Raft log on a disk that writes short, fills up or fails (issue 12, item 5).

A voter answers AppendEntries success only for entries fully on disk: a short
`pwrite` is looped until every byte is written, and a write that fails (ENOSPC,
EIO, EFBIG) is "not appended": nothing is answered, nothing is raised out of the
node, and the node backs off instead of failing once per message.
"""

from __future__ import annotations

import errno
import os
import random
import subprocess
import sys
import textwrap

import pytest

from workbench.controller.raft.messages import AppendEntries, AppendEntriesResponse, Entry, RequestVote
from workbench.controller.raft.node import STORAGE_BACKOFF_MS, NotLeader, RaftNode, Role
from workbench.controller.raft.storage import FileRaftStorage, MemoryRaftStorage

TIMEOUT = (300, 600)


def entries(term: int, start: int, count: int, size: int = 40) -> list[Entry]:
    return [Entry(term, i, {"t": "topic", "name": f"n{i}", "pad": "x" * size}) for i in range(start, start + count)]


def test_short_writes_are_completed_not_taken_as_durable(tmp_path, monkeypatch):
    """POSIX lets pwrite write fewer bytes than asked; every byte must still reach the file."""
    real_pwrite = os.pwrite
    calls = []

    def short_pwrite(fd, data, offset):
        calls.append(len(data))
        return real_pwrite(fd, bytes(data)[:7], offset)  # at most 7 bytes per call

    s = FileRaftStorage(tmp_path)
    monkeypatch.setattr(os, "pwrite", short_pwrite)
    s.append(entries(1, 1, 3))
    s.append(entries(1, 4, 2))
    monkeypatch.undo()
    s.close()
    assert len(calls) > 5
    reopened = FileRaftStorage(tmp_path)
    assert reopened.last_index() == 5
    assert reopened.entries(1, 6) == entries(1, 1, 5)


def test_a_write_past_the_file_size_limit_is_not_appended(tmp_path):
    """A real short write from the kernel: RLIMIT_FSIZE makes pwrite write what fits, then
    fail with EFBIG, as a full disk does with ENOSPC. The append must raise, and on reopen
    every append that returned is there."""
    script = textwrap.dedent(
        f"""
        import json, os, resource, signal, sys
        from workbench.controller.raft.messages import Entry
        from workbench.controller.raft.storage import FileRaftStorage
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        s = FileRaftStorage({str(tmp_path)!r})
        s.append([Entry(1, 1, {{"pad": "a" * 100}})])
        limit = os.path.getsize({str(tmp_path / "log.bin")!r}) + 60  # half of the next entry
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        acked = [1]
        for i in (2, 3):
            try:
                s.append([Entry(1, i, {{"pad": "b" * 100}})])
                acked.append(i)
            except OSError as e:
                print(json.dumps({{"acked": acked, "errno": e.errno}}))
                sys.exit(0)
        print(json.dumps({{"acked": acked, "errno": None}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=os.getcwd())
    assert out.returncode == 0, out.stderr
    import json

    result = json.loads(out.stdout)
    assert result["errno"] == errno.EFBIG, result
    assert result["acked"] == [1]
    reopened = FileRaftStorage(tmp_path)
    assert reopened.last_index() == 1
    assert reopened.entry(1).payload == {"pad": "a" * 100}
    # And the log takes new entries once there is room again.
    reopened.append([Entry(2, 2, {"after": True})])
    reopened.close()
    assert FileRaftStorage(tmp_path).last_index() == 2


class FlakyStorage(MemoryRaftStorage):
    """Memory storage whose writes fail with `error` while `broken` is set (a full disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False
        self.attempts = 0

    def _fail(self) -> None:
        if self.broken:
            self.attempts += 1
            raise OSError(errno.ENOSPC, "No space left on device")

    def _persist_append(self, entries):
        self._fail()

    def _persist_state(self, term, voted_for):
        self._fail()


def follower(storage: FlakyStorage) -> RaftNode:
    node = RaftNode(2, [1, 2, 3], storage, election_timeout_ms=TIMEOUT, heartbeat_ms=75, rng=random.Random(2))
    node.tick(0)
    return node


def append_from_leader(node: RaftNode, prev: int, new: list[Entry], seq: int) -> list[AppendEntriesResponse]:
    node.receive(AppendEntries(1, 1, prev, 1 if prev else 0, tuple(new), 0, seq))
    return [out.message for out in node.drain() if isinstance(out.message, AppendEntriesResponse)]


def test_a_follower_on_a_full_disk_answers_no_success_and_backs_off():
    storage = FlakyStorage()
    storage.save_term_and_vote(1, None)
    node = follower(storage)
    assert [r.success for r in append_from_leader(node, 0, entries(1, 1, 2), seq=1)] == [True]

    storage.broken = True
    now = 1000
    node.tick(now)
    replies = append_from_leader(node, 2, entries(1, 3, 1), seq=2)  # must not raise
    assert not any(r.success for r in replies)
    assert node.last_index == 2 and node.storage_failures == 1
    assert isinstance(node.last_storage_error, OSError)
    # Resent at once (as a leader does): within the backoff no write is even tried.
    for seq in range(3, 13):
        assert not any(r.success for r in append_from_leader(node, 2, entries(1, 3, 1), seq=seq))
    assert storage.attempts == 1
    # The node keeps following this leader: no election from a follower that cannot write.
    assert node.role is Role.FOLLOWER and node.leader_id == 1

    node.tick(now + STORAGE_BACKOFF_MS[0] + 1)
    append_from_leader(node, 2, entries(1, 3, 1), seq=20)
    assert storage.attempts == 2  # retried after the backoff (still full)
    storage.broken = False
    node.tick(now + STORAGE_BACKOFF_MS[1] + 1)
    replies = append_from_leader(node, 2, entries(1, 3, 1), seq=21)
    assert [(r.success, r.match_index) for r in replies] == [(True, 3)]


def test_a_leader_that_cannot_append_refuses_the_proposal():
    storage = FlakyStorage()
    node = RaftNode(1, [1], storage, election_timeout_ms=TIMEOUT, heartbeat_ms=75, rng=random.Random(1))
    node.tick(0)
    node.tick(TIMEOUT[1] + 1)
    assert node.is_leader
    storage.broken = True
    with pytest.raises(NotLeader):
        node.propose({"t": "topic", "name": "lost"})
    assert node.storage_failures == 1
    assert all(e.payload.get("name") != "lost" for e in storage.entries(1, storage.last_index() + 1))


def test_a_node_that_cannot_save_its_vote_neither_campaigns_nor_grants():
    storage = FlakyStorage()
    node = follower(storage)
    storage.broken = True
    node.tick(TIMEOUT[1] + 1)  # pre-vote (no write)
    node.drain()
    node.receive(RequestVote(1, 1, 0, 0, pre_vote=False))  # a real vote needs a durable write
    grants = [out.message for out in node.drain()]
    assert not any(getattr(m, "granted", False) for m in grants)
    assert node.term == 0 and node.voted_for is None
