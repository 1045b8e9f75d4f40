"""Cluster metadata: the image every broker serves, and the replicated log that changes it.

KRaft's idea: metadata is an ordered log of change records (broker registered,
topic created, partition leader changed, config altered); every broker applies
it into the same in-memory `MetadataImage` (`image.py`). The log is replicated
by a Raft quorum of brokers (`raft/`, `quorum.py`); its leader is the active
controller, which alone turns operations (`ops.py`, `topics.py`) into records.
"""
