"""Creating a partition is cheap (issue 19: 10,000 new partitions blocked a broker for a minute).

A new partition's log costs a directory and nothing else until it is written: the segment file
is created by the first append, the leader epoch an election records on an empty log is written
by the first flush after a record is in it, no empty checkpoint is written at load. Recovery must
find the same log either way. And `ReplicaManager` opens many new logs a slice at a time.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.broker.replica_manager import ReplicaManager
from workbench.controller.image import MetadataImage
from workbench.storage import LogConfig, PartitionLog
from workbench.storage.leader_epoch import CHECKPOINT_NAME, LeaderEpochCache
from workbench.storage.segment import LogSegment

T0 = 1_700_000_000_000


def batch(n: int = 3) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
    for i in range(n):
        b.append(i, T0 + i, None, b"v%d" % i, [])
    return bytes(b.build())


def files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_a_new_partition_log_is_a_directory_and_nothing_else(tmp_path: Path) -> None:
    d = tmp_path / "t" / "partition=0"
    log = PartitionLog(d, LogConfig(), topic="t", partition=0, hw_tracks_leo=False)
    log.assign_leader_epoch(3)  # what a new leader records
    log.set_hw_tracks_leo(False)
    assert files(d) == []
    assert log.latest_epoch == 3  # known in memory: OffsetForLeaderEpoch answers from it
    assert not log.flush_pending()
    log.flush()
    assert files(d) == []  # nothing to flush: no segment, no record in the epoch
    log.close()
    assert files(d) == []
    again = PartitionLog(d, LogConfig(), topic="t", partition=0, hw_tracks_leo=False)
    assert (again.log_start_offset, again.log_end_offset, again.high_watermark) == (0, 0, 0)
    again.close()


def test_the_first_append_creates_the_segment_and_the_next_flush_the_epoch_checkpoint(tmp_path: Path) -> None:
    d = tmp_path / "p"
    log = PartitionLog(d, LogConfig(), topic="t", partition=0)
    log.assign_leader_epoch(2)
    info = log.append(batch(), leader_epoch=2)
    assert info.base_offset == 0
    assert files(d) == [f"{0:020d}.log"]
    assert log.flush_pending()
    log.flush()
    assert CHECKPOINT_NAME in files(d)
    assert (d / CHECKPOINT_NAME).read_text().split() == ["0", "1", "2", "0"]
    assert not log.flush_pending()
    log.close()


def test_a_crash_before_the_deferred_epoch_checkpoint_recovers_the_epoch_from_the_batches(tmp_path: Path) -> None:
    d = tmp_path / "p"
    log = PartitionLog(d, LogConfig(), topic="t", partition=0)
    log.assign_leader_epoch(5)
    log.append(batch(), leader_epoch=5)
    assert CHECKPOINT_NAME not in files(d)
    # No flush, no close: the process is killed (the page cache keeps the segment).
    recovered = PartitionLog(d, LogConfig(), topic="t", partition=0)
    assert recovered.log_end_offset == 3
    assert recovered.latest_epoch == 5
    assert recovered.end_offset_for_epoch(5) == (5, 3)
    recovered.close()


def test_loading_an_empty_directory_writes_no_empty_epoch_checkpoint(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()  # exists already: the full recovery path, not the new-directory one
    log = PartitionLog(d, LogConfig(), topic="t", partition=0)
    assert files(d) == []
    log.close()


def test_a_malformed_epoch_checkpoint_is_replaced_even_when_the_log_is_empty(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / CHECKPOINT_NAME).write_text("garbage\n")
    PartitionLog(d, LogConfig(), topic="t", partition=0).close()
    assert (d / CHECKPOINT_NAME).read_text().split() == ["0", "0"]


def test_an_epoch_change_without_flush_marks_the_cache_dirty_until_written(tmp_path: Path) -> None:
    cache = LeaderEpochCache(tmp_path)
    assert cache.assign(1, 0, flush=False)
    assert cache.dirty and not (tmp_path / CHECKPOINT_NAME).exists()
    cache.flush()
    assert not cache.dirty
    fresh = LeaderEpochCache(tmp_path)
    assert fresh.load() and fresh.entries == [(1, 0)]


def test_a_lazy_segment_reads_as_empty_and_its_first_write_creates_the_file(tmp_path: Path) -> None:
    seg = LogSegment(tmp_path, 0, 4096, lazy=True)
    assert not seg.on_disk
    assert seg.read(0, 1 << 20, 10) is None
    assert seg.read_all() == b""
    assert list(seg.scan()) == []
    assert seg.recover(verify_crc=True) == 0
    assert seg.truncate_to(0) == 0
    assert not (tmp_path / f"{0:020d}.log").exists()
    seg.close()
    assert seg.fd == -1  # a closed lazy segment never creates its file
    assert not (tmp_path / f"{0:020d}.log").exists()


# -- ReplicaManager: many new partitions, a slice at a time ----------------------------------------


def image_with(topic: str, partitions: int, topic_id: str | None = None) -> MetadataImage:
    image = MetadataImage()
    image.apply({"t": "broker", "id": 1, "host": "127.0.0.1", "port": 1})
    image.apply({"t": "topic", "name": topic, "id": topic_id or uuid.uuid4().hex, "configs": {}})
    for p in range(partitions):
        image.apply(
            {"t": "partition", "topic": topic, "p": p, "replicas": [1], "isr": [1], "leader": 1, "leader_epoch": 0}
        )
    return image


def test_reconcile_with_a_budget_opens_some_logs_and_open_pending_the_rest(tmp_path: Path) -> None:
    replicas = ReplicaManager(1, tmp_path)
    image = image_with("big", 100)
    assert not replicas.reconcile(image, budget_s=0.0)  # a zero budget still opens one
    assert len(replicas.logs) == 1
    assert replicas.opening == 99
    assert replicas.not_open("big") == set(range(1, 100))
    assert replicas.partition("big", 0) is not None and replicas.partition("big", 0).is_leader
    while not replicas.open_pending(budget_s=0.0):
        pass
    assert sorted(replicas.logs) == [("big", p) for p in range(100)]
    assert replicas.opening == 0 and replicas.not_open("big") == set()
    assert all(replicas.partition("big", p).is_leader for p in range(100))
    replicas.close()


def test_a_small_delta_is_opened_at_once_internal_topics_first(tmp_path: Path) -> None:
    replicas = ReplicaManager(1, tmp_path)
    image = image_with("small", 10)
    assert replicas.reconcile(image, budget_s=0.0)  # at most OPEN_AT_ONCE: no slices
    assert len(replicas.logs) == 10
    image = image_with("Zeta", 100)
    image.apply({"t": "topic", "name": "__consumer_offsets", "id": uuid.uuid4().hex, "configs": {}})
    for p in range(5):
        image.apply(
            {
                "t": "partition",
                "topic": "__consumer_offsets",
                "p": p,
                "replicas": [1],
                "isr": [1],
                "leader": 1,
                "leader_epoch": 0,
            }
        )
    other = ReplicaManager(1, tmp_path / "other")
    assert not other.reconcile(image, budget_s=0.0)
    assert list(other.logs) == [("__consumer_offsets", 0)]  # before "Zeta", which sorts first by name
    other.close()
    replicas.close()


def test_a_topic_deleted_while_its_logs_wait_to_open_is_not_opened(tmp_path: Path) -> None:
    replicas = ReplicaManager(1, tmp_path)
    image = image_with("doomed", 80)
    assert not replicas.reconcile(image, budget_s=0.0)
    image.apply({"t": "remove_topic", "name": "doomed"})
    assert replicas.open_pending()  # nothing left to open: the topic is gone
    assert len(replicas.logs) == 1  # the one opened before; the next reconcile drops it
    replicas.reconcile(image)
    assert replicas.logs == {}
    assert not (tmp_path / "topics" / "doomed").exists()
    replicas.close()


def test_a_topic_recreated_while_its_logs_wait_is_opened_only_after_the_next_reconcile(tmp_path: Path) -> None:
    replicas = ReplicaManager(1, tmp_path)
    image = image_with("again", 80)
    replicas.reconcile(image, budget_s=0.0)
    image.apply({"t": "topic", "name": "again", "id": uuid.uuid4().hex, "configs": {}})  # a new incarnation
    for p in range(80):
        image.apply(
            {"t": "partition", "topic": "again", "p": p, "replicas": [1], "isr": [1], "leader": 1, "leader_epoch": 0}
        )
    assert replicas.open_pending()  # queued for the old topic id: skipped
    assert len(replicas.logs) == 1
    assert replicas.reconcile(image)  # drops the old incarnation, opens the new one
    assert sorted(replicas.logs) == [("again", p) for p in range(80)]
    replicas.close()
