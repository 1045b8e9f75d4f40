"""flush.messages: group commit (`LogFlusher`) and what `PartitionLog.flush` reports as durable."""

from __future__ import annotations

import asyncio
import os
import threading

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.broker.log_flusher import LogFlusher
from workbench.storage import LogConfig, PartitionLog


def batch(tag: int) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
    b.append(0, 1_700_000_000_000, None, b"v%d" % tag, [])
    return bytes(b.build())


def test_one_fsync_covers_every_append_waiting_for_it(tmp_path):
    log = PartitionLog(tmp_path, LogConfig(flush_messages=1), topic="t", partition=0)
    flushes = 0
    real_flush = log.flush

    def counting_flush():
        nonlocal flushes
        flushes += 1
        real_flush()

    log.flush = counting_flush  # type: ignore[method-assign]
    flusher = LogFlusher()

    async def produce(tag: int) -> None:
        log.append(batch(tag))
        assert log.needs_flush()
        await flusher.flush(log)

    async def main() -> None:
        await asyncio.gather(*(produce(i) for i in range(20)))

    asyncio.run(main())
    assert flushes <= 2, flushes  # group commit: not one fsync per append
    assert log.flushed_offset == log.log_end_offset == 20
    assert not log.needs_flush()
    log.close()


def test_a_log_reopened_after_a_crash_counts_nothing_as_flushed_until_it_flushes(tmp_path):
    log = PartitionLog(tmp_path, LogConfig(flush_messages=1), topic="t", partition=0)
    log.append(batch(0))
    # No flush and no close: the process "dies" with the record in the page cache only.
    again = PartitionLog(tmp_path, LogConfig(flush_messages=1), topic="t", partition=0)
    assert again.log_end_offset == 1 and again.flushed_offset == 0 and again.needs_flush()
    again.flush()
    assert again.flushed_offset == 1
    again.close()


def test_a_second_flush_does_not_report_what_the_first_is_still_syncing(tmp_path, monkeypatch):
    log = PartitionLog(tmp_path, LogConfig(flush_messages=1), topic="t", partition=0)
    log.flush()
    log.append(batch(1))
    entered, release = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd):
        if threading.current_thread().name == "first":
            entered.set()
            release.wait(10)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    first = threading.Thread(target=log.flush, name="first")
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=log.flush, name="second")
    second.start()
    second.join(0.5)
    assert log.flushed_offset == 0, "reported durable while its fsync was still running"
    release.set()
    first.join(10)
    second.join(10)
    assert log.flushed_offset == log.log_end_offset == 1
    log.close()
