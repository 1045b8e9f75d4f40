"""Per-group config overrides validated as Kafka's GroupConfig (workbench/broker/group_configs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.broker import group_configs
from workbench.broker.config import BrokerConfig
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

CFG = BrokerConfig(node_id=1, cluster_dir=Path("/nonexistent"))


def refused(overrides: dict[str, str]) -> str:
    with pytest.raises(KafkaProtocolError) as exc:
        group_configs.validate(CFG, overrides)
    assert exc.value.code == ErrorCode.INVALID_CONFIG
    return exc.value.message


def test_overrides_within_the_brokers_bounds_are_kept_and_normalised():
    assert group_configs.validate(CFG, {"consumer.session.timeout.ms": "030000"}) == {
        "consumer.session.timeout.ms": "30000"
    }
    assert group_configs.validate(CFG, {"share.isolation.level": "read_committed"}) == {
        "share.isolation.level": "read_committed"
    }


def test_names_types_bounds_and_session_above_heartbeat_are_checked():
    assert "Unknown group config name: nope" in refused({"nope": "1"})
    assert "Not a number" in refused({"share.session.timeout.ms": "soon"})
    low = refused({"consumer.session.timeout.ms": str(CFG.group_consumer_min_session_timeout_ms - 1)})
    assert "greater than or equal to group.consumer.min.session.timeout.ms" in low
    assert "less than or equal to" in refused({"share.record.lock.duration.ms": "3600001"})
    assert "String must be one of: latest, earliest" in refused({"share.auto.offset.reset": "by_duration:PT1H"})
    # the check is on the group's configs as they would be: a session at or below the default heartbeat
    assert "must be greater than share.heartbeat.interval.ms" in refused({"share.session.timeout.ms": "1000"})


def test_alter_sets_and_deletes_and_describe_tells_set_from_default():
    now = group_configs.altered(
        {"share.delivery.count.limit": "3"}, [("share.auto.offset.reset", 0, "earliest")], replace=False
    )
    assert now == {"share.delivery.count.limit": "3", "share.auto.offset.reset": "earliest"}
    assert group_configs.altered(now, [("share.delivery.count.limit", 1, None)], replace=True) == {}
    entries = {e["name"]: e for e in group_configs.describe_entries(CFG, now, None)}
    assert len(entries) == len(group_configs.GROUP_CONFIGS)
    reset, isolation = entries["share.auto.offset.reset"], entries["share.isolation.level"]
    assert reset["value"] == "earliest" and reset["config_source"] == 8  # GROUP_CONFIG
    assert isolation["value"] == "read_uncommitted" and isolation["is_default"]
