"""Issue 17: tail chunks and their size-tiered merges (`workbench.storage.parquet_tail`), I/O-free.

A simulated unsealed segment grows tick by tick at varying rates; each tick writes what
`TailFiles.pending` asks (a merge first, else a chunk of the new records), as the broker does,
and every file ever installed stays "on disk" (superseded ones waiting out their grace period).
At every step the readers' rule (`parquet_tier.current_files`) over all those files must cover
the committed prefix exactly once, the files per segment stay bounded, and the rows converted in
all stay a small multiple of the rows ingested (the old whole-tail rewrite: ~half a segment per
tick).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from workbench.storage.parquet_tail import FAN_IN, MAX_CHUNKS, MIN_CHUNK_BYTES, TailFiles, TailJob, plan_merge
from workbench.storage.parquet_tier import current_files

RECORD = 100  # bytes per record in the simulated segment


@dataclass(eq=False)
class FakeSegment:
    """What `TailFiles.pending` reads of a `LogSegment` when the whole segment is committed."""

    base_offset: int
    next_offset: int

    @property
    def size(self) -> int:
        return (self.next_offset - self.base_offset) * RECORD

    def find_batch(self, offset: int) -> Any:
        """Every record is a batch of its own here."""
        return Header(offset, (offset - self.base_offset) * RECORD)


@dataclass
class Header:
    base_offset: int
    position: int


class Disk:
    """Every tail file installed, superseded or not: (first, next, generation, name)."""

    def __init__(self) -> None:
        self.files: list[tuple[int, int, int, str]] = []
        self.generation = 0
        self.rows_written = 0

    def write(self, tails: TailFiles, job: TailJob) -> None:
        assert tails.accepts(job)
        self.generation += 1
        name = f"{job.first}.g{self.generation}"
        self.files.append((job.first, job.next_offset, self.generation, name))
        self.rows_written += job.next_offset - job.first
        assert job.size - job.start_pos == (job.next_offset - job.first) * RECORD  # bytes match the range
        tails.install(job, Path(name))

    def seen(self) -> list[int]:
        """Offsets a reader sees: the current files' ranges, each file within its own range."""
        current, _ = current_files([(a, b, g, (a, b)) for a, b, g, _ in self.files])
        return [o for a, b in current for o in range(a, b)]


def tick(tails: TailFiles, seg: FakeSegment, disk: Disk, rounds: int = 3) -> None:
    for _ in range(rounds):
        jobs: list[Any] = tails.pending([seg], set(), seg.next_offset, 0)  # type: ignore[list-item]
        if not jobs:
            return
        for job in jobs:
            disk.write(tails, job)


@pytest.mark.parametrize("seed", range(6))
def test_each_offset_once_files_bounded_and_work_proportional_to_ingest(seed: int) -> None:
    rng = random.Random(seed)
    seg, tails, disk = FakeSegment(1000, 1000), TailFiles(), Disk()
    segment_records = (16 << 20) // RECORD  # a 16 MiB segment
    most = 0
    while seg.next_offset - seg.base_offset < segment_records:
        # bursts, lulls and trickles: 0 to ~20k records per tick
        seg.next_offset += rng.choice([0, 1, 3, 50, 1_700, 1_700, 1_700, 5_000, 20_000])
        tick(tails, seg, disk)
        assert disk.seen() == list(range(seg.base_offset, seg.next_offset))  # no gap, nothing twice
        assert tails.covered(seg.base_offset) == seg.next_offset  # fresh within the tick
        most = max(most, len(tails.chunks.get(seg.base_offset, [])))
    ingested = seg.next_offset - seg.base_offset
    assert most <= MAX_CHUNKS
    # ~1 write as a chunk + ~log_FAN_IN(segment / MIN_CHUNK_BYTES) merges per record, at most.
    tiers = math.log((16 << 20) / MIN_CHUNK_BYTES, FAN_IN)
    assert disk.rows_written / ingested <= 2 + tiers + 1, (disk.rows_written / ingested, seed)


def test_a_steady_rate_costs_a_few_writes_per_record_instead_of_half_a_segment() -> None:
    seg, tails, disk = FakeSegment(0, 0), TailFiles(), Disk()
    rewrites = 0  # what the whole-prefix rewrite of each tick converted
    for _ in range(100):  # 1,700 records/s/partition (10k/s over 6) until the segment is full
        seg.next_offset += 1_700
        rewrites += seg.next_offset
        tick(tails, seg, disk)
    assert disk.seen() == list(range(seg.next_offset))
    assert len(tails.chunks[0]) <= 2 * (FAN_IN - 1) + 1
    assert disk.rows_written <= 5 * seg.next_offset  # the old scheme: ~50x
    assert rewrites > 10 * disk.rows_written


def test_plan_merge_is_a_counter_in_base_fan_in() -> None:
    one = MIN_CHUNK_BYTES
    assert plan_merge([one] * (FAN_IN - 1)) is None
    assert plan_merge([one] * FAN_IN) == (0, FAN_IN)
    assert plan_merge([FAN_IN * one, one, one, one]) is None
    assert plan_merge([FAN_IN * one] + [one] * FAN_IN) == (1, FAN_IN + 1)
    assert plan_merge([FAN_IN * one] * FAN_IN) == (0, FAN_IN)
    # tiny chunks count as MIN_CHUNK_BYTES: a trickle merges every FAN_IN ticks
    assert plan_merge([1] * FAN_IN) == (0, FAN_IN)
    # past the bound: the adjacent pair of the smallest combined size
    sizes = [10**9 // (4**i) for i in range(MAX_CHUNKS + 1)]
    assert plan_merge(sizes, fan_in=1000) == (MAX_CHUNKS - 1, MAX_CHUNKS + 1)


def test_a_job_is_refused_once_the_chunks_it_was_planned_on_changed() -> None:
    seg, tails, disk = FakeSegment(0, 10), TailFiles(), Disk()
    [chunk] = tails.pending([seg], set(), 10, 0)  # type: ignore[list-item]
    disk.write(tails, chunk)
    assert not tails.accepts(chunk)  # written already: the same range again would be twice
    for _ in range(FAN_IN - 1):
        seg.next_offset += 10
        tick(tails, seg, disk, rounds=1)
    [merge] = tails.pending([seg], set(), seg.next_offset, 0)  # type: ignore[list-item]
    assert merge.merges == FAN_IN and merge.first == 0
    unlink, bury = tails.reaching_past(25)  # a truncation: [20, 30) and [30, 40) hold records cut
    assert sorted(p.name for p in unlink) == ["20.g3", "30.g4"] and sorted(e for _p, e in bury) == [10, 20]
    assert not tails.accepts(merge)
    assert tails.covered(0) == 0  # the kept ones wait out the grace; the next file starts over


def test_after_recovery_the_first_file_waits_until_it_reaches_as_far_as_the_recovered_ones() -> None:
    # Recovered chunks [0, 10), [10, 30): a new [0, 20) would be current beside [10, 30)'s
    # successor gap; it must wait until the LSO reaches 30, then supersede both at once.
    tails = TailFiles(recovered=[(0, 10), (10, 30)])
    seg = FakeSegment(0, 40)
    assert tails.pending([seg], set(), 20, 0) == []  # type: ignore[list-item]
    [job] = tails.pending([seg], set(), 40, 0)  # type: ignore[list-item]
    assert (job.first, job.next_offset) == (0, 40)
    # a truncation below the recovered files' ends (they are unlinked with it) lifts the wait
    tails.reaching_past(20)
    [job] = tails.pending([seg], set(), 20, 0)  # type: ignore[list-item]
    assert (job.first, job.next_offset) == (0, 20)


def test_the_converters_cached_decode_writes_chunks_and_merges_with_the_right_rows(tmp_path: Path) -> None:
    """`converter.convert_tail` (the broker's path): chunks decode only new bytes, merges slice the
    cached table, and a merge after the cache was lost decodes its own bytes; each offset once."""
    import duckdb

    from tests.unit.test_storage_parquet import batch
    from workbench.sql.cache import read_sealed
    from workbench.storage import LogConfig, PartitionLog, converter

    log = PartitionLog(tmp_path, LogConfig(), topic="orders", partition=0)
    seen = []
    for i in range(2 * FAN_IN):
        log.append(batch(10, tag=i))
        if i == FAN_IN:
            converter._tail_cache.clear()  # the converter process restarted (idle exit)
        for _ in range(3):
            jobs = log.pending_tails()
            for job in jobs:
                answer = converter.convert_tail(log.tail_request(job))
                assert log.install_tail(job, Path(answer["path"])) is not None
                seen.append(job.merges)
        paths = ",".join(f"'{f.path}'" for f in read_sealed(tmp_path, tails=True))
        offsets = [o for (o,) in duckdb.sql(f'select "offset" from read_parquet([{paths}]) order by 1').fetchall()]
        assert offsets == list(range(10 * (i + 1)))
    # [0, 40) merged from the cache; [0, 70) after the cache was lost; then the chunk [70, 80)
    assert seen.count(FAN_IN) == 2
    assert [int(p.name.split(".")[0]) for p in log.tail_files()] == [0, 70]
    log.close()


def test_a_seal_writes_from_the_tails_decoded_records_the_same_file_as_decoding_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`converter.convert_one` of a sealed segment whose tails decoded it (the tail cache, same log
    generation): only the bytes the tails had not reached are decoded, and the file has the same rows,
    row groups and metadata as a conversion that decodes the whole segment."""
    import pyarrow.parquet as pq

    from tests.unit.test_storage_parquet import batch
    from workbench.storage import LogConfig, PartitionLog, converter

    one = len(batch(10))
    log = PartitionLog(tmp_path, LogConfig(segment_bytes=one * 5, hot_segments=1), topic="orders", partition=0)
    converter._tail_cache.clear()
    for i in range(4):
        log.append(batch(10, pid=7, epoch=0, seq=i * 10, tag=i))
        for job in log.pending_tails():
            assert log.install_tail(job, Path(converter.convert_tail(log.tail_request(job))["path"])) is not None
    log.append(batch(10, pid=7, epoch=0, seq=40, tag=4))  # not in any tail yet
    log.append(batch(10, pid=7, epoch=0, seq=50, tag=5))  # rolls: the first segment is sealed
    (job,) = log.pending_conversions()
    request = log.conversion_request(job)
    key = (request["segment"], request["generation"])
    assert key in converter._tail_cache and converter._tail_cache[key][1] == 4 * one  # the tails' decode
    from workbench.storage import parquet_tier

    with monkeypatch.context() as m:
        m.setattr(parquet_tier, "write_segment", None)  # the decoding path must not run
        answer = converter.convert_one(request)
    assert key not in converter._tail_cache  # used and dropped
    again = converter.convert_one({**request, "name": "again.parquet"})  # nothing cached: decodes it all
    fast, slow = pq.ParquetFile(answer["path"]), pq.ParquetFile(again["path"])
    assert fast.read().equals(slow.read()) and fast.read().column("offset").to_pylist() == list(range(50))
    assert fast.metadata.num_row_groups == slow.metadata.num_row_groups
    assert fast.schema_arrow.metadata == slow.schema_arrow.metadata
    assert {k: answer[k] for k in ("base_offset", "next_offset", "max_timestamp")} == {
        k: again[k] for k in ("base_offset", "next_offset", "max_timestamp")
    }
    log.close()


def test_a_sealed_segment_below_the_lso_gets_no_tail_only_its_conversion(tmp_path: Path) -> None:
    """Issue 19: a sealed, wholly committed segment is the sealed conversion's; a tail of it would be
    the same write in another format (in a 2 M-record burst, tails wrote 1.37 M rows, most of them
    whole sealed segments their conversion then wrote again). The active segment is still tailed."""
    from tests.unit.test_storage_parquet import batch
    from workbench.storage import LogConfig, PartitionLog

    one = len(batch(10))
    log = PartitionLog(tmp_path, LogConfig(segment_bytes=one * 3), topic="orders", partition=0)
    for i in range(4):  # three batches fill the first segment; the fourth rolls it
        log.append(batch(10, tag=i))
    (conversion,) = log.pending_conversions()
    assert conversion.segment.base_offset == 0
    assert [job.segment.base_offset for job in log.pending_tails()] == [30]  # the active segment only
    log.close()
