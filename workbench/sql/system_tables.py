"""System tables in schema `wb`, rebuilt from the Kafka protocol when a query names them.

* `wb.brokers`: node_id, host, port, is_controller
* `wb.topics`: topic, partitions, replication_factor, internal
* `wb.partitions`: topic, partition, leader, replicas, isr, log_start_offset, high_watermark, records
* `wb.consumer_groups`: group_id, state, type, protocol ("classic" or "consumer": KIP-848's group.protocol),
  assignor, coordinator, members (count), member_list
* `wb.consumer_group_members`: group_id, member_id, client_id, host, topic, partition (one row per
  assigned partition; a member without an assignment has topic and partition NULL)
* `wb.consumer_lag`: group_id, topic, partition, committed_offset, log_end_offset, lag (records),
  lag_seconds, oldest_unconsumed_timestamp. Every partition of each topic a group has committed
  on or is assigned is listed; one without a commit has committed_offset NULL and lag
  log_end_offset - log_start_offset (kafka-consumer-groups.sh shows "-" there).

* `wb.share_groups`: group_id, topic, partition, leader, start_offset (the share-partition start
  offset, SPSO), next_offset, in_flight, available, acquired, acknowledged, archived, redelivered
  (in-flight records delivered more than once), max_delivery_count, delivery_count_limit,
  lock_duration_ms: the KIP-932 share partitions, one row per (share group, partition), from the
  ``share-partitions.json`` each leader publishes (Kafka has no API for in-flight record states,
  so only an embedded cluster fills it; a connection to another cluster gets no rows).
* `wb.transactions`: transactional_id, producer_id, producer_epoch, state, age_s, timeout_ms,
  partitions, coordinator: the open transactions (Ongoing, Prepare*), oldest first, from
  ListTransactions + DescribeTransactions (KIP-664; `workbench.transactions.open_transactions`)
* `wb.schemas`: subject, version, id, schema_type, schema (the schema registry's live versions;
  `workbench.sql.schemas_table`)
* `wb.consumer_lag_history`: time, group_id, state, members, topic, partition, committed_offset,
  log_end_offset, lag, lag_seconds, status: `wb.consumer_lag` sampled every 2 s for the last
  hour by the connection (`workbench.sql.lag_history`), each row with its Burrow status
  (OK / WARN / STALL / STOP / ERR). Sampling starts with the first query of this table (or the
  first group monitor or dashboard) and runs while the connection lives.

`lag_seconds` is how long the oldest record the group has not consumed has been waiting: now
minus the timestamp of the record at the committed offset, or at the log start offset without a
commit (0 when the group is caught up). It is read with one small Fetch per lagging partition,
so it needs no history of commits.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pyarrow as pa

TABLES = (
    "brokers",
    "topics",
    "partitions",
    "consumer_groups",
    "consumer_group_members",
    "consumer_lag",
    "consumer_lag_history",
    "schemas",
    "share_groups",
    "transactions",
)

TRANSACTIONS_SCHEMA = pa.schema(
    [
        ("transactional_id", pa.string()),
        ("producer_id", pa.int64()),
        ("producer_epoch", pa.int16()),
        ("state", pa.string()),
        ("age_s", pa.float64()),
        ("timeout_ms", pa.int32()),
        ("partitions", pa.list_(pa.string())),
        ("coordinator", pa.int32()),
    ]
)

#: Written by each broker (workbench/broker/share_state.py, SHARE_PARTITIONS_FILE).
SHARE_PARTITIONS_FILE = "share-partitions.json"
_SHARE_SCHEMA = pa.schema(
    [
        ("group_id", pa.string()),
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("leader", pa.int32()),
        ("start_offset", pa.int64()),
        ("next_offset", pa.int64()),
        ("in_flight", pa.int64()),
        ("available", pa.int64()),
        ("acquired", pa.int64()),
        ("acknowledged", pa.int64()),
        ("archived", pa.int64()),
        ("redelivered", pa.int64()),
        ("max_delivery_count", pa.int32()),
        ("delivery_count_limit", pa.int32()),
        ("lock_duration_ms", pa.int64()),
    ]
)


def _share_groups_table(engine) -> pa.Table:
    """`wb.share_groups` from the files the partition leaders publish (embedded clusters only)."""
    import json
    from pathlib import Path

    data_dir = engine.broker_data_dir()
    rows: dict[tuple[str, str, int], dict] = {}
    for path in sorted(Path(data_dir).glob(f"broker-*/{SHARE_PARTITIONS_FILE}")) if data_dir else []:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced right now, or a broker gone
        for row in doc if isinstance(doc, list) else []:
            key = (row["group_id"], row["topic"], int(row["partition"]))
            # after a leader change the old leader's file may still list the partition: keep the newest start
            if key not in rows or row["start_offset"] >= rows[key]["start_offset"]:
                rows[key] = {name: row.get(name) for name in _SHARE_SCHEMA.names}
    return pa.Table.from_pylist([rows[k] for k in sorted(rows)], schema=_SHARE_SCHEMA)


def refresh_system_tables(engine, names: list[str]) -> None:
    """Rebuild the named `wb.*` tables (unknown names are left for DuckDB to report)."""
    wanted = [n for n in names if n in TABLES]
    if not wanted:
        return
    tables: dict[str, pa.Table] = {}
    if "consumer_lag_history" in wanted:
        from workbench.sql.lag_history import lag_history_of

        history = lag_history_of(engine, start=False)
        if history.samples == 0:
            history.sample(engine)  # the first query sees the present, not an empty table
        history.start()
        tables["consumer_lag_history"] = history.table()
        wanted.remove("consumer_lag_history")
    if "transactions" in wanted:
        from workbench.transactions import open_transactions

        tables["transactions"] = pa.Table.from_pylist(
            open_transactions(engine.wire.bootstrap_servers), schema=TRANSACTIONS_SCHEMA
        )
        wanted.remove("transactions")
    if "schemas" in wanted:
        from workbench.sql.schemas_table import schemas_table

        tables["schemas"] = schemas_table(getattr(engine, "schema_registry_url", None))
        wanted.remove("schemas")
    if "share_groups" in wanted:
        tables["share_groups"] = _share_groups_table(engine)
        wanted.remove("share_groups")
    if not wanted:
        _install(engine, tables)
        return
    md = engine.metadata()
    if "brokers" in wanted:
        tables["brokers"] = pa.Table.from_pylist(
            [
                {"node_id": b.node_id, "host": b.host, "port": b.port, "is_controller": b.is_controller}
                for b in md.brokers
            ],
            schema=pa.schema(
                [
                    ("node_id", pa.int32()),
                    ("host", pa.string()),
                    ("port", pa.int32()),
                    ("is_controller", pa.bool_()),
                ]
            ),
        )
    if "topics" in wanted:
        tables["topics"] = pa.Table.from_pylist(
            [
                {
                    "topic": t,
                    "partitions": len(ps),
                    "replication_factor": len(ps[0].replicas) if ps else 0,
                    "internal": t.startswith("__"),
                }
                for t, ps in sorted(md.partitions.items())
            ],
            schema=pa.schema(
                [
                    ("topic", pa.string()),
                    ("partitions", pa.int32()),
                    ("replication_factor", pa.int32()),
                    ("internal", pa.bool_()),
                ]
            ),
        )
    if "partitions" in wanted or "consumer_lag" in wanted:
        tps = [(t, p.partition) for t, ps in md.partitions.items() for p in ps]
        starts = engine.wire.list_offsets(tps, "earliest")
        ends = engine.wire.list_offsets(tps, "latest")
    if "partitions" in wanted:
        rows = []
        for t, ps in sorted(md.partitions.items()):
            for p in ps:
                lso, hw = starts.get((t, p.partition), -1), ends.get((t, p.partition), -1)
                rows.append(
                    {
                        "topic": t,
                        "partition": p.partition,
                        "leader": p.leader,
                        "replicas": list(p.replicas),
                        "isr": list(p.isr),
                        "log_start_offset": lso,
                        "high_watermark": hw,
                        "records": max(hw - lso, 0),
                        "error": p.error,
                    }
                )
        tables["partitions"] = pa.Table.from_pylist(
            rows,
            schema=pa.schema(
                [
                    ("topic", pa.string()),
                    ("partition", pa.int32()),
                    ("leader", pa.int32()),
                    ("replicas", pa.list_(pa.int32())),
                    ("isr", pa.list_(pa.int32())),
                    ("log_start_offset", pa.int64()),
                    ("high_watermark", pa.int64()),
                    ("records", pa.int64()),
                    ("error", pa.string()),
                ]
            ),
        )
    groups = (
        engine.wire.consumer_groups()
        if {"consumer_groups", "consumer_group_members", "consumer_lag"} & set(wanted)
        else []
    )
    if "consumer_groups" in wanted:
        member_type = pa.struct(
            [
                ("member_id", pa.string()),
                ("client_id", pa.string()),
                ("host", pa.string()),
                ("assignment", pa.list_(pa.string())),
            ]
        )
        tables["consumer_groups"] = pa.Table.from_pylist(
            [
                {
                    "group_id": g["group_id"],
                    "state": g["state"],
                    "type": g["type"],
                    "protocol": g.get("protocol"),
                    "assignor": g["assignor"],
                    "coordinator": g["coordinator"],
                    "members": len(g["members"]),
                    "member_list": [
                        {
                            **{k: m[k] for k in ("member_id", "client_id", "host")},
                            "assignment": [f"{t}:{p}" for t, p in m["assignment"]],
                        }
                        for m in g["members"]
                    ],
                }
                for g in groups
            ],
            schema=pa.schema(
                [
                    ("group_id", pa.string()),
                    ("state", pa.string()),
                    ("type", pa.string()),
                    ("protocol", pa.string()),
                    ("assignor", pa.string()),
                    ("coordinator", pa.int32()),
                    ("members", pa.int32()),
                    ("member_list", pa.list_(member_type)),
                ]
            ),
        )
    if "consumer_group_members" in wanted:
        rows = []
        for g in groups:
            for m in g["members"]:
                for t, p in m["assignment"] or [(None, None)]:
                    rows.append(
                        {
                            "group_id": g["group_id"],
                            "member_id": m["member_id"],
                            "client_id": m["client_id"],
                            "host": m["host"],
                            "topic": t,
                            "partition": p,
                        }
                    )
        tables["consumer_group_members"] = pa.Table.from_pylist(
            rows,
            schema=pa.schema(
                [
                    ("group_id", pa.string()),
                    ("member_id", pa.string()),
                    ("client_id", pa.string()),
                    ("host", pa.string()),
                    ("topic", pa.string()),
                    ("partition", pa.int32()),
                ]
            ),
        )
    if "consumer_lag" in wanted:
        tables["consumer_lag"] = _lag_table(engine, groups, md, starts, ends)
    _install(engine, tables)


def _install(engine, tables: dict[str, pa.Table]) -> None:
    engine.install_tables("wb", tables)


def _lag_table(
    engine, groups: list[dict], md, starts: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]
) -> pa.Table:
    """One row per partition of every topic a group has committed offsets on or is assigned:
    partitions without a commit have committed_offset NULL and lag log end - log start (what
    the group would read from the start), like kafka-consumer-groups.sh's "-"."""
    committed = engine.wire.committed_offsets([g["group_id"] for g in groups])
    assigned = {g["group_id"]: {t for m in g["members"] for t, _p in m["assignment"]} for g in groups}
    # Where each group's unconsumed records start: the commit, else the log start offset.
    positions: dict[str, dict[tuple[str, int], tuple[int | None, int]]] = {}
    for gid in sorted(set(committed) | set(assigned)):
        offsets = committed.get(gid, {})
        topics = {t for t, _p in offsets} | assigned.get(gid, set())
        rows = positions[gid] = {}
        for t in topics:
            for info in md.partitions.get(t, []):
                tp = (t, info.partition)
                if tp not in ends:
                    continue
                off = offsets.get(tp)
                start = off if off is not None else max(starts.get(tp, 0), 0)
                rows[tp] = (off, start)
    # One fetch per lagging partition at its smallest unconsumed position; groups further ahead
    # on the same partition get the timestamp of that record too, an overestimate only then.
    stamps = _timestamps(
        engine, {gid: {tp: start for tp, (_o, start) in r.items()} for gid, r in positions.items()}, ends
    )
    now_ms = time.time() * 1000
    rows = []
    for gid in sorted(positions):
        for (t, p), (off, start) in sorted(positions[gid].items()):
            end = ends[(t, p)]
            lag = max(end - start, 0)
            ts = stamps.get((t, p, start)) if lag else None
            rows.append(
                {
                    "group_id": gid,
                    "topic": t,
                    "partition": p,
                    "committed_offset": off,
                    "log_end_offset": end,
                    "lag": lag,
                    "lag_seconds": 0.0 if lag == 0 else (max(now_ms - ts, 0) / 1000 if ts else None),
                    "oldest_unconsumed_timestamp": datetime.fromtimestamp(ts / 1000, UTC) if ts else None,
                }
            )
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("group_id", pa.string()),
                ("topic", pa.string()),
                ("partition", pa.int32()),
                ("committed_offset", pa.int64()),
                ("log_end_offset", pa.int64()),
                ("lag", pa.int64()),
                ("lag_seconds", pa.float64()),
                ("oldest_unconsumed_timestamp", pa.timestamp("ms", tz="UTC")),
            ]
        ),
    )


def _timestamps(engine, committed, ends) -> dict[tuple[str, int, int], int]:
    """(topic, partition, offset) -> timestamp of the first record at or after offset."""
    wanted = sorted(
        {
            (t, p, off)
            for offsets in committed.values()
            for (t, p), off in offsets.items()
            if (t, p) in ends and off < ends[(t, p)]
        }
    )
    out = {}
    while wanted:  # one fetch per distinct offset of a partition, batched across partitions
        batch, rest, seen = {}, [], set()
        for t, p, off in wanted:
            if (t, p) in seen:
                rest.append((t, p, off))
            else:
                seen.add((t, p))
                batch[(t, p)] = (off, ends[(t, p)])
        for (t, p), ts in engine.wire.first_timestamps(batch).items():
            out[(t, p, batch[(t, p)][0])] = ts
        wanted = rest
    return out
