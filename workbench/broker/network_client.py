"""`BrokerConnection`: the broker's own Kafka-protocol client, for talking to other brokers.

Followers fetch from leaders with ordinary Fetch requests (as in Kafka), so
this is a tiny asyncio client over the same schema-generated codec: one
connection, one request in flight at a time.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from kafka.protocol.api_header import ResponseClassRegistry

_SIZE = struct.Struct(">i")

SaslLogin = tuple[str, str, str]  # (mechanism, user, password) for the brokers' own connections


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
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._correlation_id = 0
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self, timeout: float = 5.0) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=1 << 22), timeout
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
            assert self._reader is not None and self._writer is not None
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
        offset = 4 + (1 if response_class.flexible_version_q(version) else 0)
        return response_class.decode(memoryview(frame)[offset:], version=version)

    async def _round_trip(self, data: bytes, timeout: float) -> bytes:
        """Send one framed request and read its response frame (correlation id checked).

        The timeout is a timer that closes the connection, not `asyncio.wait_for`: that would
        wrap each read in a task of its own, hundreds of times a second for a follower."""
        assert self._reader is not None and self._writer is not None
        reader, writer = self._reader, self._writer
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            writer.close()

        timer = asyncio.get_running_loop().call_later(timeout, expire)
        writer.write(data)
        try:
            if writer.transport.get_write_buffer_size() > (1 << 20):
                await writer.drain()
            head = await reader.readexactly(4)
            (size,) = _SIZE.unpack(head)
            frame = await reader.readexactly(size)
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
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                pass
        self._reader = self._writer = None
