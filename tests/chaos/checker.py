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
history to ``{kind: [examples]}``); `TRANSACTIONAL_CHECKS` (always run; a history without
transactions passes them) judge the txn workload's read_committed polls (`History.txn_polls`,
where markers and aborted records leave gaps, so no gap check) against its `History.txns`:

- ``txn_aborted_read``: a record of an aborted transaction was read;
- ``txn_uncommitted_read``: a record of a committed (or unknown) transaction was read before its
  commit was asked for, i.e. while the transaction was open;
- ``txn_lost_commit``: a committed transaction's record is absent from a complete final read;
- ``txn_unseen``: the same, where the final read did not reach the end (lost or slow);
- ``txn_torn``: an unknown transaction partly in a complete final read (all or nothing);
- ``txn_duplicate``: one record at two offsets; ``txn_inconsistent_offset``: two records at one
  offset, or a record read in a partition it was not sent to;
- ``txn_nonmonotonic_poll``: under ``assign``, an offset at or below one already read (per session);
- ``txn_out_of_order``: one producer's records in a partition read in another order than sent
  (transaction by transaction, record by record).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from tests.chaos.history import ABORTED, COMMITTED, OK, OK_NO_OFFSET, OUTCOMES, TXN_OUTCOMES, UNKNOWN, History

ASSIGN_MODES = ("assign", "final")
EXAMPLES_KEPT = 20  # examples per anomaly kind in a report; counts are always complete

ExtraCheck = Callable[[History], dict[str, list[str]]]


def check_transactions(history: History) -> dict[str, list[str]]:
    """The transactional anomalies of `history` (see the module docstring)."""
    found: dict[str, list[str]] = defaultdict(list)
    if not history.txns and not history.txn_polls:
        return found
    # value -> (transaction, index in it, partition sent to)
    sent: dict[str, tuple[Any, int, int]] = {}
    for t in history.txns:
        for i, (value, partition) in enumerate(t.values):
            sent[value] = (t, i, partition)
    at: dict[tuple[int, int], set[str]] = defaultdict(set)
    where: dict[str, set[tuple[int, int]]] = defaultdict(set)
    final: dict[str, tuple[int, int]] = {}
    for p in history.txn_polls:
        at[(p.partition, p.offset)].add(p.value)
        where[p.value].add((p.partition, p.offset))
        if p.mode == "final":
            final[p.value] = (p.partition, p.offset)
        origin = sent.get(p.value)
        if origin is None:
            found["txn_inconsistent_offset"].append(
                f"{p.reader} read {p.value!r} at p{p.partition}@{p.offset}: never sent"
            )
            continue
        t, _i, partition = origin
        if partition != p.partition:
            found["txn_inconsistent_offset"].append(
                f"{p.value} sent to p{partition}, read at p{p.partition}@{p.offset}"
            )
        if t.outcome == ABORTED:
            found["txn_aborted_read"].append(
                f"{p.reader} read {p.value} (p{p.partition}@{p.offset}) at {p.time:.1f}s of aborted "
                f"{t.producer}/t{t.txn} ({t.error or 'aborted by the producer'})"
            )
        elif t.commit_asked is None or p.time < t.commit_asked:
            found["txn_uncommitted_read"].append(
                f"{p.reader} read {p.value} at {p.time:.1f}s, commit asked at {t.commit_asked}"
            )
    for (partition, offset), values in sorted(at.items()):
        if len(values) > 1:
            found["txn_inconsistent_offset"].append(f"p{partition}@{offset} read as {sorted(values)}")
    for value, places in sorted(where.items()):
        if len(places) > 1:
            found["txn_duplicate"].append(f"{value} stored at {sorted(places)}")
    complete = history.txn_final_read_complete
    for t in history.txns:
        if t.outcome == COMMITTED:
            for value, partition in t.values:
                if value in final:
                    continue
                if complete.get(partition, False):
                    found["txn_lost_commit"].append(f"{value} of committed {t.producer}/t{t.txn} not in p{partition}")
                elif value not in where:
                    found["txn_unseen"].append(f"{value} of committed {t.producer}/t{t.txn} never read")
        elif t.outcome == UNKNOWN:
            judged = [(v, v in final) for v, p in t.values if complete.get(p, False)]
            if any(present for _v, present in judged) and not all(present for _v, present in judged):
                missing = [v for v, present in judged if not present]
                found["txn_torn"].append(f"{t.producer}/t{t.txn} ({t.error}) partly visible: missing {missing}")
    # Offsets only go up within one reader's session; a producer's records in a partition come
    # in its send order.
    last: dict[tuple[str, int, int], int] = {}
    order: dict[tuple[str, int, int, str], tuple[int, int, str]] = {}
    for p in history.txn_polls:
        if p.mode not in ASSIGN_MODES:
            continue
        key = (p.reader, p.session, p.partition)
        prev = last.get(key)
        if prev is not None and p.offset <= prev:
            found["txn_nonmonotonic_poll"].append(f"{p.reader}/{p.session} p{p.partition}: {prev} then {p.offset}")
        last[key] = p.offset
        origin = sent.get(p.value)
        if origin is None:
            continue
        t, i, _partition = origin
        okey = (p.reader, p.session, p.partition, t.producer)
        before = order.get(okey)
        if before is not None and (t.txn, i) <= before[:2]:
            found["txn_out_of_order"].append(
                f"{p.reader}/{p.session} p{p.partition}: {before[2]} then {p.value} (offset {p.offset})"
            )
        order[okey] = (t.txn, i, p.value)
    return found


# Checks for transactional histories; `check` runs them with the others.
TRANSACTIONAL_CHECKS: list[ExtraCheck] = [check_transactions]


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
    txn_outcomes = Counter(t.outcome for t in history.txns)
    report.stats = {
        "txns": {o: txn_outcomes.get(o, 0) for o in TXN_OUTCOMES},
        "txn_records_committed": sum(len(t.values) for t in history.txns if t.outcome == COMMITTED),
        "txn_polls": dict(Counter(p.mode for p in history.txn_polls)),
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
