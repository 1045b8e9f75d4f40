"""A small Raft for the controller quorum: a replicated metadata log (KRaft's idea, KIP-500/595).

* `node.RaftNode`: the algorithm, with no I/O (pre-vote, check-quorum, ReadIndex, TimeoutNow);
* `storage`: durable term/vote and log (`FileRaftStorage`), or in memory for tests;
* `server.RaftServer`: the node over TCP between processes, on asyncio;
* `testing.SimulatedNetwork`: a seeded, virtual-time network with faults, for tests.
"""

from workbench.controller.raft.messages import Entry, MalformedMessage, OutboundMessage
from workbench.controller.raft.node import NotLeader, RaftNode, Role
from workbench.controller.raft.server import RaftServer
from workbench.controller.raft.storage import FileRaftStorage, MemoryRaftStorage, RaftStorage

__all__ = [
    "Entry",
    "FileRaftStorage",
    "MalformedMessage",
    "MemoryRaftStorage",
    "NotLeader",
    "OutboundMessage",
    "RaftNode",
    "RaftServer",
    "RaftStorage",
    "Role",
]
