"""`BrokerConnection`: the broker's own Kafka-protocol client, for talking to other brokers.

Followers fetch from leaders with ordinary Fetch requests (as in Kafka), so
this is a tiny asyncio client over the same schema-generated codec: one
connection, one request in flight at a time.

The socket side is an `asyncio.Protocol` (`_FrameProtocol`) that cuts response frames out of
the byte stream and hands each to the one waiting future, like the server's `_KafkaProtocol`:
asyncio's streams (`StreamReader.readexactly` twice per response, `StreamWriter.write`, their
waiter futures) were about 15 % of the brokers' CPU per acks=all round at RF=3, most of it the
followers' fetches (issue 19, `benchmarks/profiles/issue19-rf3regress.md`).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from kafka.protocol.api_header import ResponseClassRegistry

from workbench.broker import round_trace

_SIZE = struct.Struct(">i")
_TRACE = round_trace.ON

SaslLogin = tuple[str, str, str]  # (mechanism, user, password) for the brokers' own connections


class _FrameProtocol(asyncio.Protocol):
    """Length-prefixed response frames from a byte stream, each to the future waiting for it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[bytes] | None = None
        self._buf = bytearray()
        self._error: BaseException | None = None
        self._paused: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        if not buf and len(data) >= 4 and _SIZE.unpack_from(data)[0] + 4 == len(data):
            self._deliver(data[4:])  # the usual case: one whole response in one read, one copy
            return
        buf += data
        while len(buf) >= 4:
            (size,) = _SIZE.unpack_from(buf)
            if len(buf) < 4 + size:
                return
            frame = bytes(buf[4 : 4 + size])
            del buf[: 4 + size]
            if not self._deliver(frame):
                return

    def _deliver(self, frame: bytes) -> bool:
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            # A frame nobody asked for (a timed-out request's late answer): the stream is out
            # of step with our requests, so the connection cannot be used any more.
            self.fail(ConnectionError("response frame with no request waiting"))
            return False
        waiter.set_result(frame)
        return True

    def fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        exc = self._error  # a request waiting on a broken connection learns the first cause
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self._paused is not None and not self._paused.done():
            self._paused.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(exc if exc is not None else asyncio.IncompleteReadError(bytes(self._buf), None))

    @property
    def error(self) -> BaseException | None:
        return self._error

    def pause_writing(self) -> None:
        if self._paused is None or self._paused.done():
            self._paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._paused is not None and not self._paused.done():
            self._paused.set_result(None)

    async def drain(self) -> None:
        if self._paused is not None and not self._paused.done():
            await self._paused


class BrokerConnection:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "workbench-broker",
        sasl: SaslLogin | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.client_id = client_id
        self.sasl = sasl  # [security] (mechanism, user, password): authenticate every new connection
        self._protocol: _FrameProtocol | None = None
        self._correlation_id = 0
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        p = self._protocol
        return p is not None and p.error is None and p.transport is not None and not p.transport.is_closing()

    async def connect(self, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        _transport, self._protocol = await asyncio.wait_for(
            loop.create_connection(_FrameProtocol, self.host, self.port), timeout
        )
        if self.sasl is not None:  # [security] inter-broker SASL, see workbench.security.enforce
            try:
                await asyncio.wait_for(self._authenticate(*self.sasl), timeout)
            except BaseException:
                self.close()
                raise

    async def _authenticate(self, mechanism: str, user: str, password: str) -> None:
        from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

        from workbench.security.sasl import ScramClient, plain_client_token

        response = await self._exchange(SaslHandshakeRequest(mechanism=mechanism), 1, 10.0)
        if response.error_code:
            raise ConnectionError(f"SASL handshake refused: error {response.error_code}")
        scram = ScramClient(user, password) if mechanism == "SCRAM-SHA-256" else None
        token = scram.first() if scram else plain_client_token(user, password)
        for _ in range(2 if scram else 1):
            response = await self._exchange(SaslAuthenticateRequest(auth_bytes=token), 1, 10.0)
            if response.error_code:
                raise ConnectionError(f"inter-broker SASL authentication failed: {response.error_message}")
            if scram and token.startswith(b"n,,"):
                token = scram.final(bytes(response.auth_bytes))
        if scram:
            scram.verify(bytes(response.auth_bytes))

    async def request(self, request: Any, version: int, timeout: float = 30.0) -> Any:
        async with self._lock:
            if not self.connected:
                await self.connect()
            return await self._exchange(request, version, timeout)

    async def _exchange(self, request: Any, version: int, timeout: float) -> Any:
        self._correlation_id = (self._correlation_id + 1) & 0x7FFFFFFF
        request.API_VERSION = version
        request.with_header(correlation_id=self._correlation_id, client_id=self.client_id)
        frame = await self._round_trip(bytes(request.encode(header=True, framed=True)), timeout)
        cls = ResponseClassRegistry.get_response_class(request.header)
        offset = 4 + (1 if cls.flexible_version_q(version) and request.API_KEY != 18 else 0)
        return cls.decode(memoryview(frame)[offset:], version=version)

    async def request_raw(self, api_key: int, payload: bytes, timeout: float = 10.0) -> bytes:
        """A request outside the codec's schemas (the broker's private controller request):
        header v1 with a null client id, then `payload`; returns the response body."""
        async with self._lock:
            if not self.connected:
                await asyncio.wait_for(self.connect(), timeout)
            self._correlation_id = (self._correlation_id + 1) & 0x7FFFFFFF
            header = struct.pack(">hhih", api_key, 0, self._correlation_id, -1)
            frame = await self._round_trip(_SIZE.pack(len(header) + len(payload)) + header + payload, timeout)
            return frame[4:]

    async def request_frame(
        self, encode: Callable[[int], bytes], response_class: Any, version: int, timeout: float = 30.0
    ) -> Any:
        """Send the framed request `encode(correlation_id)` returns (a hand-encoded hot request,
        `workbench.protocol.fast_encode`) and decode the answer as `response_class` at `version`."""
        async with self._lock:
            if not self.connected:
                await self.connect()
            self._correlation_id = (self._correlation_id + 1) & 0x7FFFFFFF
            frame = await self._round_trip(encode(self._correlation_id), timeout)
        if _TRACE:
            round_trace.mark("f_frame", self.client_id)
        offset = 4 + (1 if response_class.flexible_version_q(version) else 0)
        return response_class.decode(memoryview(frame)[offset:], version=version)

    async def _round_trip(self, data: bytes, timeout: float) -> bytes:
        """Send one framed request and wait for its response frame (correlation id checked).

        The timeout is a timer that closes the connection, not `asyncio.wait_for`: that would
        wrap each wait in a task of its own, hundreds of times a second for a follower."""
        protocol = self._protocol
        assert protocol is not None and protocol.transport is not None
        transport = protocol.transport
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes] = loop.create_future()
        protocol.waiter = waiter
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            protocol.fail(TimeoutError(f"no response from {self.host}:{self.port} within {timeout} s"))

        timer = loop.call_later(timeout, expire)
        try:
            transport.write(data)
            await protocol.drain()
            frame = await waiter
        except BaseException as exc:
            self.close()
            if timed_out:
                raise TimeoutError(f"no response from {self.host}:{self.port} within {timeout} s") from exc
            raise
        finally:
            timer.cancel()
        (correlation_id,) = _SIZE.unpack_from(frame)
        if correlation_id != self._correlation_id:
            self.close()
            raise ConnectionError(f"correlation id {correlation_id} != {self._correlation_id}")
        return frame

    def close(self) -> None:
        if self._protocol is not None:
            try:
                self._protocol.fail(ConnectionError(f"connection to {self.host}:{self.port} closed"))
            except Exception:
                pass
        self._protocol = None
