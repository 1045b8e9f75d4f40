"""Controller operations: requests a broker makes of the active controller.

An operation is a JSON-able dict (`{"op": "create_topic", ...}`) so that it
can travel to whichever node is the active controller. `execute(image, op)`
validates it against the controller's up-to-date `MetadataImage` and returns
the metadata records that carry it out (or raises `KafkaProtocolError`). It is
a pure function: the caller appends the records to the metadata log, so a
decision and its write happen against the same state.

Leader election follows Kafka's rules: a new leader comes from the ISR among
live (unfenced) replicas, in replica order (so the preferred replica wins when
it can); if the ISR has no live member, an unclean election picks any live
replica only when the topic allows it (`unclean.leader.election.enable`),
otherwise the partition goes offline (leader -1) until an ISR member returns.
Every leader change bumps the leader epoch.

Brokers (issue 12): every broker start registers a new incarnation whose broker epoch is
the registration's metadata offset (KIP-380); a broker that restarted before anyone fenced
it leaves every ISR and leadership at registration and rejoins an ISR only through an
AlterPartition naming the epoch in which its leader saw it catch up (KIP-903). A broker
whose log directory failed (`log_dir_offline`, KIP-112) leads nothing and joins no ISR
until it registers again.
"""

from __future__ import annotations

import time
from collections.abc import Set
from typing import Any

from workbench.controller.image import MetadataImage, PartitionInfo
from workbench.controller.topics import (
    TOPIC_CONFIG_DEFAULTS,
    create_partitions_records,
    create_topic_records,
    validate_configs,
)
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.topic_config import CATALOGUE

Records = list[dict[str, Any]]

OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3
_LIST_CONFIGS = {name for name, spec in CATALOGUE.items() if spec.kind == "list"}


def _now_ms() -> int:
    return int(time.time() * 1000)


def default_replication_factor(image: MetadataImage, wanted: int | None, default: int) -> int:
    if wanted is not None and wanted > 0:
        return wanted
    return max(1, min(default, len(image.live_brokers()) or len(image.brokers)))


def partition_record(p: PartitionInfo, *, leader: int, isr: list[int], reason: str, bump_epoch: bool) -> dict[str, Any]:
    return {
        "t": "partition",
        "topic": p.topic,
        "p": p.index,
        "replicas": list(p.replicas),
        "isr": list(isr),
        "leader": leader,
        "leader_epoch": p.leader_epoch + (1 if bump_epoch else 0),
        "partition_epoch": p.partition_epoch + 1,
        "reason": reason,
        "ts": _now_ms(),
    }


def elect_leader(
    image: MetadataImage,
    p: PartitionInfo,
    *,
    exclude: Set[int] = frozenset(),
    unclean_allowed: bool | None = None,
) -> tuple[int, list[int]]:
    """The leader Kafka would pick and the resulting ISR (leader -1 when none can lead)."""
    live = {b for b in image.brokers if image.can_host_replicas(b)} - set(exclude)
    isr = [r for r in p.isr if r in live]
    for r in p.replicas:
        if r in isr:
            return r, isr
    if unclean_allowed is None:
        topic = image.topics.get(p.topic)
        unclean_allowed = bool(topic and topic.configs.get("unclean.leader.election.enable") == "true")
    if unclean_allowed:
        for r in p.replicas:
            if r in live:
                return r, [r]
    # No eligible leader: offline, and the ISR keeps the last leader so it can come back cleanly.
    return -1, [r for r in p.isr if r not in exclude][:1] or p.isr[:1]


def execute(image: MetadataImage, op: dict[str, Any], *, default_rf: int = 1) -> Records:
    kind = op["op"]
    handler = _HANDLERS.get(kind)
    if handler is None:
        raise KafkaProtocolError(ErrorCode.INVALID_REQUEST, f"unknown controller operation {kind!r}")
    return handler(image, op, default_rf)


# -- brokers ----------------------------------------------------------------------------------------


def _register_broker(image: MetadataImage, op: dict, default_rf: int) -> Records:
    """Every broker start registers a new incarnation (KIP-380's broker epoch, KIP-903).

    The registration record is always written, fenced, and its offset in the metadata log is
    the broker's new epoch. A broker that was still registered and unfenced (it restarted
    within its session timeout, so nobody fenced the old incarnation) is treated as fenced
    first: its leaderships move to other in-sync replicas and it leaves every ISR it was in,
    because the new incarnation may have lost what the old one acknowledged (an unflushed
    tail, a damaged segment). It rejoins an ISR only once its leader sees it caught up to the
    high watermark again (`_alter_partition` checks the epoch the leader saw).
    """
    records: Records = []
    if image.cluster_id is None and op.get("cluster_id"):
        records.append({"t": "cluster", "cluster_id": op["cluster_id"]})
    bid = op["id"]
    records.append(
        {
            "t": "broker",
            "id": bid,
            "host": op["host"],
            "port": op["port"],
            "rack": op.get("rack"),
            "fenced": True,
            "incarnation": op.get("incarnation"),
            "ts": _now_ms(),
        }
    )
    current = image.brokers.get(bid)
    if current is not None and not current.fenced:
        reason = f"broker {bid} restarted (new incarnation): out of the ISR until it catches up after restart"
        records.extend(_move_off_broker(image, bid, reason))
    return records


def _unfence_broker(image: MetadataImage, op: dict, default_rf: int) -> Records:
    """A registered broker caught up with metadata: let it lead again; offline partitions get it back."""
    broker = image.brokers.get(op["id"])
    if broker is None:
        raise KafkaProtocolError(ErrorCode.INVALID_REQUEST, f"broker {op['id']} is not registered")
    if not broker.fenced:
        return []
    records: Records = [{"t": "unfence", "id": op["id"], "ts": _now_ms()}]
    after = image.copy_with_broker(op["id"], fenced=False)
    for p in image.all_partitions():
        if p.leader == -1 and op["id"] in p.replicas:
            leader, isr = elect_leader(after, p)
            if leader != -1:
                records.append(
                    partition_record(
                        p,
                        leader=leader,
                        isr=isr,
                        bump_epoch=True,
                        reason=f"broker {op['id']} returned to an offline partition",
                    )
                )
    return records


def _move_off_broker(image: MetadataImage, bid: int, reason: str) -> Records:
    """Partition records that take broker `bid` out of every ISR and leadership it holds.

    New leaders come from the rest of the ISR (`elect_leader`). The last member of an ISR keeps
    its place (the partition goes offline if it led): it is the only replica known to hold every
    committed record, so it alone may lead it again (KIP-966's last known leader).
    """
    after = image.copy_with_broker(bid, fenced=True)
    records: Records = []
    for p in image.all_partitions():
        if bid not in p.replicas:
            continue
        if p.leader == bid:
            leader, isr = elect_leader(after, p, exclude={bid})
            records.append(partition_record(p, leader=leader, isr=isr, bump_epoch=True, reason=reason))
        elif bid in p.isr and len(p.isr) > 1:
            records.append(
                partition_record(
                    p, leader=p.leader, isr=[r for r in p.isr if r != bid], bump_epoch=False, reason=reason
                )
            )
    return records


def _fence_broker(image: MetadataImage, op: dict, default_rf: int) -> Records:
    """The broker stopped heartbeating (or shut down): it may no longer lead or count in ISRs."""
    bid = op["id"]
    broker = image.brokers.get(bid)
    if broker is None or broker.fenced:
        return []
    reason = op.get("reason") or f"broker {bid} fenced"
    return [{"t": "fence", "id": bid, "ts": _now_ms(), "reason": reason}, *_move_off_broker(image, bid, reason)]


def _log_dir_offline(image: MetadataImage, op: dict, default_rf: int) -> Records:
    """A broker's log directory failed (a write raised, e.g. a full or broken disk; KIP-112).

    The broker stays registered and unfenced (it still serves metadata and its other duties),
    but leads nothing and leaves every ISR: its leaderships move to healthy in-sync replicas at
    once instead of staying unwritable for as long as the disk is bad, and no election
    (preferred or after a failure) picks it until it registers again after a restart.
    """
    bid = op["id"]
    broker = image.brokers.get(bid)
    if broker is None:
        raise KafkaProtocolError(ErrorCode.INVALID_REQUEST, f"broker {bid} is not registered")
    if broker.log_dir_offline:
        return []
    reason = f"broker {bid}: log directory offline ({op.get('reason') or 'storage error'})"
    return [
        {"t": "log_dir_offline", "id": bid, "reason": reason, "ts": _now_ms()},
        *_move_off_broker(image, bid, reason),
    ]


def _controlled_shutdown(image: MetadataImage, op: dict, default_rf: int) -> Records:
    """Move leadership away from a broker that is about to stop (Kafka's ControlledShutdown)."""
    return _fence_broker(image, {"id": op["id"], "reason": f"broker {op['id']} controlled shutdown"}, default_rf)


# -- partitions ------------------------------------------------------------------------------------


def _alter_partition(image: MetadataImage, op: dict, default_rf: int) -> Records:
    """A leader reports a new ISR (Kafka's AlterPartition): accepted only from the current leader epoch."""
    topic = image.topics.get(op["topic"])
    p = topic.partitions.get(op["p"]) if topic else None
    if p is None:
        raise KafkaProtocolError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"{op['topic']}-{op['p']} does not exist")
    if p.leader != op["leader"] or p.leader_epoch != op["leader_epoch"]:
        raise KafkaProtocolError(
            ErrorCode.FENCED_LEADER_EPOCH,
            f"{op['topic']}-{op['p']}: leader {op['leader']} epoch {op['leader_epoch']} is stale",
        )
    isr = [r for r in p.replicas if r in set(op["isr"])]
    if p.leader not in isr:
        raise KafkaProtocolError(ErrorCode.INVALID_REQUEST, "the leader must stay in its ISR")
    joining = [r for r in isr if r not in p.isr]
    if any(not image.can_host_replicas(r) for r in joining):
        raise KafkaProtocolError(
            ErrorCode.INVALID_REQUEST, "a fenced broker, or one whose log directory is offline, cannot join the ISR"
        )
    # KIP-903: the leader saw each joining replica catch up in one incarnation (broker epoch);
    # if that broker restarted since, what it has now is unknown: refuse.
    seen = {int(k): v for k, v in (op.get("broker_epochs") or {}).items()}
    stale = [r for r in joining if r in seen and seen[r] != image.brokers[r].epoch]
    if stale:
        raise KafkaProtocolError(
            ErrorCode.STALE_BROKER_EPOCH,
            f"replicas {stale} restarted since the leader saw them catch up; they must catch up again",
        )
    if isr == p.isr:
        return []
    return [partition_record(p, leader=p.leader, isr=isr, bump_epoch=False, reason=op.get("reason") or "isr change")]


def _elect_leaders(image: MetadataImage, op: dict, default_rf: int) -> Records:
    """Preferred (type 0) or unclean (type 1) elections, for the given or all partitions."""
    wanted = op.get("partitions")
    preferred = op.get("type", 0) == 0
    records: Records = []
    for p in image.all_partitions():
        if wanted is not None and [p.topic, p.index] not in wanted and (p.topic, p.index) not in wanted:
            continue
        if preferred:
            first = p.replicas[0]
            broker = image.brokers.get(first)
            if p.leader != first and first in p.isr and broker is not None and image.can_host_replicas(first):
                records.append(
                    partition_record(p, leader=first, isr=p.isr, bump_epoch=True, reason="preferred leader election")
                )
        elif p.leader == -1:
            leader, isr = elect_leader(image, p, unclean_allowed=True)
            if leader != -1:
                records.append(
                    partition_record(p, leader=leader, isr=isr, bump_epoch=True, reason="unclean leader election")
                )
    return records


# -- topics ----------------------------------------------------------------------------------------


def _create_topic(image: MetadataImage, op: dict, default_rf: int) -> Records:
    if op.get("if_not_exists") and op["name"] in image.topics:
        return []
    rf = default_replication_factor(image, op.get("replication_factor"), default_rf)
    assignments = {int(k): v for k, v in (op.get("assignments") or {}).items()}
    live = _placement_brokers(image, rf)
    configs = dict(op.get("configs") or {})
    if op.get("min_insync_one_below_rf"):
        # The internal topics (`__transaction_state`, `__consumer_offsets`): min.insync.replicas is
        # one below the replication factor decided here (3 -> 2, Kafka's transaction.state.log.min.isr),
        # so what their coordinators acknowledge is on two brokers whenever it can be.
        configs["min.insync.replicas"] = str(max(1, rf - 1))
    records = create_topic_records(image, op["name"], op["partitions"], rf, configs, assignments or None, brokers=live)
    return [_avoid_offline_dirs(image, r) for r in records]


def _avoid_offline_dirs(image: MetadataImage, record: dict[str, Any]) -> dict[str, Any]:
    """A new partition neither led by nor in sync on a broker whose log directory is offline."""
    if record["t"] != "partition":
        return record
    healthy = [r for r in record["isr"] if image.can_host_replicas(r)]
    if not healthy or len(healthy) == len(record["isr"]):
        return record
    return {**record, "isr": healthy, "leader": healthy[0]}


def _delete_topic(image: MetadataImage, op: dict, default_rf: int) -> Records:
    name = op.get("name")
    if name is None and op.get("topic_id"):
        name = next((t.name for t in image.topics.values() if t.id == op["topic_id"]), None)
    if name is None or name not in image.topics:
        raise KafkaProtocolError(
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            f"topic {op.get('name') or op.get('topic_id')} does not exist",
        )
    if name.startswith("__"):
        raise KafkaProtocolError(ErrorCode.TOPIC_DELETION_DISABLED, f"internal topic {name} cannot be deleted")
    return [{"t": "remove_topic", "name": name}]


def _placement_brokers(image: MetadataImage, rf: int) -> list[int]:
    """Brokers new replicas go to: those with a working log directory when there are `rf` of
    them, else every unfenced broker (a topic still gets created; its replicas on an offline
    directory simply stay out of the ISR)."""
    healthy = [b for b in image.live_brokers() if image.can_host_replicas(b)]
    return healthy if len(healthy) >= rf else image.live_brokers()


def _create_partitions(image: MetadataImage, op: dict, default_rf: int) -> Records:
    topic = image.topics.get(op["name"])
    rf = len(next(iter(topic.partitions.values())).replicas) if topic and topic.partitions else 1
    live = _placement_brokers(image, rf)
    return create_partitions_records(image, op["name"], op["count"], op.get("assignments"), brokers=live)


def _alter_configs(image: MetadataImage, op: dict, default_rf: int) -> Records:
    topic = image.topics.get(op["name"])
    if topic is None:
        raise KafkaProtocolError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {op['name']} does not exist")
    if "configs" in op:
        configs = dict(op["configs"])
    else:
        configs = dict(topic.configs)
        for name, operation, value in op["incremental"]:
            if operation == OP_SET:
                configs[name] = value
            elif operation == OP_DELETE:
                configs.pop(name, None)
            elif operation in (OP_APPEND, OP_SUBTRACT):
                if name not in _LIST_CONFIGS:
                    raise KafkaProtocolError(ErrorCode.INVALID_CONFIG, f"{name} is not a list config")
                items = [x for x in configs.get(name, TOPIC_CONFIG_DEFAULTS[name]).split(",") if x]
                for v in (value or "").split(","):
                    if operation == OP_APPEND and v not in items:
                        items.append(v)
                    elif operation == OP_SUBTRACT and v in items:
                        items.remove(v)
                configs[name] = ",".join(items)
            else:
                raise KafkaProtocolError(ErrorCode.INVALID_REQUEST, f"unknown config operation {operation}")
    return [{"t": "config", "topic": op["name"], "configs": validate_configs(configs)}]


def _alter_group_configs(image: MetadataImage, op: dict, default_rf: int) -> Records:
    """A group's config overrides, all of them (the broker validated them against its bounds)."""
    if not op.get("group"):
        raise KafkaProtocolError(ErrorCode.INVALID_REQUEST, "a group config needs a group id")
    return [{"t": "group_config", "group": op["group"], "configs": dict(op["configs"])}]


def _allocate_producer_ids(image: MetadataImage, op: dict, default_rf: int) -> Records:
    return [
        {
            "t": "producer_ids",
            "broker": op["broker"],
            "start": image.next_producer_id,
            "length": op.get("length", 1000),
        }
    ]


_HANDLERS = {
    "register_broker": _register_broker,
    "unfence_broker": _unfence_broker,
    "fence_broker": _fence_broker,
    "log_dir_offline": _log_dir_offline,
    "controlled_shutdown": _controlled_shutdown,
    "alter_partition": _alter_partition,
    "elect_leaders": _elect_leaders,
    "create_topic": _create_topic,
    "delete_topic": _delete_topic,
    "create_partitions": _create_partitions,
    "alter_configs": _alter_configs,
    "alter_group_configs": _alter_group_configs,
    "allocate_producer_ids": _allocate_producer_ids,
}
