"""Partition logs: raw segments for recent data, Parquet files for history."""

from workbench.storage.config import LogConfig
from workbench.storage.log import AppendInfo, PartitionLog

__all__ = ["AppendInfo", "LogConfig", "PartitionLog"]
