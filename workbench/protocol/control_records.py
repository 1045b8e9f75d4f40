"""Transaction markers: control batches (KIP-98), built and read without I/O.

A transaction ends in every partition it wrote with one *control batch*: a
v2 batch with the transactional and control attribute bits set, the
producer's id and epoch, no sequence, and exactly one record whose key is
``version int16, type int16`` (0 = ABORT, 1 = COMMIT, Kafka's
``ControlRecordType``) and whose value is ``version int16,
coordinator_epoch int32`` (Kafka's ``EndTransactionMarker``).

Consumers never see control records: clients skip control batches, and a
``read_committed`` consumer uses them, with the Fetch response's
``aborted_transactions``, to drop the aborted data.
"""

from __future__ import annotations

import struct

from crc32c import crc32c

from workbench.protocol.records import (
    ATTRIBUTES_OFFSET,
    CONTROL_MASK,
    HEADER,
    HEADER_SIZE,
    LOG_OVERHEAD,
    TRANSACTIONAL_MASK,
)

ABORT = 0
COMMIT = 1

_KEY = struct.Struct(">hh")
_VALUE = struct.Struct(">hi")


def _varint(n: int) -> bytes:
    """Zigzag varint (the record format's signed varint)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    z = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint in control record")
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if not b & 0x80:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long in control record")


def build_control_batch(
    producer_id: int,
    producer_epoch: int,
    *,
    commit: bool,
    coordinator_epoch: int,
    timestamp_ms: int,
    base_offset: int = 0,
    leader_epoch: int = -1,
    last_offset_delta: int = 0,
) -> bytes:
    """One transaction marker as a complete v2 control batch (CRC-32C filled in).

    ``last_offset_delta`` above 0 makes the batch span offsets its one record does not use, as a
    compacted batch does (`gap_batch`)."""
    key = _KEY.pack(0, COMMIT if commit else ABORT)
    value = _VALUE.pack(0, coordinator_epoch)
    body = (
        b"\x00"  # record attributes
        + _varint(0)  # timestamp delta
        + _varint(0)  # offset delta
        + _varint(len(key))
        + key
        + _varint(len(value))
        + value
        + _varint(0)  # no headers
    )
    record = _varint(len(body)) + body
    attributes = TRANSACTIONAL_MASK | CONTROL_MASK
    batch_length = HEADER_SIZE - LOG_OVERHEAD + len(record)
    buf = bytearray(
        HEADER.pack(
            base_offset,
            batch_length,
            leader_epoch,
            2,
            0,
            attributes,
            last_offset_delta,
            timestamp_ms,
            timestamp_ms,
            producer_id,
            producer_epoch,
            -1,
            1,
        )
    )
    buf += record
    struct.pack_into(">I", buf, 17, crc32c(bytes(buf[ATTRIBUTES_OFFSET:])))
    return bytes(buf)


def gap_batch(base_offset: int, next_offset: int, *, leader_epoch: int = -1, timestamp_ms: int = 0) -> bytes:
    """A control batch with no producer (id -1) spanning offsets ``[base_offset, next_offset)``.

    The Parquet tier keeps no markers and no aborted records (`storage.parquet_tier`), so a range
    only Parquet holds has offset gaps. A follower copying such a range needs the leader's offsets
    without holes (a non-compacted log has none): the leader fills each gap inside a file's span
    with one of these. Every client skips control batches; a COMMIT record with producer id -1
    ends no transaction (producer state ignores producer id -1), and the batch's last offset
    delta carries the fetch position past the gap.
    """
    if next_offset <= base_offset:
        raise ValueError(f"empty gap [{base_offset}, {next_offset})")
    return build_control_batch(
        -1,
        -1,
        commit=True,
        coordinator_epoch=-1,
        timestamp_ms=timestamp_ms,
        base_offset=base_offset,
        leader_epoch=leader_epoch,
        last_offset_delta=next_offset - base_offset - 1,
    )


def control_record_type(batch: bytes | bytearray | memoryview) -> int:
    """ABORT or COMMIT, from the first record of the control batch at the start of ``batch``.

    Raises ValueError for a batch whose record does not parse as a control record
    (a compressed control batch is not something Kafka writes: it is refused too).
    """
    return control_record(batch)[0]


def control_record(batch: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(ABORT or COMMIT, coordinator epoch) of the control batch at the start of ``batch``.

    The coordinator epoch is -1 when the record has no ``EndTransactionMarker`` value.
    Raises ValueError as `control_record_type`.
    """
    view = memoryview(batch)
    if len(view) < HEADER_SIZE:
        raise ValueError("control batch shorter than a batch header")
    (attributes,) = struct.unpack_from(">h", view, ATTRIBUTES_OFFSET)
    if not attributes & CONTROL_MASK or attributes & 0x07:
        raise ValueError("not an uncompressed control batch")
    pos = HEADER_SIZE
    _length, pos = _read_varint(view, pos)
    pos += 1  # attributes
    _ts, pos = _read_varint(view, pos)
    _delta, pos = _read_varint(view, pos)
    key_len, pos = _read_varint(view, pos)
    if key_len < 4 or pos + 4 > len(view):
        raise ValueError("control record key too short")
    _version, kind = _KEY.unpack_from(view, pos)
    if kind not in (ABORT, COMMIT):
        raise ValueError(f"unknown control record type {kind}")
    pos += key_len
    value_len, pos = _read_varint(view, pos)
    if value_len < _VALUE.size or pos + _VALUE.size > len(view):
        return kind, -1
    _value_version, coordinator_epoch = _VALUE.unpack_from(view, pos)
    return kind, coordinator_epoch
