"""Issue 17: the Parquet tier never puts new content under an existing name, unlinks superseded
files only after the grace period, and every reader's rule (`parquet_tier.current_files`) sees
each committed record exactly once whatever a crash left on disk: several tail generations, a
sealed file beside its tails, superseded files still waiting for their grace period."""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from tests.unit.test_storage_parquet import batch
from workbench.sql.cache import read_sealed
from workbench.storage import LogConfig, PartitionLog
from workbench.storage.parquet_tier import current_files, file_name, parse_file_name
from workbench.storage.superseded import SupersededFiles


def open_log(path: Path, **cfg: int) -> PartitionLog:
    return PartitionLog(path, LogConfig(**cfg), topic="orders", partition=0)


def rule_offsets(directory: Path) -> list[int]:
    """Offsets a reader applying the documented rule sees (the notebook side's `read_sealed`)."""
    files = read_sealed(directory, tails=True)
    if not files:
        return []
    paths = ",".join(f"'{f.path}'" for f in files)
    return [o for (o,) in duckdb.sql(f'select "offset" from read_parquet([{paths}]) order by 1').fetchall()]


def names(directory: Path) -> set[str]:
    return {p.name for p in directory.glob("*.parquet")}


def test_names_and_the_rule() -> None:
    assert file_name(5) == "00000000000000000005.parquet"
    assert parse_file_name(file_name(5, 12)) == (5, 12) and parse_file_name(file_name(5)) == (5, 0)
    assert parse_file_name("00000000000000000005.parquet.tail.tmp") is None
    # widest per base; equal ranges: the newest generation; inside an earlier range: superseded
    files = [(0, 10, 0, "a"), (0, 20, 1, "b"), (0, 20, 3, "c"), (10, 20, 2, "member"), (20, 25, 4, "d")]
    assert current_files(files) == (["c", "d"], ["b", "a", "member"])


def test_tail_chunks_get_new_names_and_a_merges_members_wait_out_the_grace(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    seen_names: set[str] = set()
    for i in range(3):
        log.append(batch(10, tag=i))
        [chunk] = log.write_tails()  # only the new records: [10 i, 10 i + 10)
        assert parse_file_name(chunk.name)[0] == 10 * i and pq.read_metadata(chunk).num_rows == 10
        assert chunk.name not in seen_names  # never a name used before
        seen_names.add(chunk.name)
        assert rule_offsets(tmp_path) == list(range(10 * (i + 1)))  # each record once, none missing
    assert log.superseded_files() == [] and len(log.tail_files()) == 3
    log.append(batch(10, tag=3))
    chunk, merged = log.write_tails()  # FAN_IN chunks of one size: merged into one file
    assert parse_file_name(merged.name)[0] == 0 and pq.read_metadata(merged).num_rows == 40
    assert log.tail_files() == [merged]
    assert rule_offsets(tmp_path) == list(range(40))
    assert names(tmp_path) == seen_names | {chunk.name, merged.name}  # the members are still there, readable
    assert len(log.superseded_files()) == 4
    assert log.unlink_superseded(time.monotonic() + SupersededFiles.grace_s + 1) == 4
    assert names(tmp_path) == {merged.name}
    assert rule_offsets(tmp_path) == list(range(40))
    log.close()


def test_the_sealed_file_supersedes_its_tails_without_a_rename_over_them(tmp_path: Path) -> None:
    one = len(batch(10))
    log = open_log(tmp_path, segment_bytes=one * 2, hot_segments=10)
    log.append(batch(10, tag=0))
    [tail] = log.write_tails()
    inode = os.stat(tail).st_ino
    log.append(batch(10, tag=1))
    log.append(batch(10, tag=2))  # rolls: [0, 20) sealed
    log.convert_sealed_segments()
    assert os.stat(tail).st_ino == inode  # the tail was not replaced under its name
    assert file_name(0) in names(tmp_path) and tail.exists()
    assert rule_offsets(tmp_path) == list(range(20))  # the sealed file's, never the tail's too
    assert tail in log.superseded_files()
    log.close()


def test_recovery_with_two_tail_generations_and_superseded_files_on_disk(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    for i in range(3):
        log.append(batch(10, tag=i))
        log.write_tails()
    log.flush()
    log.close()  # as after a SIGKILL: the superseded tails were never unlinked
    assert len(names(tmp_path)) == 3
    log = open_log(tmp_path)
    # Every tail waits out a grace period again; readers keep the widest meanwhile (no shrinking).
    assert log.tail_files() == [] and len(log.superseded_files()) == 3
    assert rule_offsets(tmp_path) == list(range(30))
    [rewritten] = log.write_tails()  # one file of the same range, a newer generation: it wins the tie
    assert parse_file_name(rewritten.name)[1] > max(parse_file_name(n)[1] for n in names(tmp_path) - {rewritten.name})
    assert [f.path for f in read_sealed(tmp_path, tails=True)] == [rewritten]
    log.append(batch(10, tag=3))
    log.write_tails()  # a chunk [30, 40) beside it
    assert rule_offsets(tmp_path) == list(range(40))
    assert log.unlink_superseded(time.monotonic() + SupersededFiles.grace_s + 1) == 3
    assert rule_offsets(tmp_path) == list(range(40))
    log.close()


def test_a_truncation_unlinks_waiting_files_past_the_cut_at_once(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(batch(10, tag=0))
    log.write_tails()  # [0, 10), superseded next
    log.append(batch(10, tag=1))
    log.write_tails()  # [0, 20)
    log.append(batch(10, tag=2))
    log.write_tails()  # [0, 30)
    assert log.truncate_to(10)
    # The chunks [10, 20) and [20, 30) held records now cut: both gone at once; the [0, 10) one
    # may wait (its records are still in the log).
    assert rule_offsets(tmp_path) == list(range(10))
    log.append(batch(10, tag=5))
    log.write_tails()
    assert rule_offsets(tmp_path) == list(range(20))
    log.close()


def test_a_truncation_inside_a_merge_unlinks_it_and_the_next_tail_supersedes_its_members(tmp_path: Path) -> None:
    """A merge cut by a truncation is unlinked at once, but its members below the cut still wait
    out their grace period: readers see those, and the next tail supersedes all of them at once."""
    log = PartitionLog(tmp_path, LogConfig(), topic="orders", partition=0, hw_tracks_leo=False)
    log.append(batch(2_000, tag=0))  # [0, 2000): one chunk too big to merge with small ones
    log.maybe_update_high_watermark(2_000)
    log.write_tails()
    for i in range(4):  # four small chunks [2000 + 10 i, 2010 + 10 i): merged into [2000, 2040)
        log.append(batch(10, tag=i + 1))
        log.maybe_update_high_watermark(log.log_end_offset)
        log.write_tails()
    assert [parse_file_name(p.name)[0] for p in log.tail_files()] == [0, 2000]
    assert log.truncate_to(2_025)  # inside the merge: cut at its batch boundary, 2020
    assert log.tail_files() == []
    assert rule_offsets(tmp_path) == list(range(2_020))  # the members [2000, 2010), [2010, 2020)
    log.append(batch(10, tag=9))  # [2020, 2030)
    log.maybe_update_high_watermark(log.log_end_offset)
    [new] = log.write_tails()
    assert parse_file_name(new.name)[0] == 0 and pq.read_metadata(new).num_rows == 2_030
    assert rule_offsets(tmp_path) == list(range(2_030))
    assert log.unlink_superseded(time.monotonic() + SupersededFiles.grace_s + 1) > 0
    assert rule_offsets(tmp_path) == list(range(2_030))
    log.close()


def test_recovery_buries_a_tail_beside_its_sealed_file(tmp_path: Path) -> None:
    one = len(batch(10))
    log = open_log(tmp_path, segment_bytes=one * 2, hot_segments=10)
    log.append(batch(10, tag=0))
    log.append(batch(10, tag=1))
    [tail] = log.write_tails()
    log.append(batch(10, tag=2))  # rolls
    log.convert_sealed_segments()
    log.flush()
    log.close()
    log = open_log(tmp_path, segment_bytes=one * 2, hot_segments=10)
    assert tail.exists() and tail in log.superseded_files()
    assert log.tail_files() == []
    assert [p.name for p in log.parquet_files()] == [file_name(0)]
    assert rule_offsets(tmp_path) == list(range(20))
    log.close()


def test_recovery_unlinks_at_once_a_tail_past_the_recovered_log_end(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(batch(10, tag=0))
    log.append(batch(10, tag=1))
    [tail] = log.write_tails()
    log.flush()
    log.close()
    # The raw log lost its second batch (a torn write after a power loss): the tail holds records
    # the log no longer has, and must not stay visible.
    raw = tmp_path / f"{0:020d}.log"
    os.truncate(raw, len(batch(10)))
    log = open_log(tmp_path)
    assert log.log_end_offset == 10
    assert not tail.exists()
    assert rule_offsets(tmp_path) == []
    [again] = log.write_tails()
    assert again != tail and pq.read_metadata(again).num_rows == 10
    assert rule_offsets(tmp_path) == list(range(10))
    log.close()


def test_a_cleaned_file_of_the_same_range_wins_by_generation_across_a_crash(tmp_path: Path) -> None:
    from workbench.storage.log_cleaner import LogCleaner

    one = len(batch(10))
    log = open_log(tmp_path, segment_bytes=one, hot_segments=0, cleanup_policy="compact", min_cleanable_dirty_ratio=0.0)
    for i in range(4):
        log.append(batch(10, tag=i))  # keys k0..k9 each batch: later batches supersede earlier ones
    log.convert_sealed_segments()
    before = names(tmp_path)
    res = LogCleaner(lambda: [log], io_max_bytes_per_second=0).clean_log(
        log, now_ms=int(time.time() * 1000), force=True
    )
    assert res.cleaned
    assert before <= names(tmp_path)  # nothing replaced or unlinked yet: a listing stays readable
    after_clean = rule_offsets(tmp_path)
    assert after_clean and len(after_clean) == len(set(after_clean))
    log.close()  # crash before the grace period ended
    log = open_log(tmp_path, segment_bytes=one, hot_segments=0, cleanup_policy="compact", min_cleanable_dirty_ratio=0.0)
    assert rule_offsets(tmp_path) == after_clean  # the cleaned view, not the files it replaced
    assert set(log.superseded_files()) == {
        tmp_path / n for n in before if n not in {p.name for p in log.parquet_files()}
    }
    log.close()
