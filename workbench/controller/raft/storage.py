"""Durable state of one Raft member: `(current_term, voted_for)` and the log.

Writes are synchronous: every method that changes state returns only once the
change is durable. `RaftNode` calls them before it queues any message that
depends on them, so "persist before you send" (Raft Figure 2, "Persistent state
on all servers ... updated on stable storage before responding to RPCs") holds
without a separate hand-off. The price is one fsync per vote and per append
batch, which is fine for a metadata log.

A write is durable only when every byte reached the file and `fsync` succeeded:
`pwrite` may write fewer bytes than asked (a full disk writes what fits, then
fails with ENOSPC), so it is looped until done, and any `OSError` on the way
(ENOSPC, EIO, EFBIG) leaves the log as it was and is raised to the caller, which
must then treat the entries as *not appended* (a follower answers nothing, a
leader refuses the proposal). The bytes a failed write left past the log's end
are cut off again at once, and if that fails too, by the torn-tail check on open.

Damage is not a torn tail. A log whose entries stop at a bad CRC, a garbage length or an
index out of order *before its last bytes* (a bit flipped in a sector, a block lost) may have
lost entries this member acknowledged: they may be committed on the leader and this member
alone. Such a log is cut at the damage like a torn tail, but first `needs_repair` is recorded
(durably, in `state.json`, so a second restart before the repair still knows): the member then
neither votes nor campaigns until it has caught up with a leader (`RaftNode`), since with a
shortened log its vote could elect a candidate lacking a committed entry (Raft assumes stable
storage; this is the "disk loss" case KIP-853 guards against with directory ids). Only a partial
last entry (the file ends inside it) is a torn tail and needs no repair.

Not done (deliberately, for now): snapshots and log compaction. The metadata
log is small and the whole log is kept in memory and replayed on start.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

from workbench.controller.raft.messages import Entry

# Per entry on disk: payload length and CRC32 of the payload, big-endian, then the payload
# (JSON `[term, index, record]`). A record larger than this is treated as a torn tail: no
# metadata record comes near it, and a garbage length must not make us allocate gigabytes.
_HEADER = struct.Struct(">II")
MAX_ENTRY_BYTES = 16 * 1024 * 1024


class RaftStorage:
    """The storage contract `RaftNode` relies on; the log itself is held in memory."""

    def __init__(self) -> None:
        self.term = 0
        self.voted_for: int | None = None
        self._log: list[Entry] = []
        #: The log lost entries it may have acknowledged (damage found on open): no vote, no
        #: campaign until a leader brought it back (see the module docstring).
        self.needs_repair = False
        #: What the damage was, for the log ("entry 17 at byte 2,345: bad CRC; 3,072 bytes cut").
        self.damage: str | None = None

    # -- term and vote ------------------------------------------------------------------
    def save_term_and_vote(self, term: int, voted_for: int | None) -> None:
        """Durably record the current term and the vote cast in it (atomically together)."""
        self._persist_state(term, voted_for)
        self.term, self.voted_for = term, voted_for

    def set_needs_repair(self, value: bool) -> None:
        """Durably record whether the log must be repaired from a leader before this member votes."""
        if value == self.needs_repair:
            return
        self.needs_repair = value
        try:
            self._persist_state(self.term, self.voted_for)
        except OSError:
            self.needs_repair = not value
            raise

    # -- log -----------------------------------------------------------------------------
    def last_index(self) -> int:
        return len(self._log)

    def term_at(self, index: int) -> int:
        """Term of the entry at `index`; 0 for index 0 (the empty prefix)."""
        return self._log[index - 1].term if index > 0 else 0

    def entry(self, index: int) -> Entry:
        return self._log[index - 1]

    def entries(self, start: int, stop: int) -> list[Entry]:
        """Entries with `start <= index < stop`."""
        return self._log[max(start, 1) - 1 : max(stop, 1) - 1]

    def append(self, entries: Sequence[Entry]) -> None:
        """Durably append entries that continue the log."""
        if not entries:
            return
        for offset, entry in enumerate(entries, start=1):
            if entry.index != len(self._log) + offset:
                raise ValueError(f"entry {entry.index} does not follow index {len(self._log) + offset - 1}")
        self._persist_append(entries)
        self._log.extend(entries)

    def truncate_from(self, index: int) -> None:
        """Durably remove every entry with index >= `index` (a conflict with the leader)."""
        if index > len(self._log):
            return
        self._persist_truncate(index)
        del self._log[index - 1 :]

    # -- hooks for subclasses ------------------------------------------------------------
    def _persist_state(self, term: int, voted_for: int | None) -> None:
        raise NotImplementedError

    def _persist_append(self, entries: Sequence[Entry]) -> None:
        raise NotImplementedError

    def _persist_truncate(self, index: int) -> None:
        raise NotImplementedError


class MemoryRaftStorage(RaftStorage):
    """Storage for tests. Everything a call returned from is "persisted"; `crash()` gives
    the storage a restarted process would find (a deep copy: the dead node's object can
    no longer reach it)."""

    def _persist_state(self, term: int, voted_for: int | None) -> None:
        pass

    def _persist_append(self, entries: Sequence[Entry]) -> None:
        pass

    def _persist_truncate(self, index: int) -> None:
        pass

    def lose_entries_from(self, index: int) -> None:
        """What `FileRaftStorage` does on opening a log damaged at entry `index`: the entries from
        it on are gone and the member needs repair (for tests of the node)."""
        self.needs_repair = True
        self.damage = f"entries from {index} lost"
        del self._log[index - 1 :]

    def crash(self) -> MemoryRaftStorage:
        survivor = copy.copy(self)  # keeps the subclass (tests add invariant checks to it)
        survivor._log = [Entry(e.term, e.index, copy.deepcopy(e.payload)) for e in self._log]
        return survivor


class FileRaftStorage(RaftStorage):
    """Storage in a directory: `state.json` (term and vote, replaced atomically) and
    `log.bin` (append-only entries, each `length, crc32, JSON`).

    On open, a tail entry that is partial or fails its CRC is cut off: it was being
    written when the process died, so it was never acknowledged to anyone.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._state_path = self.directory / "state.json"
        self._log_path = self.directory / "log.bin"
        self._offsets: list[int] = []  # file offset of each entry, index i at _offsets[i - 1]
        self._load_state()
        self._load_log()
        existed = self._log_path.exists()
        self._fd = os.open(self._log_path, os.O_RDWR | os.O_CREAT, 0o600)
        self._end = os.fstat(self._fd).st_size
        if not existed:
            _fsync_directory(self.directory)  # the new file's name is durable before any entry in it

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- loading -------------------------------------------------------------------------
    def _load_state(self) -> None:
        try:
            state = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return
        self.term = int(state["term"])
        self.voted_for = state["voted_for"]
        self.needs_repair = bool(state.get("needs_repair", False))

    def _load_log(self) -> None:
        try:
            data = self._log_path.read_bytes()
        except FileNotFoundError:
            return
        pos = 0
        problem = "a partial header"
        while pos + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, pos)
            body = data[pos + _HEADER.size : pos + _HEADER.size + length]
            if length > MAX_ENTRY_BYTES:
                problem = f"a length of {length:,} bytes"
                break
            if len(body) < length:
                problem = "a partial entry"
                break
            if zlib.crc32(body) != crc:
                problem = "a bad CRC"
                break
            try:
                term, index, payload = json.loads(body)
            except ValueError:
                problem = "an undecodable entry"
                break
            if index != len(self._log) + 1:
                problem = f"index {index} out of order"
                break
            self._offsets.append(pos)
            self._log.append(Entry(term, index, payload))
            pos += _HEADER.size + length
        if pos < len(data):
            if not _torn_tail(data, pos):
                # Damage, not a crash mid-append: entries this member acknowledged may be gone.
                # Recorded before the cut, so a crash between the two still knows.
                self.damage = (
                    f"entry {len(self._log) + 1} at byte {pos:,}: {problem}; "
                    f"{len(data) - pos:,} bytes cut, the log now ends at entry {len(self._log)}"
                )
                self.needs_repair = True
                self._persist_state(self.term, self.voted_for)
            # Torn tail from a crash mid-append: never acknowledged, so drop it.
            with open(self._log_path, "rb+") as f:
                f.truncate(pos)
                f.flush()
                os.fsync(f.fileno())

    # -- persistence ---------------------------------------------------------------------
    def _persist_state(self, term: int, voted_for: int | None) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as f:
                state = {"term": term, "voted_for": voted_for}
                if self.needs_repair:
                    state["needs_repair"] = True
                json.dump(state, f)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.replace(tmp, self._state_path)
        _fsync_directory(self.directory)

    def _persist_append(self, entries: Sequence[Entry]) -> None:
        chunks, offsets = [], []
        pos = self._end
        for entry in entries:
            body = json.dumps([entry.term, entry.index, entry.payload], separators=(",", ":")).encode()
            if len(body) > MAX_ENTRY_BYTES:
                raise ValueError(f"entry of {len(body)} bytes exceeds MAX_ENTRY_BYTES")
            offsets.append(pos)
            chunks.append(_HEADER.pack(len(body), zlib.crc32(body)) + body)
            pos += _HEADER.size + len(body)
        try:
            pwrite_all(self._fd, b"".join(chunks), self._end)
            os.fsync(self._fd)
        except OSError:
            # Not appended. Cut what the failed write left behind, so a later append that
            # fails *differently* cannot leave an older partial entry to be read on open.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._end)
            raise
        self._offsets.extend(offsets)
        self._end = pos

    def _persist_truncate(self, index: int) -> None:
        end = self._offsets[index - 1]
        os.ftruncate(self._fd, end)
        os.fsync(self._fd)
        self._end = end  # only once durable: a failed truncation leaves the log as it was
        del self._offsets[index - 1 :]


def _torn_tail(data: bytes, pos: int) -> bool:
    """Is what follows the last good entry at `pos` a torn tail (the file ends inside the one
    entry a crash interrupted) rather than damage? A partial header, or a plausible length whose
    entry runs past the end of the file while the bytes there do not form the entry whole (a
    flipped length bit on a whole last entry is damage)."""
    rest = len(data) - pos
    if rest < _HEADER.size:
        return True
    length, _ = _HEADER.unpack_from(data, pos)
    if length > MAX_ENTRY_BYTES or rest >= _HEADER.size + length:
        return False
    # The file ends inside the entry the length announces. Torn only if the bytes there are not
    # a whole entry: a flipped length bit on an entry that is in fact complete (followed by more
    # entries, or the last one) is damage.
    try:
        decoded, _end = json.JSONDecoder().raw_decode(data[pos + _HEADER.size :].decode("latin-1"))
    except ValueError:
        return True
    return not (isinstance(decoded, list) and len(decoded) == 3)


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of `data` at `offset`, looping over short writes.

    POSIX lets `pwrite` write fewer bytes than asked (a nearly full disk writes what
    fits and returns the count; the next call fails with ENOSPC). A write that makes
    no progress raises ENOSPC rather than looping forever.
    """
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, "pwrite wrote nothing (short write)")
        view = view[written:]
        offset += written


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
