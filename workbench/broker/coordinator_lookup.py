"""Finding the local coordinator of a group or transactional id while this broker's metadata catches up.

A client finds a coordinator through any broker (FindCoordinator), then sends its group or
transaction request to the broker named. On a new cluster the first FindCoordinator creates the
internal topic (`__consumer_offsets`, `__transaction_state`), and the broker named may not have
applied that record yet when the request arrives: its metadata log is a few milliseconds behind
the one that answered. Answering COORDINATOR_NOT_AVAILABLE then is allowed by the protocol but
fails clients that do not retry it on that request: sarama's offset manager returns it from
`ManagePartition` at once (a clean-clone CI run failed on it), and 9 of 30 OffsetFetches sent
right after FindCoordinator on five new clusters got it (and an InitProducerId 1 in 30, or
NOT_COORDINATOR from a broker named leader that had not loaded the partition yet). So the lookup
waits, bounded, for the topic to appear and the partition to load; NOT_COORDINATOR (led
elsewhere: the client looks again) is answered at once, and a load that outlasts the wait is
answered COORDINATOR_LOAD_IN_PROGRESS (the client backs off).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from workbench.protocol.errors import ErrorCode, KafkaProtocolError

T = TypeVar("T")

#: How long a request waits for the internal topic to appear in this broker's metadata.
METADATA_CATCH_UP_S = 2.0
_POLL_S = 0.02
#: The answers that mean "this broker is about to know": the topic is not in its metadata yet, or
#: the metadata names it the leader and the partition is still being loaded.
_WAITED = (ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)


async def once_topic_known(lookup: Callable[[], T], wait_s: float = METADATA_CATCH_UP_S) -> T:
    """``lookup()``, retried while it raises one of `_WAITED`, for at most ``wait_s``; then its last
    error is raised."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return lookup()
        except KafkaProtocolError as exc:
            if exc.code not in _WAITED or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(_POLL_S)
