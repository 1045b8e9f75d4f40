"""`ReplicaManager`: the partition logs this broker hosts, kept in step with metadata.

Kafka's name for the same job: open a log for every partition the metadata
assigns to this broker, close and delete logs of deleted topics, and wake
fetchers that long-poll for new data.

On disk a partition lives in `<broker_dir>/topics/<topic>/partition=<p>/`
(hive style, so `topics/<topic>/partition=*/*.parquet` is a partitioned
dataset to any Parquet reader). `topics/<topic>/topic.id` records the topic's
id, so a topic deleted and recreated under the same name while this broker
was down never inherits the old data.

Opening logs is the one part of applying metadata whose cost grows with the
delta: a CreateTopics of 10,000 partitions opens 10,000 logs. `reconcile`
therefore queues the logs it has to open and opens them for at most a slice
of time (`OPEN_SLICE_S`) per call; the broker calls `open_pending` again after
the event loop has answered what arrived meanwhile (heartbeats, fetches), so a
large create never stalls the broker. A partition whose log is not open yet is
answered NOT_LEADER_OR_FOLLOWER (retriable), as Kafka answers for a partition
its broker has not become leader of yet.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from workbench.broker.log_flusher import LogFlusher
from workbench.broker.partition import Partition
from workbench.broker.refused_batches import RefusedBatches
from workbench.controller.image import MetadataImage, PartitionInfo
from workbench.controller.topics import TOPIC_CONFIG_DEFAULTS
from workbench.storage import LogConfig, PartitionLog

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]

#: How long one call opens new logs before it returns to the event loop. A fresh log costs
#: about 0.2 ms of CPU here (a directory and, for a leader, nothing else until the first
#: write), more when the disk is busy; 20 ms keeps a broker answering heartbeats and fetches
#: within a few tens of milliseconds while it opens thousands of logs.
OPEN_SLICE_S = 0.02
#: A delta with at most this many new logs is opened in one go, as before slices existed: a
#: group or transaction coordinator then serves its new internal partitions (50 each) from the
#: first request after the image showed them.
OPEN_AT_ONCE = 64


class ReplicaManager:
    def __init__(self, node_id: int, broker_dir: Path, log_defaults: dict[str, str] | None = None) -> None:
        self.node_id = node_id
        self.topics_dir = Path(broker_dir) / "topics"
        self.topics_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_defaults = {**TOPIC_CONFIG_DEFAULTS, **(log_defaults or {})}
        self.logs: dict[TopicPartition, PartitionLog] = {}
        self.partitions: dict[TopicPartition, Partition] = {}
        self._topic_ids: dict[str, str] = {}
        self._topic_configs: dict[str, dict[str, str]] = {}
        # Long-poll fetches waiting for a partition: consumers (and share fetches) for its high
        # watermark to move, followers for its log end offset to move. Woken apart, each only by
        # what can answer it (issue 19): an append under acks=all leaves the high watermark where
        # it was, and a high watermark advance gives a follower at the log end nothing to read.
        self._waiters: dict[TopicPartition, list[asyncio.Future]] = {}
        self._follower_waiters: dict[TopicPartition, list[asyncio.Future]] = {}
        #: Group commit for flush.messages: produce answers and follower fetches wait on it.
        self.flusher = LogFlusher()
        self.refused = RefusedBatches()  # idempotent batches refused unwritten (issue 12)
        self._image: MetadataImage | None = None
        #: Why the log directory went offline (KIP-112), or None while it works.
        self.log_dir_offline: str | None = None
        #: Called once when it goes offline (the broker tells the controller).
        self.on_log_dir_failure: Callable[[str], None] | None = None
        #: Damage recovery found, per partition: {"state": "repairing" | "lost", "ranges", "until"}.
        self.damage: dict[TopicPartition, dict[str, object]] = {}
        self._been_in_sync: set[TopicPartition] = set()  # partitions whose ISR had us since start
        #: Assigned to us, log not opened yet (see OPEN_SLICE_S), in the order they are opened;
        #: and the same by topic (what Metadata answers as not ready here).
        self._to_open: deque[TopicPartition] = deque()
        self._to_open_by_topic: dict[str, set[int]] = {}
        #: A follower replica was opened since `take_followers_opened` last asked (fetchers to start).
        self._followers_opened = False
        self._replicated: list[Partition] | None = None  # see `replicated_partitions`

    def mark_log_dir_offline(self, reason: str) -> None:
        """A write to the log directory failed (KAFKA_STORAGE_ERROR: a full or failing disk).

        Kafka's LogDirFailureChannel (KIP-112): the directory is offline from now until the
        broker restarts; no partition on it is appended to or fetched for here any more, and
        the controller moves their leadership to healthy in-sync replicas."""
        if self.log_dir_offline is not None:
            return
        self.log_dir_offline = reason
        log.error(
            "log directory %s offline: %s; its partitions stop on this broker and their leadership moves "
            "to other in-sync replicas until the broker restarts (KIP-112)",
            self.topics_dir,
            reason,
        )
        for partition in self.partitions.values():
            partition.fail_waiters()
        if self.on_log_dir_failure is not None:
            self.on_log_dir_failure(reason)

    def _broker_epoch(self, broker_id: int) -> int:
        """The current broker epoch (registration offset) of `broker_id`, -1 when unknown."""
        info = self._image.brokers.get(broker_id) if self._image is not None else None
        return info.epoch if info is not None else -1

    # -- metadata ---------------------------------------------------------------------------------

    def log_config(self, configs: dict[str, str]) -> LogConfig:
        return LogConfig.from_topic_config({**self.log_defaults, **configs})

    def min_insync_replicas(self, topic: str) -> int:
        """The topic's `min.insync.replicas` (else the cluster default): how many in-sync copies an
        acks=all write needs, client records, transaction markers and coordinator records alike."""
        info = self._image.topics.get(topic) if self._image is not None else None
        value = (info.configs.get("min.insync.replicas") if info else None) or self.log_defaults.get(
            "min.insync.replicas", "1"
        )
        try:
            return int(value)
        except ValueError:
            return 1

    def reconcile(self, image: MetadataImage, budget_s: float | None = None) -> bool:
        """Drop logs of deleted topics, apply leadership changes, open logs assigned to us.

        Opening takes at most ``budget_s`` seconds (None, or at most `OPEN_AT_ONCE` new logs:
        until all are open); the rest wait for `open_pending`. Returns True when every assigned
        log is open."""
        self._image = image
        self._replicated = None
        wanted: set[TopicPartition] = set()
        for topic in image.topics.values():
            for p in topic.partitions.values():
                if self.node_id in p.replicas:
                    wanted.add((topic.name, p.index))
        # Topics gone (or recreated with a new id): close and delete.
        for name in list(self._topic_ids):
            info = image.topics.get(name)
            if info is None or info.id != self._topic_ids[name]:
                self._drop_topic(name)
        wanted_topics = {tp[0] for tp in wanted}
        for name, info in image.topics.items():
            if name not in wanted_topics:
                continue
            topic_dir = self.topics_dir / name
            if name not in self._topic_ids:
                id_file = topic_dir / "topic.id"
                if id_file.exists() and id_file.read_text().strip() != info.id:
                    log.info("topic %s was recreated (id %s); deleting old data", name, info.id)
                    shutil.rmtree(topic_dir, ignore_errors=True)
                topic_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                id_file.write_text(info.id)
                self._topic_ids[name] = info.id
            if self._topic_configs.get(name) != info.configs:
                self._topic_configs[name] = dict(info.configs)
                config = self.log_config(info.configs)
                for (t, _p), plog in self.logs.items():
                    if t == name:
                        plog.update_config(config)
        # Partitions reassigned away from us (not in their replica list any more).
        for tp in [tp for tp in self.logs if tp not in wanted and tp[0] in image.topics]:
            self.partitions.pop(tp, None)
            plog = self.logs.pop(tp)
            plog.close()
        to_open: deque[TopicPartition] = deque()
        # Internal topics first: coordinators wait on them.
        for tp in sorted(wanted, key=lambda tp: (not tp[0].startswith("__"), tp)):
            partition = self.partitions.get(tp)
            if partition is None:
                to_open.append(tp)
                continue
            changed, _became_leader = partition.update(image.topics[tp[0]].partitions[tp[1]])
            if changed:
                self._wake(tp)
            partition.note_broker_epochs()
        self._to_open = to_open
        self._to_open_by_topic = {}
        for name, index in to_open:
            self._to_open_by_topic.setdefault(name, set()).add(index)
        return self.open_pending(budget_s if len(to_open) > OPEN_AT_ONCE else None)

    @property
    def opening(self) -> int:
        """How many assigned logs are not open yet."""
        return len(self._to_open)

    def not_open(self, topic: str) -> set[int]:
        """Partitions of ``topic`` assigned to us whose log is not open yet (empty when all are)."""
        return self._to_open_by_topic.get(topic, set()) if self._to_open else set()

    def open_pending(self, budget_s: float | None = None) -> bool:
        """Open queued logs for at most ``budget_s`` seconds (None: all); True when none is left.

        Each is checked against the current image first: a topic deleted (or recreated) since
        it was queued is skipped, the next `reconcile` deals with it."""
        image = self._image
        deadline = None if budget_s is None else time.monotonic() + budget_s
        configs: dict[str, LogConfig] = {}
        while self._to_open:
            tp = self._to_open.popleft()
            name, index = tp
            waiting = self._to_open_by_topic.get(name)
            if waiting is not None:
                waiting.discard(index)
                if not waiting:
                    del self._to_open_by_topic[name]
            topic = image.topics.get(name) if image is not None else None
            pinfo = topic.partitions.get(index) if topic is not None else None
            if (
                tp in self.logs
                or topic is None
                or pinfo is None
                or self.node_id not in pinfo.replicas
                or self._topic_ids.get(name) != topic.id
            ):
                continue
            config = configs.get(name)
            if config is None:
                config = configs[name] = self.log_config(topic.configs)
            self._open(tp, config, pinfo)
            if deadline is not None and time.monotonic() >= deadline:
                break
        return not self._to_open

    def replicated_partitions(self) -> list[Partition]:
        """The partitions with more than one replica (what the ISR loop looks at four times a
        second), kept between metadata changes: 10,000 single-replica partitions cost it nothing."""
        if self._replicated is None:
            self._replicated = [p for p in self.partitions.values() if p.replicated]
        return self._replicated

    def _open(self, tp: TopicPartition, config: LogConfig, pinfo: PartitionInfo) -> None:
        name, index = tp
        self._replicated = None
        self.logs[tp] = PartitionLog(
            self.topics_dir / name / f"partition={index}",
            config,
            topic=name,
            partition=index,
            hw_tracks_leo=len(pinfo.replicas) == 1 and pinfo.leader == self.node_id,
        )
        partition = self.partitions[tp] = Partition(
            self.node_id,
            self.logs[tp],
            pinfo,
            on_high_watermark=functools.partial(self._wake_committed, tp),
            broker_epoch_of=self._broker_epoch,
        )
        self._repair_or_report_damage(tp, partition)
        partition.note_broker_epochs()
        if not partition.is_leader:
            self._followers_opened = True

    def take_followers_opened(self) -> bool:
        """Whether a follower replica was opened since the last call (its leader may need a fetcher)."""
        opened, self._followers_opened = self._followers_opened, False
        return opened

    def remove_orphans(self, image: MetadataImage) -> None:
        """Delete directories of topics the metadata no longer has (deleted while we were down)."""
        if not self.topics_dir.exists():
            return
        for topic_dir in self.topics_dir.iterdir():
            if topic_dir.is_dir() and topic_dir.name not in image.topics:
                log.info("deleting data of deleted topic %s", topic_dir.name)
                shutil.rmtree(topic_dir, ignore_errors=True)

    def _drop_topic(self, name: str) -> None:
        self._replicated = None
        for tp in [tp for tp in self.logs if tp[0] == name]:
            partition = self.partitions.pop(tp, None)
            if partition is not None:
                partition.fail_waiters()
            plog = self.logs.pop(tp)
            try:
                plog.close()
            except Exception:
                log.exception("closing %s-%d", *tp)
            self._wake(tp)
        self._topic_ids.pop(name, None)
        self._topic_configs.pop(name, None)
        shutil.rmtree(self.topics_dir / name, ignore_errors=True)

    # -- access -----------------------------------------------------------------------------------

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self.logs.get((topic, partition))

    def partition(self, topic: str, partition: int) -> Partition | None:
        return self.partitions.get((topic, partition))

    # -- long polling -----------------------------------------------------------------------------

    def notify(self, tp: TopicPartition) -> None:
        """Wake every fetch waiting on `tp` (new records, a marker, a leadership or topic change)."""
        self._wake(tp)

    def notify_appended(self, tp: TopicPartition, *, committed: bool) -> None:
        """A produce appended to `tp`: wake the followers' fetches, and the consumers' only when
        the high watermark already covers the batch (`committed`: one replica in the ISR). Under
        acks=all the consumers wake when the high watermark moves (`Partition`'s callback)."""
        if committed:
            self._wake(tp)
        else:
            _resolve_all(self._follower_waiters.pop(tp, None))

    def _wake(self, tp: TopicPartition) -> None:
        _resolve_all(self._waiters.pop(tp, None))
        _resolve_all(self._follower_waiters.pop(tp, None))

    def _wake_committed(self, tp: TopicPartition) -> None:
        """The high watermark of `tp` moved: what consumers may read grew, the log end did not."""
        _resolve_all(self._waiters.pop(tp, None))

    async def wait_for_data(self, tps: list[TopicPartition], timeout: float, *, follower: bool = False) -> None:
        """Return when any of `tps` gets new data (records below the high watermark; for a
        `follower`, records at all), or after `timeout` seconds."""
        if timeout <= 0 or not tps:
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        waiters = self._follower_waiters if follower else self._waiters
        for tp in tps:
            waiters.setdefault(tp, []).append(fut)
        # A plain timer rather than `asyncio.wait_for` (a second future and two callbacks per
        # long-poll fetch, issue 19): the wake and the timeout both just resolve `fut`.
        timer = loop.call_later(timeout, _resolve, fut)
        try:
            await fut
        finally:
            timer.cancel()
            for tp in tps:
                lst = waiters.get(tp)
                if lst and fut in lst:
                    lst.remove(fut)
                    if not lst:
                        waiters.pop(tp, None)

    # -- damage found at recovery (issue 12, item 4) ---------------------------------------------

    def _repair_or_report_damage(self, tp: TopicPartition, partition: Partition) -> None:
        """React to offset ranges recovery found missing (a damaged segment cut, a damaged Parquet
        file moved aside): a non-compacted log never keeps a hole.

        With another in-sync replica (a healthy copy), the log is truncated to the start of the
        first damaged range and re-fetched from the leader like any replica that is behind: it is
        out of the ISR (a restart took it out) until it has caught up to the high watermark.
        Without one, truncating would throw away the only copy of what follows the damage, so
        the range is reported lost (broker log and `replica-states.json`, shown by describe()).
        """
        plog = partition.log
        ranges = list(getattr(plog, "missing_ranges", []))
        if not ranges:
            return
        plog.missing_ranges = []
        text = ", ".join(f"{s}..{e - 1}" for s, e in ranges)
        healthy = [r for r in partition.info.isr if r != self.node_id]
        if not partition.is_leader and healthy:
            start = ranges[0][0]
            log.error(
                "%s-%d: damaged range %s found at recovery: truncating to %d and re-fetching it from a "
                "healthy replica (in sync: %s)",
                *tp,
                text,
                start,
                healthy,
            )
            plog.truncate_to(max(start, 0))
            self.damage[tp] = {"state": "repairing", "ranges": text, "until": ranges[-1][1]}
        else:
            log.error(
                "%s-%d: offsets %s are LOST: damaged at recovery and no other in-sync replica holds them; "
                "consumers skip them",
                *tp,
                text,
            )
            self.damage[tp] = {"state": "lost", "ranges": text, "until": -1}

    def replica_states(self) -> dict[str, object]:
        """What describe() shows beside the ISR: this broker's log directory, and per partition a
        damaged range being repaired or lost. Also logs a repair's completion."""
        for tp, entry in list(self.damage.items()):
            plog = self.logs.get(tp)
            if plog is None:
                del self.damage[tp]
            elif entry["state"] == "repairing" and plog.log_end_offset >= int(entry["until"]):  # type: ignore[call-overload]
                log.info("%s-%d: damaged range %s repaired from a healthy replica", *tp, entry["ranges"])
                del self.damage[tp]
        partitions: dict[str, str] = {}
        for tp, partition in self.partitions.items():
            if self.node_id in partition.info.isr:
                self._been_in_sync.add(tp)
            elif partition.info.leader >= 0:
                partitions[f"{tp[0]}/{tp[1]}"] = (
                    "catching up" if tp in self._been_in_sync else "catching up after restart"
                )
        for (topic, index), entry in self.damage.items():
            verb = "being repaired" if entry["state"] == "repairing" else "lost (no healthy replica)"
            partitions[f"{topic}/{index}"] = f"damaged range {entry['ranges']} {verb}"
        if self.log_dir_offline is not None:
            for topic, index in self.logs:
                partitions[f"{topic}/{index}"] = "log dir offline"
        return {"log_dir_offline": self.log_dir_offline, "partitions": partitions}

    def close(self) -> None:
        for partition in self.partitions.values():
            partition.fail_waiters()
        self.partitions.clear()
        self._replicated = None
        for plog in self.logs.values():
            try:
                plog.flush()
                plog.close()
            except Exception:
                log.exception("closing log %s-%d", plog_topic(plog), 0)
        self.logs.clear()


def _resolve_all(futures: list[asyncio.Future] | None) -> None:
    if futures:
        for fut in futures:
            if not fut.done():
                fut.set_result(None)


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def plog_topic(plog: PartitionLog) -> str:
    return getattr(plog, "topic", "?")
