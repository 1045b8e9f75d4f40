"""`Partition`: one partition replica on this broker, as leader or follower (Kafka's `Partition`).

As leader it tracks each follower's log end offset from the Fetch requests the
follower sends, advances the **high watermark** to the smallest log end offset
in the ISR, wakes `acks=all` producers waiting for it, and proposes ISR
changes: a follower that has not caught up within `replica.lag.time.max.ms` is
dropped, one that reaches the high watermark is added back (Kafka's
AlterPartition, here a controller operation).

While an ISR change is in flight the high watermark counts the **maximal ISR**
(Kafka's `PendingExpandIsr`/`PendingShrinkIsr`): the committed ISR plus every
replica a proposal adds. The controller may commit an expansion before this
leader applies it, and from then on it may elect the joining replica; a high
watermark that advanced without that replica's copy would then acknowledge
records the next leader lacks (issue 12: an acknowledged offset later holding
another producer's record).

As follower it only holds the log; `ReplicaFetcher` fills it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from workbench.broker import round_trace
from workbench.controller.image import PartitionInfo
from workbench.storage import PartitionLog

log = logging.getLogger(__name__)
_TRACE = round_trace.ON


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def _time_out(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


@dataclass
class FollowerState:
    """What the leader learned from one follower's fetches, in one incarnation of its broker."""

    log_end_offset: int = -1
    last_caught_up_ms: int = field(default_factory=_now_ms)
    last_fetch_ms: int = 0
    #: The follower broker's epoch (KIP-903) when this state began: a restart starts it over.
    broker_epoch: int = -1
    log_start_offset: int = -1


class NotLeaderError(Exception):
    """Leadership moved while a request waited on this partition."""


class Partition:
    def __init__(
        self,
        node_id: int,
        log_: PartitionLog,
        info: PartitionInfo,
        on_high_watermark: Callable[[], None] | None = None,
        broker_epoch_of: Callable[[int], int] | None = None,
    ) -> None:
        self.node_id = node_id
        self._broker_epoch_of: Callable[[int], int] = broker_epoch_of or (lambda _r: -1)
        self._on_high_watermark = on_high_watermark
        self.log = log_
        self.topic, self.index = info.topic, info.index
        self.info = info
        self.followers: dict[int, FollowerState] = {}
        self._hw_waiters: list[tuple[int, asyncio.Future]] = []
        self.isr_change_pending = False
        #: Replicas an AlterPartition in flight (or not known to have failed) proposes to add.
        self._proposed_isr: frozenset[int] = frozenset()
        self._apply(info, first=True)

    # -- state from metadata --------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.info.leader == self.node_id

    @property
    def leader_epoch(self) -> int:
        return self.info.leader_epoch

    @property
    def replicated(self) -> bool:
        return len(self.info.replicas) > 1

    def update(self, info: PartitionInfo) -> tuple[bool, bool]:
        """Apply new metadata. Returns (leadership changed, became leader)."""
        was_leader, old_epoch = self.is_leader, self.info.leader_epoch
        self.info = info
        changed = info.leader_epoch != old_epoch or was_leader != self.is_leader
        self._apply(info, first=False, leadership_changed=changed)
        return changed, self.is_leader and (changed or not was_leader)

    def _apply(self, info: PartitionInfo, *, first: bool, leadership_changed: bool = False) -> None:
        if self.is_leader:
            if first or leadership_changed:
                # Record the new epoch at the log end before anything is written in it (Kafka does).
                self.log.assign_leader_epoch(info.leader_epoch)
                now = _now_ms()
                # A new leader gives every replica the benefit of the doubt (Kafka resets
                # lastCaughtUpTime), and learns their log end offsets from their next fetch.
                self.followers = {
                    r: FollowerState(last_caught_up_ms=now, broker_epoch=self._broker_epoch_of(r))
                    for r in info.replicas
                    if r != self.node_id
                }
            self.isr_change_pending = False
            if first or leadership_changed:
                self._proposed_isr = frozenset()  # a new leader epoch: older proposals are refused
                self.fail_waiters()  # they wait on the previous epoch's appends
            if not self.replicated:
                self.log.set_hw_tracks_leo(True)
            else:
                self.log.set_hw_tracks_leo(False)
                self.maybe_advance_high_watermark()
        else:
            self.log.set_hw_tracks_leo(False)
            self.followers = {}
            self._proposed_isr = frozenset()
            if leadership_changed or first:
                self.fail_waiters()

    # -- leader side ----------------------------------------------------------------------------

    def note_broker_epochs(self) -> None:
        """Forget what a follower's previous incarnation fetched (KIP-903).

        A follower broker that restarted has a new broker epoch; the log end offset its old
        incarnation reported says nothing about the log it has now (it may have lost an
        unflushed tail), so it must show, by fetching, that it reached the high watermark
        before it may rejoin the ISR.
        """
        if not self.is_leader:
            return
        for r, state in list(self.followers.items()):
            epoch = self._broker_epoch_of(r)
            if epoch != state.broker_epoch:
                if state.broker_epoch >= 0:
                    log.info(
                        "%s-%d: replica %d restarted (broker epoch %d -> %d): catching up after restart",
                        self.topic,
                        self.index,
                        r,
                        state.broker_epoch,
                        epoch,
                    )
                self.followers[r] = FollowerState(broker_epoch=epoch)

    def follower_broker_epochs(self, replicas: list[int]) -> dict[int, int]:
        """The broker epoch each follower's fetch state belongs to (sent with AlterPartition)."""
        return {r: self.followers[r].broker_epoch for r in replicas if r in self.followers}

    def record_follower_fetch(self, replica_id: int, fetch_offset: int, log_start_offset: int = -1) -> None:
        """A follower fetched from `fetch_offset`: it has everything before it; its log starts at
        `log_start_offset` (the Fetch request's field, which DeleteRecords waits on)."""
        state = self.followers.get(replica_id)
        if state is None:
            return
        now = _now_ms()
        state.log_end_offset = fetch_offset
        if log_start_offset >= 0:
            state.log_start_offset = log_start_offset
        state.last_fetch_ms = now
        if fetch_offset >= self.log.log_end_offset:
            state.last_caught_up_ms = now
        self.maybe_advance_high_watermark()

    # -- ISR changes in flight (Kafka's maximal ISR) --------------------------------------------

    def propose_isr(self, isr: list[int]) -> None:
        """An AlterPartition for `isr` is about to be sent: until it is resolved
        (`isr_change_resolved`), the replicas it adds count for the high watermark."""
        self._proposed_isr = self._proposed_isr | frozenset(isr)

    def isr_change_resolved(self) -> None:
        """The controller answered definitively and the metadata it committed (if any) is applied."""
        self._proposed_isr = frozenset()
        self.maybe_advance_high_watermark()

    @property
    def isr_change_unresolved(self) -> bool:
        """A proposal's outcome is unknown (its request failed): the maximal ISR still counts it."""
        return bool(self._proposed_isr - set(self.info.isr))

    @property
    def maximal_isr(self) -> list[int]:
        """The committed ISR plus the replicas a pending proposal adds: who the high watermark waits for."""
        isr = list(self.info.isr)
        return isr + [r for r in self.info.replicas if r in self._proposed_isr and r not in isr]

    def maybe_advance_high_watermark(self) -> bool:
        """Raise the high watermark to the smallest log end offset in the maximal ISR.

        Runs for every produce and every follower fetch, so it walks the ISR in place rather
        than building `maximal_isr` (the same set: the ISR, then proposed replicas not in it)."""
        info = self.info
        node_id = self.node_id
        if info.leader != node_id:
            return False
        log_ = self.log
        leo = new_hw = log_.log_end_offset
        followers = self.followers
        isr = info.isr
        for r in isr:
            if r != node_id:
                state = followers.get(r)
                end = state.log_end_offset if state is not None else -1
                if end < new_hw:
                    new_hw = end
        proposed = self._proposed_isr
        if proposed:
            for r in info.replicas:
                if r in proposed and r != node_id and r not in isr:
                    state = followers.get(r)
                    end = state.log_end_offset if state is not None else -1
                    if end < new_hw:
                        new_hw = end
        if new_hw > log_.high_watermark:
            self.log.high_watermark = min(new_hw, leo)
            if _TRACE:
                round_trace.mark("hw", self.log.topic, self.log.partition, self.log.high_watermark)
            self._wake_waiters()
            if self._on_high_watermark is not None:
                self._on_high_watermark()  # consumers long-polling for newly committed records
            return True
        return False

    def isr_low_watermark(self) -> int:
        """The smallest log start offset in the ISR (Kafka's lowWatermarkIfLeader): what
        DeleteRecords has reached on every in-sync copy. -1 for an ISR member not heard from."""
        marks = [self.log.log_start_offset]
        for r in self.info.isr:
            if r != self.node_id:
                state = self.followers.get(r)
                marks.append(state.log_start_offset if state is not None else -1)
        return min(marks)

    def out_of_sync_replicas(self, lag_max_ms: int) -> list[int]:
        now = _now_ms()
        return [
            r
            for r in self.info.isr
            if r != self.node_id and (s := self.followers.get(r)) is not None and now - s.last_caught_up_ms > lag_max_ms
        ]

    def replicas_to_add(self, recent_ms: int = 1000) -> list[int]:
        """Followers outside the ISR that fetch now and whose log reached the high watermark
        (Kafka's ISR expansion rule)."""
        hw = self.log.high_watermark
        now = _now_ms()
        return [
            r
            for r, s in self.followers.items()
            if r not in self.info.isr
            and s.log_end_offset >= 0
            and s.log_end_offset >= hw
            and now - s.last_fetch_ms <= recent_ms
        ]

    # -- acks=all waiting -----------------------------------------------------------------------

    def _check_leading(self, leader_epoch: int) -> None:
        if not self.is_leader or self.info.leader_epoch != leader_epoch:
            raise NotLeaderError()

    async def wait_for_high_watermark(self, offset: int, timeout: float, leader_epoch: int) -> bool:
        """True once the HW reaches `offset` while this replica still leads in `leader_epoch`, the
        epoch the awaited batch was appended in; False on timeout; NotLeaderError as soon as that
        leadership is over (checked on entry, on wake-up and on timeout).

        Only the leader's high watermark in the append's own epoch vouches for the batch (issue
        14). A leader resuming from a pause appends with stale metadata; deposed, it truncates the
        batch away and the offset is reused by another record, so the high watermark it reaches
        afterwards, as a follower or as leader again in a later epoch, covers *that* record. A
        waiter answered from it acknowledged a lost batch: librdkafka then took the next
        sequence number (OUT_OF_ORDER_SEQUENCE_NUMBER, fatal) and committed a transaction
        missing the record (a torn transaction), and a marker or a `__transaction_state` record
        counted as replicated when it was gone.
        """
        self._check_leading(leader_epoch)
        if self.log.high_watermark >= offset:
            return True
        # One future and one timer per waiter (`asyncio.wait_for(shield(...))` made three futures,
        # a timer and two callbacks for every acks=all batch: issue 19).
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        entry = (offset, fut)
        self._hw_waiters.append(entry)
        timer = loop.call_later(timeout, _time_out, fut)
        try:
            await fut
        except TimeoutError:
            self._check_leading(leader_epoch)
            return self.log.high_watermark >= offset
        finally:
            timer.cancel()
            try:
                self._hw_waiters.remove(entry)
            except ValueError:
                pass
        self._check_leading(leader_epoch)
        return True

    def _wake_waiters(self) -> None:
        hw = self.log.high_watermark
        for offset, fut in list(self._hw_waiters):
            if offset <= hw and not fut.done():
                fut.set_result(None)

    def fail_waiters(self) -> None:
        for _offset, fut in list(self._hw_waiters):
            if not fut.done():
                fut.set_exception(NotLeaderError())
