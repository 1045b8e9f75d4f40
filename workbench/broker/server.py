"""The network layer: a thin asyncio loop around the I/O-free codec.

One task per connection reads size-delimited frames and answers them in
order, as Kafka does (a connection's requests are processed one at a time, so
responses can never overtake each other). A frame that cannot be parsed, or
whose size is negative or above `max_request_bytes` (Kafka's
`socket.request.max.bytes`, 100 MiB by default), closes that one connection;
the broker and every other connection carry on.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable

from workbench.broker.apis import SUPPORTED_APIS
from workbench.protocol.codec import Request, decode_request
from workbench.protocol.errors import MalformedRequestError

log = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")

Dispatch = Callable[[Request, "Connection"], Awaitable[bytes | None]]


class Connection:
    """What a handler may know about the client connection."""

    __slots__ = ("peer", "writer")

    def __init__(self, peer: str, writer: asyncio.StreamWriter) -> None:
        self.peer = peer
        self.writer = writer


class KafkaServer:
    def __init__(self, dispatch: Dispatch, host: str, port: int, *,
                 max_request_bytes: int = 100 * 1024 * 1024) -> None:
        self._dispatch = dispatch
        self.host = host
        self.port = port
        self.max_request_bytes = max_request_bytes
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, reuse_address=True, limit=1 << 20)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except (TimeoutError, asyncio.TimeoutError):
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        conn = Connection(peer, writer)
        self._connections.add(writer)
        try:
            while True:
                try:
                    head = await reader.readexactly(4)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                (size,) = _SIZE.unpack(head)
                if size < 0 or size > self.max_request_bytes:
                    log.warning("closing %s: request size %d outside 0..%d", peer, size, self.max_request_bytes)
                    return
                try:
                    frame = await reader.readexactly(size)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                try:
                    request = decode_request(frame, SUPPORTED_APIS)
                except MalformedRequestError as exc:
                    log.warning("closing %s: malformed request: %s", peer, exc)
                    return
                try:
                    response = await self._dispatch(request, conn)
                except MalformedRequestError as exc:
                    log.warning("closing %s: %s", peer, exc)
                    return
                except Exception:
                    log.exception("closing %s: handler for api %d v%d failed", peer,
                                  request.api_key, request.api_version)
                    return
                if response is not None:
                    if writer.is_closing():
                        return
                    writer.write(response)
                    if writer.transport.get_write_buffer_size() > (1 << 20):
                        await writer.drain()
        except asyncio.CancelledError:
            raise
        except (ConnectionError, RuntimeError) as exc:  # the client went away mid-response
            log.debug("connection %s closed: %s", peer, exc)
        except Exception:
            log.exception("connection %s failed", peer)
        finally:
            self._connections.discard(writer)
            try:
                writer.close()
            except Exception:
                pass
