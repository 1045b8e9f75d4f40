"""`workbench.storage.iceberg_tables.publish` alone (no broker): a commit per call with new
records, none without, and a crash between writing a data file and committing it leaves a file
the next publisher adopts instead of writing an overlapping one."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from workbench.open_tables import NAMESPACE, data_glob, open_catalog
from workbench.storage import iceberg_tables, parquet_tier
from workbench.storage.failpoints import FailpointCrash


def tier_rows(lo: int, hi: int) -> pa.Table:
    n = hi - lo
    schema = parquet_tier.schema()
    return pa.table(
        {
            "offset": pa.array(range(lo, hi), pa.int64()),
            "timestamp": pa.array([1_700_000_000_000 + i for i in range(lo, hi)], pa.timestamp("ms", tz="UTC")),
            "key": pa.array([None] * n, pa.binary()),
            "value": pa.array([b"v%d" % i for i in range(lo, hi)], pa.binary()),
            "headers": pa.array([[]] * n, schema.field("headers").type),
            "producer_id": pa.array([-1] * n, pa.int64()),
            "producer_epoch": pa.array([-1] * n, pa.int16()),
            "sequence": pa.array([-1] * n, pa.int32()),
            "batch_base_offset": pa.array([lo] * n, pa.int64()),
            "partition_leader_epoch": pa.array([0] * n, pa.int32()),
            "timestamp_type": pa.array([0] * n, pa.int8()),
        },
        schema=schema,
    )


def write_source(directory, lo: int, hi: int) -> None:
    """A partition's Parquet file (a tail growing in place, as the broker writes it)."""
    parquet_tier.write_table_file(directory / f"{0:020d}.parquet", 0, hi, tier_rows(0, hi), 0, topic="t")


def test_each_publish_commits_only_new_records_once(tmp_path):
    source = tmp_path / "broker-1" / "topics" / "t" / "partition=0"
    source.mkdir(parents=True)
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    write_source(source, 0, 100)
    first = iceberg_tables.publish(job)
    assert (first["committed"], first["from_offset"], first["to_offset"], first["rows"]) == (True, 0, 100, 100)
    assert iceberg_tables.publish(job)["committed"] is False  # nothing new: no snapshot
    write_source(source, 0, 150)
    second = iceberg_tables.publish(job)
    assert (second["from_offset"], second["to_offset"], second["rows"]) == (100, 150, 50)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert len(table.snapshots()) == 2
    assert sorted(table.scan().to_arrow().column("offset").to_pylist()) == list(range(150))
    old = table.scan(snapshot_id=table.snapshots()[0].snapshot_id).to_arrow()
    assert sorted(old.column("offset").to_pylist()) == list(range(100))


def test_a_file_left_by_a_crash_before_the_commit_is_adopted_not_duplicated(tmp_path):
    source = tmp_path / "partition=0"
    source.mkdir()
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    write_source(source, 0, 80)
    iceberg_tables.publish(job)
    write_source(source, 0, 120)
    # A publisher wrote [80, 120) and died before committing it.
    orphan = root / "t" / "data" / f"p{0:05d}-{80:020d}.parquet"
    rows = iceberg_tables._read_range(source, 80)[2]
    iceberg_tables._write_data_file(orphan, iceberg_tables._to_iceberg(rows, 0), 120)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert sorted(table.scan().to_arrow().column("offset").to_pylist()) == list(range(80))  # still consistent
    write_source(source, 0, 130)  # the log grew meanwhile
    answer = iceberg_tables.publish(job)
    assert (answer["from_offset"], answer["to_offset"]) == (80, 120)  # the orphan's range, adopted
    answer = iceberg_tables.publish(job)
    assert (answer["from_offset"], answer["to_offset"]) == (120, 130)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert sorted(table.scan().to_arrow().column("offset").to_pylist()) == list(range(130))
    n = pq.ParquetDataset([str(p) for p in (root / "t" / "data").glob("p*.parquet")]).read().num_rows
    assert n == 130  # data files never overlap
    assert data_glob(root, "t").endswith("*.parquet")


def source_file(directory, lo: int, hi: int) -> None:
    """A Parquet file of the partition holding ``[lo, hi)`` (sealed, merged or tail)."""
    parquet_tier.write_table_file(directory / f"{lo:020d}.parquet", lo, hi, tier_rows(lo, hi), 0, topic="t")


def table_offsets(root) -> list[int]:
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    return sorted(table.scan().to_arrow().column("offset").to_pylist())


def test_a_merged_file_and_its_not_yet_deleted_members_publish_each_offset_once(tmp_path):
    """The cleaner renames a merged file over its first member before deleting the others: a
    publisher listing the directory in between sees overlapping files (found as a record twice)."""
    source = tmp_path / "partition=0"
    source.mkdir()
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    source_file(source, 0, 50)
    assert iceberg_tables.publish(job)["to_offset"] == 50
    source_file(source, 0, 300)  # merged [0, 300) over the member [0, 100) ...
    source_file(source, 100, 200)  # ... whose later members are still there
    source_file(source, 200, 300)
    source_file(source, 300, 350)  # and the tail after them
    answer = iceberg_tables.publish(job)
    assert (answer["from_offset"], answer["to_offset"], answer["rows"]) == (50, 350, 300)
    assert table_offsets(root) == list(range(350))


def test_a_hole_at_the_published_offset_publishes_nothing_and_retention_starts_at_the_log_start(tmp_path):
    source = tmp_path / "partition=0"
    source.mkdir()
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    source_file(source, 100, 150)  # [0, 100) not written yet (or being replaced as we list)
    answer = iceberg_tables.publish(job)
    assert answer["committed"] is False  # never a snapshot that skips [0, 100)
    answer = iceberg_tables.publish({**job, "log_start_offset": 100})  # retention removed [0, 100)
    assert (answer["committed"], answer["from_offset"], answer["to_offset"]) == (True, 100, 150)
    assert table_offsets(root) == list(range(100, 150))


def test_a_data_file_with_an_offset_twice_is_refused(tmp_path):
    with pytest.raises(ValueError, match="each offset once"):
        iceberg_tables._check_once(pa.concat_tables([tier_rows(0, 10), tier_rows(5, 12)]), 0, 12)
    with pytest.raises(ValueError, match="each offset once"):
        iceberg_tables._check_once(tier_rows(0, 10), 0, 9)  # a row at or above the range's end
    iceberg_tables._check_once(tier_rows(3, 10), 3, 10)


def test_a_commit_that_meets_a_concurrent_one_decides_again_from_the_new_snapshot(tmp_path, monkeypatch):
    """Two brokers commit different partitions of one table at once. pyiceberg's own retry would
    rebase the loser's append, with its stale carried-forward offsets, onto the winner's snapshot,
    and the winner's range was published again by the next commit (a record twice, found by
    test_iceberg_snapshots_are_prefixes_of_the_log_with_each_record_once)."""
    root = tmp_path / "iceberg"
    jobs = {}
    for part in (0, 1):
        source = tmp_path / f"partition={part}"
        source.mkdir()
        source_file(source, 0, 100)
        jobs[part] = {"root": str(root), "topic": "t", "partition": part, "directory": str(source)}
    iceberg_tables.publish(jobs[0])
    iceberg_tables.publish(jobs[1])
    for part in (0, 1):
        source_file(Path(jobs[part]["directory"]), 100, 200)
    real = iceberg_tables._read_range
    interleaved = []

    def read_range(directory, start, log_start=0):
        if not interleaved:  # partition 0 has loaded the table: partition 1 commits meanwhile
            interleaved.append(None)
            interleaved[0] = iceberg_tables.publish(jobs[1])
        return real(directory, start, log_start)

    monkeypatch.setattr(iceberg_tables, "_read_range", read_range)
    answer = iceberg_tables.publish(jobs[0])
    monkeypatch.setattr(iceberg_tables, "_read_range", real)
    assert (interleaved[0]["from_offset"], interleaved[0]["to_offset"]) == (100, 200)
    assert (answer["from_offset"], answer["to_offset"]) == (100, 200)
    assert iceberg_tables.publish(jobs[1])["committed"] is False  # partition 1 is published up to 200
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert iceberg_tables.published_offsets(table) == {0: 200, 1: 200}
    rows = table.scan(selected_fields=("partition", "offset")).to_arrow()
    pairs = sorted(zip(rows.column("partition").to_pylist(), rows.column("offset").to_pylist(), strict=True))
    assert pairs == [(p, o) for p in (0, 1) for o in range(200)]


def test_retention_drops_whole_data_files_below_the_log_start_with_their_history(tmp_path):
    source = tmp_path / "partition=0"
    source.mkdir()
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    for hi in (100, 200, 300):  # three commits: data files [0, 100), [100, 200), [200, 300)
        source_file(source, 0, hi)
        iceberg_tables.publish(job)
    data = root / "t" / "data"
    assert len(list(data.glob("p*.parquet"))) == 3
    # DeleteRecords to 250: [0, 100) and [100, 200) are wholly below, [200, 300) straddles
    answer = iceberg_tables.publish({**job, "log_start_offset": 250})
    assert (answer["committed"], answer["deleted_below"]) == (False, 200)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert table_offsets(root) == list(range(200, 300))
    [snap] = table.snapshots()  # older snapshots referenced the dropped files: expired with them
    assert snap.summary.additional_properties["workbench.deleted-below"] == "200"
    assert iceberg_tables.published_offsets(table) == {0: 300}  # carried forward
    assert [p.name for p in data.glob("p*.parquet")] == [f"p00000-{200:020d}.parquet"]
    assert iceberg_tables.publish({**job, "log_start_offset": 250})["deleted_below"] is None  # nothing more
    source_file(source, 0, 350)
    answer = iceberg_tables.publish({**job, "log_start_offset": 250})
    assert (answer["from_offset"], answer["to_offset"]) == (300, 350)
    assert table_offsets(root) == list(range(200, 350))


def test_snapshots_older_than_the_expiry_age_go_keeping_the_newest(tmp_path):
    source = tmp_path / "partition=0"
    source.mkdir()
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    source_file(source, 0, 10)
    iceberg_tables.publish(job)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    table.transaction().set_properties(
        {iceberg_tables.MAX_SNAPSHOT_AGE: "1", iceberg_tables.MIN_SNAPSHOTS: "3"}
    ).commit_transaction()  # what a user would set with pyiceberg
    expired = []
    for hi in range(20, 80, 10):
        source_file(source, 0, hi)
        expired.append(iceberg_tables.publish(job)["expired"])
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert len(table.snapshots()) == 3 and sum(expired) == 4  # 7 commits, the newest 3 kept
    assert table.properties[iceberg_tables.MIN_SNAPSHOTS] == "3"  # the committer keeps the user's setting
    assert table_offsets(root) == list(range(70))  # appends only: every record still there


#: The six files [0, 10) ... [50, 60) merged: its range, and the sequence number of its snapshot.
MERGED = f"p00000-{0:020d}-{60:020d}-g7.parquet"


def committed_files(root, snapshot_id=None) -> list[str]:
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    return sorted(Path(f.file_path).name for f in iceberg_tables._partition_files(table, 0, snapshot_id))


def glob_counts(root) -> tuple[int, int]:
    """count(*) and distinct offsets by the documented rule for plain Parquet readers."""
    import duckdb

    from workbench.open_tables import data_files_sql

    return (
        duckdb.connect()
        .execute(f'SELECT count(*), count(DISTINCT "offset") FROM ({data_files_sql(root, "t")})')
        .fetchone()
    )


def six_small_files(tmp_path):
    """Six commits of 10 records each (data files [0, 10) ... [50, 60)), all older than a second."""
    import os
    import time

    source = tmp_path / "partition=0"
    source.mkdir()
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    for hi in range(10, 70, 10):
        source_file(source, 0, hi)
        assert iceberg_tables.publish(job)["committed"]
    for path in (root / "t" / "data").glob("p*.parquet"):
        os.utime(path, (time.time() - 60, time.time() - 60))
    return root, job


def test_small_files_merge_into_one_replace_snapshot_that_keeps_each_offset_once(tmp_path):
    root, _job = six_small_files(tmp_path)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    before = [s.snapshot_id for s in table.snapshots()]
    summary = iceberg_tables._maybe_merge(table, root, "t", 0, age_ms=1000, min_files=3)
    assert summary is not None and summary["workbench.merged-files"] == "6"
    assert committed_files(root) == [MERGED]  # one file instead of six
    assert table_offsets(root) == list(range(60))  # the same records, each once
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert iceberg_tables.published_offsets(table) == {0: 60}  # offsets unchanged
    assert table.current_snapshot().summary.operation.value == "overwrite"
    for i, snap_id in enumerate(before):  # time travel is unchanged: snapshot i is offsets [0, 10 (i + 1))
        rows = table.scan(snapshot_id=snap_id).to_arrow().column("offset").to_pylist()
        assert sorted(rows) == list(range(10 * (i + 1)))
    data = root / "t" / "data"
    assert len(list(data.glob("p*.parquet"))) == 7  # the members stay for the older snapshots ...
    assert glob_counts(root) == (60, 60)  # ... and the reading rule counts each record once
    assert iceberg_tables._unlink_superseded(table, root, "t", 0) == 0  # still referenced
    table.maintenance.expire_snapshots().by_ids(before).commit()
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert iceberg_tables._unlink_superseded(table, root, "t", 0) == 6  # no snapshot has them now
    assert [p.name for p in data.glob("p*.parquet")] == [MERGED]
    assert glob_counts(root) == (60, 60) and table_offsets(root) == list(range(60))


def test_young_or_few_files_are_not_merged_and_runs_stop_at_a_gap(tmp_path):
    root, _job = six_small_files(tmp_path)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert iceberg_tables._maybe_merge(table, root, "t", 0, age_ms=120_000, min_files=3) is None  # too young
    assert iceberg_tables._maybe_merge(table, root, "t", 0, age_ms=1000, min_files=7) is None  # too few
    assert len(committed_files(root)) == 6


def test_a_crash_mid_merge_leaves_the_table_consistent_and_the_next_merge_adopts_the_file(tmp_path, monkeypatch):
    from workbench.storage.failpoints import ENV, FailpointCrash

    root, job = six_small_files(tmp_path)
    merged = root / "t" / "data" / MERGED
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    monkeypatch.setenv(ENV, "iceberg.merge_before_commit")
    with pytest.raises(FailpointCrash):
        iceberg_tables._maybe_merge(table, root, "t", 0, age_ms=1000, min_files=3)
    assert merged.exists()  # written whole, referenced by no snapshot
    assert len(committed_files(root)) == 6 and table_offsets(root) == list(range(60))
    assert glob_counts(root) == (60, 60)
    inode = merged.stat().st_ino
    monkeypatch.setenv(ENV, "iceberg.merge_after_commit")  # committed, then the process dies
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    with pytest.raises(FailpointCrash):
        iceberg_tables._maybe_merge(table, root, "t", 0, age_ms=1000, min_files=3)
    monkeypatch.delenv(ENV)
    assert committed_files(root) == [merged.name] and merged.stat().st_ino == inode  # adopted
    assert table_offsets(root) == list(range(60)) and glob_counts(root) == (60, 60)
    # publishing goes on after the merge, from the same offset
    source_file(tmp_path / "partition=0", 0, 75)
    answer = iceberg_tables.publish({**job, "merge_age_ms": 1000, "merge_min_files": 3})
    assert (answer["from_offset"], answer["to_offset"]) == (60, 75)
    assert table_offsets(root) == list(range(75)) and glob_counts(root) == (75, 75)


def test_retention_after_a_merge_drops_the_merged_file_and_its_members(tmp_path):
    root, job = six_small_files(tmp_path)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    iceberg_tables._maybe_merge(table, root, "t", 0, age_ms=1000, min_files=3)
    source_file(tmp_path / "partition=0", 60, 80)
    assert iceberg_tables.publish(job)["to_offset"] == 80
    answer = iceberg_tables.publish({**job, "log_start_offset": 70})
    assert answer["deleted_below"] == 60  # the merged file as a whole, never rewritten
    assert table_offsets(root) == list(range(60, 80))
    assert [p.name for p in (root / "t" / "data").glob("p*.parquet")] == [f"p00000-{60:020d}.parquet"]


def cleaned_file(directory, lo: int, hi: int, keep) -> None:
    """What the log cleaner leaves: ``[lo, hi)`` rewritten with only the offsets ``keep`` accepts."""
    import os

    import pyarrow.compute as pc

    rows = tier_rows(lo, hi)
    rows = rows.filter(pc.is_in(rows.column("offset"), pa.array([o for o in range(lo, hi) if keep(o)], pa.int64())))
    tmp = directory / f"{lo:020d}.parquet.cleaned"
    writer = parquet_tier.MergedFileWriter(tmp, lo, topic="t")
    writer.add(rows)
    writer.finish(hi, 0, merged=True)
    os.replace(tmp, directory / f"{lo:020d}.parquet")


def test_a_log_cleaner_rewrite_is_reflected_by_an_overwrite_snapshot(tmp_path):
    source = tmp_path / "partition=0"
    source.mkdir()
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    for lo, hi in ((0, 40), (40, 80), (80, 100)):  # three commits, each from a sealed segment
        source_file(source, lo, hi)
        assert iceberg_tables.publish(job)["to_offset"] == hi
    cleaned_file(source, 0, 80, keep=lambda o: o % 4 == 0 or o >= 70)  # segments [0, 40) + [40, 80) cleaned
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    before = table.current_snapshot().snapshot_id
    summary = iceberg_tables._reflect_compaction(table, root, "t", 0, source)
    assert summary is not None and (summary["workbench.compacted-from"], summary["workbench.compacted-to"]) == (
        "0",
        "80",
    )
    want = [o for o in range(100) if o % 4 == 0 or o >= 70]
    assert table_offsets(root) == want  # what the log holds now
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert iceberg_tables.published_offsets(table) == {0: 100}
    old = sorted(table.scan(snapshot_id=before).to_arrow().column("offset").to_pylist())
    assert old == list(range(100))  # time travel still shows the log before the cleaner ran
    assert glob_counts(root) == (len(want), len(want))  # the replaced files are skipped by the rule
    assert iceberg_tables._reflect_compaction(table, root, "t", 0, source) is None  # reflected once
    source_file(source, 100, 120)  # later commits carry the reflected state forward
    assert iceberg_tables.publish(job)["to_offset"] == 120
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert iceberg_tables._reflect_compaction(table, root, "t", 0, source) is None
    cleaned_file(source, 0, 80, keep=lambda o: o % 8 == 0 or o >= 70)  # cleaned again: fewer still
    summary = iceberg_tables._reflect_compaction(table, root, "t", 0, source)
    assert summary is not None
    want = [o for o in range(120) if o % 8 == 0 or o >= 70]
    assert table_offsets(root) == want and glob_counts(root) == (len(want), len(want))


def test_a_crash_before_the_compaction_commit_leaves_the_table_as_it_was(tmp_path, monkeypatch):
    from workbench.storage.failpoints import ENV, FailpointCrash

    source = tmp_path / "partition=0"
    source.mkdir()
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    source_file(source, 0, 50)
    iceberg_tables.publish(job)
    cleaned_file(source, 0, 50, keep=lambda o: o % 2 == 0)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    monkeypatch.setenv(ENV, "iceberg.compaction_before_commit")
    with pytest.raises(FailpointCrash):
        iceberg_tables._reflect_compaction(table, root, "t", 0, source)
    monkeypatch.delenv(ENV)
    assert table_offsets(root) == list(range(50))  # the snapshot before: all of it, each once
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert iceberg_tables._reflect_compaction(table, root, "t", 0, source) is not None  # done on the next round
    assert table_offsets(root) == list(range(0, 50, 2))
    assert glob_counts(root) == (25, 25)


def test_merges_every_round_keep_disk_bounded_and_never_unlink_a_file_a_snapshot_needs(tmp_path):
    """Merges more frequent than snapshot expiry: each member goes once the snapshots older than its
    merge are expired (not when the newest merged file reaches the oldest snapshot: it never does)."""
    import os
    import time

    source = tmp_path / "partition=0"
    source.mkdir()
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    job |= {"merge_age_ms": 1000, "merge_min_files": 3}
    data = root / "t" / "data"
    on_disk = []
    for i in range(1, 25):
        source_file(source, 0, 10 * i)
        iceberg_tables._last_merge_check.clear()  # a merge check every round
        iceberg_tables.publish(job)
        if i == 1:
            table = open_catalog(root).load_table((NAMESPACE, "t"))
            table.transaction().set_properties(
                {iceberg_tables.MAX_SNAPSHOT_AGE: "1", iceberg_tables.MIN_SNAPSHOTS: "4"}
            ).commit_transaction()
        for path in data.glob("p*.parquet"):
            os.utime(path, (time.time() - 60, time.time() - 60))
        on_disk.append(len(list(data.glob("p*.parquet"))))
        table = open_catalog(root).load_table((NAMESPACE, "t"))
        for snap in table.snapshots():  # every snapshot left still reads: none of its files was unlinked
            offsets = sorted(table.scan(snapshot_id=snap.snapshot_id).to_arrow().column("offset").to_pylist())
            assert offsets == list(range(len(offsets)))
        assert table_offsets(root) == list(range(10 * i))
        assert glob_counts(root) == (10 * i, 10 * i)
    assert max(on_disk[5:]) <= 10  # bounded: 24 commits, not 24 files and more
    assert sum(1 for s in table.snapshots() if s.summary.additional_properties.get("workbench.operation")) >= 1


def referenced_metadata(root) -> tuple[set[str], set[str]]:
    """(Avro files, metadata JSON files) the table's snapshots and metadata log name, by file name."""
    from pyiceberg.manifest import read_manifest_list

    table = open_catalog(root).load_table((NAMESPACE, "t"))
    avro = set()
    for snap in table.snapshots():
        avro.add(Path(snap.manifest_list).name)
        avro.update(Path(m.manifest_path).name for m in read_manifest_list(table.io.new_input(snap.manifest_list)))
    jsons = {Path(e.metadata_file).name for e in table.metadata.metadata_log} | {Path(table.metadata_location).name}
    return avro, jsons


def metadata_on_disk(root) -> tuple[set[str], set[str]]:
    meta = root / "t" / "metadata"
    return {p.name for p in meta.glob("*.avro")}, {p.name for p in meta.glob("*.metadata.json")}


def test_metadata_files_on_disk_stay_bounded_over_many_commits_merges_and_expiries(tmp_path, monkeypatch):
    """pyiceberg's snapshot expiry edits the metadata only: each commit's manifest and manifest list
    stayed on disk for ever (two Avro files a commit). After each expiry the committer unlinks what
    no snapshot left names (`_sweep_metadata`); every snapshot left still reads each offset once."""
    import os
    import time

    monkeypatch.setattr(iceberg_tables, "METADATA_ORPHAN_GRACE_S", 0.0, raising=False)
    source = tmp_path / "partition=0"
    source.mkdir()
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    job |= {"merge_age_ms": 1000, "merge_min_files": 3}
    data = root / "t" / "data"
    for i in range(1, 41):
        source_file(source, 0, 10 * i)
        iceberg_tables._last_merge_check.clear()  # a merge check every round
        assert iceberg_tables.publish(job)["ok"]
        if i == 1:
            table = open_catalog(root).load_table((NAMESPACE, "t"))
            table.transaction().set_properties(
                {iceberg_tables.MAX_SNAPSHOT_AGE: "1", iceberg_tables.MIN_SNAPSHOTS: "4"}
            ).commit_transaction()
        for path in data.glob("p*.parquet"):
            os.utime(path, (time.time() - 60, time.time() - 60))
    avro, jsons = metadata_on_disk(root)
    live_avro, live_json = referenced_metadata(root)
    assert avro == live_avro  # nothing unreferenced left, nothing referenced missing
    assert live_json <= jsons and len(jsons) <= 21  # write.metadata.previous-versions-max (20) + the current one
    assert len(avro) <= 30  # 40 commits and their merges wrote about 100
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    assert len(table.snapshots()) <= 6
    for snap in table.snapshots():
        offsets = sorted(table.scan(snapshot_id=snap.snapshot_id).to_arrow().column("offset").to_pylist())
        assert offsets == list(range(len(offsets)))
    assert table_offsets(root) == list(range(400))
    assert glob_counts(root) == (400, 400)


def test_expiry_keeps_the_snapshot_the_published_offsets_are_read_from(tmp_path):
    """With one snapshot to keep and every older one expired at each commit, the current snapshot
    (whose ``workbench.next-offsets`` the next commit starts from) stays: each record once."""
    source = tmp_path / "partition=0"
    source.mkdir()
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    source_file(source, 0, 10)
    iceberg_tables.publish(job)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    table.transaction().set_properties(
        {iceberg_tables.MAX_SNAPSHOT_AGE: "1", iceberg_tables.MIN_SNAPSHOTS: "1"}
    ).commit_transaction()
    for hi in range(20, 70, 10):
        source_file(source, 0, hi)
        answer = iceberg_tables.publish(job)
        assert (answer["from_offset"], answer["to_offset"]) == (hi - 10, hi)
        table = open_catalog(root).load_table((NAMESPACE, "t"))
        [snap] = table.snapshots()
        assert snap.snapshot_id == table.current_snapshot().snapshot_id
        assert iceberg_tables.published_offsets(table) == {0: hi}
        assert table_offsets(root) == list(range(hi))


_CRASH_DELETING_OLD_METADATA = """
import os, sys
from pyiceberg.catalog import Catalog
from workbench.storage import iceberg_tables
Catalog._delete_old_metadata = staticmethod(lambda *a: os._exit(75))  # killed right after the commit
iceberg_tables.publish({"root": sys.argv[1], "topic": "t", "partition": 0, "directory": sys.argv[2]})
"""


def test_a_kill_between_the_new_metadata_and_deleting_old_ones_leaves_a_readable_table(tmp_path, monkeypatch):
    """pyiceberg commits (new ``*.metadata.json``, the catalog row) and then deletes the metadata
    files dropped from the log (``write.metadata.delete-after-commit.enabled``). A committer killed
    in between leaves the table readable at the new snapshot and a file pyiceberg never deletes
    later (it only deletes files leaving the log): the committer's sweep after the next expiry does."""
    import subprocess
    import sys

    monkeypatch.setattr(iceberg_tables, "METADATA_ORPHAN_GRACE_S", 0.0, raising=False)
    source = tmp_path / "partition=0"
    source.mkdir()
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    source_file(source, 0, 10)
    iceberg_tables.publish(job)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    table.transaction().set_properties({"write.metadata.previous-versions-max": "2"}).commit_transaction()
    for hi in (20, 30, 40):
        source_file(source, 0, hi)
        iceberg_tables.publish(job)
    before = metadata_on_disk(root)[1]
    source_file(source, 0, 50)
    env = {**__import__("os").environ, "PYTHONPATH": ":".join(p for p in sys.path if p)}
    killed = subprocess.run([sys.executable, "-c", _CRASH_DELETING_OLD_METADATA, str(root), str(source)], env=env)
    assert killed.returncode == 75
    assert table_offsets(root) == list(range(50))  # committed, readable
    leftover = before - referenced_metadata(root)[1]
    assert leftover and leftover <= metadata_on_disk(root)[1]  # the file the kill kept from deletion
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    table.transaction().set_properties(
        {iceberg_tables.MAX_SNAPSHOT_AGE: "1", iceberg_tables.MIN_SNAPSHOTS: "2"}
    ).commit_transaction()
    source_file(source, 0, 60)
    assert iceberg_tables.publish(job)["expired"]
    assert not leftover & metadata_on_disk(root)[1]  # swept after that expiry
    assert metadata_on_disk(root)[1] == referenced_metadata(root)[1]
    assert table_offsets(root) == list(range(60))


def test_a_crash_after_an_expiry_before_its_sweep_leaves_files_the_next_sweep_unlinks(tmp_path, monkeypatch):
    monkeypatch.setattr(iceberg_tables, "METADATA_ORPHAN_GRACE_S", 0.0, raising=False)
    source = tmp_path / "partition=0"
    source.mkdir()
    root = tmp_path / "iceberg"
    job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source)}
    for hi in (10, 20, 30):
        source_file(source, 0, hi)
        iceberg_tables.publish(job)
    table = open_catalog(root).load_table((NAMESPACE, "t"))
    table.transaction().set_properties(
        {iceberg_tables.MAX_SNAPSHOT_AGE: "1", iceberg_tables.MIN_SNAPSHOTS: "2"}
    ).commit_transaction()
    monkeypatch.setenv("WORKBENCH_FAILPOINT", "iceberg.expire_before_sweep")
    source_file(source, 0, 40)
    with pytest.raises(FailpointCrash):
        iceberg_tables.publish(job)
    monkeypatch.delenv("WORKBENCH_FAILPOINT")
    assert table_offsets(root) == list(range(40))  # the expiry committed; the table reads
    assert metadata_on_disk(root)[0] > referenced_metadata(root)[0]  # the expired snapshots' files, left
    source_file(source, 0, 50)
    assert iceberg_tables.publish(job)["expired"]
    assert metadata_on_disk(root)[0] == referenced_metadata(root)[0]
    assert table_offsets(root) == list(range(50))
