"""Partition logs: raw segments for recent data, Parquet files for history."""

from workbench.storage.config import LogConfig
from workbench.storage.leader_epoch import LeaderEpochCache
from workbench.storage.log import AppendInfo, PartitionLog, UnexpectedAppendOffsetError

__all__ = ["AppendInfo", "LeaderEpochCache", "LogConfig", "PartitionLog", "UnexpectedAppendOffsetError"]
