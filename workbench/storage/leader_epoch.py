"""Leader epoch -> start offset cache of one partition (Kafka's LeaderEpochFileCache, KIP-101/KIP-279).

Each entry ``(epoch, start_offset)`` says: the first batch written in leader
epoch ``epoch`` has base offset ``start_offset``. Entries are strictly
increasing in epoch and non-decreasing in start offset. A replica uses it to
answer OffsetForLeaderEpoch / the Fetch divergence check (`end_offset_for`)
and to find where its history leaves the leader's.

File ``leader-epoch-checkpoint`` uses Kafka's text format::

    0            <- version
    2            <- number of entries
    0 0          <- epoch start_offset
    3 1200

and is replaced atomically (temp file + rename) at every change; changes are
rare (once per leader election, plus truncations). A change made with
``flush=False`` marks the cache `dirty` and is written by the next `flush`
(the partition log's periodic flush writes a dirty cache): the log uses that
for the epoch a new leader records on an empty log, which recovery rebuilds
anyway (issue 19: 10,000 new partitions, one file write less each).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "leader-epoch-checkpoint"
CHECKPOINT_VERSION = 0
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


class LeaderEpochCache:
    """Sorted ``(epoch, start_offset)`` entries, checkpointed to ``leader-epoch-checkpoint``."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / CHECKPOINT_NAME
        self.entries: list[tuple[int, int]] = []
        #: Changed since the file was last written (a change made with ``flush=False``).
        self.dirty = False
        #: `load` found a file (well-formed or not).
        self.found = False

    # -- queries -----------------------------------------------------------------------

    @property
    def latest_epoch(self) -> int:
        return self.entries[-1][0] if self.entries else UNDEFINED_EPOCH

    @property
    def earliest_epoch(self) -> int:
        return self.entries[0][0] if self.entries else UNDEFINED_EPOCH

    def epoch_at(self, offset: int) -> int:
        """The epoch whose range holds ``offset`` (the last entry starting at or before it); -1 if none."""
        i = bisect.bisect_right([start for _epoch, start in self.entries], offset)
        return self.entries[i - 1][0] if i else UNDEFINED_EPOCH

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
        """Kafka's ``endOffsetFor``: (largest epoch <= requested, where that epoch ends).

        * the latest epoch: ``(epoch, log_end_offset)``;
        * an older epoch: ``(largest known epoch <= requested, start offset of the next larger epoch)``;
        * below the earliest known epoch (its data was removed by retention, or
          never existed here): ``(requested_epoch, start offset of the earliest epoch)``,
          so a follower truncates to where this log's history begins;
        * -1, newer than every known epoch, or an empty cache: ``(-1, -1)`` (UNDEFINED).
        """
        if requested_epoch == UNDEFINED_EPOCH or not self.entries:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if requested_epoch == self.latest_epoch:
            return requested_epoch, log_end_offset
        epochs = [e for e, _ in self.entries]
        higher = bisect.bisect_right(epochs, requested_epoch)
        if higher == len(epochs):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if higher == 0:
            return requested_epoch, self.entries[0][1]
        return self.entries[higher - 1][0], self.entries[higher][1]

    # -- updates -------------------------------------------------------------------------

    def assign(self, epoch: int, start_offset: int, *, flush: bool = True) -> bool:
        """Record that ``epoch`` starts at ``start_offset`` (Kafka's ``assign``); True when it changed.

        A no-op when ``epoch`` is the latest epoch and starts no earlier than
        recorded. Otherwise entries that would break monotonicity (epoch >= the
        new one, or start offset >= the new one) are removed first. Negative
        epochs (batches written without a leader epoch) are ignored.
        """
        if epoch < 0 or start_offset < 0:
            return False
        if self.entries:
            last_epoch, last_start = self.entries[-1]
            if epoch == last_epoch and start_offset >= last_start:
                return False
        removed = []
        while self.entries and (self.entries[-1][0] >= epoch or self.entries[-1][1] >= start_offset):
            removed.append(self.entries.pop())
        # An epoch in which nothing was written (same start offset) giving way to a newer one is
        # routine (elections on an empty log: thousands of lines for a new topic); a history
        # rewritten is not.
        if removed and any(e >= epoch or s != start_offset for e, s in removed):
            log.info("%s: epoch %d at %d replaces %s", self.path.parent, epoch, start_offset, removed[::-1])
        self.entries.append((epoch, start_offset))
        self._changed(flush)
        return True

    def truncate_from_end(self, end_offset: int, *, flush: bool = True) -> bool:
        """Remove entries starting at or after ``end_offset`` (log truncated to ``end_offset``)."""
        keep = [e for e in self.entries if e[1] < end_offset]
        if len(keep) == len(self.entries):
            return False
        self.entries = keep
        self._changed(flush)
        return True

    def truncate_from_start(self, start_offset: int, *, flush: bool = True) -> bool:
        """The log now starts at ``start_offset``: drop entries wholly before it (Kafka's semantics).

        The last entry starting below ``start_offset`` is kept, moved up to start there.
        """
        i = bisect.bisect_right([s for _, s in self.entries], start_offset)
        if i == 0 or (i == 1 and self.entries[0][1] == start_offset):
            return False
        epoch = self.entries[i - 1][0]
        self.entries = [(epoch, start_offset), *self.entries[i:]]
        self._changed(flush)
        return True

    def clear(self, *, flush: bool = True) -> None:
        self.entries = []
        self._changed(flush)

    def _changed(self, flush: bool) -> None:
        if flush:
            self.flush()
        else:
            self.dirty = True

    # -- file ----------------------------------------------------------------------------

    def flush(self) -> None:
        lines = [str(CHECKPOINT_VERSION), str(len(self.entries))]
        lines += [f"{e} {s}" for e, s in self.entries]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.path)
        self.dirty = False
        self.found = True

    def load(self) -> bool:
        """Read the checkpoint; False (and empty) when missing or malformed (then rebuild from the log)."""
        self.entries = []
        self.dirty = False
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            self.found = False
            return False
        self.found = True
        try:
            lines = [line.split() for line in text.splitlines() if line.strip()]
            if int(lines[0][0]) != CHECKPOINT_VERSION or len(lines[0]) != 1:
                raise ValueError(f"unknown version {lines[0]}")
            count = int(lines[1][0])
            if count != len(lines) - 2:
                raise ValueError(f"{count} entries announced, {len(lines) - 2} found")
            entries = [(int(e), int(s)) for e, s in lines[2:]]
            for (e0, s0), (e1, s1) in itertools.pairwise(entries):
                if e1 <= e0 or s1 < s0:
                    raise ValueError(f"entries not monotonic: ({e0}, {s0}) then ({e1}, {s1})")
            if any(e < 0 or s < 0 for e, s in entries):
                raise ValueError("negative entry")
        except (ValueError, IndexError) as exc:
            log.warning("%s: malformed (%s); rebuilding from the log", self.path, exc)
            return False
        self.entries = entries
        return True

    def __repr__(self) -> str:
        return f"LeaderEpochCache({self.entries})"
