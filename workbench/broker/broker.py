"""`Broker`: one Kafka broker process's state, lifecycle and request dispatch.

The broker is a set of Kafka's own parts wired together:

* `KafkaServer` (network) decodes frames and calls `Broker.dispatch`;
* `QuorumMetadataLog` (controller) is the Raft-replicated cluster metadata every broker
  applies, and `ControllerChannel` gets changes made by the active controller;
* `ReplicaFetcherManager` keeps follower replicas in step with their leaders;
* `ReplicaManager` holds the partition logs (storage) assigned to this broker;
* `GroupCoordinatorManager` serves the consumer groups whose `__consumer_offsets`
  partition this broker leads;
* `TransactionCoordinator` serves the transactional ids whose `__transaction_state`
  partition this broker leads, and sends their markers;
* handlers in `workbench.broker.handlers` turn requests into responses;
* `ParquetConverter` (storage) turns sealed segments into Parquet in an idle-priority
  child process, once the broker has had a quiet second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import time
import uuid
from pathlib import Path

from workbench.broker.apis import SUPPORTED_APIS
from workbench.broker.config import BrokerConfig
from workbench.broker.controller_channel import ControllerChannel
from workbench.broker.groups_manager import GroupCoordinatorManager
from workbench.broker.handlers import HANDLERS, Handler
from workbench.broker.handlers.share_groups import publish_share_partitions
from workbench.broker.replica_fetcher import ReplicaFetcherManager
from workbench.broker.replica_manager import OPEN_SLICE_S, ReplicaManager
from workbench.broker.schema_ids import SchemaIds
from workbench.broker.server import Connection, KafkaServer
from workbench.broker.share_state import SHARE_PARTITIONS_FILE
from workbench.broker.shutdown import cancel_and_wait
from workbench.broker.transaction_coordinator import TransactionCoordinator
from workbench.broker.txn_verification import TransactionVerifier
from workbench.controller.image import MetadataImage
from workbench.controller.quorum import QuorumMetadataLog
from workbench.open_tables import iceberg_root
from workbench.protocol.api_keys import CONTROLLER_API_KEY, ApiKey
from workbench.protocol.codec import (
    Request,
    encode_response,
    encode_unsupported_api_versions,
)
from workbench.protocol.errors import ErrorCode, KafkaProtocolError, UnsupportedRequestError
from workbench.security.enforce import Security  # [security]
from workbench.storage.converter import ConversionError, ParquetConverter
from workbench.storage.log import PartitionLog
from workbench.storage.log_cleaner import CLEANER_STATE_FILE, LogCleaner
from workbench.storage.parquet_tail import TAIL_ROUNDS
from workbench.storage.parquet_tier import ParquetSegment
from workbench.storage.superseded import set_grace_ms as set_unlink_grace_ms

log = logging.getLogger(__name__)

PRODUCER_ID_BLOCK = 1000
REPLICA_STATES_FILE = "replica-states.json"  # see Broker._publish_replica_states


class Broker:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        set_unlink_grace_ms(config.parquet_unlink_grace_ms)  # every partition log of this process
        self.node_id = config.node_id
        config.broker_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        voters = {int(k): (v[0], int(v[2])) for k, v in config.voters.items()} or {
            config.node_id: (config.host, config.raft_port)
        }
        self.metadata = QuorumMetadataLog(config.node_id, voters, config.broker_dir / "metadata")
        self.replicas = ReplicaManager(config.node_id, config.broker_dir, config.log_defaults)
        self.replicas.on_log_dir_failure = self._log_dir_failed
        self._published_states: str | None = None
        self.security = Security(config, SUPPORTED_APIS)  # [security] SASL listener + authorizer (off by default)
        login = self.security.inter_broker_login()
        self.controller = ControllerChannel(
            config.node_id, config, self.metadata, sasl_login=login, ready_to_unfence=self.ready_to_unfence
        )
        self.groups = GroupCoordinatorManager(
            config.node_id, config, self.metadata, self.replicas, submit=self.controller.submit
        )
        self.txn = TransactionCoordinator(self, sasl_login=login)  # __transaction_state partitions we lead
        self.fetchers = ReplicaFetcherManager(
            config.node_id,
            self.replicas,
            self.metadata,
            sasl_login=login,
            refresh_metadata=self.refresh_metadata,
            on_write=self.note_write,
        )
        # Schema ids per subject, read from `_schemas` once a schema-validating topic gets a produce.
        self.schema_ids = SchemaIds(lambda: f"{config.host}:{self.server.port}")
        self.converter = ParquetConverter()
        # A second converter process for Iceberg commits (issue 17): pyiceberg's import and each
        # commit's catalog round trip never delay a sealed conversion or a tail file. At nice 10, not
        # SCHED_IDLE: a commit is small (~0.1 s of CPU) and under load SCHED_IDLE starved it for
        # many seconds (benchmarks/open_tables.py at 10k records/s).
        self.lake_committer = ParquetConverter(nice=10)
        self.cleaner = LogCleaner(
            lambda: list(self.replicas.logs.values()),
            dedupe_buffer_bytes=config.log_cleaner_dedupe_buffer_size,
            io_max_bytes_per_second=config.log_cleaner_io_max_bytes_per_second,
            backoff_ms=config.log_cleaner_backoff_ms,
            on_pass=self._publish_cleaner_state,
        )
        self.last_write = 0.0  # time.monotonic() of the last append (see _conversion_due)
        self._pending_since: dict[tuple[str, int, int], float] = {}
        self._last_tail: dict[tuple[str, int], float] = {}
        self._last_iceberg: dict[tuple[str, int], tuple[float, int]] = {}  # tp -> (when, published to)
        self._iceberg_log_start: dict[tuple[str, int], int] = {}  # tp -> log start offset last published at
        self._iceberg_unmerged: set[tuple[str, int]] = set()  # committed since the last idle merge round
        self._iceberg_passes: dict[tuple[str, int], int] = {}  # tp -> log cleaner passes at the last round
        self._ready = False
        self._ready_for_metadata = False
        self.server = KafkaServer(
            self.dispatch,
            config.host,
            config.port,
            max_request_bytes=config.socket_request_max_bytes,
            max_connections=config.max_connections,
            connections_max_idle_ms=config.connections_max_idle_ms,
            security=self.security if self.security.enabled else None,
        )
        self._handlers: dict[int, Handler] = HANDLERS
        # KIP-890 part 1: leaders verify transactional writes with the coordinator
        self.txn_verifier = TransactionVerifier(
            self, sasl_login=login, enabled=config.transaction_partition_verification_enable
        )
        self._tasks: list[asyncio.Task] = []
        self._producer_ids: range = range(0)
        self._producer_id_next = 0
        self._stopping = asyncio.Event()
        self._metadata_dirty = False
        self._open_scheduled = False  # `_open_pending` is on the loop's ready queue
        self.started_at = time.time()

    @property
    def image(self) -> MetadataImage:
        return self.metadata.image

    # -- lifecycle --------------------------------------------------------------------------------

    async def _unfence(self) -> None:
        """Ask the controller to unfence this broker until it does, as Kafka's
        BrokerLifecycleManager keeps asking. A quorum busy re-electing (three brokers restarted at
        once on two loaded cores: CI saw ten seconds without an active controller) answers late;
        a fenced broker is safe meanwhile (no leadership, not in any ISR), and one that gave up
        would be a broker the cluster lacks."""
        while True:
            try:
                await self.controller.submit({"op": "unfence_broker", "id": self.node_id})
                return
            except KafkaProtocolError as exc:
                if exc.code != ErrorCode.REQUEST_TIMED_OUT:
                    raise
                log.warning("broker %d: not unfenced yet (%s); asking again", self.node_id, exc)

    async def start(self) -> int:
        port = await self.server.start()
        self.metadata.add_listener(lambda _image: self._mark_metadata_dirty())
        await self.metadata.start()
        log.info(
            "broker %d: metadata log open (applied %d); waiting for the controller quorum",
            self.node_id,
            self.metadata.applied_index,
        )
        await self._await_quorum()
        log.info(
            "broker %d: quorum ready (leader %s, applied %d)",
            self.node_id,
            self.metadata.leader_id,
            self.metadata.applied_index,
        )
        await self.controller.submit(
            {
                "op": "register_broker",
                "id": self.node_id,
                "host": self.config.host,
                "port": port,
                "rack": None,
                "cluster_id": uuid.uuid4().hex[:22],
                "incarnation": uuid.uuid4().hex,  # every start is a new broker epoch (KIP-380)
            },
            timeout=30.0,
        )
        self.replicas.remove_orphans(self.image)
        self._ready_for_metadata = True
        await self._open_all_logs()
        await self.groups.start()
        await self.txn.start()
        self._ready = True
        await self._unfence()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._metadata_loop()))
        self._tasks.append(loop.create_task(self._maintenance_loop()))
        self._tasks.append(loop.create_task(self._conversion_loop()))
        self._tasks.append(loop.create_task(self._iceberg_loop()))
        self._tasks.append(loop.create_task(self.controller.run()))
        self._tasks.append(loop.create_task(self._isr_loop()))
        if self.config.log_cleaner_enable:
            self.cleaner.start()
        log.info("broker %d listening on %s:%d", self.node_id, self.config.host, port)
        return port

    async def _await_quorum(self, timeout: float = 60.0) -> None:
        """Wait until the controller quorum has a leader and this node has applied what it committed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.metadata.is_voter:
                    await self.metadata.barrier(timeout=1.0)
                    return
                await self.controller.observe()
                if self.metadata.applied_index > 0:
                    return
            except Exception as exc:
                log.debug("waiting for quorum: %r", exc)
            await asyncio.sleep(0.05)
        raise RuntimeError("the controller quorum did not form: start a majority of the voters")

    def ready_to_unfence(self) -> bool:
        return self._ready and not self._stopping.is_set()

    def is_stopping(self) -> bool:
        return self._stopping.is_set()

    async def stop(self, controlled: bool = True) -> None:
        self._stopping.set()
        if controlled:
            try:
                await asyncio.wait_for(self.controller.controlled_shutdown(), 5.0)
            except Exception:
                log.exception("controlled shutdown failed")
        # Produce requests still waiting for replication are answered "possibly persisted"
        # (never dropped unanswered, never "not written": see handlers.produce), then written out.
        for partition in list(self.replicas.partitions.values()):
            partition.fail_waiters()
        await self.server.drain(1.0)
        await self.server.close()
        await cancel_and_wait(self._tasks)
        await asyncio.get_running_loop().run_in_executor(None, self.cleaner.stop)
        await asyncio.get_running_loop().run_in_executor(None, self.schema_ids.close)
        await self.converter.close()
        await self.lake_committer.close()
        await self.fetchers.close()
        # Stopping with the whole cluster (not controlled): in-flight offset appends cannot replicate.
        await self.groups.close(grace=None if controlled else 0.0)
        await self.txn.close()
        await self.txn_verifier.close()
        self.controller.close()
        await self.metadata.close()
        self.replicas.close()
        log.info("broker %d stopped", self.node_id)

    def _mark_metadata_dirty(self) -> None:
        if not self._metadata_dirty:
            self._metadata_dirty = True
            try:
                asyncio.get_running_loop().call_soon(self._apply_if_dirty)
            except RuntimeError:
                pass

    def _apply_if_dirty(self) -> None:
        if self._metadata_dirty and self._ready_for_metadata:
            try:
                self._apply_metadata()
            except Exception:
                log.exception("applying metadata failed")

    def refresh_metadata(self) -> None:
        """Catch up with records other brokers appended, and act on them.

        Acting waits for this incarnation's registration (`_ready_for_metadata`), as the
        metadata listener does: before it, the image still shows what the previous incarnation
        held (leaderships, ISR places) that the registration is about to take away. A request
        answered in that window (a client's Metadata poll, a Produce) must not open the logs
        against that image: a log damaged at recovery would be judged against a stale
        leadership (reported lost instead of re-fetched, then served with a hole), and a
        Produce could append to a leader the controller is fencing (issue 12, item 4).
        """
        self.metadata.catch_up()
        if self._metadata_dirty and self._ready_for_metadata:
            self._apply_metadata()

    def _apply_metadata(self) -> None:
        """Act on the image: logs, fetchers, coordinators. New logs are opened a slice at a time
        (`replica_manager.OPEN_SLICE_S`); the rest continue from the event loop's next turn,
        after whatever requests arrived meanwhile (a 10,000-partition CreateTopics, issue 19)."""
        self._metadata_dirty = False
        done = self.replicas.reconcile(self.image, OPEN_SLICE_S)
        self.replicas.take_followers_opened()
        self.fetchers.update()
        self._after_reconcile(done)

    def _open_pending(self) -> None:
        self._open_scheduled = False
        if self._stopping.is_set() or self._metadata_dirty:
            return  # a reconcile is coming (it queues afresh), or nothing more is wanted
        try:
            done = self.replicas.open_pending(OPEN_SLICE_S)
            if self.replicas.take_followers_opened():
                self.fetchers.update()
            self._after_reconcile(done)
        except Exception:
            log.exception("opening partition logs failed")
            self._schedule_open_pending()

    def _after_reconcile(self, done: bool) -> None:
        self.groups.reconcile(self.image)
        self.txn.reconcile()
        if not done:
            self._schedule_open_pending()

    def _schedule_open_pending(self) -> None:
        if self._open_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a tool or test driving the broker by hand): all now
            self.replicas.open_pending()
            return
        self._open_scheduled = True
        loop.call_soon(self._open_pending)

    async def _open_all_logs(self) -> None:
        """At start: apply the image and wait until every assigned log is open (recovered),
        handing the event loop back between slices (the Raft server shares it)."""
        self._apply_metadata()
        while (self.replicas.opening or self._metadata_dirty) and not self._stopping.is_set():
            await asyncio.sleep(0)
            if self._metadata_dirty:
                self._apply_metadata()

    async def _isr_loop(self) -> None:
        """As leader: drop followers that fell behind, add back those that caught up (AlterPartition)."""
        lag_max = self.config.replica_lag_time_max_ms
        while True:
            await asyncio.sleep(0.25)
            for partition in list(self.replicas.replicated_partitions()):
                if not partition.is_leader or partition.isr_change_pending:
                    continue
                isr = list(partition.info.isr)
                out = partition.out_of_sync_replicas(lag_max)
                add = [r for r in partition.replicas_to_add() if self.image.can_host_replicas(r)]
                if not out and not add and not partition.isr_change_unresolved:
                    continue
                new_isr = [r for r in partition.info.replicas if (r in isr and r not in out) or r in add]
                reason = (
                    (f"replicas {out} fell behind" if out else "")
                    + ("; " if out and add else "")
                    + (f"replicas {add} caught up" if add else "")
                )
                partition.isr_change_pending = True
                # Kafka's maximal ISR: the controller may commit this before we apply it (and elect
                # a joining replica from then on), so the HW counts the joiners from now on.
                partition.propose_isr(new_isr)
                resolved = False
                try:
                    await self.controller.submit(
                        {
                            "op": "alter_partition",
                            "topic": partition.topic,
                            "p": partition.index,
                            "leader": self.node_id,
                            "leader_epoch": partition.leader_epoch,
                            "isr": new_isr,
                            "broker_epochs": partition.follower_broker_epochs(add),
                            "reason": reason,
                        }
                    )
                    resolved = True
                except KafkaProtocolError as exc:
                    # A refusal is definitive; REQUEST_TIMED_OUT (no controller majority) is not: the
                    # change may still commit, so its joiners keep counting until a later round resolves.
                    resolved = exc.code != ErrorCode.REQUEST_TIMED_OUT
                    log.info("ISR change for %s-%d refused: %s", partition.topic, partition.index, exc)
                except Exception as exc:
                    log.info("ISR change for %s-%d not confirmed: %s", partition.topic, partition.index, exc)
                finally:
                    partition.isr_change_pending = False
                if resolved:
                    # Act on what the controller committed before the proposal stops counting.
                    try:
                        self.refresh_metadata()
                    except Exception:
                        log.exception("applying metadata failed")
                    else:
                        partition.isr_change_resolved()
                partition.maybe_advance_high_watermark()

    async def _metadata_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.metadata_poll_s)
            try:
                self.refresh_metadata()
            except Exception:
                log.exception("applying metadata failed")

    async def _maintenance_loop(self) -> None:
        """Segment rolls by age, retention, producer-id expiry and fsync, off the request path."""
        loop = asyncio.get_running_loop()
        next_producer_expiry = time.monotonic() + self.config.producer_id_expiration_check_interval_ms / 1000
        while True:
            await asyncio.sleep(self.config.background_interval_s)
            now_ms = int(time.time() * 1000)
            expire_producers = time.monotonic() >= next_producer_expiry
            if expire_producers:
                next_producer_expiry = time.monotonic() + self.config.producer_id_expiration_check_interval_ms / 1000
            turn_end = time.monotonic() + OPEN_SLICE_S
            for tp, plog in list(self.replicas.logs.items()):
                if time.monotonic() >= turn_end:  # thousands of logs: let requests in between
                    await asyncio.sleep(0)
                    turn_end = time.monotonic() + OPEN_SLICE_S
                    if self.replicas.logs.get(tp) is not plog:
                        continue  # closed meanwhile (topic deleted, replica moved)
                try:
                    plog.maybe_roll(now_ms)
                    plog.enforce_retention(now_ms)
                    plog.unlink_superseded()
                    if expire_producers:
                        plog.remove_expired_producers(self.config.producer_id_expiration_ms, now_ms)
                except Exception:
                    log.exception("maintenance of %s-%d failed", *tp)
            self._publish_replica_states()
            self._publish_share_partitions()
            # fsync in a worker thread: the event loop keeps serving while the disk catches up.
            # Each log once its flush.ms has passed (Kafka's log.flush.interval.ms), and only a
            # log with something to flush (issue 19: 10,000 idle partitions).
            now = time.monotonic()
            due = [
                p
                for p in self.replicas.logs.values()
                if now - p.last_flush_monotonic >= p.config.flush_ms / 1000 and p.flush_pending()
            ]
            if due:
                failure = await loop.run_in_executor(None, self._flush_logs, due)
                if failure is not None:
                    self.replicas.mark_log_dir_offline(failure)

    def _publish_cleaner_state(self) -> None:
        """Write the cleaner's state of every compact log to ``<broker dir>/cleaner-state.json``
        (the notebook's `describe()` and topic browser read it: a file the broker publishes)."""
        states = self.cleaner.states()
        doc = [{"topic": t, "partition": p, **st} for (t, p), st in sorted(states.items())]
        path = self.config.broker_dir / CLEANER_STATE_FILE
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot publish the cleaner state: %s", exc)

    @staticmethod
    def _flush_logs(logs: list) -> str | None:
        """fsync every log; the first storage failure's description (the log directory is then offline)."""
        failure = None
        for plog in logs:
            try:
                plog.flush()
            except (OSError, KafkaProtocolError) as exc:
                log.exception("flush failed")
                failure = failure or f"flush failed: {exc}"
            except Exception:
                log.exception("flush failed")
        return failure

    def _publish_replica_states(self) -> None:
        """Write `<broker_dir>/replica-states.json` when it changes: replicas catching up after a
        restart, a damaged range being repaired or lost, an offline log directory. The notebook
        side reads it (files the broker publishes, like its Parquet files) for describe()."""
        try:
            states = self.replicas.replica_states()
            text = json.dumps(states, sort_keys=True)
            if text == self._published_states:
                return
            path = self.config.broker_dir / REPLICA_STATES_FILE
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
            self._published_states = text
        except Exception as exc:  # a full disk must not stop maintenance
            log.debug("publishing replica states failed: %s", exc)

    def _publish_share_partitions(self) -> None:
        """`<broker_dir>/share-partitions.json`: the KIP-932 share partitions this broker leads."""
        try:
            publish_share_partitions(self, self.config.broker_dir / SHARE_PARTITIONS_FILE)
        except Exception as exc:  # a full disk must not stop maintenance
            log.debug("publishing share partitions failed: %s", exc)

    def _log_dir_failed(self, reason: str) -> None:
        """Tell the active controller (KIP-112's AlterReplicaLogDirs/heartbeat report), retrying
        until it has taken note, so leaderships leave this broker."""

        async def report() -> None:
            while not self._stopping.is_set():
                try:
                    await self.controller.submit({"op": "log_dir_offline", "id": self.node_id, "reason": reason})
                    log.info("broker %d: the controller took note that the log directory is offline", self.node_id)
                    return
                except Exception as exc:
                    log.warning("reporting the offline log directory failed (%s); retrying", exc)
                    await asyncio.sleep(0.5)

        self._tasks.append(asyncio.get_running_loop().create_task(report()))

    def note_write(self) -> None:
        """A partition on this broker was appended to (produce or replication)."""
        self.last_write = time.monotonic()

    def _conversion_due(self, key: tuple[str, int, int], backlog: int, now: float) -> bool:
        """Convert a sealed segment once the broker has been quiet for `parquet_quiet_ms` (a burst
        is over), or when its partition has `parquet_max_backlog_segments` waiting, or when it has
        waited `parquet_max_delay_ms`. Conversion then never competes with a produce burst for the
        cores (measured: 5-8 % of RF=1 and 20-25 % of RF=3 producer throughput on 2 cores, even at
        idle priority), and the Parquet tier still trails the log by about a second.

        That holds without tail files (`parquet_tail_ms` 0). With them (the default) a deferred
        segment was written whole as a tail file during the burst, then again by its conversion:
        the deferral saved no core and doubled the writes. So a sealed segment is never tailed now
        (`PartitionLog.pending_tails`), and `parquet_quiet_ms` defaults (None) to 0 with tail files
        on: it converts at once."""
        cfg = self.config
        quiet_ms = cfg.parquet_quiet_ms
        if quiet_ms is None:
            quiet_ms = 0 if cfg.parquet_tail_ms > 0 else 1000
        first = self._pending_since.setdefault(key, now)
        return (
            now - self.last_write >= quiet_ms / 1000
            or backlog >= cfg.parquet_max_backlog_segments
            or now - first >= cfg.parquet_max_delay_ms / 1000
        )

    async def _conversion_loop(self) -> None:
        """Turn sealed segments into Parquet, in the idle-priority converter process
        (`workbench.storage.converter`): never on this process's CPU or GIL."""
        while True:
            await asyncio.sleep(self.config.background_interval_s)
            waiting: set[tuple[str, int, int]] = set()
            turn_end = time.monotonic() + OPEN_SLICE_S
            for tp, plog in list(self.replicas.logs.items()):
                if plog.log_end_offset == plog.log_start_offset:
                    continue  # no record: nothing to convert (10,000 new partitions, issue 19)
                if time.monotonic() >= turn_end:  # thousands of logs: let requests in between
                    await asyncio.sleep(0)
                    turn_end = time.monotonic() + OPEN_SLICE_S
                    if self.replicas.logs.get(tp) is not plog:
                        continue
                jobs = plog.pending_conversions()
                for job in jobs:
                    key = (*tp, job.segment.base_offset)
                    waiting.add(key)
                    if self.replicas.logs.get(tp) is not plog or self._stopping.is_set():
                        break
                    if not self._conversion_due(key, len(jobs), time.monotonic()):
                        continue
                    try:
                        answer = await self.converter.convert(plog.conversion_request(job))
                    except ConversionError as exc:
                        log.warning(
                            "Parquet conversion of %s-%d at offset %d failed: %s",
                            *tp,
                            job.segment.base_offset,
                            exc,
                        )
                        break
                    pseg = ParquetSegment(
                        Path(answer["path"]),
                        answer["base_offset"],
                        answer["next_offset"],
                        answer["max_timestamp"],
                        answer["size"],
                    )
                    if not plog.install_parquet(job, pseg):
                        log.debug(
                            "Parquet file for %s-%d at %d discarded: the log changed meanwhile",
                            *tp,
                            job.segment.base_offset,
                        )
                if self.replicas.logs.get(tp) is plog and not self._stopping.is_set():
                    await self._write_tails(tp, plog)
            for key in [k for k in self._pending_since if k not in waiting]:
                del self._pending_since[key]

    async def _write_tails(self, tp: tuple[str, int], plog: PartitionLog) -> None:
        """Tail files (`workbench.storage.parquet_tail`): a partition's committed records not yet in
        a sealed segment's Parquet file, rewritten at most every `parquet_tail_ms`, in the
        converter process, so plain Parquet readers see them within seconds (issue 17).

        Only the partition's leader writes them: readers take the leader's directory
        (`workbench.sql.engine.BrokerDirectories`) and Iceberg publishes from it, and each rewrite
        cost the whole tail again (before chunks), so at RF=3 the followers' copies tripled the converters' work
        for files nobody read. Tails take the cores from the acks=all rounds (issue 19: with tails
        off, p50 40 -> 26 ms and p99 168 -> 91 ms at 10k records/s, load 4-8); this removes two
        thirds of that work, not all of it.
        A follower that becomes leader writes its own at its next round."""
        interval = self.config.parquet_tail_ms / 1000
        now = time.monotonic()
        if interval <= 0 or now - self._last_tail.get(tp, 0.0) < interval:
            return
        partition = self.replicas.partition(*tp)
        if partition is None or not partition.is_leader:
            return
        self._last_tail[tp] = now
        # A chunk of the new records, then the merges it calls for (`parquet_tail.plan_merge`):
        # each job's cost is proportional to the records it holds, not to the whole tail.
        for _ in range(TAIL_ROUNDS):
            jobs = plog.pending_tails()
            if not jobs:
                return
            for job in jobs:
                try:
                    answer = await self.converter.convert(plog.tail_request(job))
                except ConversionError as exc:
                    log.warning("Parquet tail file of %s-%d failed: %s", *tp, exc)
                    return
                plog.install_tail(job, Path(answer["path"]))

    async def _iceberg_loop(self) -> None:
        """Commit the led partitions' new records to their topics' Iceberg tables (issue 17)."""
        if self.config.iceberg_commit_ms <= 0:
            return
        while True:
            await asyncio.sleep(min(self.config.background_interval_s, self.config.iceberg_commit_ms / 1000))
            for tp, plog in list(self.replicas.logs.items()):
                if self.replicas.logs.get(tp) is plog and not self._stopping.is_set():
                    await self._publish_iceberg(tp, plog)

    async def _publish_iceberg(self, tp: tuple[str, int], plog: PartitionLog) -> None:
        """Commit the partition's new records (read from its Parquet files, so below the LSO) to
        the topic's Iceberg table, in the committer process (`workbench.storage.iceberg_tables`).
        Only the partition's leader publishes, so replicas' copies are never unioned twice; the
        table's own optimistic commit keeps a leader change from publishing a range twice."""
        interval = self.config.iceberg_commit_ms / 1000
        if interval <= 0 or tp[0].startswith("__"):
            return
        partition = self.replicas.partition(*tp)
        if partition is None or not partition.is_leader:
            return
        now = time.monotonic()
        last, published = self._last_iceberg.get(tp, (0.0, -1))
        log_start = plog.log_start_offset
        moved = self._iceberg_log_start.get(tp, 0) != log_start  # retention, DeleteRecords: a delete snapshot
        # Nothing new: one more round once the last commit's files are past the merge age, so a
        # partition that went quiet still gets its small files merged (then none until it commits).
        age_s = self.config.iceberg_merge_age_ms / 1000
        merge_due = tp in self._iceberg_unmerged and age_s > 0 and now - last >= 1.2 * age_s + interval
        # A compacted topic: a cleaner pass since the last round may have rewritten published records.
        passes = self.cleaner.state(plog).passes if plog.config.compact else 0
        cleaned = passes != self._iceberg_passes.get(tp, 0)
        if now - last < interval or (
            published >= plog.last_stable_offset and not moved and not merge_due and not cleaned
        ):
            return
        job = {
            "iceberg": True,
            "root": str(iceberg_root(self.config.cluster_dir)),
            "topic": tp[0],
            "partition": tp[1],
            "directory": str(plog.directory),
            "log_start_offset": log_start,
            "merge_age_ms": self.config.iceberg_merge_age_ms,
            "merge_min_files": self.config.iceberg_merge_min_files,
            "compacted": plog.config.compact,  # reflect the log cleaner's rewrites
            # Registry-framed values become typed columns: the committer reads `_schemas` through this
            # listener (`workbench.storage.iceberg_typed`); not with SASL on (it has no credentials).
            "bootstrap": None if self.config.sasl_mechanisms else f"{self.config.host}:{self.server.port}",
        }
        try:
            answer = await self.lake_committer.convert(job)
        except ConversionError as exc:
            log.warning("Iceberg commit of %s-%d failed: %s", *tp, exc)
            self._last_iceberg[tp] = (now, published)
            return
        self._last_iceberg[tp] = (now, int(answer.get("to_offset", published)))
        self._iceberg_log_start[tp] = log_start
        self._iceberg_passes[tp] = passes
        if answer.get("committed"):
            self._iceberg_unmerged.add(tp)
        elif merge_due:
            self._iceberg_unmerged.discard(tp)

    # -- producer ids -----------------------------------------------------------------------------

    async def allocate_producer_id(self) -> int:
        if self._producer_id_next >= self._producer_ids.stop:
            [record] = await self.controller.submit(
                {"op": "allocate_producer_ids", "broker": self.node_id, "length": PRODUCER_ID_BLOCK}
            )
            self._producer_ids = range(record["start"], record["start"] + record["length"])
            self._producer_id_next = record["start"]
        pid = self._producer_id_next
        self._producer_id_next += 1
        return pid

    # -- dispatch ---------------------------------------------------------------------------------

    async def dispatch(self, request: Request, conn: Connection) -> bytes | None:
        if request.api_key == CONTROLLER_API_KEY:
            payload = await self.controller.handle(request.raw)
            return struct.pack(">ii", 4 + len(payload), request.correlation_id) + payload
        if request.body is None:
            if request.api_key == ApiKey.API_VERSIONS:
                return encode_unsupported_api_versions(
                    request.correlation_id, self.security.supported_apis
                )  # [security]
            # Kafka closes the connection (see UnsupportedRequestError); so do we, after the
            # responses to earlier requests on it are written.
            raise UnsupportedRequestError(
                f"api key {request.api_key} v{request.api_version} is not supported "
                f"(advertised: {self.security.supported_apis.get(request.api_key, 'not at all')})"
            )
        handler = self._handlers.get(request.api_key)
        if handler is None:
            # Advertised but not served (tests/unit/test_api_handlers.py keeps this from happening):
            # close the connection as for any unsupported request.
            log.error("no handler for advertised api_key=%d v%d", request.api_key, request.api_version)
            raise UnsupportedRequestError(f"api key {request.api_key} v{request.api_version} has no handler")
        if self.security.enabled:  # [security] authorization hook (workbench.security.enforce)
            body = await self.security.authorized_call(
                self, lambda: handler(self, request, conn), request, conn.principal
            )
        else:
            body = await handler(self, request, conn)
        if body is None:
            return None  # Produce with acks=0
        return encode_response(request.api_key, request.api_version, request.correlation_id, body)
