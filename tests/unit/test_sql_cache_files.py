"""The notebook's cache files and the brokers' sealed and tail files as the SQL engine lists them."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.sql.cache import PartitionCache, read_sealed
from workbench.sql.flatten import TopicSchema, flatten_sql, present_sql


def _cache_file(path, *, with_key: bool) -> None:
    con = duckdb.connect()
    raw = (
        "(SELECT 0 AS partition, i AS \"offset\", now() AS timestamp, encode('k' || i) AS key, "
        "NULL::BLOB AS value, NULL::STRUCT(key VARCHAR, value BLOB)[] AS headers FROM range(3) t(i))"
    )
    select = flatten_sql(raw, TopicSchema())
    if not with_key:
        select = f"SELECT * EXCLUDE (key) FROM ({select})"  # the layout before the stored text key
    con.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet)")


def test_cache_files_from_before_the_stored_key_are_rebuilt(tmp_path):
    _cache_file(tmp_path / f"{0:020d}-{3:020d}.parquet", with_key=False)
    _cache_file(tmp_path / f"{3:020d}-{6:020d}.parquet", with_key=True)
    cache = PartitionCache(tmp_path)
    assert [(f.base, f.next) for f in cache.files] == [(3, 6)]
    assert not (tmp_path / f"{0:020d}-{3:020d}.parquet").exists()


def test_the_stored_key_is_the_text_of_the_bytes_or_null():
    con = duckdb.connect()
    con.register(
        "raw",
        pa.table(
            {
                "partition": pa.array([0, 0, 0, 0], pa.int32()),
                "offset": pa.array([0, 1, 2, 3], pa.int64()),
                "timestamp": pa.array([0, 0, 0, 0], pa.timestamp("ms", tz="UTC")),
                "key": pa.array([b"k1", None, b"\xff\x00", b'{"id":1}'], pa.binary()),
                "value": pa.array([None] * 4, pa.binary()),
                "headers": pa.array([None] * 4, pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
            }
        ),
    )
    cached = flatten_sql("raw", TopicSchema())
    rows = con.execute(f"SELECT key, key_bytes FROM ({present_sql(f'({cached})')})").fetchall()
    assert rows == [("k1", b"k1"), (None, None), (None, b"\xff\x00"), ('{"id":1}', b'{"id":1}')]


def test_tail_files_are_listed_only_when_asked_for(tmp_path):
    schema = pa.schema([("offset", pa.int64())])
    sealed = pa.table({"offset": [0, 1]}, schema=schema).replace_schema_metadata({b"workbench.next_offset": b"2"})
    tail = pa.table({"offset": [2, 3, 4]}, schema=schema).replace_schema_metadata(
        {b"workbench.next_offset": b"5", b"workbench.tail": b"1"}
    )
    pq.write_table(sealed, tmp_path / f"{0:020d}.parquet")
    pq.write_table(tail, tmp_path / f"{2:020d}.parquet")
    assert [(f.base, f.next, f.tail) for f in read_sealed(tmp_path)] == [(0, 2, False)]
    assert [(f.base, f.next, f.tail) for f in read_sealed(tmp_path, tails=True)] == [(0, 2, False), (2, 5, True)]
