"""The checker: judges a finished `History` the way Jepsen's Kafka workload does.

Anomaly kinds (each one is a broken promise, never an availability hiccup):

- ``lost_write``: acknowledged (with or without an offset), but absent from a final read that
  reached the end of its partition.
- ``unseen``: acknowledged and never read by anyone, where the final read did *not* reach the end
  of the partition (so we cannot tell lost from slow; a healthy run has none).
- ``duplicate``: one value stored at two offsets (the idempotent producer promises once).
- ``inconsistent_offset``: two values read at one (partition, offset) across all reads, an
  acknowledged offset that holds another value, or a value read in a partition it was not sent to.
- ``nonmonotonic_poll``: under ``assign``, a consumer handed an offset at or below one it already
  had in that partition (in the same assignment session).
- ``poll_skip``: under ``assign``, a consumer handed an offset past the next one: in a
  non-compacted, non-transactional log every offset holds a record, so a gap is a hole. The final
  read also has to start at the log start (0 here: the harness never deletes records).
- ``nonmonotonic_send``: one producer's acknowledged offsets in one partition not increasing in
  its send order (the idempotent producer keeps order per partition).
- anything the run observed (`History.observations`): ``broker_crash``, ``hostile_accepted``,
  ``lost_topic``, ``fatal_producer_error`` (librdkafka's idempotent producer gave up, e.g. on
  OUT_OF_ORDER_SEQUENCE_NUMBER: the broker lost records it had acknowledged to it),
  ``broker_wont_start``, ``client_died`` ...

Group consumers (``mode="group"``) may legitimately be handed an offset again after a rebalance,
so their polls count for the duplicate and inconsistent-offset checks only.

Transactions: `check(history, extra_checks=[...])` takes further checks (a function from the
history to ``{kind: [examples]}``); aborted reads and the other transactional anomalies plug in
there once the workload writes transactionally (see `TRANSACTIONAL_CHECKS`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from tests.chaos.history import OK, OK_NO_OFFSET, OUTCOMES, History

ASSIGN_MODES = ("assign", "final")
EXAMPLES_KEPT = 20  # examples per anomaly kind in a report; counts are always complete

ExtraCheck = Callable[[History], dict[str, list[str]]]

# Checks for transactional histories (aborted_read, G1c ...) go here when the workload gains
# transactions; `check` runs them with the others.
TRANSACTIONAL_CHECKS: list[ExtraCheck] = []


@dataclass
class Report:
    """What the checker found. `counts[kind]` is exact; `anomalies[kind]` keeps a few examples."""

    counts: dict[str, int] = field(default_factory=dict)
    anomalies: dict[str, list[str]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not any(self.counts.values())

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        kept = self.anomalies.setdefault(kind, [])
        if len(kept) < EXAMPLES_KEPT:
            kept.append(example)

    def to_json(self) -> dict[str, Any]:
        return {"valid": self.valid, "counts": self.counts, "anomalies": self.anomalies, "stats": self.stats}


def check(history: History, extra_checks: Iterable[ExtraCheck] = (), log_start: int = 0) -> Report:
    """Judge `history`; `log_start` is where every partition's log begins (no deletions: 0)."""
    report = Report()
    sends = history.sends
    polls = history.polls

    # Every (partition, offset) -> values read there; every value -> where it was read.
    at: dict[tuple[int, int], set[str]] = defaultdict(set)
    where: dict[str, set[tuple[int, int]]] = defaultdict(set)
    final_values: set[str] = set()
    for p in polls:
        at[(p.partition, p.offset)].add(p.value)
        where[p.value].add((p.partition, p.offset))
        if p.mode == "final":
            final_values.add(p.value)

    for (partition, offset), values in sorted(at.items()):
        if len(values) > 1:
            report.add("inconsistent_offset", f"p{partition}@{offset} read as {sorted(values)}")
    for value, places in sorted(where.items()):
        if len(places) > 1:
            report.add("duplicate", f"{value} stored at {sorted(places)}")

    sent_to = {s.value: s.partition for s in sends}
    for value, places in sorted(where.items()):
        wrong = sorted(pl for pl in places if value in sent_to and pl[0] != sent_to[value])
        if wrong:
            report.add("inconsistent_offset", f"{value} sent to p{sent_to[value]} but read at {wrong}")

    for s in sends:
        if s.outcome not in (OK, OK_NO_OFFSET):
            continue
        if s.outcome == OK and s.offset is not None:
            held = at.get((s.partition, s.offset))
            if held and s.value not in held:
                report.add(
                    "inconsistent_offset",
                    f"{s.value} acknowledged at p{s.partition}@{s.offset}, which holds {sorted(held)}",
                )
        if s.value in final_values:
            continue
        complete = history.final_read_complete.get(s.partition, False)
        if complete:
            where_ack = f"p{s.partition}@{s.offset}" if s.outcome == OK else f"p{s.partition} (no offset)"
            seen = " (read earlier, gone at the end)" if s.value in where else ""
            report.add("lost_write", f"{s.value} acknowledged at {where_ack}{seen}")
        elif s.value not in where:
            report.add("unseen", f"{s.value} acknowledged in p{s.partition}, never read")

    _check_polls(history, report, log_start)
    _check_send_order(history, report)

    for o in history.observations:
        report.add(o.kind, f"{o.time:.2f}s {o.detail}")
    for extra in [*TRANSACTIONAL_CHECKS, *extra_checks]:
        for kind, examples in extra(history).items():
            for example in examples:
                report.add(kind, example)

    outcomes = Counter(s.outcome for s in sends)
    read_values = set(where)
    report.stats = {
        "sends": {o: outcomes.get(o, 0) for o in OUTCOMES},
        "polls": dict(Counter(p.mode for p in polls)),
        "distinct_values_read": len(read_values),
        "failed_but_present": sum(1 for s in sends if s.outcome not in (OK, OK_NO_OFFSET) and s.value in read_values),
        "faults": dict(Counter(f.nemesis for f in history.faults if f.skipped is None)),
        "skipped_faults": dict(Counter(f.nemesis for f in history.faults if f.skipped is not None)),
    }
    return report


def _check_polls(history: History, report: Report, log_start: int) -> None:
    last: dict[tuple[str, int, int], int] = {}
    for p in history.polls:
        if p.mode not in ASSIGN_MODES:
            continue
        key = (p.reader, p.session, p.partition)
        prev = last.get(key)
        if prev is None:
            if p.mode == "final" and p.offset > log_start:
                report.add(
                    "poll_skip", f"{p.reader} p{p.partition}: final read began at {p.offset}, log starts at {log_start}"
                )
        elif p.offset <= prev:
            report.add(
                "nonmonotonic_poll", f"{p.reader}/{p.session} p{p.partition}: {prev} then {p.offset} at {p.time:.1f}s"
            )
        elif p.offset > prev + 1:
            report.add("poll_skip", f"{p.reader}/{p.session} p{p.partition}: {prev} then {p.offset} at {p.time:.1f}s")
        last[key] = p.offset  # judge the next poll against where the consumer now is


def _check_send_order(history: History, report: Report) -> None:
    by_stream: dict[tuple[str, int], list[tuple[int, int, str]]] = defaultdict(list)
    for s in history.sends:
        if s.outcome == OK and s.offset is not None:
            by_stream[(s.producer, s.partition)].append((s.seq, s.offset, s.value))
    for (producer, partition), acks in sorted(by_stream.items()):
        acks.sort()
        for (_, o1, v1), (_, o2, v2) in pairwise(acks):
            if o2 <= o1:
                report.add("nonmonotonic_send", f"{producer} p{partition}: {v1}@{o1} sent before {v2}@{o2}")
