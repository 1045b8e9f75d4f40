"""`FileMetadataLog`: the cluster's metadata log as a shared append-only file.

All brokers of one embedded cluster live on one machine and share the
cluster's data directory, so the coordination service can be a file:

* `metadata/log.jsonl` holds one JSON record per line, in commit order;
* a writer takes an exclusive `flock` on `metadata/lock`, catches up with
  what other brokers appended, validates its change against that up-to-date
  image, appends its records with a single `write`, and releases the lock,
  which makes every change a compare-and-set on the whole image;
* readers replay new lines whenever the file grew (a `stat` is the whole
  cost of being up to date).

A writer killed mid-append leaves a line without its newline: readers ignore
such a tail and the next writer cuts it off before appending, so a torn
record is never applied (it was never acknowledged either).

This is the seam where a replicated controller quorum slots in: it offers the
same `image`, `catch_up()` and `commit()`.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.controller.image import MetadataImage

Records = list[dict[str, Any]]


class FileMetadataLog:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.directory / "log.jsonl"
        self.path.touch(exist_ok=True)
        self._lock_path = self.directory / "lock"
        self._lock_path.touch(exist_ok=True)
        self.image = MetadataImage()
        self._read_pos = 0
        self._mutex = threading.Lock()
        self._listeners: list[Callable[[MetadataImage], None]] = []
        self.catch_up()

    def add_listener(self, listener: Callable[[MetadataImage], None]) -> None:
        """Called (on the thread that caught up) after new records were applied."""
        self._listeners.append(listener)

    def catch_up(self) -> bool:
        """Apply records appended since the last call. Returns True if anything changed."""
        with self._mutex:
            changed = self._catch_up_locked()
        if changed:
            for listener in self._listeners:
                listener(self.image)
        return changed

    def _catch_up_locked(self) -> bool:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return False
        if size <= self._read_pos:
            return False
        with open(self.path, "rb") as f:
            f.seek(self._read_pos)
            data = f.read(size - self._read_pos)
        end = data.rfind(b"\n")
        if end < 0:
            return False  # only a torn (or still being written) tail
        changed = False
        for line in data[: end + 1].splitlines():
            if line.strip():
                self.image.apply(json.loads(line))
                changed = True
        self._read_pos += end + 1
        return changed

    def commit(self, change: Callable[[MetadataImage], Records]) -> Records:
        """Atomically compute records from the current image and append them.

        `change` sees the image with every committed record applied and
        returns the records to append (or raises to abort: nothing is written).
        """
        with open(self._lock_path, "rb+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with self._mutex:
                    caught_up = self._catch_up_locked()
                    records = change(self.image)
                    if records:
                        self._append_locked(records)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        # Listeners hear about records other brokers appended too, even when `change` added none.
        if records or caught_up:
            for listener in self._listeners:
                listener(self.image)
        return records

    def _append_locked(self, records: Records) -> None:
        fd = os.open(self.path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            if size > self._read_pos:
                # A torn tail from a writer that died mid-append: cut it off.
                os.ftruncate(fd, self._read_pos)
            payload = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
            os.lseek(fd, self._read_pos, os.SEEK_SET)
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        for record in records:
            self.image.apply(record)
        self._read_pos += len(payload)
