"""Request handlers, one module per area; `HANDLERS` maps API keys to them."""

from __future__ import annotations

from workbench.broker.handlers import (
    admin,
    cluster_info,
    consumer_groups,
    fetch,
    groups,
    produce,
    share_groups,
    transactions,
)
from workbench.broker.handlers.context import BrokerContext, Handler
from workbench.protocol.api_keys import ApiKey

__all__ = ["HANDLERS", "BrokerContext", "Handler"]

# Every API in `workbench.broker.apis.SUPPORTED_APIS` has its handler here (SaslHandshake and
# SaslAuthenticate excepted: the network layer serves those); tests/unit/test_api_handlers.py checks it.
HANDLERS: dict[int, Handler] = {
    ApiKey.API_VERSIONS: cluster_info.api_versions,
    ApiKey.METADATA: cluster_info.metadata,
    ApiKey.DESCRIBE_CLUSTER: cluster_info.describe_cluster,
    ApiKey.PRODUCE: produce.produce,
    ApiKey.INIT_PRODUCER_ID: produce.init_producer_id,
    ApiKey.FETCH: fetch.fetch,
    ApiKey.LIST_OFFSETS: fetch.list_offsets,
    ApiKey.DELETE_RECORDS: fetch.delete_records,
    ApiKey.CREATE_TOPICS: admin.create_topics,
    ApiKey.DELETE_TOPICS: admin.delete_topics,
    ApiKey.CREATE_PARTITIONS: admin.create_partitions,
    ApiKey.DESCRIBE_CONFIGS: admin.describe_configs,
    ApiKey.ALTER_CONFIGS: admin.alter_configs,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: admin.incremental_alter_configs,
    ApiKey.ELECT_LEADERS: admin.elect_leaders,
    ApiKey.FIND_COORDINATOR: groups.find_coordinator,
    ApiKey.JOIN_GROUP: groups.join_group,
    ApiKey.SYNC_GROUP: groups.sync_group,
    ApiKey.HEARTBEAT: groups.heartbeat,
    ApiKey.LEAVE_GROUP: groups.leave_group,
    ApiKey.OFFSET_COMMIT: groups.offset_commit,
    ApiKey.OFFSET_FETCH: groups.offset_fetch,
    ApiKey.LIST_GROUPS: groups.list_groups,
    ApiKey.DESCRIBE_GROUPS: groups.describe_groups,
    ApiKey.DELETE_GROUPS: groups.delete_groups,
    ApiKey.OFFSET_DELETE: groups.offset_delete,
    ApiKey.ADD_PARTITIONS_TO_TXN: transactions.add_partitions_to_txn,
    ApiKey.ADD_OFFSETS_TO_TXN: transactions.add_offsets_to_txn,
    ApiKey.END_TXN: transactions.end_txn,
    ApiKey.WRITE_TXN_MARKERS: transactions.write_txn_markers,
    ApiKey.TXN_OFFSET_COMMIT: transactions.txn_offset_commit,
    ApiKey.DESCRIBE_PRODUCERS: transactions.describe_producers,
    ApiKey.DESCRIBE_TRANSACTIONS: transactions.describe_transactions,
    ApiKey.LIST_TRANSACTIONS: transactions.list_transactions,
    ApiKey.CONSUMER_GROUP_HEARTBEAT: consumer_groups.consumer_group_heartbeat,
    ApiKey.CONSUMER_GROUP_DESCRIBE: consumer_groups.consumer_group_describe,
    ApiKey.SHARE_GROUP_HEARTBEAT: share_groups.share_group_heartbeat,
    ApiKey.SHARE_GROUP_DESCRIBE: share_groups.share_group_describe,
    ApiKey.SHARE_FETCH: share_groups.share_fetch,
    ApiKey.SHARE_ACKNOWLEDGE: share_groups.share_acknowledge,
    ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS: share_groups.describe_share_group_offsets,
    ApiKey.ALTER_SHARE_GROUP_OFFSETS: share_groups.alter_share_group_offsets,
    ApiKey.DELETE_SHARE_GROUP_OFFSETS: share_groups.delete_share_group_offsets,
}
