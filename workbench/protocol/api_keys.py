"""Kafka's API keys (the request header's `api_key`), by the names the protocol guide gives them.

The versions we advertise for each live in one ledger, `workbench.broker.apis.SUPPORTED_APIS`;
this module only names the keys, so that the codec, the network layer and `workbench.security`
share them without importing the broker.
"""

from __future__ import annotations

from enum import IntEnum


class ApiKey(IntEnum):
    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    ADD_PARTITIONS_TO_TXN = 24
    ADD_OFFSETS_TO_TXN = 25
    END_TXN = 26
    WRITE_TXN_MARKERS = 27
    TXN_OFFSET_COMMIT = 28
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    SASL_AUTHENTICATE = 36
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    ELECT_LEADERS = 43
    INCREMENTAL_ALTER_CONFIGS = 44
    OFFSET_DELETE = 47
    DESCRIBE_CLUSTER = 60
    DESCRIBE_PRODUCERS = 61
    DESCRIBE_TRANSACTIONS = 65
    LIST_TRANSACTIONS = 66
    CONSUMER_GROUP_HEARTBEAT = 68  # KIP-848
    CONSUMER_GROUP_DESCRIBE = 69  # KIP-848
    SHARE_GROUP_HEARTBEAT = 76  # KIP-932
    SHARE_GROUP_DESCRIBE = 77  # KIP-932
    SHARE_FETCH = 78  # KIP-932
    SHARE_ACKNOWLEDGE = 79  # KIP-932
    DESCRIBE_SHARE_GROUP_OFFSETS = 90  # KIP-932
    ALTER_SHARE_GROUP_OFFSETS = 91  # KIP-932
    DELETE_SHARE_GROUP_OFFSETS = 92  # KIP-932


# The brokers' private request to the active controller (`workbench.broker.controller_channel`):
# far above any key Kafka assigns, never advertised in ApiVersions, served only to `User:broker`
# when SASL is on. A JSON body after a request header v1.
CONTROLLER_API_KEY = 10000
