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
