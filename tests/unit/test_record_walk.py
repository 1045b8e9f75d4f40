"""The compiled record walk (`workbench.protocol._record_walk`) against the pure-Python one (issue 19).

`check_records` accepts an uncompressed batch on the compiled walk's word and walks every batch
it refuses again with aiokafka's reader, so the only way the extension could change what the
broker stores is by accepting a batch the pure-Python path refuses. These tests hold the two to
the same decisions, and the same kind of refusal (INVALID_RECORD for offset deltas, CORRUPT_MESSAGE
for everything else): hand-made malformed batches, a hypothesis property over raw records with
arbitrary varints and mutations, and the prototype's seeded single-byte fuzz.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Callable

import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.protocol import records as R
from workbench.protocol.blocking_client import make_batch
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

Walk = Callable[[bytes | bytearray | memoryview, int, int, int], int]


def compiled_walk() -> Walk | None:
    try:
        from workbench.protocol._record_walk import walk
    except ImportError:
        return None
    return walk


def need_walk() -> Walk:
    walk = compiled_walk()
    if walk is None:
        pytest.skip("workbench.protocol._record_walk is not built")
    return walk


def test_the_compiled_walk_is_built_here() -> None:
    """CI installs with a C compiler: a build that silently stopped producing the extension fails here."""
    if compiled_walk() is None:
        message = "workbench.protocol._record_walk did not build (pip install -e . needs a C compiler)"
        if os.environ.get("WORKBENCH_REQUIRE_ALL") == "1":
            pytest.fail(message + "; WORKBENCH_REQUIRE_ALL=1 turns this skip into a failure")
        pytest.skip(message)


def test_workbench_pure_python_forces_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_PURE_PYTHON", "1")
    assert R._load_walk() is None
    monkeypatch.delenv("WORKBENCH_PURE_PYTHON")
    assert R._load_walk() is compiled_walk()


# --- raw batches ---------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63) if n < 0 else n << 1
    z &= (1 << 64) - 1
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def field(b: bytes | None) -> bytes:
    return varint(-1) if b is None else varint(len(b)) + b


def record(
    delta: int,
    key: bytes | None = None,
    value: bytes | None = b"v",
    headers: list[tuple[bytes, bytes | None]] | None = None,
    *,
    length_error: int = 0,
) -> bytes:
    hs = headers or []
    body = varint(0) + varint(0) + varint(delta) + field(key) + field(value) + varint(len(hs))
    body += b"".join(varint(len(k)) + k + field(v) for k, v in hs)
    return varint(len(body) + length_error) + body


def raw_batch(records: bytes, count: int, *, base_offset: int = 0) -> bytes:
    length = R.HEADER_SIZE - R.LOG_OVERHEAD + len(records)
    buf = bytearray(R.HEADER.pack(base_offset, length, -1, 2, 0, 0, count - 1, 1000, 1000, -1, -1, -1, count))
    buf += records
    struct.pack_into(">I", buf, R.CRC_OFFSET, crc32c(bytes(buf[R.ATTRIBUTES_OFFSET :])))
    return bytes(buf)


def header(buf: bytes, position: int = 0) -> R.BatchHeader:
    return R.BatchHeader._make((*R.HEADER.unpack_from(buf, position), position))


def python_decision(buf: bytes, h: R.BatchHeader) -> ErrorCode | None:
    try:
        R._check_records_python(buf, h, None)
    except KafkaProtocolError as exc:
        return exc.code
    return None


def compiled_decision(walk: Walk, buf: bytes, h: R.BatchHeader) -> ErrorCode | None:
    try:
        bad = walk(buf, h.position + R.HEADER_SIZE, h.end, h.records_count)
    except ValueError:
        return ErrorCode.CORRUPT_MESSAGE
    return None if bad < 0 else ErrorCode.INVALID_RECORD


def check_records_code(buf: bytes) -> ErrorCode | None:
    try:
        R.check_records(buf, header(buf))
    except KafkaProtocolError as exc:
        return exc.code
    return None


NOT_UTF8 = b"\xff\xfe"
CASES: dict[str, tuple[bytes, ErrorCode | None]] = {
    "three good records": (raw_batch(record(0) + record(1, b"k") + record(2, None, None, [(b"h", b"x")]), 3), None),
    "offset deltas out of order": (raw_batch(record(0) + record(2) + record(1), 3), ErrorCode.INVALID_RECORD),
    "offset deltas from 1": (raw_batch(record(1) + record(2), 2), ErrorCode.INVALID_RECORD),
    "bad delta, then a record that does not parse": (
        raw_batch(record(5) + record(1, length_error=1), 2),
        ErrorCode.CORRUPT_MESSAGE,
    ),
    "record length one too long": (raw_batch(record(0, length_error=1), 1), ErrorCode.CORRUPT_MESSAGE),
    "record length one too short": (raw_batch(record(0, length_error=-1), 1), ErrorCode.CORRUPT_MESSAGE),
    "negative record length": (raw_batch(varint(-3) + record(0)[1:], 1), ErrorCode.CORRUPT_MESSAGE),
    "fewer records than the count": (raw_batch(record(0), 2), ErrorCode.CORRUPT_MESSAGE),
    "bytes after the last record": (raw_batch(record(0) + b"\x00", 1), ErrorCode.CORRUPT_MESSAGE),
    "header key not UTF-8": (raw_batch(record(0, headers=[(NOT_UTF8, b"x")]), 1), ErrorCode.CORRUPT_MESSAGE),
    "negative header count": (
        raw_batch(varint(6) + varint(0) + varint(0) + varint(0) + field(None) + field(None) + varint(-1), 1),
        ErrorCode.CORRUPT_MESSAGE,
    ),
    "a varint of eleven bytes": (
        raw_batch(varint(12) + b"\x80" * 10 + b"\x00" + b"\x00", 1),
        ErrorCode.CORRUPT_MESSAGE,
    ),
    "null key and value, negative lengths other than -1": (
        raw_batch(varint(6) + varint(0) + varint(0) + varint(0) + varint(-5) + varint(-2) + varint(0), 1),
        None,
    ),
    "base offset where int64 offsets wrap": (
        raw_batch(record(0) + record(1) + record(2), 3, base_offset=(1 << 63) - 2),
        ErrorCode.INVALID_RECORD,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_batches_get_the_same_code_either_way(name: str, record_walk: str) -> None:
    buf, code = CASES[name]
    assert check_records_code(buf) == code
    assert python_decision(buf, header(buf)) == code  # the cases are what the pure-Python path answers


@pytest.mark.parametrize("name", [n for n in CASES if n != "base offset where int64 offsets wrap"])
def test_the_compiled_walk_alone_classifies_the_cases(name: str) -> None:
    """Not only through check_records' fallback: the C walk itself accepts and refuses these."""
    walk = need_walk()
    buf, code = CASES[name]
    assert compiled_decision(walk, buf, header(buf)) == code


def test_each_batch_of_a_request_is_walked_within_its_own_bounds(record_walk: str) -> None:
    """Two batches in one buffer: the walk of the first must stop at its end, not at the buffer's."""
    first, second = make_batch([b"a", b"b"]), make_batch([b"c"])
    headers = R.validate_produce_batches(first + second)
    assert [h.records_count for h in headers] == [2, 1]
    walk = compiled_walk()
    if walk is not None:
        buf = first + second
        assert walk(buf, R.HEADER_SIZE, len(first), 2) == -1
        with pytest.raises(ValueError):
            walk(buf, R.HEADER_SIZE, len(buf), 2)  # the second batch is "bytes after the last record"


def test_walk_refuses_bounds_outside_the_buffer() -> None:
    walk = need_walk()
    with pytest.raises(IndexError):
        walk(b"abc", 0, 4, 1)
    with pytest.raises(IndexError):
        walk(b"abc", 2, 1, 1)


# --- the property: both walks decide the same ---------------------------------------------------

varints = st.one_of(st.integers(-3, 40), st.integers(-(1 << 63), (1 << 63) - 1))
maybe_bytes = st.one_of(st.none(), st.binary(max_size=12))
raw_records = st.lists(
    st.tuples(
        st.integers(-1, 6),  # offset delta, mostly the index (replaced by it when -1)
        maybe_bytes,
        maybe_bytes,
        st.lists(st.tuples(st.one_of(st.binary(max_size=4), st.just(NOT_UTF8)), maybe_bytes), max_size=2),
        st.sampled_from([0, 0, 0, 0, 1, -1, 40]),  # record length error
    ),
    min_size=1,
    max_size=6,
)
mutations = st.lists(
    st.tuples(st.sampled_from(["set", "insert", "delete", "varint"]), st.integers(0, 1 << 16), varints),
    max_size=3,
)


def apply(records: bytearray, ops: list[tuple[str, int, int]]) -> bytearray:
    for op, where, value in ops:
        if not records:
            break
        at = where % len(records)
        if op == "set":
            records[at] = value & 0xFF
        elif op == "insert":
            records[at:at] = bytes([value & 0xFF])
        elif op == "delete":
            del records[at]
        else:
            records[at : at + 1] = varint(value)
    return records


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_records, mutations, st.integers(-1, 2))
def test_compiled_and_pure_python_walks_decide_the_same(
    recs: list[tuple[int, bytes | None, bytes | None, list[tuple[bytes, bytes | None]], int]],
    ops: list[tuple[str, int, int]],
    count_error: int,
) -> None:
    walk = need_walk()
    body = bytearray()
    for i, (delta, key, value, hs, length_error) in enumerate(recs):
        body += record(i if delta == -1 else delta, key, value, hs, length_error=length_error)
    buf = raw_batch(bytes(apply(body, ops)), max(1, len(recs) + count_error))
    h = header(buf)
    assert compiled_decision(walk, buf, h) == python_decision(buf, h)


def test_single_byte_fuzz_of_client_batches() -> None:
    """The prototype's fuzz (benchmarks/record_walk_proto.py): one byte after the header changed,
    the CRC recomputed, so only the walk can catch it."""
    walk = need_walk()
    rnd = random.Random(19)
    refused = 0
    for _ in range(3000):
        n = rnd.choice([1, 2, 5, 30])
        values = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 20))) for _ in range(n)]
        buf = bytearray(make_batch(values, key=rnd.choice([None, b"k", b"key-xyz"])))
        buf[rnd.randrange(R.HEADER_SIZE, len(buf))] = rnd.randrange(256)
        buf[R.CRC_OFFSET : R.CRC_OFFSET + 4] = crc32c(bytes(buf[R.ATTRIBUTES_OFFSET :])).to_bytes(4, "big")
        data = bytes(buf)
        h = header(data)
        expected = python_decision(data, h)
        refused += expected is not None
        assert compiled_decision(walk, data, h) == expected
    assert refused > 500  # the fuzz does reach the walk's refusals
