"""The API keys and version ranges this broker advertises in ApiVersions.

Chosen to match one Apache Kafka release (3.0) for the APIs we implement,
because kafka-python infers the broker's release from the advertised maxima
(`infer_broker_version_from_api_versions`) and gates features on it. Minima are
the lowest versions the schema-generated codec really encodes: Kafka 4's
message schemas dropped the record formats before v2 (Produce < 3, Fetch < 4)
and some long-deprecated request layouts (OffsetCommit < 2, ...), and we do not
advertise what we cannot encode byte-for-byte.

Maxima stop before versions that address topics by id instead of by name
(Fetch 13+, Produce 13+, OffsetCommit 10+) and before versions that only add
features we do not have (e.g. KIP-848 fields).
"""

from __future__ import annotations

from workbench.protocol.api_keys import ApiKey

__all__ = ["SUPPORTED_APIS", "ApiKey"]

SUPPORTED_APIS: dict[int, tuple[int, int]] = {
    ApiKey.PRODUCE: (3, 9),
    ApiKey.FETCH: (4, 12),
    ApiKey.LIST_OFFSETS: (1, 7),
    ApiKey.METADATA: (0, 11),
    ApiKey.OFFSET_COMMIT: (2, 8),
    ApiKey.OFFSET_FETCH: (1, 8),
    ApiKey.FIND_COORDINATOR: (0, 4),
    ApiKey.JOIN_GROUP: (0, 7),
    ApiKey.HEARTBEAT: (0, 4),
    ApiKey.LEAVE_GROUP: (0, 4),
    ApiKey.SYNC_GROUP: (0, 5),
    ApiKey.DESCRIBE_GROUPS: (0, 5),
    ApiKey.LIST_GROUPS: (0, 4),
    ApiKey.API_VERSIONS: (0, 3),
    ApiKey.CREATE_TOPICS: (2, 7),
    ApiKey.DELETE_TOPICS: (1, 6),
    ApiKey.DELETE_RECORDS: (0, 2),
    ApiKey.INIT_PRODUCER_ID: (0, 4),
    ApiKey.DESCRIBE_CONFIGS: (1, 4),
    ApiKey.ALTER_CONFIGS: (0, 2),
    ApiKey.CREATE_PARTITIONS: (0, 3),
    ApiKey.DELETE_GROUPS: (0, 2),
    ApiKey.ELECT_LEADERS: (0, 2),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
    ApiKey.OFFSET_DELETE: (0, 0),
    ApiKey.DESCRIBE_CLUSTER: (0, 1),
}
