"""Broker settings, named after Kafka's broker configs where one exists."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class BrokerConfig:
    node_id: int
    cluster_dir: Path  # shared by the cluster: metadata log lives here
    host: str = "127.0.0.1"  # listeners / advertised.listeners host
    port: int = 0  # 0 = pick a free port
    raft_port: int = 0  # the controller quorum listener (voters only)
    auto_create_topics_enable: bool = True  # auto.create.topics.enable
    num_partitions: int = 1  # num.partitions (auto-created topics)
    default_replication_factor: int = 3  # default.replication.factor (capped at the live brokers)
    offsets_topic_num_partitions: int = 10  # offsets.topic.num.partitions (Kafka: 50; fewer files here)
    transaction_state_num_partitions: int = 10  # transaction.state.log.num.partitions (Kafka: 50)
    transaction_max_timeout_ms: int = 900_000  # transaction.max.timeout.ms
    # transaction.partition.verification.enable (KIP-890 part 1, workbench/broker/txn_verification.py)
    transaction_partition_verification_enable: bool = True
    # transaction.abort.timed.out.transaction.cleanup.interval.ms (Kafka: 10000)
    transaction_abort_timed_out_transaction_cleanup_interval_ms: int = 1000
    producer_id_expiration_ms: int = 86_400_000  # producer.id.expiration.ms (1 day, as Kafka)
    producer_id_expiration_check_interval_ms: int = 600_000  # producer.id.expiration.check.interval.ms
    transactional_id_expiration_ms: int = 604_800_000  # transactional.id.expiration.ms (7 days, as Kafka)
    # transaction.remove.expired.transaction.cleanup.interval.ms (as Kafka: 1 hour)
    transaction_remove_expired_transaction_cleanup_interval_ms: int = 3_600_000
    group_initial_rebalance_delay_ms: int = 300  # group.initial.rebalance.delay.ms (Kafka: 3000)
    group_min_session_timeout_ms: int = 1000  # group.min.session.timeout.ms (Kafka: 6000)
    group_max_session_timeout_ms: int = 1800000  # group.max.session.timeout.ms
    # KIP-932 share groups (workbench/broker/share_state.py): the defaults of the group configs
    group_share_record_lock_duration_ms: int = 30_000  # group.share.record.lock.duration.ms
    group_share_delivery_count_limit: int = 5  # group.share.delivery.count.limit
    group_share_auto_offset_reset: str = "latest"  # share.auto.offset.reset: latest or earliest
    group_share_session_timeout_ms: int = 45000  # group.share.session.timeout.ms
    group_share_heartbeat_interval_ms: int = 1000  # group.share.heartbeat.interval.ms (Kafka: 5000)
    group_share_isolation_level: str = "read_uncommitted"  # share.isolation.level's default (Kafka's)
    # The bounds of the per-group overrides (workbench/broker/group_configs.py), Kafka's
    # group.share.{min,max}.*; lower minima than Kafka's (45000, 5000, 15000) so tests and notebooks
    # can use short timeouts and locks, and a longer maximum lock (Kafka: 60000).
    group_share_min_session_timeout_ms: int = 1000
    group_share_max_session_timeout_ms: int = 60000
    group_share_min_heartbeat_interval_ms: int = 100
    group_share_max_heartbeat_interval_ms: int = 15000
    group_share_min_record_lock_duration_ms: int = 100
    group_share_max_record_lock_duration_ms: int = 3_600_000
    # KIP-848 consumer groups (group.protocol=consumer), Kafka 4.x's group.consumer.* names; checked
    # together by `check_consumer_group_settings` (Kafka's defaults: 45000, 5000, 45000, 60000).
    group_consumer_session_timeout_ms: int = 45000  # group.consumer.session.timeout.ms
    group_consumer_heartbeat_interval_ms: int = 1000  # group.consumer.heartbeat.interval.ms (quick rebalances)
    group_consumer_min_session_timeout_ms: int = 1000  # group.consumer.min.session.timeout.ms
    group_consumer_max_session_timeout_ms: int = 60000  # group.consumer.max.session.timeout.ms
    group_consumer_min_heartbeat_interval_ms: int = 100  # group.consumer.min.heartbeat.interval.ms (Kafka: 5000)
    group_consumer_max_heartbeat_interval_ms: int = 15000  # group.consumer.max.heartbeat.interval.ms
    # group.consumer.assignors: the ones a member may name; the first is the default
    group_consumer_assignors: list[str] = field(default_factory=lambda: ["uniform", "range"])
    group_consumer_max_size: int = 2**31 - 1  # group.consumer.max.size
    # group.consumer.migration.policy: bidirectional, upgrade, downgrade or disabled. It governs converting
    # groups WITH members; empty groups convert either way whatever it says (as in Kafka).
    group_consumer_migration_policy: str = "bidirectional"
    socket_request_max_bytes: int = 100 * 1024 * 1024
    max_connections: int = 10_000  # max.connections
    max_incremental_fetch_session_cache_slots: int = 1000  # KIP-227, workbench/broker/fetch_session.py
    connections_max_idle_ms: int = 600_000  # connections.max.idle.ms
    broker_session_timeout_ms: int = 1500  # broker.session.timeout.ms (Kafka: 9000)
    replica_lag_time_max_ms: int = 10000  # replica.lag.time.max.ms (Kafka: 30000)
    auto_leader_rebalance_enable: bool = True  # auto.leader.rebalance.enable
    log_defaults: dict[str, str] = field(default_factory=dict)  # log.* defaults as topic-config names
    background_interval_s: float = 0.5  # retention, segment.ms rolls, flush, Parquet conversion
    # Parquet conversion of sealed segments waits for a quiet moment (Broker._conversion_due):
    # no append on this broker for this long; None: 0 with tail files on (a sealed segment is never
    # tailed, so deferring its conversion only delays its Parquet), 1000 with them off
    parquet_quiet_ms: int | None = None
    parquet_max_backlog_segments: int = 4  # ... or a partition has this many sealed segments waiting
    parquet_tail_ms: int = 1000  # issue 17: committed records of unsealed segments in Parquet this often (0: off)
    parquet_max_delay_ms: int = 30000  # ... or a segment has waited this long
    # issue 17: a Parquet file superseded by a newer one (tail, sealed, cleaned) or removed by retention
    # stays on disk this long before it is unlinked, so a reader that listed it can still read it.
    parquet_unlink_grace_ms: int = 60_000
    # issue 17: the partition leader commits new records to the topic's Iceberg table
    # (<cluster_dir>/iceberg, workbench.storage.iceberg_tables) at most this often. Opt-in (0: off)
    # while a duplicate-publication race found by tests/integration/test_open_tables.py is open.
    iceberg_commit_ms: int = 0
    # ... and merges a partition's small data files once this old (0: never), a run of at least
    # iceberg_merge_min_files consecutive ones into one (an Iceberg overwrite snapshot).
    iceberg_merge_age_ms: int = 60_000
    iceberg_merge_min_files: int = 10
    # The log cleaner (workbench.storage.log_cleaner), Kafka's log.cleaner.* names:
    log_cleaner_enable: bool = True  # log.cleaner.enable
    log_cleaner_dedupe_buffer_size: int = 32 * 1024 * 1024  # log.cleaner.dedupe.buffer.size (Kafka: 128 MiB)
    log_cleaner_io_max_bytes_per_second: float = 50 * 1024 * 1024  # log.cleaner.io.max.bytes.per.second
    log_cleaner_backoff_ms: int = 2000  # log.cleaner.backoff.ms (Kafka: 15000)
    metadata_poll_s: float = 0.1  # safety net: how often to re-apply metadata not yet acted on
    # The controller quorum: node id -> [host, kafka port, raft port] (controller.quorum.voters).
    voters: dict[int, list] = field(default_factory=dict)
    # -- security (workbench.security): off unless sasl_mechanisms is set ------------------------
    sasl_mechanisms: list[str] = field(default_factory=list)  # sasl.enabled.mechanisms: PLAIN, SCRAM-SHA-256
    scram_credentials: dict[str, dict] = field(default_factory=dict)  # user -> salted SCRAM credential
    acls: list[dict] | None = None  # None: no authorizer; a list: deny unless an ACL allows
    super_users: list[str] = field(default_factory=list)  # super.users, e.g. ["User:admin"]
    inter_broker_secret: str | None = None  # brokers authenticate to each other as User:broker with it
    security_file: str | None = None  # JSON with any of the five above (keeps them out of argv)

    def __post_init__(self) -> None:
        check_consumer_group_settings(self)
        if self.security_file:
            from workbench.security.enforce import load_security_file

            allowed = {"sasl_mechanisms", "scram_credentials", "acls", "super_users", "inter_broker_secret"}
            for key, value in load_security_file(self.security_file).items():
                if key not in allowed:
                    raise ValueError(f"{self.security_file}: unknown security setting {key!r}")
                setattr(self, key, value)

    @property
    def broker_dir(self) -> Path:
        return self.cluster_dir / f"broker-{self.node_id}"


CONSUMER_GROUP_ASSIGNORS = ("uniform", "range")
MIGRATION_POLICIES = ("bidirectional", "upgrade", "downgrade", "disabled")


def check_consumer_group_settings(cfg: object) -> None:
    """Kafka's checks of the group.consumer.* settings (GroupCoordinatorConfig); ValueError names the setting.

    `cfg` is a BrokerConfig or anything with its `group_consumer_*` attributes.
    """
    get = cfg.__getattribute__
    lo, hi = get("group_consumer_min_session_timeout_ms"), get("group_consumer_max_session_timeout_ms")
    session, interval = get("group_consumer_session_timeout_ms"), get("group_consumer_heartbeat_interval_ms")
    if lo > hi:
        raise ValueError(
            f"group_consumer_min_session_timeout_ms ({lo}) must be at most group_consumer_max_session_timeout_ms ({hi})"
        )
    if not lo <= session <= hi:
        raise ValueError(f"group_consumer_session_timeout_ms ({session}) must be between {lo} and {hi}")
    if not 0 < interval < session:
        raise ValueError(
            f"group_consumer_heartbeat_interval_ms ({interval}) must be above 0 and below "
            f"group_consumer_session_timeout_ms ({session})"
        )
    assignors = list(get("group_consumer_assignors"))
    unknown = [a for a in assignors if a not in CONSUMER_GROUP_ASSIGNORS]
    if not assignors or unknown:
        raise ValueError(
            f"group_consumer_assignors {assignors!r}: a non-empty list of {', '.join(CONSUMER_GROUP_ASSIGNORS)}"
        )
    if get("group_consumer_max_size") < 1:
        raise ValueError(f"group_consumer_max_size must be at least 1, not {get('group_consumer_max_size')}")
    policy = get("group_consumer_migration_policy")
    if str(policy).lower() not in MIGRATION_POLICIES:
        raise ValueError(f"group_consumer_migration_policy {policy!r}: one of {', '.join(MIGRATION_POLICIES)}")
