"""Issue 12: SIGSTOP/SIGCONT of brokers (a GC pause, a stalled VM) must not move leadership
away from healthy brokers, and must lose no acknowledged record.

The chaos harness's `pause-*` nemeses found an acknowledged record overwritten (seed
400285361: "p1-1730 acknowledged at p2@836, which holds p0-1618", then a fatal
OUT_OF_ORDER_SEQUENCE_NUMBER). Two mechanisms met there:

* a paused active controller resumed still believing it led, judged every broker it had not
  heard from during its own pause dead, and forwarded "fence" for each to the new controller,
  which fenced healthy brokers: a burst of leader elections and ISR changes right after the
  pause;
* in such a burst, a leader whose ISR expansion was committed but not yet applied advanced
  its high watermark without the joining replica, which the controller could already elect
  (tests/unit/test_partition_maximal_isr.py covers that half).
"""

from __future__ import annotations

import os
import signal
import threading
import time

from tests.integration.test_replication import partitions_of
from tests.integration.test_safety_replication import Deliveries, create_assigned
from tests.support import wait_until


def _controller(cluster) -> int:
    return int(wait_until(lambda: cluster.describe().controller_id, message="an active controller"))


def test_a_controller_resuming_from_a_pause_fences_no_healthy_broker(fresh_cluster, topic_name):
    cluster = fresh_cluster(3)
    paused = _controller(cluster)
    healthy = [b for b in (1, 2, 3) if b != paused]
    # One partition led by a healthy broker, with the paused controller as a follower.
    create_assigned(cluster, topic_name, [healthy[0], paused, healthy[1]], {"min.insync.replicas": "2"})
    producer = Deliveries(cluster.bootstrap_servers)
    producer.produce(topic_name, [b"before-%d" % i for i in range(20)])
    assert producer.flush(30) == 0 and len(producer.acked) == 20
    before = partitions_of(cluster, topic_name).iloc[0]
    assert int(before.leader) == healthy[0]

    pid = cluster.broker_pids()[paused]
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        # The others elect a controller and, a session timeout later, fence the paused broker.
        wait_until(
            lambda: (
                (d := cluster.describe()).controller_id in healthy
                and paused not in d.partitions[d.partitions.topic == topic_name].isr.iloc[0]
            ),
            timeout=30,
            message="a new controller fenced the paused one",
        )
        time.sleep(1.0)  # the paused controller's clock sees everyone silent for longer still
    finally:
        os.kill(pid, signal.SIGCONT)

    # It resumes, unfences itself and catches up. A spurious fence of the healthy leader would
    # have moved the partition to another replica (a new leader epoch), even if the preferred
    # leader election later gave it back.
    wait_until(
        lambda: sorted(partitions_of(cluster, topic_name).isr.iloc[0]) == [1, 2, 3],
        timeout=45,
        message="the resumed broker back in the ISR",
    )
    time.sleep(2.0)  # a few controller rounds after the resume: any fence would have happened
    after = partitions_of(cluster, topic_name).iloc[0]
    assert int(after.leader) == healthy[0]
    assert int(after.leader_epoch) == int(before.leader_epoch), (before.leader_epoch, after.leader_epoch)
    log = (cluster.data_dir / f"broker-{paused}" / "broker.log").read_text(errors="replace")
    for b in healthy:
        assert f"broker {b} missed its session timeout" not in log
    producer.produce(topic_name, [b"after-%d" % i for i in range(20)])
    assert producer.flush(30) == 0 and len(producer.acked) == 40


def test_a_leader_resuming_from_a_pause_never_acknowledges_what_it_appended_with_stale_metadata(
    fresh_cluster, topic_name
):
    """Issue 14 (found by `--workload txn --nemeses pause-leader,pause-coordinator`): a produce
    queued at a paused leader is appended when it resumes, still believing it leads; it then
    learns it was deposed and truncates the batch, whose offset the new leader has given to
    other records. The answer must not be a success (it was one, from the high watermark the
    replica reached as a follower): librdkafka then took the next sequence number (a fatal
    OUT_OF_ORDER_SEQUENCE_NUMBER) and committed transactions missing that record. It must be
    "possibly persisted" (REQUEST_TIMED_OUT), and the same batch retried at the new leader is
    stored once and the producer's sequence goes on."""
    from kafka.protocol.producer import InitProducerIdRequest

    from tests.integration.test_safety_replication import _broker_client, _produce
    from tests.integration.test_transactions import read_all
    from workbench.protocol.blocking_client import make_batch
    from workbench.protocol.errors import ErrorCode

    cluster = fresh_cluster(3)
    controller = _controller(cluster)
    paused = next(b for b in (1, 2, 3) if b != controller)
    others = [b for b in (1, 2, 3) if b != paused]
    create_assigned(cluster, topic_name, [paused, *others], {"min.insync.replicas": "2"})
    client = _broker_client(cluster, paused)
    init = client.request(InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000), 1)
    pid, epoch = init.producer_id, init.producer_epoch
    first = _produce(client, topic_name, make_batch([b"first"], producer_id=pid, producer_epoch=epoch, base_sequence=0))
    assert (first.error_code, first.base_offset) == (0, 0)

    stale = make_batch([b"stale"], producer_id=pid, producer_epoch=epoch, base_sequence=1)
    answer: list = []
    os.kill(cluster.broker_pids()[paused], signal.SIGSTOP)
    try:
        sender = threading.Thread(target=lambda: answer.append(_produce(client, topic_name, stale, timeout_ms=8000)))
        sender.start()  # queued in the paused leader's socket
        wait_until(
            lambda: int(partitions_of(cluster, topic_name).leader.iloc[0]) in others,
            timeout=30,
            message="a new leader elected while the old one is paused",
        )
        # The new leader gives the offsets after "first" to other records.
        other = Deliveries(cluster.bootstrap_servers)
        other.produce(topic_name, [b"other-%d" % i for i in range(5)])
        assert other.flush(30) == 0 and len(other.acked) == 5
    finally:
        os.kill(cluster.broker_pids()[paused], signal.SIGCONT)
    sender.join(60)
    assert answer, "the paused leader never answered"
    got = answer[0]
    stored = {o: v for _p, o, v in read_all(cluster.bootstrap_servers, topic_name, 1, "read_uncommitted", 6)}
    if got.error_code == ErrorCode.NONE:
        assert stored.get(got.base_offset) == b"stale", (got, stored)  # acknowledged: it must be there
    else:
        assert got.error_code == ErrorCode.REQUEST_TIMED_OUT, got  # possibly persisted: retry the same
    # The producer retries the batch where the partition is led now: stored exactly once, and
    # its next sequence is accepted (no gap, no OUT_OF_ORDER_SEQUENCE_NUMBER).
    leader = int(partitions_of(cluster, topic_name).leader.iloc[0])
    new_client = _broker_client(cluster, leader)
    retry = _produce(new_client, topic_name, stale)
    assert retry.error_code == ErrorCode.NONE, retry
    following = _produce(
        new_client, topic_name, make_batch([b"next"], producer_id=pid, producer_epoch=epoch, base_sequence=2)
    )
    assert following.error_code == ErrorCode.NONE, following
    values = [v for _p, _o, v in sorted(read_all(cluster.bootstrap_servers, topic_name, 1, "read_uncommitted", 8))]
    assert values.count(b"stale") == 1 and values[0] == b"first" and values[-1] == b"next", values
    client.close()
    new_client.close()
