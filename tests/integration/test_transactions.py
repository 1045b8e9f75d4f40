"""Transactions and exactly-once with real clients (KIP-98/447): commit, abort, read_committed,
consume-transform-produce offsets, zombie fencing, timeouts, restarts and a killed coordinator."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from kafka import KafkaProducer
from kafka.protocol.producer import InitProducerIdRequest

from tests.conftest import FAST_GROUPS
from workbench import Cluster
from workbench.protocol.blocking_client import WireClient


def txn_producer(bootstrap: str, txn_id: str, **conf) -> Producer:
    settings = {"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5}
    settings.update(conf)
    p = Producer(settings)
    p.init_transactions(30)
    return p


def read_all(bootstrap: str, topic: str, partitions: int, isolation: str, expect: int, timeout: float = 20.0):
    """(partition, offset, value) of what a consumer with ``isolation`` reads, once it has
    ``expect`` records and the end of every partition (then a little longer, to catch extras)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition(topic, p) for p in range(partitions)])
    got, eof = [], set()
    deadline = time.monotonic() + timeout
    settle = None
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None:
                if m.error() is None:
                    got.append((m.partition(), m.offset(), m.value()))
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
            if len(got) >= expect and len(eof) == partitions:
                settle = settle or time.monotonic() + 1.0
                if time.monotonic() > settle:
                    break
    finally:
        c.close()
    return got


def values(records) -> list[bytes]:
    return [v for _p, _o, v in sorted(records)]


def transaction_coordinator(bootstrap: str, txn_id: str) -> int:
    from kafka.protocol.metadata import FindCoordinatorRequest

    c = WireClient.to(bootstrap)
    try:
        resp = c.request(FindCoordinatorRequest(key=txn_id, key_type=1), 3)
    finally:
        c.close()
    assert resp.error_code == 0, resp
    return resp.node_id


def test_committed_data_visible_aborted_data_never(cluster: Cluster, topic_name: str) -> None:
    cluster.create_topic(topic_name, partitions=2)
    p = txn_producer(cluster.bootstrap_servers, f"tx-{topic_name}")
    p.begin_transaction()
    for i in range(6):
        p.produce(topic_name, value=b"c%d" % i, partition=i % 2)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(4):
        p.produce(topic_name, value=b"a%d" % i, partition=i % 2)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce(topic_name, value=b"last", partition=0)
    p.commit_transaction(30)

    committed = read_all(cluster.bootstrap_servers, topic_name, 2, "read_committed", 7)
    assert sorted(v for _p, _o, v in committed) == sorted([b"c%d" % i for i in range(6)] + [b"last"])
    # in order within each partition
    for part in (0, 1):
        offsets = [o for p_, o, _v in committed if p_ == part]
        assert offsets == sorted(offsets)
    everything = read_all(cluster.bootstrap_servers, topic_name, 2, "read_uncommitted", 11)
    assert {b"a0", b"a1", b"a2", b"a3"} <= {v for _p, _o, v in everything}


def test_read_committed_stops_at_an_open_transaction(cluster: Cluster, topic_name: str) -> None:
    cluster.create_topic(topic_name, partitions=1)
    plain = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    plain.produce(topic_name, value=b"before")
    plain.flush(30)
    p = txn_producer(cluster.bootstrap_servers, f"tx-{topic_name}")
    p.begin_transaction()
    p.produce(topic_name, value=b"open")
    p.flush(30)
    plain.produce(topic_name, value=b"after")  # above the LSO until the transaction ends
    plain.flush(30)
    assert values(read_all(cluster.bootstrap_servers, topic_name, 1, "read_committed", 1, timeout=5)) == [b"before"]
    p.commit_transaction(30)
    assert values(read_all(cluster.bootstrap_servers, topic_name, 1, "read_committed", 3)) == [
        b"before",
        b"open",
        b"after",
    ]


def test_consume_transform_produce_commits_offsets_with_the_output(cluster: Cluster, topic_name: str) -> None:
    src, dst, group = f"{topic_name}-in", f"{topic_name}-out", f"g-{topic_name}"
    cluster.create_topic(src, partitions=1)
    cluster.create_topic(dst, partitions=1)
    feed = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    for i in range(10):
        feed.produce(src, value=b"%d" % i)
    feed.flush(30)

    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([src])
    p = txn_producer(cluster.bootstrap_servers, f"tx-{topic_name}")

    def process(n: int, commit: bool) -> None:
        p.begin_transaction()
        seen = 0
        deadline = time.monotonic() + 30
        while seen < n and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is None or m.error():
                continue
            p.produce(dst, value=b"x" + m.value())
            seen += 1
        assert seen == n
        p.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata())
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)

    process(4, commit=True)
    [tp] = consumer.committed([TopicPartition(src, 0)], timeout=10)
    assert tp.offset == 4
    process(3, commit=False)  # aborted: neither the output nor the offsets count
    [tp] = consumer.committed([TopicPartition(src, 0)], timeout=10)
    assert tp.offset == 4
    consumer.close()

    out = read_all(cluster.bootstrap_servers, dst, 1, "read_committed", 4)
    assert values(out) == [b"x0", b"x1", b"x2", b"x3"]


def test_second_producer_with_the_same_id_fences_the_first(cluster: Cluster, topic_name: str) -> None:
    cluster.create_topic(topic_name, partitions=1)
    txn_id = f"tx-{topic_name}"
    zombie = txn_producer(cluster.bootstrap_servers, txn_id)
    zombie.begin_transaction()
    zombie.produce(topic_name, value=b"zombie")
    zombie.flush(30)

    fresh = txn_producer(cluster.bootstrap_servers, txn_id)  # aborts the zombie's open transaction
    fresh.begin_transaction()
    fresh.produce(topic_name, value=b"fresh")
    fresh.commit_transaction(30)

    with pytest.raises(KafkaException) as e:
        zombie.produce(topic_name, value=b"late")
        zombie.commit_transaction(10)
    assert e.value.args[0].fatal() or e.value.args[0].code() in (
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    )
    assert values(read_all(cluster.bootstrap_servers, topic_name, 1, "read_committed", 1)) == [b"fresh"]


def test_transaction_timeout_above_the_broker_maximum_is_refused(cluster: Cluster) -> None:
    c = WireClient.to(cluster.bootstrap_servers)
    try:
        from kafka.protocol.metadata import FindCoordinatorRequest

        txn_id = f"tx-timeout-{uuid.uuid4().hex[:6]}"
        node = c.request(FindCoordinatorRequest(key=txn_id, key_type=1), 3)
        coordinator = WireClient(node.host, node.port)
        resp = coordinator.request(InitProducerIdRequest(transactional_id=txn_id, transaction_timeout_ms=900_001), 4)
        coordinator.close()
    finally:
        c.close()
    assert resp.error_code == 50  # INVALID_TRANSACTION_TIMEOUT


def test_kafka_python_transactional_producer(cluster: Cluster, topic_name: str) -> None:
    cluster.create_topic(topic_name, partitions=1)
    p = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, transactional_id=f"kp-{topic_name}")
    p.init_transactions()
    p.begin_transaction()
    p.send(topic_name, b"kp-committed")
    p.commit_transaction()
    p.begin_transaction()
    p.send(topic_name, b"kp-aborted")
    p.flush()
    p.abort_transaction()
    p.close()
    assert values(read_all(cluster.bootstrap_servers, topic_name, 1, "read_committed", 1)) == [b"kp-committed"]


def test_timed_out_transaction_is_aborted_and_its_producer_fenced(fresh_cluster, topic_name: str) -> None:
    cluster = fresh_cluster(
        brokers=1, config={**FAST_GROUPS, "transaction_abort_timed_out_transaction_cleanup_interval_ms": 200}
    ).start()
    cluster.create_topic(topic_name, partitions=1)
    p = txn_producer(cluster.bootstrap_servers, f"tx-{topic_name}", **{"transaction.timeout.ms": 1000})
    p.begin_transaction()
    p.produce(topic_name, value=b"too-slow")
    p.flush(30)
    time.sleep(3)  # the coordinator aborts it meanwhile
    with pytest.raises(KafkaException):
        p.commit_transaction(10)
    other = txn_producer(cluster.bootstrap_servers, f"tx2-{topic_name}")
    other.begin_transaction()
    other.produce(topic_name, value=b"later")
    other.commit_transaction(30)
    # the abort marker moved the LSO on: the later transaction is readable, the slow one never
    assert values(read_all(cluster.bootstrap_servers, topic_name, 1, "read_committed", 1)) == [b"later"]


def test_transactions_survive_a_full_restart(fresh_cluster, topic_name: str) -> None:
    cluster = fresh_cluster(brokers=1).start()
    cluster.create_topic(topic_name, partitions=1)
    p = txn_producer(cluster.bootstrap_servers, f"tx-{topic_name}")
    p.begin_transaction()
    p.produce(topic_name, value=b"aborted")
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce(topic_name, value=b"kept")
    p.commit_transaction(30)
    del p
    cluster.kill_broker(1)
    cluster.restart_broker(1)
    assert values(read_all(cluster.bootstrap_servers, topic_name, 1, "read_committed", 1)) == [b"kept"]
    again = txn_producer(cluster.bootstrap_servers, f"tx-{topic_name}")  # the id is known: epoch bump
    again.begin_transaction()
    again.produce(topic_name, value=b"after-restart")
    again.commit_transaction(30)
    assert values(read_all(cluster.bootstrap_servers, topic_name, 1, "read_committed", 2)) == [
        b"kept",
        b"after-restart",
    ]


def test_killed_coordinator_mid_transaction_never_tears_it(fresh_cluster, topic_name: str) -> None:
    cluster = fresh_cluster(brokers=3).start()
    cluster.create_topic(topic_name, partitions=3, replication_factor=3)
    txn_id = f"tx-{topic_name}"
    p = txn_producer(cluster.bootstrap_servers, txn_id, **{"transaction.timeout.ms": 60000})
    p.begin_transaction()
    for i in range(9):
        p.produce(topic_name, value=b"v%d" % i, partition=i % 3)
    p.flush(30)
    cluster.kill_broker(transaction_coordinator(cluster.bootstrap_servers, txn_id))
    try:
        p.commit_transaction(60)
        committed = True
    except KafkaException:
        committed = False
    # The markers to the dead broker's partitions wait for their new leaders (its session timeout):
    # on a loaded machine that took more than the default 20 s twice; 60 s is a failure bound.
    got = values(read_all(cluster.bootstrap_servers, topic_name, 3, "read_committed", 9 if committed else 0, 60))
    if committed:
        assert sorted(got) == sorted(b"v%d" % i for i in range(9))
    else:
        assert got == []
    assert committed  # with RF=3 the new coordinator knows the transaction and finishes it


# -- the notebook side: Producer.transaction(), consume_transform_produce, SQL read_committed ------


def test_producer_transaction_context_manager_and_sql(cluster: Cluster, topic_name: str) -> None:
    cluster.create_topic(topic_name, partitions=2, config={"segment.bytes": 4096})
    producer = cluster.producer(transactional_id=f"nb-{topic_name}")
    with producer.transaction() as txn:
        for i in range(50):
            producer.send(topic_name, {"i": i, "kind": "committed"})
    assert txn.committed is True
    with pytest.raises(ZeroDivisionError), producer.transaction() as failed:
        for i in range(50):
            producer.send(topic_name, {"i": i, "kind": "aborted"})
        producer.flush()
        1 / 0  # noqa: B018 - the block fails: everything sent in it is aborted
    assert failed.committed is False
    with producer.transaction():
        producer.send(topic_name, {"i": 99, "kind": "committed"})
    df = cluster.sql(f'SELECT kind, count(*) AS n FROM "{topic_name}" GROUP BY kind')
    assert dict(zip(df["kind"], df["n"], strict=True)) == {"committed": 51}

    # an open transaction: its records (and everything after them) stay out of SQL
    open_txn = producer.transaction().__enter__()
    producer.send(topic_name, {"i": 1000, "kind": "open"}, partition=0)
    producer.flush()
    assert cluster.sql(f"SELECT count(*) AS n FROM \"{topic_name}\" WHERE kind = 'open'")["n"][0] == 0
    open_txn.__exit__(None, None, None)
    assert cluster.sql(f"SELECT count(*) AS n FROM \"{topic_name}\" WHERE kind = 'open'")["n"][0] == 1


def test_transaction_needs_a_transactional_id(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="transactional_id"), cluster.producer().transaction():
        pass


def test_consume_transform_produce_helper(cluster: Cluster, topic_name: str) -> None:
    src, dst = f"{topic_name}-in", f"{topic_name}-out"
    cluster.create_topic(src, partitions=1)
    cluster.create_topic(dst, partitions=1)
    feed = cluster.producer()
    for i in range(20):
        feed.send(src, {"n": i})
    feed.flush()
    consumer = cluster.consumer(f"g-{topic_name}", src, isolation_level="read_committed", enable_auto_commit=False)
    producer = cluster.producer(transactional_id=f"ctp-{topic_name}")
    done = 0
    deadline = time.monotonic() + 60
    while done < 20 and time.monotonic() < deadline:
        done += producer.consume_transform_produce(consumer, lambda r: {"double": r.value["n"] * 2}, dst)
    assert done == 20
    [tp] = consumer.raw.committed([TopicPartition(src, 0)], timeout=10)
    assert tp.offset == 20
    consumer.close()
    df = cluster.sql(f'SELECT "double" FROM "{dst}" ORDER BY "offset"')
    assert df["double"].tolist() == [i * 2 for i in range(20)]


def test_list_describe_transactions_and_producers(cluster: Cluster, topic_name: str) -> None:
    from kafka.protocol.admin import (
        DescribeProducersRequest,
        DescribeTransactionsRequest,
        ListTransactionsRequest,
    )
    from kafka.protocol.metadata import FindCoordinatorRequest

    cluster.create_topic(topic_name, partitions=1)
    txn_id = f"tx-{topic_name}"
    p = txn_producer(cluster.bootstrap_servers, txn_id)
    p.begin_transaction()
    p.produce(topic_name, value=b"open")
    p.flush(30)

    c = WireClient.to(cluster.bootstrap_servers)
    node = c.request(FindCoordinatorRequest(key=txn_id, key_type=1), 3)
    c.close()
    coordinator = WireClient(node.host, node.port)
    try:
        listed = coordinator.request(ListTransactionsRequest(state_filters=["Ongoing"], producer_id_filters=[]), 0)
        assert txn_id in [s.transactional_id for s in listed.transaction_states]
        assert all(s.transaction_state == "Ongoing" for s in listed.transaction_states)
        [described] = coordinator.request(DescribeTransactionsRequest(transactional_ids=[txn_id]), 0).transaction_states
        assert described.error_code == 0 and described.transaction_state == "Ongoing"
        assert [(t.topic, list(t.partitions)) for t in described.topics] == [(topic_name, [0])]
        [missing] = coordinator.request(
            DescribeTransactionsRequest(transactional_ids=["no-such-id"]), 0
        ).transaction_states
        assert missing.error_code in (105, 16)  # TRANSACTIONAL_ID_NOT_FOUND here, NOT_COORDINATOR elsewhere
    finally:
        coordinator.close()

    from tests.integration.test_wire_protocol import leader_client

    leader = leader_client(cluster, topic_name)
    try:
        resp = leader.request(
            DescribeProducersRequest(
                topics=[DescribeProducersRequest.TopicRequest(name=topic_name, partition_indexes=[0])]
            ),
            0,
        )
    finally:
        leader.close()
    [producer] = resp.topics[0].partitions[0].active_producers
    assert producer.producer_id == described.producer_id and producer.current_txn_start_offset == 0
    p.abort_transaction(30)


def test_open_transactions_through_kafka_python_admin(cluster: Cluster, topic_name: str) -> None:
    from kafka import TopicPartition as KTopicPartition
    from kafka.admin import KafkaAdminClient

    cluster.create_topic(topic_name, partitions=1)
    txn_id = f"open-{topic_name}"
    p = txn_producer(cluster.bootstrap_servers, txn_id)
    p.begin_transaction()
    p.produce(topic_name, value=b"pending")
    p.flush(30)
    df = cluster.open_transactions()
    row = df[df["transactional_id"] == txn_id]
    assert len(row) == 1 and row["state"].iloc[0] == "Ongoing"
    assert row["partitions"].iloc[0] == [f"{topic_name}-0"] and row["age_s"].iloc[0] >= 0

    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    try:
        state = admin.describe_producers([KTopicPartition(topic_name, 0)])
        [only] = list(state.values())
        assert [s.current_transaction_start_offset for s in only.active_producers] == [0]
    finally:
        admin.close()
    p.commit_transaction(30)
    assert txn_id not in set(cluster.open_transactions()["transactional_id"])


def test_idle_transactional_id_expires_and_starts_afresh(fresh_cluster, topic_name: str) -> None:
    """transactional.id.expiration.ms: an id idle that long is removed (a tombstone in
    __transaction_state); its next InitProducerId gets a new producer id at epoch 0, and an id in
    use meanwhile is kept."""
    from kafka.admin import KafkaAdminClient

    from tests.support import wait_until

    cluster = fresh_cluster(
        brokers=1,
        config={
            **FAST_GROUPS,
            "transactional_id_expiration_ms": 1500,
            "transaction_remove_expired_transaction_cleanup_interval_ms": 200,
        },
    ).start()
    cluster.create_topic(topic_name, partitions=1)
    idle, busy = f"idle-{topic_name}", f"busy-{topic_name}"
    p = txn_producer(cluster.bootstrap_servers, idle)
    p.begin_transaction()
    p.produce(topic_name, value=b"before")
    p.commit_transaction(30)
    first = init_producer_id(cluster.bootstrap_servers, idle)  # fences p: epoch + 1, same id
    assert first[1] >= 1
    keeper = txn_producer(cluster.bootstrap_servers, busy)

    def listed() -> set[str]:
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
        try:
            return {t.transactional_id for per in admin.list_transactions().values() for t in per}
        finally:
            admin.close()

    assert idle in listed()
    deadline = time.monotonic() + 30
    while idle in listed() and time.monotonic() < deadline:
        keeper.begin_transaction()  # the busy id keeps changing state: never idle long enough
        keeper.produce(topic_name, value=b"busy")
        keeper.commit_transaction(30)
        time.sleep(0.2)
    ids = listed()
    assert idle not in ids and busy in ids
    cluster.restart_broker(1)  # the tombstone holds across a reload of __transaction_state
    again = init_producer_id(cluster.bootstrap_servers, idle)
    assert again[0] != first[0] and again[1] == 0, (first, again)
    fresh = txn_producer(cluster.bootstrap_servers, idle)  # and a real client just works again
    fresh.begin_transaction()
    fresh.produce(topic_name, value=b"after")
    fresh.commit_transaction(30)
    got = wait_until(
        lambda: values(read_all(cluster.bootstrap_servers, topic_name, 1, "read_committed", 3)).count(b"after") == 1,
        timeout=20,
        message="the new producer's record",
    )
    assert got


def init_producer_id(bootstrap: str, txn_id: str) -> tuple[int, int]:
    """(producer id, epoch) from a raw InitProducerId v4 to the id's coordinator (retried while it loads)."""
    from kafka.protocol.metadata import FindCoordinatorRequest

    from tests.support import wait_until

    def attempt():
        c = WireClient.to(bootstrap)
        try:
            node = c.request(FindCoordinatorRequest(key=txn_id, key_type=1), 3)
        finally:
            c.close()
        if node.error_code != 0:
            return None
        coordinator = WireClient(node.host, node.port)
        try:
            resp = coordinator.request(InitProducerIdRequest(transactional_id=txn_id, transaction_timeout_ms=60_000), 4)
        finally:
            coordinator.close()
        return (resp.producer_id, resp.producer_epoch) if resp.error_code == 0 else None

    return wait_until(attempt, timeout=20, interval=0.2, message=f"InitProducerId for {txn_id}")


def test_wb_transactions_table_and_panel_show_open_transactions(fresh_cluster, topic_name: str) -> None:
    """`wb.transactions` and `TransactionsPanel` list an open transaction with its age,
    partitions and coordinator, drop it once committed, and the panel says when the cluster stops."""
    from tests.support import wait_until

    cluster = fresh_cluster(brokers=1).start()
    cluster.create_topic(topic_name, partitions=2)
    txn_id = f"wbtx-{topic_name}"
    p = txn_producer(cluster.bootstrap_servers, txn_id)
    p.begin_transaction()
    p.produce(topic_name, value=b"pending", partition=1)
    p.flush(30)
    query = f"SELECT state, age_s, partitions, coordinator FROM wb.transactions WHERE transactional_id = '{txn_id}'"
    rows = cluster.sql(query)
    assert len(rows) == 1, rows
    assert rows["state"].iloc[0] == "Ongoing" and rows["age_s"].iloc[0] >= 0
    assert list(rows["partitions"].iloc[0]) == [f"{topic_name}-1"]
    assert rows["coordinator"].iloc[0] == transaction_coordinator(cluster.bootstrap_servers, txn_id)
    panel = cluster.transactions_panel()
    try:
        wait_until(lambda: txn_id in panel.table.value, timeout=15, message="the panel to list the transaction")
        assert f"{topic_name}-1" in panel.table.value and "1 open" in panel.info.value
        p.commit_transaction(30)
        assert len(cluster.sql(query)) == 0
        wait_until(lambda: "no open transaction" in panel.table.value, timeout=15, message="the panel to empty")
        cluster.stop()
        wait_until(lambda: "workbench-stopped" in panel.info.value, timeout=15, message="the panel to say stopped")
        assert "cluster is stopped" in panel.info.value and "as of" in panel.table.value
        assert panel.refresh_button.disabled
    finally:
        panel.close()


def test_idle_producer_ids_expire_from_partitions(fresh_cluster, topic_name: str) -> None:
    """producer.id.expiration.ms: DescribeProducers lists an idempotent producer while it writes and
    no longer once it has been idle that long; writing again afterwards just works."""
    from kafka import TopicPartition as KTopicPartition
    from kafka.admin import KafkaAdminClient

    from tests.support import wait_until

    cluster = fresh_cluster(
        brokers=1,
        config={**FAST_GROUPS, "producer_id_expiration_ms": 1500, "producer_id_expiration_check_interval_ms": 200},
    ).start()
    cluster.create_topic(topic_name, partitions=1)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "enable.idempotence": True, "linger.ms": 5})

    def producers() -> list:
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
        try:
            [only] = list(admin.describe_producers([KTopicPartition(topic_name, 0)]).values())
            return list(only.active_producers)
        finally:
            admin.close()

    p.produce(topic_name, value=b"one")
    assert p.flush(30) == 0
    assert len(producers()) == 1
    wait_until(lambda: not producers(), timeout=20, interval=0.3, message="the idle producer id to expire")
    p.produce(topic_name, value=b"two")  # the same producer id, its next sequence: taken as unknown
    assert p.flush(30) == 0
    assert len(producers()) == 1
    assert values(read_all(cluster.bootstrap_servers, topic_name, 1, "read_uncommitted", 2)) == [b"one", b"two"]


def test_follower_catches_up_through_a_parquet_only_transactional_range(fresh_cluster, topic_name: str) -> None:
    """A follower that was down while transactions (committed and aborted) rolled into Parquet-only
    segments on the leader catches up (the markers' and aborted records' offsets come as gap
    fillers), rejoins the ISR, and once it leads, read_committed and read_uncommitted readers get
    exactly the committed records, in order."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition

    from tests.support import wait_until

    cluster = fresh_cluster(brokers=3).start()  # three controller voters: one may die
    cluster.create_topic(
        topic_name,
        partitions=1,
        replication_factor=2,
        config={"segment.bytes": "2048", "workbench.hot.segments": "0", "min.insync.replicas": "1"},
    )

    def row():
        parts = cluster.describe().partitions
        return parts[parts.topic == topic_name].iloc[0]

    leader = int(row().leader)
    follower = next(int(b) for b in row().replicas if int(b) != leader)
    p = txn_producer(cluster.bootstrap_servers, f"pq-{topic_name}")
    cluster.kill_broker(follower)
    wait_until(lambda: len(row().isr) == 1, timeout=45, message="the dead follower out of the ISR")
    committed = []
    for t in range(40):
        p.begin_transaction()
        batch = [f"t{t}-{i}-".encode() + b"x" * 40 for i in range(3)]
        for v in batch:
            p.produce(topic_name, value=v, partition=0)
        if t % 3 == 1:
            p.abort_transaction(30)
        else:
            p.commit_transaction(30)
            committed += batch
    part_dir = cluster.data_dir / f"broker-{leader}" / "topics" / topic_name / "partition=0"
    wait_until(
        lambda: len(list(part_dir.glob("*.log"))) == 1 and len(list(part_dir.glob("*.parquet"))) > 2,
        timeout=30,
        message="the leader's transactional history to live only in Parquet",
    )
    cluster.restart_broker(follower)
    wait_until(lambda: len(row().isr) == 2, timeout=45, message="the follower back in the ISR")
    cluster.kill_broker(leader)
    wait_until(lambda: int(row().leader) == follower, timeout=30, message="the follower to lead")
    assert values(read_all(cluster.bootstrap_servers, topic_name, 1, "read_committed", len(committed))) == committed
    got = values(read_all(cluster.bootstrap_servers, topic_name, 1, "read_uncommitted", len(committed)))
    assert got == committed  # the follower copied committed records only: aborted ones are not in Parquet
    k = KafkaConsumer(bootstrap_servers=cluster.bootstrap_servers, isolation_level="read_committed")
    try:
        k.assign([KTopicPartition(topic_name, 0)])
        k.seek_to_beginning()
        # Poll until every committed record came or 30 s passed: one 5 s silence (a metadata refresh
        # past the dead leader on a loaded machine) used to end the read early; then one more poll,
        # so a record beyond them would show.
        seen: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(seen) < len(committed) and time.monotonic() < deadline:
            for records in k.poll(timeout_ms=500).values():
                seen += [r.value for r in records]
        for records in k.poll(timeout_ms=1000).values():
            seen += [r.value for r in records]
    finally:
        k.close()
    assert seen == committed


def test_a_deposed_coordinators_late_marker_cannot_end_the_next_transaction(cluster: Cluster, topic_name: str) -> None:
    """Issue 12: markers are fenced by coordinator epoch, as in Kafka. A WriteTxnMarkers(ABORT)
    from an older coordinator epoch than the one whose COMMIT the partition last saw (a deposed
    coordinator's late request) arrives while the producer's next transaction is open: it is
    TRANSACTION_COORDINATOR_FENCED and that transaction, committed, is read in full."""
    from kafka.protocol.admin import DescribeProducersRequest

    from workbench.broker.apis import ApiKey
    from workbench.protocol.codec import REQUEST_CLASSES, build

    cluster.create_topic(topic_name, partitions=1)
    p = txn_producer(cluster.bootstrap_servers, f"tx-{topic_name}")
    p.begin_transaction()
    p.produce(topic_name, value=b"first", partition=0)
    p.commit_transaction(30)
    p.begin_transaction()
    p.produce(topic_name, value=b"second", partition=0)
    p.flush(30)

    leader = int(cluster.describe().partitions.query("topic == @topic_name").leader.iloc[0])
    client = WireClient("127.0.0.1", cluster.brokers[leader].port)
    try:
        described = client.request(DescribeProducersRequest(topics=[(topic_name, [0], {})]), 0)
        (producer,) = described.topics[0].partitions[0].active_producers
        assert producer.coordinator_epoch >= 0  # the COMMIT's coordinator epoch, kept per producer
        late = {
            "markers": [
                {
                    "producer_id": producer.producer_id,
                    "producer_epoch": producer.producer_epoch,
                    "transaction_result": False,
                    "topics": [{"name": topic_name, "partition_indexes": [0]}],
                    "coordinator_epoch": producer.coordinator_epoch - 1,
                }
            ]
        }
        answer = client.request(build(REQUEST_CLASSES[ApiKey.WRITE_TXN_MARKERS], late), 1)
    finally:
        client.close()
    assert answer.markers[0].topics[0].partitions[0].error_code == 52  # TRANSACTION_COORDINATOR_FENCED
    p.commit_transaction(30)
    committed = read_all(cluster.bootstrap_servers, topic_name, 1, "read_committed", 2)
    assert values(committed) == [b"first", b"second"]
