"""kafka-go (Debian's golang-github-segmentio-kafka-go-dev 0.2.1) against the broker, default configuration.

kafka-go 0.2 speaks CreateTopics v0, Produce v2 (message format v1), Fetch v2
and the classic group protocol with OffsetCommit v2. The scenario is
tests/interop/kafkago/main.go.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from tests.interop.gobuild import build, require_go_package


@pytest.fixture(scope="module")
def kafkago_scenario(tmp_path_factory):
    require_go_package("github.com/segmentio/kafka-go", "golang-github-segmentio-kafka-go-dev")
    return build("kafkago", tmp_path_factory.mktemp("go"))


def test_kafkago_default_config_admin_produce_consume_group_and_resume(cluster, kafkago_scenario):
    topic = f"kafkago-{uuid.uuid4().hex[:8]}"
    group = f"kafkago-g-{uuid.uuid4().hex[:6]}"
    run = subprocess.run(
        [str(kafkago_scenario), cluster.bootstrap_servers, topic, group],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, f"kafka-go scenario failed:\n{run.stderr[-4000:]}"
    found = json.loads(run.stdout.strip().splitlines()[-1])
    every = sorted(f"v{i}" for i in range(12))
    assert found["partitions"] == 3
    assert found["produced"] == 12
    assert found["consumed"] == every
    assert found["group_first_run"] == 6
    assert found["group_all"] == every  # resumed at the committed offsets: nothing lost, nothing twice
