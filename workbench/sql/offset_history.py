"""`OffsetHistory`: every partition's high watermark over time, kept by the connection, and the
produce and consume rates derived from it (the topic overview's sparklines).

A rate is a difference of offsets over a difference of times, so it needs samples; each widget
keeping its own would start empty, as the lag plot used to. One `OffsetHistory` per SQL engine
(that is, per connection) samples `wb.partitions` (Metadata and ListOffsets) every `INTERVAL_S`
seconds on a daemon thread and keeps `SPAN_S` (an hour) of samples, like `LagHistory` does for
committed offsets. Rates:

* **produce**: the growth of the topic's summed high watermarks between two samples, per second
  (records that became visible to consumers; a transaction's markers count, as in Kafka's
  `MessagesInPerSec` they do not, so a transactional topic reads a little high);
* **consume**: the growth of the committed offsets of every group on the topic, per second, from
  the connection's `LagHistory` samples (`wb.consumer_lag_history`). A reset that moves offsets
  back counts as zero, not a negative rate.

Sampling starts the first time the history is asked for and stops with the engine
(`close_sql()`, `Cluster.stop()`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import pandas as pd

from workbench.sql.sampler import PeriodicSampler

#: Seconds between samples: the lag history's period, so both rates line up.
INTERVAL_S = 2.0
#: How much history is kept.
SPAN_S = 3600.0

QUERY = "SELECT topic, partition, log_start_offset, high_watermark FROM wb.partitions"


def offset_history_of(engine, *, start: bool = True) -> OffsetHistory:
    """The engine's (the connection's) one `OffsetHistory`, started unless `start=False`."""
    return OffsetHistory.of(engine, start=start)


def rates(samples: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """[(time, cumulative count)] -> [(time, count per second since the previous sample)].

    Pure, so the rule is testable alone: a count that goes down (a reset, a truncated log) gives
    0, and two samples at the same time are merged (the later one wins)."""
    out: list[tuple[float, float]] = []
    previous: tuple[float, float] | None = None
    for t, count in sorted(dict(samples).items()):
        if previous is not None and t > previous[0]:
            out.append((t, max(0.0, count - previous[1]) / (t - previous[0])))
        previous = (t, count)
    return out


class OffsetHistory(PeriodicSampler):
    """High watermarks of every partition, an hour of samples, and rates per topic."""

    thread_name = "workbench-offset-history"

    def __init__(self, engine, *, interval: float = INTERVAL_S, span: float = SPAN_S) -> None:
        super().__init__(engine, interval=interval, span=span)
        #: One entry per sample: (unix time, {topic: summed high watermark}).
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    def sample(self, engine=None) -> dict[str, int]:
        """Take one sample now; returns {topic: summed high watermark}."""
        now, frame = self._query(engine, QUERY)
        totals: dict[str, int] = {}
        unknown: set[str] = set()  # a partition whose leader is down: its topic sits this sample out
        for topic, hw in zip(frame["topic"], frame["high_watermark"], strict=True):
            if hw is None or pd.isna(hw):
                unknown.add(topic)
            else:
                totals[topic] = totals.get(topic, 0) + int(hw)
        for topic in unknown:
            totals.pop(topic, None)
        with self._lock:
            self._samples.append((now, totals))
            while self._samples and self._samples[0][0] < now - self.span:
                self._samples.popleft()
            self._recorded()
        return totals

    # ------------------------------------------------------------------ reading
    def high_watermarks(self, topic: str, since: float | None = None) -> list[tuple[float, float]]:
        """[(unix time, the topic's summed high watermarks)] for every sample that saw the topic."""
        with self._lock:
            samples = list(self._samples)
        return [(t, float(totals[topic])) for t, totals in samples if topic in totals and (since is None or t >= since)]

    def produce_rates(self, topic: str, since: float | None = None) -> list[tuple[float, float]]:
        """[(unix time, records/s produced to the topic since the previous sample)]."""
        return rates(self.high_watermarks(topic, since))


def consume_rates(lag_history, topic: str, since: float | None = None) -> list[tuple[float, float]]:
    """[(unix time, records/s committed on the topic by all its groups)] from a `LagHistory`.

    Each group's rate is taken on its own and then summed per sample, so a group appearing or
    vanishing between two samples does not show as a burst."""
    frame = lag_history.frame(since)
    if frame.empty:
        return []
    frame = frame[(frame["topic"] == topic) & frame["committed_offset"].notna()]
    if frame.empty:
        return []
    frame = frame.assign(t=frame["time"].map(lambda ts: ts.timestamp()))
    per_time: dict[float, float] = {}
    for _group, rows in frame.groupby("group_id", sort=False):
        committed = rows.groupby("t")["committed_offset"].sum()
        for t, rate in rates(zip(committed.index, committed.values, strict=True)):
            per_time[t] = per_time.get(t, 0.0) + rate
    return sorted(per_time.items())
