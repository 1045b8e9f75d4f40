"""KafkaJS (npm, pinned by tests/interop/kafkajs/package-lock.json) against the broker, default configuration.

The scenario is tests/interop/kafkajs/scenario.js: admin (CreateTopics,
Metadata, DescribeConfigs, OffsetFetch, DeleteTopics), produce, a consumer group
that commits, and a second run that resumes from the committed offsets.
`.ci/run` installs it with `npm ci`; without node or the package the test
skips, and fails under WORKBENCH_REQUIRE_ALL=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import require_tool

HERE = Path(__file__).parent / "kafkajs"


@pytest.fixture(scope="module")
def node():
    path = require_tool("node")
    if not (HERE / "node_modules" / "kafkajs").is_dir():
        message = f"kafkajs is not installed (cd {HERE} && npm ci)"
        if os.environ.get("WORKBENCH_REQUIRE_ALL") == "1":
            pytest.fail(message + "; WORKBENCH_REQUIRE_ALL=1 turns this skip into a failure")
        pytest.skip(message)
    return path


def test_kafkajs_default_config_admin_produce_group_and_resume(cluster, node):
    topic = f"kafkajs-{uuid.uuid4().hex[:8]}"
    group = f"kafkajs-g-{uuid.uuid4().hex[:6]}"
    run = subprocess.run(
        [node, "scenario.js", cluster.bootstrap_servers, topic, group],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, f"KafkaJS scenario failed:\n{run.stderr[-4000:]}"
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["created"] is True and found["listed"] is True
    assert found["cleanup_policy"] == "delete"
    assert found["first_run"] == sorted(f"v{i}" for i in range(12))
    assert found["second_run"] == []
    assert found["committed"] == 12  # the committed offsets add up to every message


def test_kafkajs_transactions_commit_abort_and_send_offsets(cluster, node):
    """KafkaJS's transactional producer (issue 14): commit, abort, sendOffsets; a read_committed
    consumer sees only the committed records."""
    topic = f"kafkajs-txn-{uuid.uuid4().hex[:8]}"
    group = f"kafkajs-txn-g-{uuid.uuid4().hex[:6]}"
    run = subprocess.run(
        [node, "transactions.js", cluster.bootstrap_servers, topic, group],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, f"KafkaJS transaction scenario failed:\n{run.stderr[-4000:]}"
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["read_committed"] == ["c0", "c1", "c2"]
    assert found["committed_offset"] == 1
