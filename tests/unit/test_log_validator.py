"""LogValidator rules on v2 batches, without a broker (the integration side is test_topic_configs.py)."""

from __future__ import annotations

import pytest
from aiokafka.record.default_records import DefaultRecordBatch

from workbench.broker.log_validator import (
    RecordValidationError,
    SchemaIdSets,
    SchemaValidationError,
    TopicRules,
    validate,
)
from workbench.protocol.blocking_client import make_batch
from workbench.protocol.errors import ErrorCode
from workbench.protocol.records import batch_crc_ok, iter_batch_headers
from workbench.protocol.topic_config import DEFAULTS


def rules(**configs: str) -> TopicRules:
    return TopicRules.of({**DEFAULTS, **{k.replace("_", "."): v for k, v in configs.items()}})


def test_default_topics_pass_batches_through_untouched():
    batch = make_batch([b"a", b"b"])
    assert rules().trivial
    out, append_time = validate(batch, rules())
    assert out is batch and append_time == -1


def test_log_append_time_sets_the_type_bit_and_max_timestamp_with_a_valid_crc():
    batch = make_batch([b"a", b"b"], producer_id=7, producer_epoch=0, base_sequence=0)
    out, append_time = validate(batch, rules(message_timestamp_type="LogAppendTime"), now_ms=1_234_567)
    [h] = iter_batch_headers(out)
    assert append_time == 1_234_567 and h.max_timestamp == 1_234_567 and h.timestamp_type == 1
    assert batch_crc_ok(out, h) and (h.producer_id, h.base_sequence) == (7, 0)
    assert out[61:] == batch[61:]  # the records themselves are not rewritten


def test_recompression_keeps_producer_fields_and_records():
    batch = make_batch([b"x" * 50, b"y"], producer_id=9, producer_epoch=2, base_sequence=5, key=b"k")
    out, _ = validate(batch, rules(compression_type="gzip"))
    b = DefaultRecordBatch(out)
    assert (b.compression_type, b.producer_id, b.producer_epoch, b.base_sequence) == (1, 9, 2, 5)
    assert [(r.key, r.value) for r in b] == [(b"k", b"x" * 50), (b"k", b"y")]
    [h] = iter_batch_headers(out)
    assert batch_crc_ok(out, h)


def test_timestamp_window_names_each_record():
    batch = make_batch([b"a"])  # stamped with the current time
    with pytest.raises(RecordValidationError) as err:
        validate(batch, rules(message_timestamp_after_max_ms="0", message_timestamp_before_max_ms="0"), now_ms=1)
    assert err.value.code == ErrorCode.INVALID_TIMESTAMP and [i for i, _ in err.value.record_errors] == [0]


@pytest.mark.parametrize("config", [{"message_timestamp_type": "LogAppendTime"}, {"compression_type": "lz4"}])
def test_a_batch_with_a_bad_crc_is_never_rewritten(config):
    """A rewrite computes a new CRC; over damaged bytes that would turn corruption into an acknowledged record."""
    damaged = bytearray(make_batch([b"hello", b"world"]))
    damaged[-1] ^= 0x01
    out, append_time = validate(bytes(damaged), rules(**config))
    assert out == bytes(damaged) and append_time == -1  # left for the log to refuse (CORRUPT_MESSAGE)


def _framed(schema_id: int, payload: bytes = b"\x02") -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


def test_value_schema_validation_names_each_record_without_a_registered_id():
    """confluent.value.schema.validation: framed with an id of `<topic>-value`, or INVALID_RECORD per record."""
    r = rules(confluent_value_schema_validation="true")
    assert not r.trivial and r.schema_validation
    ids = SchemaIdSets(value=frozenset({7}))
    good = make_batch([_framed(7), _framed(7, b"")])
    out, _ = validate(good, r, schema_ids=ids)
    assert out == good  # accepted batches go on untouched
    bad = make_batch([_framed(7), b"plain", _framed(8), b"\x01\x00\x00\x00\x07"])
    with pytest.raises(SchemaValidationError) as err:
        validate(bad, r, schema_ids=ids)
    assert err.value.code == ErrorCode.INVALID_RECORD
    assert [i for i, _ in err.value.record_errors] == [1, 2, 3]
    assert err.value.unknown_ids == {8}  # the caller may learn newer ids and try again
    assert "Schema id 8" in err.value.record_errors[1][1]
    with pytest.raises(SchemaValidationError):  # no ids known: nothing framed passes
        validate(good, r)


def test_key_schema_validation_checks_keys_only():
    r = rules(confluent_key_schema_validation="true")
    ids = SchemaIdSets(key=frozenset({3}))
    out, _ = validate(make_batch([b"any value"], key=_framed(3)), r, schema_ids=ids)
    assert [rec.key for rec in DefaultRecordBatch(out)] == [_framed(3)]
    with pytest.raises(SchemaValidationError) as err:
        validate(make_batch([b"v"], key=b"raw"), r, schema_ids=ids)
    assert "key" in err.value.record_errors[0][1]
