"""`DurableGroupRecords`: a KIP-848 or KIP-932 group's state as records in ``__consumer_offsets``.

Both new group protocols keep their groups the way Kafka does: each group is a set of records
(group metadata, members, target assignment, current assignments) keyed by type, group and member,
written before the heartbeat that changed them is answered and replayed by the next coordinator.
What is written is the difference from what was written last (changed records, and tombstones for
records that are gone), so steady heartbeats write nothing. This base holds that bookkeeping; each
coordinator says what its groups' records are (`records`) and how a key names its group
(`decode_key`), and rebuilds groups from `_replayed` in its own `finish_load`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class RecordStore(Protocol):
    """Where the group records go: the group's ``__consumer_offsets`` partition (`LogOffsetStore`)."""

    async def append(self, entries: list[tuple[bytes, bytes | None]]) -> None: ...


class DurableGroupRecords:
    """Diff-and-append of a coordinator's group records, and their replay in log order."""

    def __init__(self, store: RecordStore | None) -> None:
        self._store = store
        # group id -> key -> value last written to the store (what `persist` diffs against)
        self._written: dict[str, dict[bytes, bytes]] = {}
        # group id -> key -> value replayed from the store, until `finish_load` rebuilds the groups
        self._replayed: dict[str, dict[bytes, bytes]] = {}

    def records(self, group_id: str, topics: Mapping[str, Any]) -> dict[bytes, bytes]:
        """Every record the group is now (key -> encoded value)."""
        raise NotImplementedError

    @staticmethod
    def decode_key(data: bytes) -> tuple[int, str, str | None]:
        """(record type, group id, member id or None) of a record key."""
        raise NotImplementedError

    def _forget_key(self, key: bytes) -> None:
        """A record was tombstoned: drop what is cached for it (nothing by default)."""

    def pending_records(self, group_id: str, topics: Mapping[str, Any]) -> list[tuple[bytes, bytes | None]]:
        """What changed since the last write: new or changed records, and tombstones for records that
        are gone (a removed member's). Marks them written; `forget_written` if the append fails."""
        now = self.records(group_id, topics)
        before = self._written.get(group_id, {})
        changes: list[tuple[bytes, bytes | None]] = [(k, v) for k, v in now.items() if before.get(k) != v]
        changes += [(k, None) for k in before if k not in now]
        for k, v in changes:
            if v is None:
                self._forget_key(k)
        if now:
            self._written[group_id] = now
        else:
            self._written.pop(group_id, None)
        return changes

    def forget_written(self, group_id: str) -> None:
        """The last append failed: the next `pending_records` rewrites the whole group."""
        self._written.pop(group_id, None)

    async def persist(self, group_id: str, topics: Mapping[str, Any]) -> None:
        """Append the group's changed records (durable, replicated) before its heartbeat is answered."""
        if self._store is None:
            return
        changes = self.pending_records(group_id, topics)
        if not changes:
            return
        try:
            await self._store.append(changes)
        except BaseException:
            self.forget_written(group_id)
            raise

    def replay(self, key: bytes, value: bytes | None) -> None:
        """One ``__consumer_offsets`` record of this coordinator's groups, in log order (before
        `finish_load`); a tombstone removes the key."""
        _record_type, group_id, _member = self.decode_key(key)
        records = self._replayed.setdefault(group_id, {})
        if value is None:
            records.pop(key, None)
        else:
            records[key] = value
