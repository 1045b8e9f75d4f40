"""Consumer-group status over a sliding window, after LinkedIn Burrow's evaluation rules.

Burrow judges each partition from the last N offset commits. The Kafka protocol does not
tell us when a commit happened (OffsetFetch returns only the offset), so we judge from
samples of (committed offset, lag) taken at each refresh instead:

* OK    the partition is caught up (lag 0), or its committed offset moves and lag does not grow.
* WARN  lag grew over the whole window (every sample at least the previous, the last above the
        first) while the committed offset moves: the consumers are slower than the producers.
* STALL the group has active members but the committed offset has not moved for `stall_after`
        seconds while there is lag: consumers are alive but not making progress.
* STOP  nobody is consuming while there is lag: the group has no active members (state Empty).
        This is the state in which Kafka lets you reset the group's offsets, so a group badged
        STOP is exactly one the group monitor's reset section accepts.
* ERR   the group could not be read (or is Dead), or its committed offset went backwards
        without a reset from here (Burrow's "rewind").

A group's status is the worst of its partitions'. Burrow itself tells STOP ("no commit for a
while") from STALL ("commits, but of the same offset") by the time of each commit, which the
Kafka protocol does not tell a client; a group with members is therefore never STOP here, so
the status never contradicts the group's state. `stop_after` is kept for compatibility: a group
with members and no progress for that long stays STALL.

Lives in `workbench.sql` because the connection's lag history (`wb.consumer_lag_history`)
records each sample's status; `workbench.widgets` shows it.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

SEVERITY = {"OK": 0, "WARN": 1, "STALL": 2, "STOP": 3, "ERR": 4}


@dataclass
class PartitionWindow:
    samples: deque = field(default_factory=deque)  # (time, committed, lag)
    moved_at: float = 0.0  # when the committed offset last changed


class BurrowEvaluator:
    """Feed it samples (`observe`) and ask for a status (`status`)."""

    def __init__(self, window: int = 10, stall_after: float = 10.0, stop_after: float = 60.0) -> None:
        self.window = max(3, int(window))
        self.stall_after = stall_after
        self.stop_after = stop_after
        self._partitions: dict[tuple[str, str, int], PartitionWindow] = {}
        self._states: dict[str, str] = {}

    def observe(self, at: float, group: str, state: str, lags: list[tuple[str, int, int, int]]) -> None:
        """One refresh of a group: its state and (topic, partition, committed, lag) per partition."""
        self._states[group] = (state or "").upper()
        seen = set()
        for topic, partition, committed, lag in lags:
            key = (group, topic, partition)
            seen.add(key)
            pw = self._partitions.get(key)
            if pw is None:
                pw = self._partitions[key] = PartitionWindow(moved_at=at)
            elif pw.samples and pw.samples[-1][1] != committed:
                pw.moved_at = at
            pw.samples.append((at, committed, lag))
            while len(pw.samples) > self.window:
                pw.samples.popleft()
        for key in [k for k in self._partitions if k[0] == group and k not in seen]:
            del self._partitions[key]

    def forget(self, group: str) -> None:
        self._states.pop(group, None)
        for key in [k for k in self._partitions if k[0] == group]:
            del self._partitions[key]

    def partition_status(self, group: str, topic: str, partition: int) -> str:
        pw = self._partitions.get((group, topic, partition))
        if pw is None or not pw.samples:
            return "OK"
        state = self._states.get(group, "")
        at, _committed, lag = pw.samples[-1]
        if lag <= 0:
            return "OK"
        if state in ("EMPTY", "DEAD"):
            return "STOP"
        if len(pw.samples) >= 2 and pw.samples[-1][1] < pw.samples[-2][1] >= 0 and pw.samples[-1][1] >= 0:
            return "ERR"  # the committed offset went backwards: a rewind
        still_for = at - pw.moved_at
        if still_for >= self.stall_after:
            return "STALL"
        lags = [s[2] for s in pw.samples]
        if len(lags) >= 3 and all(b >= a for a, b in itertools.pairwise(lags)) and lags[-1] > lags[0]:
            return "WARN"
        return "OK"

    def status(self, group: str) -> str:
        if self._states.get(group) == "DEAD":
            return "ERR"
        worst = "OK"
        for g, topic, partition in self._partitions:
            if g != group:
                continue
            s = self.partition_status(g, topic, partition)
            if SEVERITY[s] > SEVERITY[worst]:
                worst = s
        return worst
