"""The API keys and version ranges this broker advertises in ApiVersions.

Chosen to match one Apache Kafka release (3.0) for the APIs we implement,
because kafka-python infers the broker's release from the advertised maxima
(`infer_broker_version_from_api_versions`, which looks at Produce, Fetch,
ListOffsets, JoinGroup, ...) and gates features on it. The group APIs go on to
the versions KIP-848 clients need (OffsetCommit/OffsetFetch v9, ListGroups v5,
Metadata v12), which kafka-python's inference does not look at.

Minima are 0 wherever Kafka 3.x served version 0, so that clients of 2017-2020
(sarama with its default `Version`, kafka-go, Burrow) work unmodified. Kafka
4's message schemas (which kafka-python's codec is generated from) dropped the
oldest versions from `validVersions` but kept every field with its version
range, so the codec still encodes them byte for byte; tests/unit/
test_old_versions_codec.py proves it against kafka-python's hand-written
legacy structs. What an old version needs beyond layout (ListOffsets v0's
`old_style_offsets`, Metadata v0's "empty list means all topics") is handled
where the request is served.

AddPartitionsToTxn goes to v4, Kafka 3.6's maximum: the batched broker-to-broker form whose
``VerifyOnly`` partition leaders send (KIP-890 part 1, `txn_verification.py`); kafka-python then
infers 3.6, and gates nothing between 3.0 and 3.6. Transaction version 2 (KIP-890 part 2: EndTxn
v5, Produce v12, the ``transaction.version`` feature) is not advertised: no client we test uses it.

Maxima stop before versions that address topics by id instead of by name
(Fetch 13+, Produce 13+, OffsetCommit/OffsetFetch 10+) and before versions that only add
features we do not have (e.g. KIP-848 fields).

Every advertised (API, version range) is listed, with the tests that exercise
it, in `api_ledger.toml` beside this module; tests/unit/test_api_ledger.py
fails when the two disagree.
"""

from __future__ import annotations

from workbench.protocol.api_keys import ApiKey

__all__ = ["SUPPORTED_APIS", "ApiKey"]

SUPPORTED_APIS: dict[int, tuple[int, int]] = {
    ApiKey.PRODUCE: (0, 9),
    ApiKey.FETCH: (0, 12),
    ApiKey.LIST_OFFSETS: (0, 7),
    ApiKey.METADATA: (0, 12),  # v12: topics by id (KIP-516), needed by KIP-848 clients
    ApiKey.OFFSET_COMMIT: (0, 9),  # v9: KIP-848 member epochs (STALE_MEMBER_EPOCH)
    ApiKey.OFFSET_FETCH: (0, 9),  # v9: KIP-848 member id and epoch
    ApiKey.FIND_COORDINATOR: (0, 4),
    ApiKey.JOIN_GROUP: (0, 7),
    ApiKey.HEARTBEAT: (0, 4),
    ApiKey.LEAVE_GROUP: (0, 4),
    ApiKey.SYNC_GROUP: (0, 5),
    ApiKey.DESCRIBE_GROUPS: (0, 5),
    ApiKey.LIST_GROUPS: (0, 5),  # v5: group types (KIP-848)
    ApiKey.API_VERSIONS: (0, 3),
    ApiKey.CREATE_TOPICS: (0, 7),
    ApiKey.DELETE_TOPICS: (0, 6),
    ApiKey.DELETE_RECORDS: (0, 2),
    ApiKey.INIT_PRODUCER_ID: (0, 4),
    # v4: KIP-890 part 1's broker-to-broker verification (batched, VerifyOnly), Kafka 3.6's maximum
    ApiKey.ADD_PARTITIONS_TO_TXN: (0, 4),
    ApiKey.ADD_OFFSETS_TO_TXN: (0, 3),
    ApiKey.END_TXN: (0, 3),
    ApiKey.WRITE_TXN_MARKERS: (1, 1),  # inter-broker; the codec has no v0
    ApiKey.TXN_OFFSET_COMMIT: (0, 3),
    ApiKey.DESCRIBE_PRODUCERS: (0, 0),
    ApiKey.DESCRIBE_TRANSACTIONS: (0, 0),
    ApiKey.LIST_TRANSACTIONS: (0, 0),
    ApiKey.DESCRIBE_CONFIGS: (0, 4),
    ApiKey.ALTER_CONFIGS: (0, 2),
    ApiKey.CREATE_PARTITIONS: (0, 3),
    ApiKey.DELETE_GROUPS: (0, 2),
    ApiKey.ELECT_LEADERS: (0, 2),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
    ApiKey.OFFSET_DELETE: (0, 0),
    ApiKey.DESCRIBE_CLUSTER: (0, 1),
    ApiKey.CONSUMER_GROUP_HEARTBEAT: (0, 1),  # KIP-848, workbench/broker/consumer_group_coordinator.py
    ApiKey.CONSUMER_GROUP_DESCRIBE: (0, 0),  # KIP-848
    # KIP-932 share groups (workbench/broker/share_state.py); v0 was Kafka 4.0's early access, gone in 4.1
    ApiKey.SHARE_GROUP_HEARTBEAT: (1, 1),
    ApiKey.SHARE_GROUP_DESCRIBE: (1, 1),
    ApiKey.SHARE_FETCH: (1, 1),  # v2 (KIP-1206 acquire modes, KIP-1222 Renew): librdkafka 2.16 sends v1
    ApiKey.SHARE_ACKNOWLEDGE: (1, 1),
    ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS: (0, 0),
    ApiKey.ALTER_SHARE_GROUP_OFFSETS: (0, 0),
    ApiKey.DELETE_SHARE_GROUP_OFFSETS: (0, 0),
}
