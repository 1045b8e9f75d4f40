"""Tables from changelogs: ``latest."<topic>"``, the latest value per key with tombstones applied.

A topic read as a changelog (CDC, a compacted topic, any keyed stream) is a table: for each key
the record with the highest offset in its partition, and no row for a key whose latest record is
a tombstone (a NULL value). That is what a consumer of a fully compacted topic would end up with
(Kafka Streams' KTable, ksqlDB's TABLE), computed here from every record the topic view holds,
so it works whether or not the broker's log cleaner has run yet, and includes the live tail up
to the high watermark (the view it reads is refreshed before each query).

A key written to several partitions (a producer that changed partitioner) keeps the record with
the latest timestamp. Records without a key are not part of a table and are left out.
"""

from __future__ import annotations

from workbench.sql.flatten import quote

#: The schema that holds one table view per topic.
SCHEMA = "latest"


def create_schema_sql() -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {SCHEMA};"


def view_sql(topic: str) -> str:
    """``CREATE OR REPLACE VIEW latest."<topic>"`` over the topic's view ``main."<topic>"``."""
    source = f"main.{quote(topic)}"
    per_partition = (
        f"SELECT * FROM {source} WHERE key_bytes IS NOT NULL "
        'QUALIFY row_number() OVER (PARTITION BY partition, key_bytes ORDER BY "offset" DESC) = 1'
    )
    per_key = (
        f"SELECT * FROM ({per_partition}) "
        "QUALIFY row_number() OVER (PARTITION BY key_bytes ORDER BY timestamp DESC, partition DESC) = 1"
    )
    return f"CREATE OR REPLACE VIEW {SCHEMA}.{quote(topic)} AS SELECT * FROM ({per_key}) WHERE value_bytes IS NOT NULL"


def drop_sql(topic: str) -> str:
    return f"DROP VIEW IF EXISTS {SCHEMA}.{quote(topic)};"


def table_query(topic: str) -> str:
    """The query `cluster.table(topic)` runs: the table in partition and offset order."""
    return f'SELECT * FROM {SCHEMA}.{quote(topic)} ORDER BY partition, "offset"'
