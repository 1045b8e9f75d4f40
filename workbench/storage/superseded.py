"""Parquet files a partition no longer needs, unlinked only after a grace period (issue 17).

Readers outside the broker (plain DuckDB over ``workbench.duckdb`` or a glob of the brokers'
directories, pyarrow, the notebook's SQL engine) list a partition's files and open them later:
DuckDB 2.0 even reads a file's footer and its pages in two separate opens. So a broker never puts
new content under an existing name (a newer tail, a sealed conversion, a log cleaner's output each
get a name of their own, `parquet_tier.file_name`), and a file that a newer one supersedes, or that
retention removed, stays on disk under its name for ``grace_s`` (broker config
``parquet_unlink_grace_ms``, 60 s by default) before it is unlinked. Readers skip superseded files by
the tier's rule (`parquet_tier.current_files`); a query that runs longer than the grace period can
still meet a file unlinked under it.

Kept in memory only: after a restart, recovery finds what a crash left superseded by the same rule
and hands it here again, so a file is never unlinked sooner than a grace period after it was last
listed as live by a broker. Files holding records a truncation removed (a replica's diverged log)
are not buried: the log unlinks them at once, waiting ones included (`unlink_reaching_past`), since
no reader may see those records.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)

#: How long a superseded file stays (seconds); the broker sets it from ``parquet_unlink_grace_ms``.
DEFAULT_GRACE_S = 60.0


class SupersededFiles:
    """Files waiting out their grace period, oldest first."""

    grace_s: float = DEFAULT_GRACE_S

    def __init__(self) -> None:
        self._due: deque[tuple[float, Path, int]] = deque()

    def __len__(self) -> int:
        return len(self._due)

    def bury(self, path: Path, next_offset: int, now: float | None = None) -> None:
        """Unlink ``path`` (records below ``next_offset``) once the grace period has passed (from
        ``now``, monotonic seconds)."""
        at = (time.monotonic() if now is None else now) + self.grace_s
        self._due.append((at, Path(path), next_offset))

    def unlink_reaching_past(self, cut: int) -> int:
        """A truncation to ``cut``: unlink now every waiting file holding records at or above it.
        Such a file would be current again by the readers' rule once the newer file that
        superseded it is truncated, and show records the log no longer has."""
        keep: deque[tuple[float, Path, int]] = deque()
        n = 0
        for entry in self._due:
            if entry[2] > cut:
                entry[1].unlink(missing_ok=True)
                n += 1
            else:
                keep.append(entry)
        self._due = keep
        return n

    def reap(self, now: float | None = None) -> int:
        """Unlink the files whose grace period is over; how many."""
        if not self._due:
            return 0
        now = time.monotonic() if now is None else now
        n = 0
        while self._due and self._due[0][0] <= now:
            _at, path, _next = self._due.popleft()
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # a failed directory: the next recovery finds it superseded again
                log.warning("could not unlink superseded %s: %s", path, exc)
            n += 1
        return n

    def pending(self) -> list[Path]:
        return [p for _at, p, _next in self._due]

    def entries(self) -> list[tuple[Path, int]]:
        """Each waiting file and the offset its records end before."""
        return [(p, nxt) for _at, p, nxt in self._due]


def set_grace_ms(ms: int) -> None:
    """The grace period of every partition of this process (the broker's ``parquet_unlink_grace_ms``)."""
    SupersededFiles.grace_s = max(0, ms) / 1000
