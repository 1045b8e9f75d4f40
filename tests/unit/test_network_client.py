"""The broker-to-broker client's frame cutting (`network_client._FrameProtocol`), fed plain bytes.

Responses arrive as length-prefixed frames split anywhere by the kernel; each frame goes to the
one request waiting, whole and in order, and a frame nobody waits for (the late answer of a
timed-out request) makes the connection unusable rather than answering the next request with it.
"""

from __future__ import annotations

import asyncio
import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.broker.network_client import _FrameProtocol


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _framed(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(st.binary(min_size=4, max_size=300), min_size=1, max_size=6),
    cuts=st.lists(st.lists(st.integers(min_value=0, max_value=400), max_size=5), min_size=6, max_size=6),
)
def test_frames_split_anywhere_reach_their_requests_whole_and_in_order(bodies, cuts):
    # One request in flight at a time: the next frame's bytes come only after the next request.
    async def run() -> list[bytes]:
        loop = asyncio.get_running_loop()
        proto = _FrameProtocol()
        proto.connection_made(_Transport())
        got: list[bytes] = []
        for body, cut in zip(bodies, cuts, strict=False):
            waiter: asyncio.Future[bytes] = loop.create_future()
            proto.waiter = waiter
            frame = _framed(body)
            points = sorted({c % (len(frame) + 1) for c in cut} | {0, len(frame)})
            for a, b in itertools.pairwise(points):
                assert not waiter.done()
                proto.data_received(frame[a:b])
            got.append(waiter.result())
        assert proto.error is None
        return got

    assert asyncio.run(run()) == bodies


def test_a_frame_with_no_request_waiting_closes_the_connection():
    async def run() -> None:
        proto = _FrameProtocol()
        transport = _Transport()
        proto.connection_made(transport)
        proto.data_received(_framed(b"\x00\x00\x00\x07late"))
        assert transport.closed and isinstance(proto.error, ConnectionError)
        waiter = asyncio.get_running_loop().create_future()
        proto.waiter = waiter
        proto.connection_lost(None)
        with pytest.raises(ConnectionError):
            waiter.result()

    asyncio.run(run())


def test_a_lost_connection_fails_the_waiting_request():
    async def run() -> None:
        proto = _FrameProtocol()
        proto.connection_made(_Transport())
        waiter = asyncio.get_running_loop().create_future()
        proto.waiter = waiter
        proto.data_received(_framed(b"\x00\x00\x00\x01partial")[:7])
        proto.connection_lost(None)
        with pytest.raises(asyncio.IncompleteReadError):
            waiter.result()

    asyncio.run(run())
