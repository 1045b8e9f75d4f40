"""The network layer: a thin asyncio loop around the I/O-free codec.

One task per connection reads size-delimited frames and answers them in
order, as Kafka does (a connection's requests are processed one at a time, so
responses can never overtake each other). A frame that cannot be parsed, or
whose size is negative or above `max_request_bytes` (Kafka's
`socket.request.max.bytes`, 100 MiB by default), closes that one connection;
the broker and every other connection carry on.

Authentication (when the broker has SASL mechanisms, `workbench.security`):
until a connection has authenticated, only ApiVersions, SaslHandshake and
SaslAuthenticate are served; any other request closes the connection, as in
Kafka. SaslHandshake v1 is followed by SaslAuthenticate frames carrying the
mechanism's tokens; after SaslHandshake v0 the tokens travel as bare
size-prefixed frames (Kafka's legacy flow). A failed authentication is
answered (SASL_AUTHENTICATION_FAILED, or nothing on the v0 flow) and the
connection closed. Once authenticated, `Connection.principal` is `User:<name>`;
the private controller request is served only to `User:broker`.

The listener binds `host` (127.0.0.1 unless configured otherwise).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable

from workbench.broker.apis import SUPPORTED_APIS
from workbench.protocol.codec import Request, decode_request, encode_response
from workbench.protocol.errors import ErrorCode, MalformedRequestError
from workbench.security.authorizer import ANONYMOUS
from workbench.security.enforce import SASL_AUTHENTICATE, SASL_HANDSHAKE
from workbench.security.sasl import SaslAuthenticationError

CONTROLLER_API_KEY = 10000  # the brokers' private request (workbench.broker.controller_channel)
_PRE_AUTH_APIS = (18, SASL_HANDSHAKE, SASL_AUTHENTICATE)

log = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")
# Requests a connection may have in flight (librdkafka defaults to 5 per broker; Kafka itself handles
# one at a time per connection). Beyond this the reader waits, which pushes back on the client.
MAX_IN_FLIGHT_PER_CONNECTION = 16

Dispatch = Callable[[Request, "Connection"], Awaitable[bytes | None]]


class Connection:
    """What a handler may know about the client connection."""

    __slots__ = ("peer", "writer", "principal", "authenticated", "sasl", "sasl_raw")

    def __init__(self, peer: str, writer: asyncio.StreamWriter) -> None:
        self.peer = peer
        self.writer = writer
        self.principal = ANONYMOUS     # "User:<name>" once SASL authentication succeeds
        self.authenticated = False
        self.sasl = None               # the mechanism's server state machine, between handshake and success
        self.sasl_raw = False          # SaslHandshake v0: tokens follow as bare frames


class _Close(Exception):
    """Send `response` (if any), then close the connection."""

    def __init__(self, reason: str, response: bytes | None = None) -> None:
        super().__init__(reason)
        self.response = response


class KafkaServer:
    def __init__(self, dispatch: Dispatch, host: str, port: int, *,
                 max_request_bytes: int = 100 * 1024 * 1024, max_connections: int = 10_000,
                 connections_max_idle_ms: int = 600_000, security=None) -> None:
        self._dispatch = dispatch
        self.max_connections = max_connections            # max.connections
        self.idle_timeout_s = connections_max_idle_ms / 1000.0  # connections.max.idle.ms
        self.security = security  # workbench.security.enforce.Security, or None (no authentication)
        self.supported_apis = security.supported_apis if security is not None else SUPPORTED_APIS
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
        if len(self._connections) >= self.max_connections:
            log.warning("refusing %s: %d connections open (max_connections)", peer, len(self._connections))
            writer.close()
            return
        self._connections.add(writer)
        # Requests are *started* in arrival order (each handler runs up to its first await before the
        # next starts, so appends keep their order), may then wait concurrently (acks=all waiting for
        # the ISR, long-poll fetches), and their responses are written strictly in request order.
        # Pipelining is what lets librdkafka keep several produce requests in flight per broker.
        pending: asyncio.Queue = asyncio.Queue(maxsize=MAX_IN_FLIGHT_PER_CONNECTION)
        responder = asyncio.ensure_future(self._respond_in_order(pending, writer, peer))
        try:
            while not responder.done():
                try:
                    head = await asyncio.wait_for(reader.readexactly(4), self.idle_timeout_s)
                except (TimeoutError, asyncio.TimeoutError):
                    log.info("closing %s: idle for %.0f s (connections_max_idle_ms)", peer, self.idle_timeout_s)
                    return
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                (size,) = _SIZE.unpack(head)
                if size < 0 or size > self.max_request_bytes:
                    log.warning("closing %s: request size %d outside 0..%d", peer, size, self.max_request_bytes)
                    return
                try:
                    # A frame must arrive within the idle timeout too: a client trickling one byte
                    # per second cannot hold a request buffer open forever.
                    frame = await asyncio.wait_for(reader.readexactly(size), self.idle_timeout_s)
                except (TimeoutError, asyncio.TimeoutError):
                    log.info("closing %s: request of %d bytes incomplete after %.0f s", peer, size,
                             self.idle_timeout_s)
                    return
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                sasl = self.security.sasl if self.security is not None else None
                if conn.sasl_raw:
                    try:
                        response = self._raw_sasl_token(conn, frame)
                    except _Close as exc:
                        log.warning("closing %s: %s", peer, exc)
                        return
                    await pending.put(response)
                    continue
                try:
                    request = decode_request(frame, self.supported_apis)
                except MalformedRequestError as exc:
                    log.warning("closing %s: malformed request: %s", peer, exc)
                    return
                try:
                    if sasl is not None and (not conn.authenticated or request.api_key in _PRE_AUTH_APIS[1:]
                                             or request.api_key == CONTROLLER_API_KEY):
                        response = self._gate(request, conn)
                        if response is not None:
                            await pending.put(response)
                            continue
                except _Close as exc:
                    log.warning("closing %s: %s", peer, exc)
                    if exc.response is not None:
                        await pending.put(exc.response)
                    return
                await pending.put(asyncio.ensure_future(self._dispatch_one(request, conn)))
        except asyncio.CancelledError:
            responder.cancel()
            raise
        except (ConnectionError, RuntimeError) as exc:  # the client went away mid-response
            log.debug("connection %s closed: %s", peer, exc)
        except Exception:
            log.exception("connection %s failed", peer)
        finally:
            if not responder.done():
                try:
                    pending.put_nowait(None)
                except asyncio.QueueFull:
                    responder.cancel()
                try:
                    await asyncio.wait_for(asyncio.shield(responder), 5.0)
                except (Exception, asyncio.CancelledError):
                    responder.cancel()
            self._connections.discard(writer)
            try:
                writer.close()
            except Exception:
                pass

    async def _dispatch_one(self, request: Request, conn: Connection) -> bytes | None:
        try:
            return await self._dispatch(request, conn)
        except MalformedRequestError as exc:
            log.warning("closing %s: %s", conn.peer, exc)
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("closing %s: handler for api %d v%d failed", conn.peer, request.api_key,
                          request.api_version)
            raise

    async def _respond_in_order(self, pending: asyncio.Queue, writer: asyncio.StreamWriter, peer: str) -> None:
        """Write each response in request order; stop (closing the connection) at a failed handler."""
        try:
            while True:
                item = await pending.get()
                if item is None:
                    return
                if isinstance(item, asyncio.Future):
                    try:
                        response = await item
                    except (Exception, asyncio.CancelledError):
                        writer.close()
                        return
                else:
                    response = item
                if response is None:
                    continue  # acks=0 produce: no response
                if writer.is_closing():
                    return
                writer.write(response)
                if writer.transport.get_write_buffer_size() > (1 << 20):
                    await writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            log.debug("connection %s closed while responding: %s", peer, exc)
        finally:
            while not pending.empty():  # abandon what the closed connection can no longer receive
                item = pending.get_nowait()
                if isinstance(item, asyncio.Future) and not item.done():
                    item.cancel()

    # -- SASL (see the module docstring) -----------------------------------------------------------

    def _gate(self, request: Request, conn: Connection) -> bytes | None:
        """Authentication state per connection. Returns a response to send, None to dispatch the
        request normally, or raises `_Close`."""
        sasl = self.security.sasl
        key = request.api_key
        if key == CONTROLLER_API_KEY:
            if conn.authenticated and self.security.may_call_controller(conn.principal):
                return None
            raise _Close(f"{conn.principal} may not send inter-broker controller requests")
        if key == SASL_HANDSHAKE:
            if conn.authenticated or conn.sasl is not None or request.body is None:
                raise _Close("SaslHandshake out of order", self._error(request, ErrorCode.ILLEGAL_SASL_STATE))
            mechanism = request.body.mechanism
            conn.sasl = sasl.create(mechanism)
            if conn.sasl is None:
                response = encode_response(key, request.api_version, request.correlation_id, {
                    "error_code": ErrorCode.UNSUPPORTED_SASL_MECHANISM, "mechanisms": sasl.mechanisms})
                raise _Close(f"unsupported SASL mechanism {mechanism!r}", response)
            conn.sasl_raw = request.api_version == 0
            return encode_response(key, request.api_version, request.correlation_id,
                                   {"error_code": 0, "mechanisms": sasl.mechanisms})
        if key == SASL_AUTHENTICATE:
            if conn.authenticated or conn.sasl is None or request.body is None:
                raise _Close("SaslAuthenticate out of order", self._error(request, ErrorCode.ILLEGAL_SASL_STATE))
            try:
                reply = conn.sasl.step(bytes(request.body.auth_bytes or b""))
            except SaslAuthenticationError as exc:
                response = encode_response(key, request.api_version, request.correlation_id, {
                    "error_code": ErrorCode.SASL_AUTHENTICATION_FAILED, "error_message": str(exc),
                    "auth_bytes": b"", "session_lifetime_ms": 0})
                raise _Close(f"authentication failed ({conn.sasl.mechanism}, "
                             f"user {conn.sasl.username!r}): {exc}", response) from None
            self._maybe_authenticated(conn)
            return encode_response(key, request.api_version, request.correlation_id, {
                "error_code": 0, "error_message": None, "auth_bytes": reply, "session_lifetime_ms": 0})
        if key == 18:
            return None
        raise _Close(f"api key {key} before SASL authentication")

    def _raw_sasl_token(self, conn: Connection, frame: bytes) -> bytes:
        try:
            reply = conn.sasl.step(bytes(frame))
        except SaslAuthenticationError as exc:
            raise _Close(f"authentication failed ({conn.sasl.mechanism}, user {conn.sasl.username!r}): "
                         f"{exc}") from None
        self._maybe_authenticated(conn)
        return _SIZE.pack(len(reply)) + reply

    @staticmethod
    def _maybe_authenticated(conn: Connection) -> None:
        if conn.sasl.complete:
            conn.principal = f"User:{conn.sasl.username}"
            conn.authenticated = True
            conn.sasl, conn.sasl_raw = None, False
            log.info("%s authenticated as %s", conn.peer, conn.principal)

    @staticmethod
    def _error(request: Request, code: int) -> bytes | None:
        fields = {SASL_HANDSHAKE: {"error_code": code, "mechanisms": []},
                  SASL_AUTHENTICATE: {"error_code": code, "error_message": "unexpected SASL request",
                                      "auth_bytes": b"", "session_lifetime_ms": 0}}
        try:
            return encode_response(request.api_key, request.api_version, request.correlation_id,
                                   fields[request.api_key])
        except Exception:
            return None
