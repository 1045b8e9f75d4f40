"""Durable Raft state on disk, and the wire form of Raft messages."""

from __future__ import annotations

import json
import os

import pytest

from workbench.controller.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    MalformedMessage,
    ReadIndexRequest,
    RequestVote,
    decode,
    encode,
)
from workbench.controller.raft.storage import FileRaftStorage, MemoryRaftStorage


def entries(term: int, start: int, count: int) -> list[Entry]:
    return [Entry(term, i, {"t": "topic", "name": f"n{i}"}) for i in range(start, start + count)]


def test_term_vote_and_log_survive_reopen(tmp_path):
    s = FileRaftStorage(tmp_path)
    s.save_term_and_vote(3, 2)
    s.append(entries(1, 1, 3))
    s.append(entries(3, 4, 2))
    s.close()
    s = FileRaftStorage(tmp_path)
    assert (s.term, s.voted_for, s.last_index()) == (3, 2, 5)
    assert s.entry(4) == Entry(3, 4, {"t": "topic", "name": "n4"})
    assert s.term_at(0) == 0 and s.term_at(3) == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_truncation_on_conflict_is_durable_and_appends_continue(tmp_path):
    s = FileRaftStorage(tmp_path)
    s.append(entries(1, 1, 5))
    s.truncate_from(3)
    s.append(entries(2, 3, 1))
    s.close()
    s = FileRaftStorage(tmp_path)
    assert [(e.term, e.index) for e in s.entries(1, 10)] == [(1, 1), (1, 2), (2, 3)]


def test_appends_must_continue_the_log():
    s = MemoryRaftStorage()
    s.append(entries(1, 1, 2))
    with pytest.raises(ValueError):
        s.append(entries(1, 5, 1))


@pytest.mark.parametrize("damage", ["partial header", "partial body", "bad crc"])
def test_a_torn_tail_is_dropped_on_open(tmp_path, damage):
    s = FileRaftStorage(tmp_path)
    s.append(entries(1, 1, 3))
    s.close()
    path = tmp_path / "log.bin"
    good_size = path.stat().st_size
    data = bytearray(path.read_bytes())
    if damage == "partial header":
        data += b"\x00\x00"
    elif damage == "partial body":
        s2 = FileRaftStorage(tmp_path)
        s2.append(entries(1, 4, 1))
        s2.close()
        data = bytearray(path.read_bytes())[:-3]
    else:
        data[-2] ^= 0xFF  # corrupt the last entry's body: it must go, the first two stay
        good_size = None
    path.write_bytes(bytes(data))
    s = FileRaftStorage(tmp_path)
    expected = 2 if damage == "bad crc" else 3
    assert s.last_index() == expected
    # A whole entry with a bad CRC may have been acknowledged (a flipped bit, not a crash
    # mid-write): the member must be repaired before it votes. A partial entry never was.
    assert s.needs_repair == (damage == "bad crc")
    if good_size is not None:
        assert path.stat().st_size == good_size
    s.append(entries(1, expected + 1, 1))  # appends resume cleanly after the cut
    s.close()
    assert FileRaftStorage(tmp_path).last_index() == expected + 1


@pytest.mark.parametrize("where", ["length", "crc", "body"])
def test_damage_inside_the_log_cuts_it_there_and_is_remembered_until_repaired(tmp_path, where):
    s = FileRaftStorage(tmp_path)
    s.save_term_and_vote(2, 1)
    s.append(entries(1, 1, 10))
    s.close()
    path = tmp_path / "log.bin"
    data = bytearray(path.read_bytes())
    fourth = FileRaftStorage(tmp_path)._offsets[3]  # file offset of entry 4
    pos = {"length": fourth + 1, "crc": fourth + 5, "body": fourth + 12}[where]
    data[pos] ^= 0x10  # one bit; on the length, its entry now runs past the end of the file
    path.write_bytes(bytes(data))
    s = FileRaftStorage(tmp_path)
    assert s.last_index() == 3 and s.needs_repair
    assert s.damage is not None and "entry 4" in s.damage
    s.close()
    s = FileRaftStorage(tmp_path)  # restarted again before any repair: the log looks clean now
    assert (s.last_index(), s.needs_repair, s.term, s.voted_for) == (3, True, 2, 1)
    s.set_needs_repair(False)
    s.close()
    assert not FileRaftStorage(tmp_path).needs_repair


def test_state_file_is_replaced_atomically(tmp_path):
    s = FileRaftStorage(tmp_path)
    s.save_term_and_vote(1, None)
    s.save_term_and_vote(2, 3)
    assert json.loads((tmp_path / "state.json").read_text()) == {"term": 2, "voted_for": 3}
    (tmp_path / "state.tmp").write_text("{garbage")  # a crash between write and rename
    s.close()
    assert FileRaftStorage(tmp_path).term == 2
    assert os.stat(tmp_path).st_mode & 0o777 == 0o700


def test_memory_crash_keeps_what_was_persisted_and_detaches():
    s = MemoryRaftStorage()
    s.save_term_and_vote(4, 1)
    s.append(entries(4, 1, 2))
    survivor = s.crash()
    s.append(entries(4, 3, 1))  # the dead process can no longer reach the survivor
    assert (survivor.term, survivor.voted_for, survivor.last_index()) == (4, 1, 2)


def test_messages_round_trip_through_json():
    messages = [
        RequestVote(3, 1, 10, 2, pre_vote=True),
        AppendEntries(3, 1, 4, 2, (Entry(3, 5, {"t": "x"}), Entry(3, 6, {"t": "y"})), 4, seq=9),
        AppendEntriesResponse(3, 2, False, rejected_index=4, conflict_index=3, conflict_term=2, seq=9),
        ReadIndexRequest(3, 2, 17),
    ]
    for m in messages:
        assert decode(json.loads(json.dumps(encode(m)))) == m


@pytest.mark.parametrize(
    "obj",
    [
        [],
        {"type": "Nope"},
        {"type": "RequestVote", "term": "1", "src": 1, "last_log_index": 0, "last_log_term": 0},
        {"type": "RequestVote", "term": 1, "src": 1, "last_log_index": 0},
        {"type": "RequestVote", "term": -1, "src": 1, "last_log_index": 0, "last_log_term": 0},
        {"type": "TimeoutNow", "term": 1, "src": True},
        {
            "type": "AppendEntries",
            "term": 2,
            "src": 1,
            "prev_log_index": 0,
            "prev_log_term": 0,
            "entries": [[2, 2, {}]],
            "leader_commit": 0,
        },  # not contiguous with prev_log_index
        {
            "type": "AppendEntries",
            "term": 2,
            "src": 1,
            "prev_log_index": 0,
            "prev_log_term": 0,
            "entries": [[2, 1, "not a dict"]],
            "leader_commit": 0,
        },
    ],
)
def test_malformed_messages_are_rejected(obj):
    with pytest.raises(MalformedMessage):
        decode(obj)
