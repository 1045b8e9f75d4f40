"""Keeping `~/.cache/workbench` (or `$WORKBENCH_CACHE_DIR`) from growing without end.

Each `workbench.connect(...)` bootstrap string gets its own directory there (the topics it
queried, consumed into Parquet). Nothing removed them, so every cluster ever queried stayed on
disk. Now a connection marks its directory in use (a shared `flock` on `.in-use`, held while the
connection lives, and the file's mtime as "last used"), and starting one removes the sibling
directories nobody has used for `max_age_days` (default 7, `$WORKBENCH_CACHE_MAX_AGE_DAYS`) and
nobody holds. `prune_cache(max_age_days=0)` empties it (`workbench cache clear`).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
from pathlib import Path

#: The directory names `default_cache_dir` makes (12 hex digits of a SHA-1): nothing else in the
#: base directory is ever removed.
_OWN_NAME = re.compile(r"^[0-9a-f]{12}$")
IN_USE = ".in-use"
DEFAULT_MAX_AGE_DAYS = 7.0


def cache_base() -> Path:
    return Path(os.environ.get("WORKBENCH_CACHE_DIR", Path.home() / ".cache" / "workbench"))


def configured_max_age_days() -> float:
    try:
        return float(os.environ.get("WORKBENCH_CACHE_MAX_AGE_DAYS", DEFAULT_MAX_AGE_DAYS))
    except ValueError:
        return DEFAULT_MAX_AGE_DAYS


def mark_in_use(directory: Path):
    """Hold `directory` for this connection (returns the open lock file; keep a reference)."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = open(directory / IN_USE, "a+")
    fcntl.flock(lock, fcntl.LOCK_SH)
    os.utime(lock.fileno())
    return lock


def prune_cache(base: Path | None = None, *, max_age_days: float | None = None) -> list[Path]:
    """Remove the cache directories not used for `max_age_days` and held by no connection;
    returns what was removed."""
    base = cache_base() if base is None else Path(base)
    age = configured_max_age_days() if max_age_days is None else float(max_age_days)
    cutoff = time.time() - age * 86400
    removed = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for path in entries:
        if not _OWN_NAME.match(path.name) or not path.is_dir() or path.is_symlink():
            continue
        marker = path / IN_USE
        try:
            last_used = marker.stat().st_mtime if marker.exists() else path.stat().st_mtime
        except OSError:
            continue
        if last_used > cutoff:
            continue
        try:
            with open(marker, "a+") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a running notebook holds it
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue
        removed.append(path)
    return removed
