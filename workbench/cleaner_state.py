"""The log cleaner's state of an embedded cluster's partitions, for `describe()` and the topic browser.

Each broker publishes ``<broker dir>/cleaner-state.json`` (`workbench.storage.log_cleaner`): per
compact partition it hosts, the dirty ratio, the first dirty offset (everything below was
cleaned), records and bytes removed. Kafka exposes no cleaner state over the protocol, so only
an embedded `Cluster` (which knows its brokers' directories) shows it; a connection to a real
cluster does not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.storage.log_cleaner import CLEANER_STATE_FILE

#: The columns `describe()` adds to its partitions frame (NULL for a partition that is not compacted).
COLUMNS = {
    "dirty_ratio": "dirty_ratio",
    "cleaned_up_to": "first_dirty_offset",
    "records_removed": "records_removed",
    "bytes_reclaimed": "bytes_reclaimed",
}


def read_states(data_dir: Path) -> dict[tuple[int, str, int], dict[str, Any]]:
    """(broker id, topic, partition) -> the cleaner state that broker published."""
    out: dict[tuple[int, str, int], dict[str, Any]] = {}
    for path in Path(data_dir).glob(f"broker-*/{CLEANER_STATE_FILE}"):
        try:
            node = int(path.parent.name.split("-", 1)[1])
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a broker writing it right now, or gone
        for st in doc if isinstance(doc, list) else []:
            out[(node, st["topic"], int(st["partition"]))] = st
    return out


def add_to_description(description: Any, data_dir: Path) -> Any:
    """Add the `COLUMNS` to ``description.partitions``, from each partition leader's cleaner."""
    states = read_states(data_dir)
    frame = description.partitions
    for column, field in COLUMNS.items():
        frame[column] = [
            (states.get((int(leader), topic, int(p))) or {}).get(field)
            for topic, p, leader in zip(frame["topic"], frame["partition"], frame["leader"], strict=True)
        ]
    return description


def topic_summary(data_dir: Path, topic: str) -> str:
    """One line for the topic browser: the cleaner's progress on ``topic``'s partitions, or ''."""
    states = [st for (_, t, _), st in read_states(data_dir).items() if t == topic]
    if not states:
        return ""
    ratio = max(st["dirty_ratio"] for st in states)
    removed = sum(st["records_removed"] for st in states)
    return f"compacted · dirty ratio ≤ {ratio:.2f} · {removed} records removed by the cleaner"
