"""The compiled record decoder (`workbench.protocol._record_columns`) against the pure-Python one (issue 19).

The Parquet converter decodes segments with `record_tables.iter_record_tables`: the compiled
decoder where it is built, aiokafka's reader where it is not, and aiokafka's reader again for any
batches the compiled one refuses. The Parquet file is the durable copy of a segment once it is
converted, so the two paths must give the same rows, byte for byte, and the same errors: client
batches of every shape (keys, values and header values null or not, headers, compression,
transactions, sequences that wrap, LogAppendTime, control batches between), chunk limits that
split batches, hand-made malformed batches, and random mutations of the records.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_record_walk import CASES, apply, mutations, raw_batch, raw_records, record
from workbench.protocol import records as R
from workbench.protocol.errors import KafkaProtocolError
from workbench.storage import parquet_tier, record_tables

Columns = Callable[[list[Any]], tuple[Any, ...]]


def compiled_columns() -> Columns | None:
    try:
        from workbench.protocol._record_columns import columns
    except ImportError:
        return None
    return columns


def need_columns() -> Columns:
    columns = compiled_columns()
    if columns is None:
        pytest.skip("workbench.protocol._record_columns is not built")
    return columns


def test_the_compiled_decoder_is_built_here() -> None:
    """CI installs with a C compiler: a build that silently stopped producing the extension fails here."""
    if compiled_columns() is None:
        message = "workbench.protocol._record_columns did not build (pip install -e . needs a C compiler)"
        if os.environ.get("WORKBENCH_REQUIRE_ALL") == "1":
            pytest.fail(message + "; WORKBENCH_REQUIRE_ALL=1 turns this skip into a failure")
        pytest.skip(message)


def test_workbench_pure_python_forces_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_PURE_PYTHON", "1")
    assert record_tables._load_columns() is None
    monkeypatch.delenv("WORKBENCH_PURE_PYTHON")
    assert record_tables._load_columns() is compiled_columns()


LIMITS = {"max_rows": 122_880, "max_bytes": 32 << 20, "max_batch_bytes": 256 << 20}


def decode(monkeypatch: pytest.MonkeyPatch, columns: Columns | None, buf: bytes, **limits: int) -> Any:
    """(the concatenated table, the chunks' row counts), or the KafkaProtocolError's code."""
    monkeypatch.setattr(record_tables, "_COLUMNS", columns)
    try:
        chunks = list(record_tables.iter_record_tables(buf, **{**LIMITS, **limits}))
    except KafkaProtocolError as exc:
        return exc.code
    table = record_tables.pa.concat_tables(chunks) if chunks else record_tables.schema().empty_table()
    return table, [c.num_rows for c in chunks]


def same_either_way(monkeypatch: pytest.MonkeyPatch, buf: bytes, **limits: int) -> Any:
    columns = need_columns()
    pure = decode(monkeypatch, None, buf, **limits)
    compiled = decode(monkeypatch, columns, buf, **limits)
    if isinstance(pure, tuple):
        assert isinstance(compiled, tuple), compiled
        assert compiled[0].equals(pure[0]), (compiled[0].to_pylist()[:3], pure[0].to_pylist()[:3])
        assert compiled[0].schema == pure[0].schema
        max_rows = limits.get("max_rows", LIMITS["max_rows"])
        assert all(0 < n <= max_rows for n in compiled[1])
    else:
        assert compiled == pure
    return pure


# --- client batches ------------------------------------------------------------------------------

ATTR_LOG_APPEND_TIME = 0x08
ATTR_CONTROL = 0x20


def client_batch(
    base_offset: int,
    recs: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
    *,
    compression: int = 0,
    transactional: bool = False,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    log_append_time: bool = False,
    control: bool = False,
    leader_epoch: int = 0,
) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=compression,
        is_transactional=int(transactional),
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        batch_size=1 << 30,
    )
    now = 1_700_000_000_000
    for i, (key, value, headers) in enumerate(recs):
        builder.append(i, timestamp=now + 7 * i, key=key, value=value, headers=headers)
    buf = bytearray(builder.build())
    struct.pack_into(">q", buf, 0, base_offset)
    struct.pack_into(">i", buf, 12, leader_epoch)
    attrs = struct.unpack_from(">h", buf, R.ATTRIBUTES_OFFSET)[0]
    attrs |= (ATTR_LOG_APPEND_TIME if log_append_time else 0) | (ATTR_CONTROL if control else 0)
    struct.pack_into(">h", buf, R.ATTRIBUTES_OFFSET, attrs)
    if log_append_time:
        struct.pack_into(">q", buf, 35, now + 10_000)  # max timestamp: the broker's append time
    return bytes(buf)


maybe = st.one_of(st.none(), st.binary(max_size=20))
header_lists = st.lists(st.tuples(st.text(max_size=6), maybe), max_size=3)
batch_specs = st.lists(
    st.tuples(
        st.lists(st.tuples(maybe, maybe, header_lists), min_size=1, max_size=12),
        st.sampled_from([0, 0, 1, 2, 3, 4]),  # none, gzip, snappy, lz4, zstd
        st.booleans(),  # transactional
        st.sampled_from([-1, 0, 5, 0x7FFFFFFF - 3, 0x7FFFFFFF]),  # base sequence (-1: none; near the wrap)
        st.booleans(),  # LogAppendTime
        st.sampled_from([False, False, False, True]),  # a control batch
    ),
    min_size=1,
    max_size=6,
)


def segment(specs: list[Any]) -> bytes:
    out, offset = bytearray(), 0
    for k, (recs, compression, transactional, sequence, append_time, control) in enumerate(specs):
        out += client_batch(
            offset,
            recs,
            compression=compression,
            transactional=transactional,
            producer_id=1000 + k if sequence >= 0 or transactional else -1,
            producer_epoch=3 if sequence >= 0 or transactional else -1,
            base_sequence=sequence,
            log_append_time=append_time,
            control=control,
            leader_epoch=k,
        )
        offset += len(recs)
    return bytes(out)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(batch_specs, st.integers(1, 40), st.integers(64, 4000))
def test_client_segments_decode_to_the_same_table_either_way(
    monkeypatch: pytest.MonkeyPatch, specs: list[Any], max_rows: int, max_bytes: int
) -> None:
    pure = same_either_way(monkeypatch, segment(specs), max_rows=max_rows, max_bytes=max_bytes)
    assert isinstance(pure, tuple)
    rows = sum(len(recs) for recs, *_, control in specs if not control)
    assert pure[0].num_rows == rows


def test_the_fields_kafka_derives_are_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows' derived fields, checked by value and not only against the other path."""
    buf = client_batch(
        100,
        [(b"k", b"v", [("h", None)]), (None, None, [])],
        producer_id=9,
        producer_epoch=2,
        base_sequence=0x7FFFFFFF,
        log_append_time=True,
        leader_epoch=4,
    )
    table, _ = same_either_way(monkeypatch, buf)
    rows = table.to_pylist()
    assert [r["offset"] for r in rows] == [100, 101]
    assert [r["sequence"] for r in rows] == [0x7FFFFFFF, 0]  # wraps as Kafka's incrementSequence
    assert {int(r["timestamp"].timestamp() * 1000) for r in rows} == {1_700_000_010_000}  # LogAppendTime
    assert [r["key"] for r in rows] == [b"k", None] and [r["value"] for r in rows] == [b"v", None]
    assert rows[0]["headers"] == [{"key": "h", "value": None}] and rows[1]["headers"] == []
    assert {
        (r["producer_id"], r["producer_epoch"], r["partition_leader_epoch"], r["timestamp_type"]) for r in rows
    } == {(9, 2, 4, 1)}
    assert [r["batch_base_offset"] for r in rows] == [100, 100]


def test_an_empty_buffer_and_only_control_batches_decode_to_no_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    assert same_either_way(monkeypatch, b"") == (record_tables.schema().empty_table(), [])
    control = client_batch(0, [(b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00", [])], control=True)
    assert same_either_way(monkeypatch, control)[0].num_rows == 0


# --- malformed batches ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_batches_decode_the_same_either_way(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    buf, _code = CASES[name]
    same_either_way(monkeypatch, buf)


@pytest.mark.parametrize("name", [n for n, (_, code) in CASES.items() if code == R.ErrorCode.CORRUPT_MESSAGE])
def test_the_compiled_decoder_itself_refuses_what_does_not_parse(name: str) -> None:
    """Not only through the fallback: the C decoder refuses these (so the fallback decides them)."""
    columns = need_columns()
    buf, _ = CASES[name]
    with pytest.raises(ValueError):
        columns([buf])


def test_offsets_past_int64_are_refused_by_the_compiled_decoder() -> None:
    columns = need_columns()
    with pytest.raises(ValueError, match="offset delta out of range"):
        columns([raw_batch(record(0) + record(1) + record(2), 3, base_offset=(1 << 63) - 2)])


def test_the_compiled_decoder_refuses_what_is_not_a_batch() -> None:
    columns = need_columns()
    with pytest.raises(ValueError):
        columns([b"short"])
    with pytest.raises(TypeError):
        columns((b"",))  # type: ignore[arg-type]


@settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(raw_records, mutations, st.integers(-1, 2))
def test_mutated_records_decode_the_same_either_way(
    monkeypatch: pytest.MonkeyPatch,
    recs: list[tuple[int, bytes | None, bytes | None, list[tuple[bytes, bytes | None]], int]],
    ops: list[tuple[str, int, int]],
    count_error: int,
) -> None:
    body = bytearray()
    for i, (delta, key, value, hs, length_error) in enumerate(recs):
        body += record(i if delta == -1 else delta, key, value, hs, length_error=length_error)
    good = raw_batch(record(0, b"before"), 1)
    same_either_way(monkeypatch, good + raw_batch(bytes(apply(body, ops)), max(1, len(recs) + count_error)))


def test_single_byte_fuzz_of_client_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(19)
    refused = 0
    for _ in range(1500):
        recs = [
            (rnd.choice([None, b"k", b"key-xyz"]), bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 20))), [])
            for _ in range(rnd.choice([1, 2, 5, 30]))
        ]
        buf = bytearray(client_batch(0, recs) + client_batch(len(recs), recs[:1]))
        buf[rnd.randrange(R.HEADER_SIZE, len(buf))] = rnd.randrange(256)
        refused += not isinstance(same_either_way(monkeypatch, bytes(buf)), tuple)
    assert refused > 200  # the fuzz does reach the refusals (280 of 1,500 with this seed)


# --- the converter's files -----------------------------------------------------------------------


def test_a_converted_segment_holds_the_same_rows_either_way(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """`write_segment` (the converter) with each decoder: the same rows in the Parquet file."""
    need_columns()
    rnd = random.Random(7)
    out, offset = bytearray(), 0
    while len(out) < 2 << 20:
        recs = [
            (
                f"k{offset + i}".encode() if i % 3 else None,
                os.urandom(rnd.randrange(0, 200)),
                [("trace", b"x")] * (i % 2),
            )
            for i in range(rnd.choice([1, 50, 500]))
        ]
        out += client_batch(offset, recs, compression=rnd.choice([0, 4]))
        offset += len(recs)
    tables = {}
    for name, columns in (("pure", None), ("compiled", compiled_columns())):
        monkeypatch.setattr(record_tables, "_COLUMNS", columns)
        seg = parquet_tier.write_segment(tmp_path, 0, offset, bytes(out), name=f"{name}.parquet")
        tables[name] = seg.read_table()
    assert tables["compiled"].equals(tables["pure"]) and tables["pure"].num_rows == offset


CHILD = r"""
import json, sys
from workbench.storage import converter
for line in sys.stdin:
    print(json.dumps(converter.convert_one(json.loads(line))))
print(json.dumps({"pandas": "pandas" in sys.modules}))
"""


def test_the_converter_child_does_not_import_pandas(tmp_path) -> None:
    """A Python int handed to pyarrow.compute makes pyarrow import pandas (0.7-1.3 s of CPU and ~40 MB
    per converter start, issue 19): tail chunks, a seal and aborted transactions, all without it."""
    import json
    import subprocess
    import sys

    recs = [(f"k{i}".encode(), b"v" * 50, [("h", b"x")]) for i in range(400)]
    buf = b"".join(client_batch(400 * k, recs, producer_id=7, producer_epoch=0, base_sequence=0) for k in range(10))
    seg = tmp_path / "00000000000000000000.log"
    seg.write_bytes(buf)
    base = {"segment": str(seg), "directory": str(tmp_path), "topic": "t", "partition": 0, "generation": "1"}
    jobs = [
        {**base, "tail": True, "size": len(buf) // 2, "base_offset": 0, "next_offset": 1000},
        {
            **base,
            "tail": True,
            "size": len(buf),
            "base_offset": 1000,
            "next_offset": 4000,
            "aborted": [[7, 1500, 1600]],
        },
        {**base, "size": len(buf), "base_offset": 0, "next_offset": 4000, "name": "sealed.parquet"},
    ]
    out = subprocess.run(
        [sys.executable, "-c", CHILD],
        input="".join(json.dumps(j) + "\n" for j in jobs),
        capture_output=True,
        text=True,
        check=True,
    )
    *answers, last = [json.loads(line) for line in out.stdout.splitlines()]
    assert all(a["ok"] for a in answers), answers
    assert [(a["base_offset"], a["next_offset"]) for a in answers] == [(0, 1000), (1000, 4000), (0, 4000)]
    assert last == {"pandas": False}
    import pyarrow.parquet as pq

    offsets = pq.read_table(answers[1]["path"]).column("offset").to_pylist()
    assert offsets == [o for o in range(1000, 4000) if not 1500 <= o <= 1600]  # the slice, less the abort
