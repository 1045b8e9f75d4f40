"""KIP-227 incremental fetch sessions: Kafka's FetchSession, FetchSessionCache and FetchManager.

A fetcher that keeps asking for the same partitions can open a session (Fetch
v7+, SessionId 0 with SessionEpoch 0). The broker remembers the partitions
and their fetch positions; later requests (SessionEpoch 1, 2, ...) name only
the partitions whose position changed (and `ForgottenTopicsData` for those
dropped), and the answer names only partitions with something new: records,
a moved high watermark / last stable offset / log start offset, or an error.

Rules, as Kafka's `FetchManager.newContext`:

* SessionId 0, epoch -1: a sessionless full fetch (session id 0 in the answer);
* SessionId 0, epoch 0: a full fetch that opens a session (if the cache
  admits it; otherwise session id 0 and the client carries on sessionless);
* SessionId S, epoch -1: close S, then a sessionless full fetch;
* SessionId S, epoch 0: close S, open a new session;
* SessionId S, epoch N > 0: incremental; unknown S is FETCH_SESSION_ID_NOT_FOUND,
  N not the expected epoch INVALID_FETCH_SESSION_EPOCH (the client then
  starts over with a full fetch).

The cache holds at most `max_slots` sessions
(`max.incremental.fetch.session.cache.slots`, Kafka's default 1000). When it
is full a new session may evict, as Kafka's `FetchSessionCache.tryEvict`: first
the least recently used session idle longer than `eviction_ms` (Kafka:
120 s); otherwise the session with the lowest (privileged, size), if the new
session ranks higher: follower sessions are privileged, bigger sessions beat
smaller ones.

I/O-free: the Fetch handler reads the partitions and calls back here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workbench.protocol.errors import ErrorCode, KafkaProtocolError

__all__ = ["FetchSession", "FetchSessionCache", "FetchView", "PartitionRequest"]

INITIAL_EPOCH = 0
FINAL_EPOCH = -1
DEFAULT_SLOTS = 1000  # max.incremental.fetch.session.cache.slots
DEFAULT_EVICTION_MS = 120_000  # Kafka's min.incremental.fetch.session.eviction.ms

TopicPartition = tuple[str, int]


@dataclass
class PartitionRequest:
    """One partition to read, with the attributes `handlers/fetch.py` reads from a request's partition."""

    partition: int
    fetch_offset: int
    partition_max_bytes: int
    current_leader_epoch: int = -1
    last_fetched_epoch: int = -1
    log_start_offset: int = -1
    # What the fetcher was last told (an incremental answer omits a partition where nothing moved).
    sent_hw: int | None = None
    sent_lso: int | None = None
    sent_log_start: int | None = None


@dataclass
class _Topic:
    topic: str
    partitions: list[PartitionRequest]


@dataclass
class FetchView:
    """The request as `_read_all` sees it (`.topics`, `.max_bytes`, ...), built from a session."""

    topics: list[_Topic]
    max_bytes: int
    isolation_level: int
    replica_id: int


@dataclass
class FetchSession:
    id: int
    privileged: bool
    partitions: dict[TopicPartition, PartitionRequest] = field(default_factory=dict)
    epoch: int = 1  # the epoch the next incremental request must carry
    last_used: float = 0.0

    def size(self) -> int:
        return len(self.partitions)


def _from_request(fp: Any) -> PartitionRequest:
    return PartitionRequest(
        partition=fp.partition,
        fetch_offset=fp.fetch_offset,
        partition_max_bytes=fp.partition_max_bytes,
        current_leader_epoch=getattr(fp, "current_leader_epoch", -1),
        last_fetched_epoch=getattr(fp, "last_fetched_epoch", -1),
        log_start_offset=getattr(fp, "log_start_offset", -1),
    )


class FetchSessionCache:
    def __init__(
        self,
        max_slots: int = DEFAULT_SLOTS,
        eviction_ms: int = DEFAULT_EVICTION_MS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_slots = max_slots
        self.eviction_ms = eviction_ms
        self._clock = clock
        self.sessions: dict[int, FetchSession] = {}
        self.evictions = 0

    # ------------------------------------------------------------------ cache

    def _new_id(self) -> int:
        while True:
            sid = random.randint(1, 0x7FFFFFFF)
            if sid not in self.sessions:
                return sid

    def _try_admit(self, privileged: bool, size: int) -> bool:
        if self.max_slots <= 0:
            return False
        if len(self.sessions) < self.max_slots:
            return True
        now = self._clock()
        stale = [s for s in self.sessions.values() if (now - s.last_used) * 1000 > self.eviction_ms]
        if stale:
            victim = min(stale, key=lambda s: s.last_used)
        else:
            victim = min(self.sessions.values(), key=lambda s: (s.privileged, s.size(), s.last_used))
            if (victim.privileged, victim.size()) >= (privileged, size):
                return False
        del self.sessions[victim.id]
        self.evictions += 1
        return True

    # ------------------------------------------------------------------ Fetch

    def open(self, body: Any, replica_id: int) -> tuple[FetchView, FetchSession | None]:
        """Start serving a Fetch v7+: the partitions to read and the session (None = sessionless).

        Raises KafkaProtocolError(FETCH_SESSION_ID_NOT_FOUND / INVALID_FETCH_SESSION_EPOCH).
        """
        sid, epoch = body.session_id, body.session_epoch
        view = FetchView([], body.max_bytes, getattr(body, "isolation_level", 0), replica_id)
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
            if sid:
                self.sessions.pop(sid, None)
            view.topics = [_Topic(t.topic, [_from_request(fp) for fp in t.partitions]) for t in body.topics]
            size = sum(len(t.partitions) for t in view.topics)
            if epoch == FINAL_EPOCH or not self._try_admit(replica_id >= 0, size):
                return view, None
            created = FetchSession(self._new_id(), replica_id >= 0, last_used=self._clock())
            for t in view.topics:
                for p in t.partitions:
                    created.partitions[(t.topic, p.partition)] = p
            self.sessions[created.id] = created
            return view, created
        session = self.sessions.get(sid)
        if session is None:
            raise KafkaProtocolError(ErrorCode.FETCH_SESSION_ID_NOT_FOUND, f"fetch session {sid}")
        if epoch != session.epoch:
            raise KafkaProtocolError(
                ErrorCode.INVALID_FETCH_SESSION_EPOCH, f"session {sid}: epoch {epoch}, expected {session.epoch}"
            )
        for t in body.topics:
            for fp in t.partitions:
                new = _from_request(fp)
                old = session.partitions.get((t.topic, fp.partition))
                if old is not None:
                    new.sent_hw, new.sent_lso, new.sent_log_start = old.sent_hw, old.sent_lso, old.sent_log_start
                session.partitions[(t.topic, fp.partition)] = new
        for ft in getattr(body, "forgotten_topics_data", None) or []:
            for partition in ft.partitions:
                session.partitions.pop((ft.topic, partition), None)
        session.epoch = session.epoch + 1 if session.epoch < 0x7FFFFFFF else 1
        session.last_used = self._clock()
        by_topic: dict[str, list[PartitionRequest]] = {}
        for (topic, _), p in session.partitions.items():
            by_topic.setdefault(topic, []).append(p)
        view.topics = [_Topic(t, ps) for t, ps in by_topic.items()]
        return view, session

    @staticmethod
    def answer(session: FetchSession | None, responses: list[dict], *, incremental: bool) -> list[dict]:
        """Record what is being sent; for an incremental fetch keep only partitions with news."""
        if session is None:
            return responses
        out = []
        for t in responses:
            parts = []
            for part in t["partitions"]:
                state = session.partitions.get((t["topic"], part["partition_index"]))
                news = (
                    state is None
                    or part["records"]
                    or part["error_code"]
                    or "diverging_epoch" in part
                    or state.sent_hw != part["high_watermark"]
                    or state.sent_lso != part["last_stable_offset"]
                    or state.sent_log_start != part["log_start_offset"]
                )
                if state is not None:
                    state.sent_hw = part["high_watermark"]
                    state.sent_lso = part["last_stable_offset"]
                    state.sent_log_start = part["log_start_offset"]
                if news or not incremental:
                    parts.append(part)
            if parts:
                out.append({"topic": t["topic"], "partitions": parts})
        return out


class FetchSessionHandler:
    """The fetcher's side of a session (Kafka's client `FetchSessionHandler`), for the replica fetcher.

    `build` takes every partition to fetch with its request fields and returns what to send:
    all of them on a full fetch (epoch 0), else only those whose fields changed, plus the
    partitions to forget. `handle_response` moves the epoch on, or starts over (a full fetch)
    when the leader answered without a session or with a session error.
    """

    def __init__(self) -> None:
        self.session_id = 0
        self.epoch = INITIAL_EPOCH
        self._sent: dict[TopicPartition, tuple[Any, ...]] = {}

    def build(
        self, wanted: dict[TopicPartition, tuple[Any, ...]]
    ) -> tuple[int, int, dict[TopicPartition, tuple[Any, ...]], list[tuple[str, list[int]]]]:
        """(session id, epoch, partitions to name, forgotten topics)."""
        if self.session_id == 0 or self.epoch == INITIAL_EPOCH:
            self.session_id, self.epoch = 0, INITIAL_EPOCH
            self._sent = dict(wanted)
            return 0, INITIAL_EPOCH, dict(wanted), []
        changed = {tp: fields for tp, fields in wanted.items() if self._sent.get(tp) != fields}
        gone: dict[str, list[int]] = {}
        for topic, partition in self._sent.keys() - wanted.keys():
            gone.setdefault(topic, []).append(partition)
        self._sent = dict(wanted)
        return self.session_id, self.epoch, changed, sorted(gone.items())

    def handle_response(self, error_code: int, session_id: int) -> None:
        if error_code or not session_id:
            # No session (cache full, sessionless leader), or the session is gone (evicted, leader
            # restarted: FETCH_SESSION_ID_NOT_FOUND / INVALID_FETCH_SESSION_EPOCH): a full fetch next.
            self.reset()
            return
        self.session_id = session_id
        self.epoch = self.epoch + 1 if self.epoch < 0x7FFFFFFF else 1

    def reset(self) -> None:
        self.session_id, self.epoch, self._sent = 0, INITIAL_EPOCH, {}
