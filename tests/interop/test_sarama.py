"""sarama (Debian's golang-github-shopify-sarama-dev 1.22) against the broker, default configuration.

sarama's default `Version` is 0.8.2, so this is the oldest protocol any client
here speaks: Produce v0 and Fetch v0 (message format v0), ListOffsets v0,
Metadata v0, OffsetCommit v1 / OffsetFetch v1, CreateTopics v0, DescribeConfigs
v0, DeleteTopics v0; its consumer group runs at 0.10.2, the lowest it accepts.
The scenario is tests/interop/sarama/main.go.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from tests.interop.gobuild import build, require_go_package


@pytest.fixture(scope="module")
def sarama_scenario(tmp_path_factory):
    require_go_package("github.com/Shopify/sarama", "golang-github-shopify-sarama-dev")
    return build("sarama", tmp_path_factory.mktemp("go"))


def test_sarama_default_config_admin_produce_consume_commit_and_group(cluster, sarama_scenario):
    topic = f"sarama-{uuid.uuid4().hex[:8]}"
    group = f"sarama-g-{uuid.uuid4().hex[:6]}"
    run = subprocess.run(
        [str(sarama_scenario), cluster.bootstrap_servers, topic, group],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, f"sarama scenario failed:\n{run.stderr[-4000:]}"
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["listed_partitions"] == 3
    assert found["cleanup_policy"] == "delete"
    assert found["produced"] == 12
    assert found["consumed"] == sorted(f"v{i}" for i in range(12))
    assert (found["resumed_offset"], found["resumed_metadata"]) == (3, "resume-here")
    assert found["group_first_run"] == 12
    assert found["group_second_run"] == 0  # the group resumed from its committed offsets: nothing again
