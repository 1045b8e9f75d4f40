"""Partition logs: raw segments for recent data, Parquet files for history.

The names below are imported on first use (PEP 562), not with the package: the Parquet
converter's child process (`workbench.storage.converter`) needs only the Parquet tier, and
importing `log` and its dependencies for it cost each child start about 80 ms of CPU and their
memory (issue 19).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.storage.config import LogConfig
    from workbench.storage.leader_epoch import LeaderEpochCache
    from workbench.storage.log import AppendInfo, PartitionLog, UnexpectedAppendOffsetError

__all__ = ["AppendInfo", "LeaderEpochCache", "LogConfig", "PartitionLog", "UnexpectedAppendOffsetError"]

_WHERE = {
    "LogConfig": "workbench.storage.config",
    "LeaderEpochCache": "workbench.storage.leader_epoch",
    "AppendInfo": "workbench.storage.log",
    "PartitionLog": "workbench.storage.log",
    "UnexpectedAppendOffsetError": "workbench.storage.log",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench.storage' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
