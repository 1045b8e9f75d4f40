"""A Jepsen-style fault harness for the workbench's brokers (issue 12).

- `history`: what clients did and saw (every send with its outcome, every poll, every fault);
- `checker`: judges a history as Jepsen's Kafka workload does (lost writes, duplicates,
  inconsistent offsets, non-monotonic or skipping polls, unseen records ...);
- `workload`: idempotent acks=all producers and assign/group consumers on real sockets;
- `nemesis`: the faults, each aimed at brokers chosen by their role (leader, follower, both
  followers, the active controller);
- `runner`: runs a mix of nemeses against a workload, then a final full read, and reports;
- `python -m tests.chaos --minutes N`: the long run (a table, and JSON).
"""
