"""`wb.schemas`: every live subject version of the connection's schema registry, one row each.

Read over the registry's REST API (`GET /schemas`), so it works the same with the embedded
registry and with an external one (`connect(..., schema_registry_url=...)`); empty without one.
"""

from __future__ import annotations

import json
import urllib.request

import pyarrow as pa

SCHEMA = pa.schema(
    [
        ("subject", pa.string()),
        ("version", pa.int32()),
        ("id", pa.int32()),
        ("schema_type", pa.string()),
        ("schema", pa.string()),
    ]
)


def schemas_table(url: str | None, timeout: float = 10.0) -> pa.Table:
    if not url:
        return SCHEMA.empty_table()
    with urllib.request.urlopen(f"{url.rstrip('/')}/schemas", timeout=timeout) as answer:
        rows = json.loads(answer.read())
    return pa.Table.from_pylist(
        [
            {
                "subject": r["subject"],
                "version": r["version"],
                "id": r["id"],
                "schema_type": r.get("schemaType", "AVRO"),
                "schema": r["schema"],
            }
            for r in sorted(rows, key=lambda r: (r["subject"], r["version"]))
        ],
        schema=SCHEMA,
    )
