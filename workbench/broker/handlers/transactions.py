"""Transaction APIs (KIP-98, KIP-447): InitProducerId with a transactional id,
AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit, WriteTxnMarkers,
FindCoordinator's transaction key type, and the admin views of KIP-664
(DescribeProducers, DescribeTransactions, ListTransactions).

These decode the request and route it: transaction state to the
`TransactionCoordinator` (this broker must lead the id's `__transaction_state`
partition, else NOT_COORDINATOR), transactional offsets to the group's coordinator,
markers to this broker's partition leaders (`append_markers`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from workbench.broker.group_offsets import encode_offset_key, encode_offset_value, partition_for
from workbench.broker.groups_manager import OFFSETS_TOPIC
from workbench.broker.handlers.partitions import leader_partition
from workbench.broker.transaction_log import TxnState
from workbench.broker.transaction_marker_channel import append_markers
from workbench.broker.txn_verification import verify_offsets
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

if TYPE_CHECKING:
    from workbench.broker.handlers.context import BrokerContext as Broker
    from workbench.broker.server import Connection
    from workbench.protocol.codec import Request

KEY_TYPE_TRANSACTION = 1
NO_LEADER_EPOCH = -1


async def find_transaction_coordinator(broker: Broker, key: str) -> dict:
    """FindCoordinator key_type=1: the leader of the id's `__transaction_state` partition."""
    fail = {"node_id": -1, "host": "", "port": -1, "key": key}
    if not key:
        return {"error_code": ErrorCode.INVALID_REQUEST, "error_message": "empty transactional id", **fail}
    try:
        await broker.txn.state.ensure_topic()
    except Exception as exc:
        return {"error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE, "error_message": str(exc), **fail}
    info = broker.image.brokers.get(broker.txn.state.coordinator_node(key))
    if info is None:
        return {"error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE, "error_message": None, **fail}
    return {
        "error_code": 0,
        "error_message": None,
        "node_id": info.id,
        "host": info.host,
        "port": info.port,
        "key": key,
    }


async def init_producer_id(broker: Broker, req: Request) -> dict:
    b = req.body
    pid = b.producer_id if req.api_version >= 3 and b.producer_id is not None else -1
    epoch = b.producer_epoch if req.api_version >= 3 and b.producer_epoch is not None else -1
    code, pid, epoch = await broker.txn.init_producer_id(b.transactional_id, b.transaction_timeout_ms, pid, epoch)
    return {"throttle_time_ms": 0, "error_code": code, "producer_id": pid, "producer_epoch": epoch}


def _topic_results(results: dict[tuple[str, int], ErrorCode]) -> list[dict]:
    by_topic: dict[str, list[dict]] = {}
    for (topic, p), code in results.items():
        by_topic.setdefault(topic, []).append({"partition_index": p, "partition_error_code": code})
    return [{"name": t, "results_by_partition": ps} for t, ps in by_topic.items()]


async def add_partitions_to_txn(broker: Broker, req: Request, conn: Connection) -> dict:
    b = req.body
    if req.api_version >= 4:
        out = []
        for txn in b.transactions:
            tps = [(t.name, p) for t in txn.topics for p in t.partitions]
            if txn.verify_only:  # KIP-890 part 1: a partition leader asks (workbench/broker/txn_verification.py)
                results = broker.txn.verify_partitions(txn.transactional_id, txn.producer_id, txn.producer_epoch, tps)
            else:
                results = await broker.txn.add_partitions(
                    txn.transactional_id, txn.producer_id, txn.producer_epoch, tps
                )
            out.append({"transactional_id": txn.transactional_id, "topic_results": _topic_results(results)})
        return {"throttle_time_ms": 0, "error_code": 0, "results_by_transaction": out}
    tps = [(t.name, p) for t in b.v3_and_below_topics for p in t.partitions]
    results = await broker.txn.add_partitions(
        b.v3_and_below_transactional_id, b.v3_and_below_producer_id, b.v3_and_below_producer_epoch, tps
    )
    return {"throttle_time_ms": 0, "results_by_topic_v3_and_below": _topic_results(results)}


async def add_offsets_to_txn(broker: Broker, req: Request, conn: Connection) -> dict:
    b = req.body
    code = await broker.txn.add_offsets(b.transactional_id, b.producer_id, b.producer_epoch, b.group_id)
    return {"throttle_time_ms": 0, "error_code": code}


async def end_txn(broker: Broker, req: Request, conn: Connection) -> dict:
    b = req.body
    code = await broker.txn.end_transaction(b.transactional_id, b.producer_id, b.producer_epoch, b.committed)
    return {"throttle_time_ms": 0, "error_code": code}


async def txn_offset_commit(broker: Broker, req: Request, conn: Connection) -> dict:
    """Offsets written into the group's `__consumer_offsets` partition as part of the
    producer's transaction: they count once the commit marker lands there (KIP-98), and
    a zombie consumer generation is fenced by its generation and member id (KIP-447)."""
    b = req.body

    def answer(code_of) -> dict:  # type: ignore[no-untyped-def]
        return {
            "throttle_time_ms": 0,
            "topics": [
                {
                    "name": t.name,
                    "partitions": [
                        {"partition_index": p.partition_index, "error_code": code_of(t.name, p)} for p in t.partitions
                    ],
                }
                for t in b.topics
            ],
        }

    v3 = req.api_version >= 3
    try:
        coordinator = await broker.groups.coordinator_for_soon(b.group_id)
    except KafkaProtocolError as exc:
        code = exc.code
        return answer(lambda _t, _p: code)
    partition = partition_for(b.group_id, broker.groups.num_partitions)
    store = broker.groups.stores.get(partition)
    err = coordinator.validate_transactional_commit(
        b.group_id,
        b.generation_id if v3 else -1,
        b.member_id if v3 else "",
        b.group_instance_id if v3 else None,
    )
    if err is None and store is None:
        err = ErrorCode.NOT_COORDINATOR
    if err is not None:
        code = err
        return answer(lambda _t, _p: code)
    assert store is not None
    # KIP-890 part 1 (Kafka 3.6+): the offsets partition must be in the transaction (AddOffsetsToTxn)
    tp = (OFFSETS_TOPIC, partition)
    verified = await verify_offsets(broker, b.transactional_id, b.producer_id, b.producer_epoch, store.partition, tp)
    if verified is not None:
        try:
            verified.check(store.partition, *tp)
        except KafkaProtocolError as exc:
            code = ErrorCode(exc.code)
            return answer(lambda _t, _p: code)
    now_ms = int(time.time() * 1000)
    records: list[tuple[bytes, bytes | None]] = []
    for t in b.topics:
        for p in t.partitions:
            epoch = getattr(p, "committed_leader_epoch", NO_LEADER_EPOCH)
            records.append(
                (
                    encode_offset_key(b.group_id, t.name, p.partition_index),
                    encode_offset_value(
                        p.committed_offset, NO_LEADER_EPOCH if epoch is None else epoch, p.committed_metadata, now_ms
                    ),
                )
            )
    code = ErrorCode.NONE
    try:
        await store.append(records, producer_id=b.producer_id, producer_epoch=b.producer_epoch)
        store.pending_transactional.setdefault(b.producer_id, []).extend(records)
    except KafkaProtocolError as exc:
        code = ErrorCode(exc.code)
        if code == ErrorCode.INVALID_PRODUCER_EPOCH:
            code = ErrorCode.PRODUCER_FENCED
        elif code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.FENCED_LEADER_EPOCH):
            code = ErrorCode.NOT_COORDINATOR
        elif code not in (ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE):
            code = ErrorCode.COORDINATOR_NOT_AVAILABLE
    return answer(lambda _t, _p: code)


async def write_txn_markers(broker: Broker, req: Request, conn: Connection) -> dict:
    """Inter-broker: write the markers a transaction coordinator sends to this partition leader."""
    out = []
    for m in req.body.markers:
        tps = [(t.name, p) for t in m.topics for p in t.partition_indexes]
        results = await append_markers(
            broker, m.producer_id, m.producer_epoch, m.transaction_result, m.coordinator_epoch, tps
        )
        by_topic: dict[str, list[dict]] = {}
        for (topic, p), code in results.items():
            by_topic.setdefault(topic, []).append({"partition_index": p, "error_code": code})
        out.append(
            {"producer_id": m.producer_id, "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()]}
        )
    return {"markers": out}


# -- KIP-664: what is open, and who writes ------------------------------------------------------


async def list_transactions(broker: Broker, req: Request, conn: Connection) -> dict:
    """The transactional ids this broker coordinates (an admin client asks every broker)."""
    b = req.body
    names = {s.kafka_name: s for s in TxnState}
    wanted = set(b.state_filters or [])
    unknown = sorted(wanted - names.keys())
    pids = set(b.producer_id_filters or [])
    states = []
    for _part, meta in broker.txn.state.all_transactions():
        if wanted and meta.state.kafka_name not in wanted:
            continue
        if pids and meta.producer_id not in pids:
            continue
        states.append(
            {
                "transactional_id": meta.transactional_id,
                "producer_id": meta.producer_id,
                "transaction_state": meta.state.kafka_name,
            }
        )
    return {"throttle_time_ms": 0, "error_code": 0, "unknown_state_filters": unknown, "transaction_states": states}


async def describe_transactions(broker: Broker, req: Request, conn: Connection) -> dict:
    out = []
    for tid in req.body.transactional_ids:
        entry: dict = {
            "error_code": 0,
            "transactional_id": tid,
            "transaction_state": "",
            "transaction_timeout_ms": 0,
            "transaction_start_time_ms": -1,
            "producer_id": -1,
            "producer_epoch": -1,
            "topics": [],
        }
        try:
            part = broker.txn.state.partition_for(tid)
        except KafkaProtocolError as exc:
            entry["error_code"] = exc.code
            out.append(entry)
            continue
        meta = part.txns.get(tid)
        if meta is None:
            entry["error_code"] = ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
            out.append(entry)
            continue
        by_topic: dict[str, list[int]] = {}
        for topic, p in sorted(meta.partitions):
            by_topic.setdefault(topic, []).append(p)
        entry.update(
            transaction_state=meta.state.kafka_name,
            transaction_timeout_ms=meta.timeout_ms,
            transaction_start_time_ms=meta.start_ms,
            producer_id=meta.producer_id,
            producer_epoch=meta.producer_epoch,
            topics=[{"topic": t, "partitions": ps} for t, ps in by_topic.items()],
        )
        out.append(entry)
    return {"throttle_time_ms": 0, "transaction_states": out}


async def describe_producers(broker: Broker, req: Request, conn: Connection) -> dict:
    """Per partition this broker leads: the producers it knows and the open transaction of each."""
    topics = []
    for t in req.body.topics:
        parts = []
        for index in t.partition_indexes:
            partition, error = leader_partition(broker, t.name, index)
            active = []
            if partition is not None:
                state = partition.log.producers
                ongoing = state.transactions.ongoing
                for pid, entry in sorted(state.producers.items()):
                    last = entry.batches[-1] if entry.batches else None
                    active.append(
                        {
                            "producer_id": pid,
                            "producer_epoch": entry.epoch,
                            "last_sequence": last.last_seq if last else -1,
                            "last_timestamp": last.timestamp if last else -1,
                            "coordinator_epoch": entry.coordinator_epoch,
                            "current_txn_start_offset": ongoing.get(pid, -1),
                        }
                    )
            parts.append(
                {
                    "partition_index": index,
                    "error_code": error,
                    "error_message": None,
                    "active_producers": active,
                }
            )
        topics.append({"name": t.name, "partitions": parts})
    return {"throttle_time_ms": 0, "topics": topics}
