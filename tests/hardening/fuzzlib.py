"""Building blocks of the protocol fuzz campaign (tests/hardening/test_fuzz_protocol.py).

Strategies that produce whole frames (size prefix included) for a running
broker: raw bytes, truncated and mis-sized frames, headers with wrong API keys
and versions, schema-driven requests for every API the broker advertises with
nonsense field values (negative partitions, absurd sizes, huge array counts),
mutations of valid encodings, and Produce requests carrying corrupted record
batches (bad CRC, wrong counts, bad varints with a *correct* CRC, ...).
"""

from __future__ import annotations

import socket
import struct
import time
import uuid

from hypothesis import strategies as st

from workbench.broker.apis import SUPPORTED_APIS
from workbench.protocol.blocking_client import make_batch
from workbench.protocol.codec import REQUEST_CLASSES, build
from workbench.protocol.records import ATTRIBUTES_OFFSET, crc32c

INT_BOUNDS = {
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint16": (0, (1 << 16) - 1),
}

#: APIs whose requests change cluster state; their fuzzed fields stay away from the health topic
#: (random names cannot collide with it) and their counts stay small, see `_int_values`.
CREATE_COUNT_FIELDS = {"num_partitions", "count", "replication_factor"}


#: Producer ids the fuzzer may use: never one the broker hands out (blocks from 0). Writing with
#: another producer's id and a higher epoch fences it, in Kafka too (the IdempotentWrite ACL guards
#: against that); the campaign must not fence its own health producer.
FOREIGN_PRODUCER_IDS = st.sampled_from([-1, -2, -(1 << 63), 1 << 45, (1 << 63) - 1])


def _ints(kind: str, name: str = "") -> st.SearchStrategy[int]:
    lo, hi = INT_BOUNDS[kind]
    if name == "producer_id":
        return FOREIGN_PRODUCER_IDS
    edges = st.sampled_from(sorted({lo, hi, -1, 0, 1, 2, lo + 1, hi - 1}))
    if name in CREATE_COUNT_FIELDS:
        # Absurd partition counts (2^31-1) make the controller plan billions of partitions: see the
        # dedicated test_absurd_partition_counts_are_refused. Here they stay within reach.
        return st.integers(-3, 4)
    return st.one_of(edges, st.integers(-5, 100), st.integers(lo, hi))


def _strings() -> st.SearchStrategy[str | None]:
    return st.one_of(
        st.none(),
        st.sampled_from(["", ".", "..", "__consumer_offsets", "fuzz-" + uuid.uuid4().hex[:6], "a" * 300]),
        st.text(max_size=40),
    )


def _records() -> st.SearchStrategy[bytes | None]:
    return st.one_of(st.none(), st.binary(max_size=200), corrupted_batches())


def _value(field) -> st.SearchStrategy:
    t = field._type_str
    if t.startswith("[]"):
        inner = t[2:]
        elem = _ints(inner) if inner in INT_BOUNDS else _strings()
        return st.one_of(st.none(), st.lists(elem, max_size=4))
    if t in INT_BOUNDS:
        return _ints(t, field.name)
    if t == "string":
        return _strings()
    if t == "bytes":
        return st.one_of(st.none(), st.binary(max_size=64))
    if t == "records":
        return _records()
    if t == "bool":
        return st.booleans()
    if t == "uuid":
        return st.one_of(st.just(uuid.UUID(int=0)), st.builds(uuid.uuid4))
    if t == "float64":
        return st.floats(allow_nan=True)
    raise AssertionError(f"no strategy for field type {t}")


def _struct(cls, depth: int = 0) -> st.SearchStrategy[dict]:
    fields = {}
    for name, f in cls._struct.fields.items():
        if f.is_struct_array():
            if depth >= 2:
                fields[name] = st.just([])
            else:
                fields[name] = st.lists(_struct(f.data_class, depth + 1), max_size=3)
        elif f.is_struct():
            fields[name] = _struct(f.data_class, depth + 1)
        else:
            fields[name] = _value(f)
    return st.fixed_dictionaries(fields)


def encode_request(cls, version: int, body: dict, correlation_id: int, client_id: str | None) -> bytes | None:
    """A framed request, or None when the codec refuses the combination of values."""
    try:
        request = build(cls, body)
        request.API_VERSION = version
        request.with_header(correlation_id=correlation_id, client_id=client_id)
        return bytes(request.encode(header=True, framed=True))
    except Exception:
        return None


@st.composite
def schema_requests(draw) -> bytes:
    """Valid frames with nonsense fields, for any advertised API and version."""
    api_key = draw(st.sampled_from(sorted(SUPPORTED_APIS)))
    lo, hi = SUPPORTED_APIS[api_key]
    version = draw(st.integers(lo, hi))
    cls = REQUEST_CLASSES[api_key]
    body = draw(_struct(cls))
    frame = encode_request(cls, version, body, draw(_ints("int32")), draw(st.one_of(st.none(), st.text(max_size=8))))
    if frame is None:
        # Nullability mismatch and the like: fall back to the same API with an empty body.
        frame = encode_request(cls, version, {}, 1, "fuzz")
    return frame or b""


@st.composite
def corrupted_batches(draw) -> bytes:
    """A v2 record batch damaged in one of the ways a broken or hostile producer would."""
    values = draw(st.lists(st.binary(max_size=30), min_size=1, max_size=5))
    pid = draw(st.sampled_from([-1, 1 << 45, (1 << 45) + 1]))
    batch = bytearray(
        make_batch(values, producer_id=pid, producer_epoch=0 if pid >= 0 else -1, base_sequence=0 if pid >= 0 else -1)
    )
    kind = draw(
        st.sampled_from(
            [
                "bad_crc",
                "flip_fix_crc",
                "count",
                "length",
                "truncate",
                "varint",
                "last_offset_delta",
                "magic",
                "attributes",
                "trailing",
            ]
        )
    )
    fix_crc = True
    if kind == "bad_crc":
        i = draw(st.integers(ATTRIBUTES_OFFSET, len(batch) - 1))
        batch[i] ^= draw(st.integers(1, 255))
        fix_crc = False
    elif kind == "flip_fix_crc":  # structural damage with a correct CRC: only record parsing can tell
        i = draw(st.integers(ATTRIBUTES_OFFSET + 2, len(batch) - 1))
        batch[i] ^= draw(st.integers(1, 255))
    elif kind == "count":
        struct.pack_into(">i", batch, 57, draw(_ints("int32")))
    elif kind == "last_offset_delta":
        delta = draw(_ints("int32"))
        struct.pack_into(">i", batch, 23, delta)
        struct.pack_into(">i", batch, 57, delta + 1 if -(1 << 31) <= delta + 1 < (1 << 31) else delta)
    elif kind == "length":
        struct.pack_into(">i", batch, 8, draw(_ints("int32")))
        fix_crc = draw(st.booleans())
    elif kind == "truncate":
        del batch[draw(st.integers(0, len(batch) - 1)) :]
        fix_crc = False
    elif kind == "varint":  # the first record's length varint becomes an endless / overlong varint
        n = draw(st.integers(1, 12))
        batch[61 : 61 + n] = b"\xff" * n
        struct.pack_into(">i", batch, 8, len(batch) - 12)
    elif kind == "magic":
        batch[16] = draw(st.sampled_from([0, 1, 3, 255]))
    elif kind == "attributes":
        struct.pack_into(">h", batch, 21, draw(_ints("int16")))
    elif kind == "trailing":
        batch += draw(st.binary(min_size=1, max_size=20))
        fix_crc = draw(st.booleans())
    if fix_crc and len(batch) >= 61:
        struct.pack_into(">I", batch, 17, crc32c(memoryview(batch)[ATTRIBUTES_OFFSET:]))
    return bytes(batch)


@st.composite
def produce_with_bad_batch(draw, topic: str) -> bytes:
    from kafka.protocol.producer import ProduceRequest

    version = draw(st.integers(3, 9))
    req = ProduceRequest(
        transactional_id=None,
        acks=draw(st.sampled_from([-1, 0, 1, 2, -7])),
        timeout_ms=draw(st.sampled_from([0, 100, 2000])),
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[
                    ProduceRequest.TopicProduceData.PartitionProduceData(
                        index=draw(st.sampled_from([0, 0, 0, 1, -1, 1 << 30])),
                        records=draw(corrupted_batches()),
                    )
                ],
            )
        ],
    )
    req.API_VERSION = version
    req.with_header(correlation_id=draw(_ints("int32")), client_id="fuzz")
    return bytes(req.encode(header=True, framed=True))


@st.composite
def mutated_frames(draw) -> bytes:
    """A valid encoding with bytes flipped, an int32 replaced by an absurd count, or cut short."""
    frame = bytearray(draw(schema_requests()))
    if len(frame) <= 8:
        return bytes(frame)
    kind = draw(st.sampled_from(["flip", "count", "cut", "insert"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(4, len(frame) - 1))
            frame[i] = draw(st.integers(0, 255))
    elif kind == "count" and len(frame) >= 12:
        i = draw(st.integers(4, len(frame) - 4))
        frame[i : i + 4] = struct.pack(">i", draw(st.sampled_from([-2, -(1 << 31), (1 << 31) - 1, 1 << 24, 1 << 28])))
    elif kind == "cut":
        del frame[draw(st.integers(4, len(frame) - 1)) :]
        struct.pack_into(">i", frame, 0, len(frame) - 4)  # a consistent size: the body itself ends early
    else:
        i = draw(st.integers(4, len(frame)))
        frame[i:i] = draw(st.binary(min_size=1, max_size=16))
        struct.pack_into(">i", frame, 0, len(frame) - 4)
    return bytes(frame)


@st.composite
def header_frames(draw) -> bytes:
    """A request header with a wrong/unknown API key or version and arbitrary body bytes."""
    api_key = draw(st.one_of(st.sampled_from(sorted(SUPPORTED_APIS)), _ints("int16")))
    version = draw(st.one_of(st.integers(-2, 20), _ints("int16")))
    client_len = draw(st.sampled_from([-1, 0, 3, -2, 1000, (1 << 15) - 1]))
    client = b"abc"[: max(client_len, 0)]
    body = draw(st.binary(max_size=64))
    payload = struct.pack(">hhih", api_key, version, draw(_ints("int32")), client_len) + client + body
    return struct.pack(">i", len(payload)) + payload


@st.composite
def raw_frames(draw) -> bytes:
    """Random bytes; random sizes (negative, huge, lying) in front of random bodies."""
    kind = draw(st.sampled_from(["bytes", "size_lie", "size_edge"]))
    body = draw(st.binary(max_size=256))
    if kind == "bytes":
        return body
    if kind == "size_lie":
        return struct.pack(">i", len(body) + draw(st.integers(-20, 20))) + body
    return (
        struct.pack(">i", draw(st.sampled_from([-1, -(1 << 31), (1 << 31) - 1, 100 * 1024 * 1024 + 1, 0, 1, 7]))) + body
    )


def any_frame(topic: str) -> st.SearchStrategy[bytes]:
    return st.one_of(raw_frames(), header_frames(), schema_requests(), mutated_frames(), produce_with_bad_batch(topic))


def exchange(port: int, payload: bytes, wait: float = 0.5) -> str:
    """Send `payload`, half-close, and see what the broker does within `wait` seconds.

    Returns "responded" (one or more whole response frames, then a close), "closed"
    (closed without a response) or "pending" (still open: e.g. a Fetch long-polling).
    """
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the broker closed on us mid-send: fine
            return "closed"
        s.settimeout(wait)
        buf = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except OSError:
                return "closed" if not buf else "responded"
            if not chunk:
                return "responded" if buf else "closed"
            buf += chunk
        return "responded" if buf else "pending"
    finally:
        s.close()
