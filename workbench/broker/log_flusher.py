"""`LogFlusher`: group commit for `flush.messages` (fsync before acknowledging).

With ``flush.messages=1`` every append must be on disk before its Produce answer
(a leader) or before the next Fetch reports it (a follower, so the high watermark
only counts copies that are durable). One fsync per append would cap a partition
at a few hundred batches a second; instead, each partition log has at most one
fsync in flight, in a worker thread, and every append that arrives meanwhile waits
for the *next* one, which covers all of them (`PartitionLog.flush` syncs up to the
log end it sees). The event loop never blocks on the disk.

Kafka flushes synchronously in the append path when ``unflushedMessages >=
flush.messages`` (UnifiedLog.append); this is the same rule, batched.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.storage.log import PartitionLog

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class LogFlusher:
    """One group-committing fsync loop per partition log (see the module docstring)."""

    def __init__(self) -> None:
        self._pending: dict[int, _Pending] = {}

    async def flush(self, plog: PartitionLog) -> None:
        """Return once everything appended to ``plog`` before the call is fsynced.

        Raises what the fsync raised (KAFKA_STORAGE_ERROR): then nothing is known to be
        durable, and the caller must not acknowledge as durable.
        """
        target = plog.log_end_offset
        if plog.flushed_offset >= target:
            return
        loop = asyncio.get_running_loop()
        pending = self._pending.setdefault(id(plog), _Pending())
        future: asyncio.Future[None] = loop.create_future()
        pending.waiters.append((target, future))
        if pending.task is None:
            pending.task = asyncio.ensure_future(self._run(plog, pending))
        await asyncio.shield(future)

    async def _run(self, plog: PartitionLog, pending: _Pending) -> None:
        loop = asyncio.get_running_loop()
        try:
            while pending.waiters:
                try:
                    await loop.run_in_executor(None, plog.flush)
                except Exception as exc:
                    waiters, pending.waiters = pending.waiters, []
                    for _, future in waiters:
                        if not future.done():
                            future.set_exception(exc)
                    log.error("fsync of %s failed: %s", plog.directory, exc)
                    continue
                done = plog.flushed_offset
                still = []
                for target, future in pending.waiters:
                    if future.done():
                        continue
                    if target <= done:
                        future.set_result(None)
                    else:
                        still.append((target, future))
                if len(still) == len(pending.waiters) and still:
                    # The flush made no progress for anyone (a truncation raced it): try again
                    # with the targets clamped to the log end, so nobody waits forever.
                    end = plog.log_end_offset
                    still = [(min(t, end), f) for t, f in still]
                pending.waiters = still
        finally:
            pending.task = None
            if not pending.waiters:
                self._pending.pop(id(plog), None)
