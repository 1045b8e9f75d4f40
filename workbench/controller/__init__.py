"""Cluster metadata: the image every broker serves, and the log that changes it.

KRaft's idea: metadata is an ordered log of change records (broker registered,
topic created, partition leader changed, config altered); every broker replays
it into the same in-memory `MetadataImage`. Here the log is a file shared by
the brokers of one cluster on one machine (`FileMetadataLog`), appended under
an exclusive file lock, which plays the coordination service's role.
"""
