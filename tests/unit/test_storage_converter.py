"""The Parquet converter process (`workbench.storage.converter`) driven by a real PartitionLog:
files written by the child are adopted, a failed job is reported, an abandoned job's late answer
is never taken for the next one's, and the child exits when idle."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.storage import LogConfig, PartitionLog
from workbench.storage.converter import ConversionError, ParquetConverter
from workbench.storage.parquet_tier import ParquetSegment


def batch(n: int, tag: int) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
    for i in range(n):
        b.append(i, 1_700_000_000_000 + i, None, b"%d-%d" % (tag, i), [])
    return bytes(b.build())


def sealed_log(path: Path) -> PartitionLog:
    log = PartitionLog(path, LogConfig(segment_bytes=2048, hot_segments=0), topic="t", partition=0)
    for tag in range(40):
        log.append(batch(10, tag))
    assert len(log.pending_conversions()) >= 3
    return log


def adopt(log: PartitionLog, job, answer: dict) -> bool:
    return log.install_parquet(
        job,
        ParquetSegment(
            Path(answer["path"]),
            answer["base_offset"],
            answer["next_offset"],
            answer["max_timestamp"],
            answer["size"],
        ),
    )


def test_converter_process_writes_parquet_the_log_adopts(tmp_path: Path) -> None:
    log = sealed_log(tmp_path)

    async def main() -> None:
        converter = ParquetConverter(idle_exit_s=0.3)
        try:
            jobs = log.pending_conversions()
            # Abandon the first job mid-flight: its answer must not be mistaken for the next job's.
            first = asyncio.ensure_future(converter.convert(log.conversion_request(jobs[0])))
            await asyncio.sleep(0.01)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            for job in jobs[1:]:
                answer = await converter.convert(log.conversion_request(job))
                assert answer["base_offset"] == job.segment.base_offset
                assert adopt(log, job, answer)
            pid = converter.pid
            assert pid is not None
            await asyncio.sleep(1.0)  # idle_exit_s passes: the child goes
            assert converter.pid is None
            # A missing segment is reported as an error, and the next job still works.
            bad = {
                **log.conversion_request(log.pending_conversions()[0]),
                "segment": str(tmp_path / "nope.log"),
            }
            with pytest.raises(ConversionError, match=r"nope\.log"):
                await converter.convert(bad)
            job = log.pending_conversions()[0]
            assert adopt(log, job, await converter.convert(log.conversion_request(job)))
        finally:
            await converter.close()

    asyncio.run(main())
    assert log.pending_conversions() == []
    files = log.parquet_files()
    offsets = sorted(o for f in files for o in pq.read_table(f, columns=["offset"]).column("offset").to_pylist())
    assert offsets == list(range(offsets[0], offsets[-1] + 1)) and offsets[0] == 0
    # Reading from offset 0 (raw segments dropped, hot_segments=0) comes back from Parquet.
    assert log.read(0, 1 << 20)
    log.close()


def test_a_file_for_a_truncated_log_is_discarded(tmp_path: Path) -> None:
    log = sealed_log(tmp_path)

    async def main() -> tuple:
        converter = ParquetConverter()
        try:
            job = log.pending_conversions()[0]
            return job, await converter.convert(log.conversion_request(job))
        finally:
            await converter.close()

    job, answer = asyncio.run(main())
    log.truncate_to(5)  # the log changed while the child worked
    assert not adopt(log, job, answer)
    assert not Path(answer["path"]).exists()
    log.close()
