"""Raft messages and log entries, and their JSON form on the wire.

Every message carries the sender (`src`) and the sender's `term`, so the node
can apply the term rules of Raft §3.3 ("if a server receives a request with a
stale term number, it rejects the request") in one place.

On the wire a message is a JSON object `{"type": <name>, **fields}`. `decode`
checks every field's type and raises `MalformedMessage` for anything else: a
peer that sends garbage loses its connection, never corrupts the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


class MalformedMessage(ValueError):
    """A frame from a peer that is not a well-formed Raft message."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One record of the replicated log. `payload` is a JSON-serialisable metadata record."""

    term: int
    index: int
    payload: dict[str, Any]

    @property
    def is_control(self) -> bool:
        """True for records written by Raft itself (the leader-change record), not by the user."""
        return str(self.payload.get("t", "")).startswith("raft.")


# The record a new leader appends at the start of its term (Raft §5.4.2 / thesis §6.4:
# a leader must commit an entry of its own term before it knows what is committed).
# Named after KRaft's LeaderChangeMessage control record (KIP-595); consumers of the
# metadata log skip unknown record types, so it is harmless to replay.
LEADER_CHANGE = "raft.leader_change"


@dataclass(frozen=True, slots=True)
class RequestVote:
    """RequestVote (Raft §5.2), or a pre-vote (thesis §9.6) when `pre_vote` is set.

    A pre-vote carries the term the candidate *would* use (its term + 1) and changes
    no state on the receiver. `transfer` marks an election started by TimeoutNow
    (thesis §3.10), which voters honour even while they still hear from a leader.
    """

    term: int
    src: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class RequestVoteResponse:
    term: int
    src: int
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """AppendEntries (Raft §5.3); also the heartbeat. `seq` numbers the leader's sends
    so a response can confirm leadership for a ReadIndex (thesis §6.4)."""

    term: int
    src: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    seq: int = 0


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse:
    """Reply to AppendEntries. On success `match_index` is the last index known to match
    the leader; on rejection `conflict_index`/`conflict_term` let the leader skip a whole
    term per round trip (the optimisation sketched at the end of Raft §5.3)."""

    term: int
    src: int
    success: bool
    match_index: int = 0
    rejected_index: int = 0
    conflict_index: int = 0
    conflict_term: int = 0  # 0: the follower has no entry at rejected_index at all
    seq: int = 0


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer (thesis §3.10): the leader tells a caught-up follower to
    start an election at once."""

    term: int
    src: int


@dataclass(frozen=True, slots=True)
class ReadIndexRequest:
    """A follower asks its leader for a read index on behalf of a local reader."""

    term: int
    src: int
    read_id: int


@dataclass(frozen=True, slots=True)
class ReadIndexResponse:
    term: int
    src: int
    read_id: int
    index: int


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | TimeoutNow
    | ReadIndexRequest
    | ReadIndexResponse
)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A message the node wants delivered to voter `to`."""

    to: int
    message: Message = field()


_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        RequestVote,
        RequestVoteResponse,
        AppendEntries,
        AppendEntriesResponse,
        TimeoutNow,
        ReadIndexRequest,
        ReadIndexResponse,
    )
}


def encode(message: Message) -> dict[str, Any]:
    """The JSON-serialisable form of `message`."""
    out: dict[str, Any] = {"type": type(message).__name__}
    for f in fields(message):
        value = getattr(message, f.name)
        if f.name == "entries":
            value = [[e.term, e.index, e.payload] for e in value]
        out[f.name] = value
    return out


def _int(obj: dict[str, Any], name: str, default: int | None = None) -> int:
    value = obj.get(name, default)
    if type(value) is not int or value < 0:
        raise MalformedMessage(f"field {name!r} must be a non-negative integer, got {value!r}")
    return value


def _bool(obj: dict[str, Any], name: str) -> bool:
    value = obj.get(name, False)
    if type(value) is not bool:
        raise MalformedMessage(f"field {name!r} must be a boolean, got {value!r}")
    return value


def _entries(obj: dict[str, Any]) -> tuple[Entry, ...]:
    raw = obj.get("entries")
    if not isinstance(raw, list):
        raise MalformedMessage("field 'entries' must be a list")
    out = []
    for item in raw:
        if (
            not isinstance(item, list)
            or len(item) != 3
            or type(item[0]) is not int
            or type(item[1]) is not int
            or item[0] < 1
            or item[1] < 1
            or not isinstance(item[2], dict)
        ):
            raise MalformedMessage(f"malformed entry {item!r}")
        out.append(Entry(item[0], item[1], item[2]))
    return tuple(out)


def decode(obj: Any) -> Message:
    """The message `obj` (a decoded JSON value) describes; raises `MalformedMessage`."""
    if not isinstance(obj, dict):
        raise MalformedMessage("a message must be a JSON object")
    cls = _TYPES.get(obj.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise MalformedMessage(f"unknown message type {obj.get('type')!r}")
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name == "entries":
            kwargs[f.name] = _entries(obj)
        elif f.type == "bool":
            kwargs[f.name] = _bool(obj, f.name)
        else:
            default = f.default if isinstance(f.default, int) else None  # MISSING when required
            kwargs[f.name] = _int(obj, f.name, default)
    message = cls(**kwargs)
    if isinstance(message, AppendEntries):
        for offset, entry in enumerate(message.entries, start=1):
            if entry.index != message.prev_log_index + offset or entry.term > message.term:
                raise MalformedMessage(
                    "entries must follow prev_log_index contiguously, with terms no later than the leader's"
                )
    return message
