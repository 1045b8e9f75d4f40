"""The history of one chaos run: every send, every poll, every fault, as plain records.

Jepsen's Kafka workload keeps one history of operations and judges it afterwards; so does this
harness. Clients append from their own threads (a list append is atomic in CPython, and each
record is immutable once appended), the checker reads the finished history.

A send has one of four outcomes:

- ``ok``: acknowledged with a partition and an offset;
- ``ok-no-offset``: acknowledged *without* an offset. librdkafka's idempotent producer can
  deliver a message whose batch it knows was persisted but whose response it never read (an
  "implicit acknowledgement"): the delivery report then carries offset -1. Such a value must be
  in the log, but nothing can be said about where;
- ``failed``: the client gave up before the request could have reached a log (never sent);
- ``unknown``: the client gave up after the request may have been appended (a timeout, a lost
  connection, NOT_ENOUGH_REPLICAS_AFTER_APPEND). It may or may not be in the log.

A transaction (the ``txn`` workload, `Txn`) has one of three outcomes:

- ``committed``: ``commit_transaction()`` returned: every record of it must be read, once, in
  order, and by no read_committed reader before the commit was asked for;
- ``aborted``: the producer never asked to commit it, or asked to abort and the abort returned,
  or the commit failed and the abort that followed returned: none of its records may ever be read;
- ``unknown``: the commit was asked for and its answer never came (a fatal error, a timeout
  given up on): all of its records or none, never part of them.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OK = "ok"
OK_NO_OFFSET = "ok-no-offset"
FAILED = "failed"
UNKNOWN = "unknown"
OUTCOMES = (OK, OK_NO_OFFSET, FAILED, UNKNOWN)

COMMITTED = "committed"
ABORTED = "aborted"
TXN_OUTCOMES = (COMMITTED, ABORTED, UNKNOWN)

# librdkafka error names after which the record cannot have been appended anywhere.
DEFINITE_FAILURES = frozenset(
    {
        "_PURGE_QUEUE",
        "_MSG_SIZE_TOO_LARGE",
        "MSG_SIZE_TOO_LARGE",
        "_UNKNOWN_TOPIC",
        "UNKNOWN_TOPIC_OR_PART",
        "_UNKNOWN_PARTITION",
        "INVALID_RECORD",
        "CORRUPT_MESSAGE",
        "TOPIC_AUTHORIZATION_FAILED",
        "RECORD_LIST_TOO_LARGE",
        "_INVALID_ARG",
    }
)


def outcome_of_error(name: str) -> str:
    """`failed` for an error that proves the record was never appended, else `unknown`."""
    return FAILED if name in DEFINITE_FAILURES else UNKNOWN


@dataclass(frozen=True)
class Send:
    """One produce call and how it ended. `partition` is the partition asked for."""

    producer: str
    seq: int  # the producer's send order
    value: str
    partition: int
    outcome: str
    offset: int | None = None  # only for `ok`
    error: str | None = None
    time: float = 0.0  # seconds since the start of the run, when the outcome was known


@dataclass(frozen=True)
class Poll:
    """One record handed to a consumer. `reader` names the consumer; `session` counts its
    (re)assignments, so monotonicity is judged within one session; `mode` is "assign", "group"
    or "final" (the full read at the end, under assign)."""

    reader: str
    session: int
    mode: str
    partition: int
    offset: int
    value: str
    time: float = 0.0


@dataclass(frozen=True)
class Txn:
    """One transaction of a transactional producer and how it ended. `values` are
    ``(value, partition)`` in send order; `commit_asked` is when ``commit_transaction()`` was
    called (None: never), so a read_committed poll earlier than it read an open transaction."""

    producer: str
    txn: int  # the producer's transaction order
    values: list[tuple[str, int]]
    outcome: str  # TXN_OUTCOMES
    commit_asked: float | None = None
    error: str | None = None
    time: float = 0.0  # when the outcome was known


@dataclass
class Fault:
    """One nemesis action: what, on which brokers (and their roles), when, and what it did."""

    nemesis: str
    targets: list[int]
    roles: list[str]
    start: float
    end: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why the nemesis could not act (no root for tmpfs, ...)
    #: Seconds from the fault's end until every partition had its full ISR again (the runner's
    #: heal); None when it did not within the heal timeout.
    heal_s: float | None = None


@dataclass
class Observation:
    """An anomaly seen while running rather than in the history (a broker died on its own, a
    hostile batch was accepted, an acknowledged topic vanished). Judged by the checker too."""

    kind: str
    detail: str
    time: float = 0.0


class History:
    """Thread-safe enough for appends from client threads; read it only once they have stopped."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.sends: list[Send] = []
        self.polls: list[Poll] = []
        self.txns: list[Txn] = []  # the txn workload's transactions
        self.txn_polls: list[Poll] = []  # read_committed polls of the txn topic (markers leave gaps)
        self.txn_final_read_complete: dict[int, bool] = {}
        self.faults: list[Fault] = []
        self.observations: list[Observation] = []
        self.notes: list[str] = []
        self.final_read_complete: dict[int, bool] = {}  # partition -> did the final read reach its end
        self.final_high_watermarks: dict[int, int] = {}
        self.heal_timeouts = 0  # faults after which the ISR was not full again within the heal timeout
        self.epoch_bumps = 0  # partitions moved to a new producer epoch by librdkafka (KIP-360), plain producers
        self._lock = threading.Lock()

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def send(self, **kw: Any) -> None:
        self.sends.append(Send(time=self.now(), **kw))

    def poll(self, **kw: Any) -> None:
        self.polls.append(Poll(time=self.now(), **kw))

    def txn(self, **kw: Any) -> None:
        self.txns.append(Txn(time=self.now(), **kw))

    def txn_poll(self, **kw: Any) -> None:
        self.txn_polls.append(Poll(time=self.now(), **kw))

    def observe(self, kind: str, detail: str) -> None:
        self.observations.append(Observation(kind, detail, self.now()))

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(f"{self.now():8.2f}s {text}")

    def to_json(self) -> dict[str, Any]:
        return {
            "sends": [asdict(s) for s in self.sends],
            "polls": [asdict(p) for p in self.polls],
            "txns": [asdict(t) for t in self.txns],
            "txn_polls": [asdict(p) for p in self.txn_polls],
            "txn_final_read_complete": {str(k): v for k, v in self.txn_final_read_complete.items()},
            "faults": [asdict(f) for f in self.faults],
            "observations": [asdict(o) for o in self.observations],
            "notes": list(self.notes),
            "final_read_complete": {str(k): v for k, v in self.final_read_complete.items()},
            "final_high_watermarks": {str(k): v for k, v in self.final_high_watermarks.items()},
            "heal_timeouts": self.heal_timeouts,
            "epoch_bumps": self.epoch_bumps,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> History:
        h = cls()
        h.sends = [Send(**s) for s in data.get("sends", [])]
        h.polls = [Poll(**p) for p in data.get("polls", [])]
        h.txns = [Txn(**{**t, "values": [(v, int(p)) for v, p in t.get("values", [])]}) for t in data.get("txns", [])]
        h.txn_polls = [Poll(**p) for p in data.get("txn_polls", [])]
        h.txn_final_read_complete = {int(k): v for k, v in data.get("txn_final_read_complete", {}).items()}
        h.faults = [Fault(**f) for f in data.get("faults", [])]
        h.observations = [Observation(**o) for o in data.get("observations", [])]
        h.notes = list(data.get("notes", []))
        h.final_read_complete = {int(k): v for k, v in data.get("final_read_complete", {}).items()}
        h.final_high_watermarks = {int(k): v for k, v in data.get("final_high_watermarks", {}).items()}
        h.heal_timeouts = int(data.get("heal_timeouts", 0))
        h.epoch_bumps = int(data.get("epoch_bumps", 0))
        return h

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()))
