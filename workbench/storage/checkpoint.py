"""Single-offset checkpoint files of a partition directory (Kafka's CheckpointFile idea).

``log-start-offset.checkpoint`` (raised by DeleteRecords and retention) and
``high-watermark.checkpoint`` (only when the HW is set explicitly by
replication) each hold one decimal offset and a newline. They are replaced
atomically (temp file, rename) so a crash leaves the old value or the new one,
never half of either; a missing or unreadable file reads as None (the loader
then falls back to what the segments show).
"""

from __future__ import annotations

import os
from pathlib import Path

LOG_START_CHECKPOINT = "log-start-offset.checkpoint"
HW_CHECKPOINT = "high-watermark.checkpoint"


def read_offset_checkpoint(path: Path) -> int | None:
    """The offset in ``path``, or None when the file is missing or malformed."""
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def write_offset_checkpoint(path: Path, value: int) -> None:
    """Replace ``path`` with ``value`` atomically (write a temp file, rename over)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)
