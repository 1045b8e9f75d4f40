"""The workload: real clients on real sockets, recording everything into a `History`.

- `ProducerClient`: a confluent-kafka (librdkafka) producer, idempotent with ``acks=all`` (the
  façade's default), writing unique values ``<name>-<seq>`` round-robin over the partitions at a
  fixed, low rate (the harness shares two cores with the brokers).
- `AssignConsumer`: a consumer under ``assign`` from the beginning of every partition; its polls
  are judged for monotonicity and gaps.
- `GroupConsumer`: a consumer in a group (``subscribe``); rebalances may hand it offsets again,
  so its polls count only for duplicate and inconsistent-offset checks.
- `MetadataWriter`: creates a small topic every few seconds, so metadata acknowledgements (the
  Raft log) are judged too: every topic whose CreateTopics was acknowledged must exist at the end.
- `final_read`: after the faults, one consumer under ``assign`` reads every partition from the
  log start to the high watermark.

The ``txn`` workload (`tests.chaos.runner.Settings.workload`), on a topic of its own:

- `TxnProducerClient`: a transactional librdkafka producer (``transactional.id``
  ``chaos-txn-<name>``) writing transactions of 1-5 records ``<name>-t<txn>-<i>`` to random
  partitions, committing most and aborting about a third (`abort_ratio`), each recorded as a
  `tests.chaos.history.Txn` with its outcome;
- `TxnAssignConsumer`: read_committed, under ``assign`` from the beginning, into
  ``History.txn_polls``;
- `txn_final_read`: read_committed, every partition until librdkafka reports its end
  (``enable.partition.eof``: the fetch position reached the last stable offset) at or past the
  high watermark, so no transaction is left undecided below it.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.chaos.history import ABORTED, COMMITTED, OK, OK_NO_OFFSET, UNKNOWN, History, outcome_of_error


class _Worker:
    """A thread with a stop event."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guarded, name=f"chaos-{name}", daemon=True)

    def start(self) -> _Worker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _guarded(self) -> None:
        try:
            self.run()
        except Exception as exc:  # a client that dies cannot vouch for the run: judged as an anomaly
            self.history.observe("client_died", f"{self.name} stopped on {exc!r}")

    history: History

    def run(self) -> None:
        raise NotImplementedError


class ProducerClient(_Worker):
    """Sends ``<name>-<seq>`` to partition ``seq % partitions`` at `rate` records per second."""

    def __init__(
        self, name: str, bootstrap: str, topic: str, partitions: int, history: History, rate: float = 50.0
    ) -> None:
        super().__init__(name)
        self.bootstrap, self.topic, self.partitions, self.history, self.rate = (
            bootstrap,
            topic,
            partitions,
            history,
            rate,
        )
        self._pending: dict[int, tuple[str, int]] = {}
        self._fatal = threading.Event()
        self._eos_log = _eos_logger(name, history)

    def _producer(self) -> Producer:
        return Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                # message.timeout.ms stays librdkafka's (and the façade's) 300 s: a record that waits
                # longer makes librdkafka bump its epoch and re-send what it has not seen
                # acknowledged, whatever the broker answered (README, Reliability). A heal that slow
                # is reported as such (`heals over 45 s`).
                "request.timeout.ms": 5000,
                "error_cb": self._on_error,
                # librdkafka's idempotence log (a few lines per PID change, drain and epoch bump):
                # kept in the run's notes, so a duplicate can be traced to what the client did.
                "debug": "eos",
                "logger": self._eos_log,
            }
        )

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.history.observe("fatal_producer_error", f"{self.name}: {err.name()} {err.str()}")
            self._fatal.set()

    def _delivered(self, seq: int, err: KafkaError | None, msg) -> None:
        value, partition = self._pending.pop(seq, (None, -1))
        if value is None:
            return
        if err is None:
            offset = msg.offset()
            if offset is None or offset < 0:
                self.history.send(producer=self.name, seq=seq, value=value, partition=partition, outcome=OK_NO_OFFSET)
            else:
                self.history.send(
                    producer=self.name, seq=seq, value=value, partition=msg.partition(), outcome=OK, offset=offset
                )
        else:
            self.history.send(
                producer=self.name,
                seq=seq,
                value=value,
                partition=partition,
                outcome=outcome_of_error(err.name()),
                error=err.name(),
            )

    def run(self) -> None:
        producer = self._producer()
        seq = 0
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            if self._fatal.is_set():
                self._abandon(producer, "fatal error: producer replaced")
                producer = self._producer()
                self._fatal.clear()
            value, partition = f"{self.name}-{seq}", seq % self.partitions
            self._pending[seq] = (value, partition)
            sent = False
            try:
                producer.produce(
                    self.topic,
                    value=value.encode(),
                    partition=partition,
                    on_delivery=lambda err, msg, seq=seq: self._delivered(seq, err, msg),
                )
                sent = True
                seq += 1
                producer.poll(0)
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    producer.poll(delay)
                else:
                    next_at = time.monotonic()
            except BufferError:
                self._pending.pop(seq)
                producer.poll(0.1)
            except KafkaException as exc:  # fatal errors surface from produce() and poll() too
                if not sent:
                    self._pending.pop(seq)
                self._on_kafka_exception(exc)
        try:
            producer.flush(40)
        except KafkaException as exc:
            self._on_kafka_exception(exc)
        self._abandon(producer, "still queued when the run ended")

    def _on_kafka_exception(self, exc: KafkaException) -> None:
        err = exc.args[0]
        if isinstance(err, KafkaError) and err.fatal():
            if not self._fatal.is_set():
                self.history.observe("fatal_producer_error", f"{self.name}: {err.name()} {err.str()}")
            self._fatal.set()
        else:
            time.sleep(0.1)

    def _abandon(self, producer: Producer, why: str) -> None:
        try:
            producer.purge()
            producer.poll(0)
        except KafkaException:
            pass  # a producer in a fatal state: its queued records are abandoned below
        for seq, (value, partition) in sorted(self._pending.items()):
            self.history.send(producer=self.name, seq=seq, value=value, partition=partition, outcome=UNKNOWN, error=why)
        self._pending.clear()


#: librdkafka's ``NEWPID`` line when a partition moves to a new producer id or epoch.
_NEWPID = re.compile(r"changed PID\{[^}]*\} -> PID\{Id:(\d+),Epoch:(\d+)\}")
_EOS_CHATTER = ("INIT", "TXN", "PIDBROKER")  # start-up and timer lines that say nothing about records


def _eos_logger(name: str, history: History) -> logging.Logger:
    """A logger that notes librdkafka's idempotence events for producer `name` in `history`.

    Epoch bumps (KIP-360: librdkafka drains, takes a new epoch and resends what it had not had
    acknowledged under new sequence numbers) are counted in ``History.epoch_bumps``: a bump
    after a "possibly persisted" error is the one way an idempotent producer can store a record
    twice, so the count says whether a run exercised that path.
    """
    logger = logging.getLogger(f"tests.chaos.librdkafka.{name}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)

    class _ToHistory(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            line = record.getMessage()
            tag = line.split(" ", 1)[0]
            if record.levelno > logging.DEBUG or tag in _EOS_CHATTER:  # connection warnings and the like
                return
            m = _NEWPID.search(line)
            if m and int(m.group(2)) > 0:
                history.epoch_bumps += 1
            history.note(f"librdkafka {name}: {line[:300]}")

    logger.handlers[:] = [_ToHistory()]
    return logger


def _consumer_conf(bootstrap: str, group: str, **extra) -> dict:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "check.crcs": True,
        "fetch.wait.max.ms": 200,
        "log_level": 0,
    }
    conf.update(extra)
    return conf


class AssignConsumer(_Worker):
    """Reads every partition from the beginning under `assign`, recording every record."""

    mode = "assign"
    isolation = "read_committed"  # librdkafka's default

    def __init__(self, name: str, bootstrap: str, topic: str, partitions: int, history: History) -> None:
        super().__init__(name)
        self.bootstrap, self.topic, self.partitions, self.history = bootstrap, topic, partitions, history
        self.errors = 0
        self.record = history.poll

    def _open(self) -> Consumer:
        c = Consumer(_consumer_conf(self.bootstrap, f"chaos-{self.name}", **{"isolation.level": self.isolation}))
        c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self.partitions)])
        return c

    def run(self) -> None:
        c = self._open()
        session = 0
        try:
            while not self._stop.is_set():
                for msg in c.consume(500, 0.3):
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            self.errors += 1
                        continue
                    self.record(
                        reader=self.name,
                        session=session,
                        mode=self.mode,
                        partition=msg.partition(),
                        offset=msg.offset(),
                        value=msg.value().decode(errors="replace") if msg.value() is not None else "<null>",
                    )
        finally:
            c.close()


class GroupConsumer(AssignConsumer):
    """A member of a consumer group (`subscribe`), committing automatically."""

    mode = "group"

    def _open(self) -> Consumer:
        c = Consumer(
            _consumer_conf(
                self.bootstrap,
                f"chaos-group-{self.topic}",
                **{"enable.auto.commit": True, "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
            )
        )
        c.subscribe([self.topic])
        return c


class MetadataWriter(_Worker):
    """Creates topic ``<prefix>-<n>`` every `interval` seconds; remembers which were acknowledged."""

    def __init__(self, name: str, bootstrap: str, prefix: str, history: History, interval: float = 4.0) -> None:
        super().__init__(name)
        self.bootstrap, self.prefix, self.history, self.interval = bootstrap, prefix, history, interval
        self.acknowledged: list[str] = []
        self.failed = 0

    def run(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        n = 0
        while not self._stop.wait(self.interval):
            name = f"{self.prefix}-{n}"
            n += 1
            futures = admin.create_topics([NewTopic(name, 1, 3)], operation_timeout=10, request_timeout=15)
            try:
                futures[name].result(20)
                self.acknowledged.append(name)
            except KafkaException:
                self.failed += 1

    def check(self, bootstrap: str) -> list[str]:
        """Acknowledged topics the cluster no longer lists."""
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        listed = set(admin.list_topics(timeout=15).topics)
        return [t for t in self.acknowledged if t not in listed]


def final_read(bootstrap: str, topic: str, partitions: int, history: History, timeout: float = 60.0) -> None:
    """Read every partition from the beginning to its high watermark, under `assign`."""
    c = Consumer(_consumer_conf(bootstrap, f"chaos-final-{topic}"))
    try:
        highs: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        for p in range(partitions):
            while p not in highs and time.monotonic() < deadline:
                try:
                    _low, highs[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                except KafkaException:
                    time.sleep(0.5)
        history.final_high_watermarks = dict(highs)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        last = {p: -1 for p in range(partitions)}
        while time.monotonic() < deadline and any(last[p] < highs.get(p, 1 << 62) - 1 for p in range(partitions)):
            for msg in c.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                p = msg.partition()
                last[p] = max(last[p], msg.offset())
                history.poll(
                    reader="final",
                    session=0,
                    mode="final",
                    partition=p,
                    offset=msg.offset(),
                    value=msg.value().decode(errors="replace") if msg.value() is not None else "<null>",
                )
        history.final_read_complete = {p: p in highs and last[p] >= highs[p] - 1 for p in range(partitions)}
    finally:
        c.close()


class TxnProducerClient(_Worker):
    """Transactions of 1-`max_records` records ``<name>-t<txn>-<i>`` to random partitions, about
    `rate` per second; each is committed, or aborted with probability `abort_ratio`."""

    def __init__(
        self,
        name: str,
        bootstrap: str,
        topic: str,
        partitions: int,
        history: History,
        rate: float = 4.0,
        abort_ratio: float = 0.3,
        seed: int = 0,
        max_records: int = 5,
    ) -> None:
        super().__init__(name)
        self.bootstrap, self.topic, self.partitions, self.history = bootstrap, topic, partitions, history
        self.rate, self.abort_ratio, self.max_records = rate, abort_ratio, max_records
        self.rng = random.Random(f"{seed}-{name}")
        self.transactional_id = f"chaos-txn-{name}"
        self._fatal = threading.Event()

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal.set()

    def _producer(self) -> Producer | None:
        """A producer with `transactional_id`, initialized (which fences and aborts whatever the
        previous one left open); retried until it works, None once the run stops."""
        while not self._stop.is_set():
            p = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "transactional.id": self.transactional_id,
                    "transaction.timeout.ms": 20000,
                    "linger.ms": 5,
                    "message.timeout.ms": 20000,
                    "request.timeout.ms": 5000,
                    "error_cb": self._on_error,
                    "log_level": 0,
                }
            )
            self._fatal.clear()
            try:
                p.init_transactions(30)
                return p
            except KafkaException as exc:
                self.history.note(f"{self.name}: init_transactions failed: {exc.args[0].name()}, retrying")
                self._stop.wait(1.0)  # then a fresh producer: librdkafka's retry of init is the same call
        return None

    def run(self) -> None:
        producer = self._producer()
        n = 0
        interval = 1.0 / self.rate
        while producer is not None and not self._stop.is_set():
            started = time.monotonic()
            txn, n = n, n + 1
            values = [
                (f"{self.name}-t{txn}-{i}", self.rng.randrange(self.partitions))
                for i in range(self.rng.randint(1, self.max_records))
            ]
            commit = self.rng.random() >= self.abort_ratio
            outcome, error, asked = self._one(producer, values, commit)
            self.history.txn(
                producer=self.name, txn=txn, values=values, outcome=outcome, commit_asked=asked, error=error
            )
            if outcome == UNKNOWN or self._fatal.is_set():
                # Fatal (fenced, or librdkafka gave up): a new producer with the same id takes over;
                # its InitProducerId finishes or aborts whatever this one left.
                try:
                    producer.purge()
                except KafkaException:
                    pass
                producer = self._producer()
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def _one(
        self, producer: Producer, values: list[tuple[str, int]], commit: bool
    ) -> tuple[str, str | None, float | None]:
        """One transaction: (outcome, error name, when the commit was asked for)."""
        asked: float | None = None
        try:
            producer.begin_transaction()
            for value, partition in values:
                while True:
                    try:
                        producer.produce(self.topic, value=value.encode(), partition=partition)
                        break
                    except BufferError:
                        producer.poll(0.1)
            producer.poll(0)
            if not commit:
                producer.abort_transaction(30)
                return ABORTED, None, None
            asked = self.history.now()
            for _attempt in range(5):
                try:
                    producer.commit_transaction(30)
                    return COMMITTED, None, asked
                except KafkaException as exc:
                    if not exc.args[0].retriable():
                        raise
            return UNKNOWN, "commit retried 5 times", asked
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                # error_cb reports it only from a poll; without this the run went on with a dead
                # producer, every later transaction failing at once (1,409 of them in one run).
                self._fatal.set()
            if err.fatal() or not err.txn_requires_abort():
                # Never asked to commit: it can only ever be aborted. Asked: nobody knows.
                return (ABORTED if asked is None else UNKNOWN), err.name(), asked
            try:
                producer.abort_transaction(30)
            except KafkaException as again:
                if again.args[0].fatal():
                    self._fatal.set()  # e.g. INVALID_TXN_STATE: a new producer takes over
                return (
                    (ABORTED if asked is None else UNKNOWN),
                    f"{err.name()}, then abort: {again.args[0].name()}",
                    asked,
                )
            return ABORTED, err.name(), asked


class TxnAssignConsumer(AssignConsumer):
    """A read_committed consumer of the txn topic under `assign`; polls go to `History.txn_polls`."""

    def __init__(self, name: str, bootstrap: str, topic: str, partitions: int, history: History) -> None:
        super().__init__(name, bootstrap, topic, partitions, history)
        self.record = history.txn_poll


def txn_final_read(bootstrap: str, topic: str, partitions: int, history: History, timeout: float = 90.0) -> None:
    """Read every partition read_committed from the beginning until its end at or past the high
    watermark (so every transaction below it is decided), into `History.txn_polls`."""
    c = Consumer(
        _consumer_conf(
            bootstrap, f"chaos-final-{topic}", **{"isolation.level": "read_committed", "enable.partition.eof": True}
        )
    )
    try:
        highs: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        for p in range(partitions):
            while p not in highs and time.monotonic() < deadline:
                try:
                    _low, highs[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                except KafkaException:
                    time.sleep(0.5)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        done: dict[int, bool] = {p: False for p in range(partitions)}
        while time.monotonic() < deadline and not all(done.values()):
            for msg in c.consume(1000, 0.5):
                p = msg.partition()
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF and p in highs and msg.offset() >= highs[p]:
                        done[p] = True
                    continue
                history.txn_poll(
                    reader="final",
                    session=0,
                    mode="final",
                    partition=p,
                    offset=msg.offset(),
                    value=msg.value().decode(errors="replace") if msg.value() is not None else "<null>",
                )
        history.txn_final_read_complete = dict(done)
    finally:
        c.close()
