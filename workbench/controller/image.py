"""`MetadataImage`: the state obtained by replaying metadata records in order.

Record types (JSON objects, field `t`), after KRaft's metadata records:

* `cluster`        {cluster_id}
* `broker`         {id, host, port, rack, incarnation}          (RegisterBrokerRecord; its offset in
                                                                 the log is the broker epoch, KIP-380)
* `topic`          {name, id, configs}                          (TopicRecord + ConfigRecords)
* `partition`      {topic, p, replicas, isr, leader, leader_epoch}   (PartitionRecord / PartitionChangeRecord)
* `config`         {topic, configs}                             (full replacement of a topic's overrides)
* `group_config`   {group, configs}                             (ConfigRecords of a GROUP resource, KIP-848/932:
                                                                 full replacement of a group's overrides)
* `remove_topic`   {name}                                       (RemoveTopicRecord)
* `producer_ids`   {broker, start, length}                      (ProducerIdsRecord: a block handed to a broker)
* `fence` / `unfence` {id}                                      (BrokerRegistrationChangeRecord)
* `log_dir_offline` {id, reason}                                 (a failed log directory, KIP-112)

Partition records may carry `reason` and `ts` (why and when leadership or the
ISR changed); the image keeps the last `HISTORY` leader changes for display.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field
from typing import Any

HISTORY = 1000


@dataclass
class BrokerInfo:
    id: int
    host: str
    port: int
    rack: str | None = None
    fenced: bool = False
    #: Broker epoch (KIP-380/903): the metadata offset of this incarnation's registration. Every
    #: broker start registers anew, so a restarted broker, however fast, has a new epoch.
    epoch: int = -1
    #: The broker's log directory failed (KIP-112): it leads nothing and joins no ISR until it
    #: registers again (a restart, after the directory was repaired).
    log_dir_offline: bool = False


@dataclass
class PartitionInfo:
    topic: str
    index: int
    replicas: list[int]
    isr: list[int]
    leader: int
    leader_epoch: int
    partition_epoch: int = 0


@dataclass
class TopicInfo:
    name: str
    id: str  # UUID as hex string
    configs: dict[str, str] = field(default_factory=dict)
    partitions: dict[int, PartitionInfo] = field(default_factory=dict)

    @property
    def internal(self) -> bool:
        return self.name.startswith("__")


@dataclass
class MetadataImage:
    cluster_id: str | None = None
    brokers: dict[int, BrokerInfo] = field(default_factory=dict)
    topics: dict[str, TopicInfo] = field(default_factory=dict)
    next_producer_id: int = 0
    #: Per-group config overrides (workbench/broker/group_configs.py): group id -> name -> value.
    group_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    # How many records have been applied (the image's offset in the metadata log).
    offset: int = 0
    # Leader changes, newest last: dicts of ts, topic, partition, old/new leader, epoch, isr, reason.
    elections: deque = field(default_factory=lambda: deque(maxlen=HISTORY))

    def apply(self, record: dict[str, Any]) -> None:
        kind = record["t"]
        if kind == "cluster":
            self.cluster_id = self.cluster_id or record["cluster_id"]
        elif kind == "broker":
            self.brokers[record["id"]] = BrokerInfo(
                record["id"],
                record["host"],
                record["port"],
                record.get("rack"),
                bool(record.get("fenced", False)),
                epoch=self.offset,
            )
        elif kind in ("fence", "unfence"):
            broker = self.brokers.get(record["id"])
            if broker is not None:
                broker.fenced = kind == "fence"
        elif kind == "log_dir_offline":
            broker = self.brokers.get(record["id"])
            if broker is not None:
                broker.log_dir_offline = True
        elif kind == "topic":
            self.topics[record["name"]] = TopicInfo(record["name"], record["id"], dict(record.get("configs", {})))
        elif kind == "partition":
            topic = self.topics.get(record["topic"])
            if topic is not None:
                old = topic.partitions.get(record["p"])
                topic.partitions[record["p"]] = PartitionInfo(
                    record["topic"],
                    record["p"],
                    list(record["replicas"]),
                    list(record["isr"]),
                    record["leader"],
                    record["leader_epoch"],
                    record.get("partition_epoch", 0),
                )
                if old is not None and old.leader != record["leader"]:
                    self.elections.append(
                        {
                            "ts": record.get("ts"),
                            "topic": record["topic"],
                            "partition": record["p"],
                            "old_leader": old.leader,
                            "new_leader": record["leader"],
                            "leader_epoch": record["leader_epoch"],
                            "isr": list(record["isr"]),
                            "reason": record.get("reason", ""),
                        }
                    )
        elif kind == "config":
            topic = self.topics.get(record["topic"])
            if topic is not None:
                topic.configs = dict(record["configs"])
        elif kind == "group_config":
            if record["configs"]:
                self.group_configs[record["group"]] = dict(record["configs"])
            else:
                self.group_configs.pop(record["group"], None)
        elif kind == "remove_topic":
            self.topics.pop(record["name"], None)
        elif kind == "producer_ids":
            self.next_producer_id = max(self.next_producer_id, record["start"] + record["length"])
        # Unknown record types are skipped: a newer writer may know more than we do.
        self.offset += 1

    def all_partitions(self) -> list[PartitionInfo]:
        return [p for t in self.topics.values() for p in t.partitions.values()]

    def live_brokers(self) -> list[int]:
        return sorted(b for b, info in self.brokers.items() if not info.fenced)

    def can_host_replicas(self, broker_id: int) -> bool:
        """Unfenced with a working log directory: may lead, and may join an ISR."""
        info = self.brokers.get(broker_id)
        return info is not None and not info.fenced and not info.log_dir_offline

    def copy_with_broker(self, broker_id: int, *, fenced: bool) -> MetadataImage:
        """A copy of the image with one broker's fencing changed (to evaluate an election)."""
        other = copy.copy(self)
        other.brokers = {k: copy.copy(v) for k, v in self.brokers.items()}
        if broker_id in other.brokers:
            other.brokers[broker_id].fenced = fenced
        return other

    def partitions_led_by(self, broker_id: int) -> list[PartitionInfo]:
        return [p for t in self.topics.values() for p in t.partitions.values() if p.leader == broker_id]

    def replicas_on(self, broker_id: int) -> list[PartitionInfo]:
        return [p for t in self.topics.values() for p in t.partitions.values() if broker_id in p.replicas]
