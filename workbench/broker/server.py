"""The network layer: an asyncio protocol around the I/O-free codec.

Each connection is an `asyncio.Protocol` that cuts size-delimited frames out
of what it receives and answers them in order, as Kafka does (responses never
overtake each other). The hot requests run in the receive callback itself and
are answered from there when they need not wait, so a produce or fetch costs
no task, queue or extra trip round the event loop (see `_KafkaProtocol`). A frame that cannot be parsed, or
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
import functools
import logging
import struct
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from workbench.broker.apis import SUPPORTED_APIS
from workbench.protocol.api_keys import CONTROLLER_API_KEY
from workbench.protocol.codec import Request, decode_request, encode_response
from workbench.protocol.errors import ErrorCode, MalformedRequestError
from workbench.security.authorizer import ANONYMOUS
from workbench.security.enforce import SASL_AUTHENTICATE, SASL_HANDSHAKE
from workbench.security.sasl import PlainServer, SaslAuthenticationError, ScramServer

if TYPE_CHECKING:
    from workbench.security.enforce import Security

_PRE_AUTH_APIS = (18, SASL_HANDSHAKE, SASL_AUTHENTICATE)

log = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")
# Requests a connection may have in flight. Beyond this the connection stops reading, which pushes back
# on the client. librdkafka pipelines up to max.in.flight requests per broker, 1,000,000 by default: with
# linger.ms=0 that is one tiny Produce per record, and each acks=all one waits for a replication round.
# A window of 16 capped such a client at 16 requests per round (p50 3.3 s at 10k records/s, RF=3, issue
# 19); with 500 (Kafka's queued.max.requests, though Kafka reads one request per connection at a time)
# every request that arrived during a round is appended before the next follower fetch, so one round
# acknowledges them all.
MAX_IN_FLIGHT_PER_CONNECTION = 500
# ... and at most this many bytes of requests still waiting for their answer (a waiting Produce holds
# its records until it is answered): 500 pipelined 1 MB batches must not hold 500 MB.
MAX_WAITING_REQUEST_BYTES = 32 << 20
# Responses buffered for a client that does not read them before the connection stops reading requests.
WRITE_BUFFER_HIGH = 1 << 20
# Requests whose handlers run eagerly, in the callback that received them, instead of in a new task.
# These never need a task of their own to start (no `asyncio.timeout`), and they are the hot ones.
_EAGER_APIS = frozenset({0, 1, 2, 8, 9, 12, 18})  # Produce Fetch ListOffsets OffsetCommit/Fetch Heartbeat ApiVersions

Dispatch = Callable[[Request, "Connection"], Awaitable[bytes | None]]


class Connection:
    """What a handler may know about the client connection."""

    __slots__ = ("authenticated", "peer", "principal", "sasl", "sasl_raw", "transport")

    def __init__(self, peer: str, transport: asyncio.Transport) -> None:
        self.peer = peer
        self.transport = transport
        self.principal = ANONYMOUS  # "User:<name>" once SASL authentication succeeds
        self.authenticated = False
        self.sasl: PlainServer | ScramServer | None = None  # the mechanism's state, handshake to success
        self.sasl_raw = False  # SaslHandshake v0: tokens follow as bare frames


class _Close(Exception):
    """Send `response` (if any), then close the connection."""

    def __init__(self, reason: str, response: bytes | None = None) -> None:
        super().__init__(reason)
        self.response = response


@types.coroutine
def _finish(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Drive a coroutine that was started outside a task (see `run_eagerly`) to its end."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await _finish(coro, yielded)


def run_eagerly(coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop) -> tuple[bool, Any]:
    """Run `coro` up to its first suspension right now (Python 3.12's eager tasks, by hand).

    Returns ``(True, result)`` when it finished without suspending (a produce
    with acks=1, a fetch that finds data: no task, no scheduling round trip), else
    ``(False, task)`` with a task that carries on from where it stopped. An
    exception raised before the first suspension propagates to the caller.
    """
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, loop.create_task(_resume(coro, yielded))


class KafkaServer:
    def __init__(
        self,
        dispatch: Dispatch,
        host: str,
        port: int,
        *,
        max_request_bytes: int = 100 * 1024 * 1024,
        max_connections: int = 10_000,
        connections_max_idle_ms: int = 600_000,
        security: Security | None = None,
    ) -> None:
        self._dispatch = dispatch
        self.max_connections = max_connections  # max.connections
        self.idle_timeout_s = connections_max_idle_ms / 1000.0  # connections.max.idle.ms
        self.security = security  # workbench.security.enforce.Security, or None (no authentication)
        self.supported_apis = security.supported_apis if security is not None else SUPPORTED_APIS
        self.host = host
        self.port = port
        self.max_request_bytes = max_request_bytes
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_KafkaProtocol] = set()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _KafkaProtocol(self, loop), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def drain(self, timeout: float) -> None:
        """Stop taking requests and let every connection write the answers it owes, for at most
        `timeout` seconds: a stopping broker answers the produce requests it already appended
        (with "possibly persisted", see handlers.produce) instead of dropping them unanswered."""
        if self._server is not None:
            self._server.close()
        for proto in list(self._connections):
            proto.finish()
        deadline = asyncio.get_running_loop().time() + timeout
        while self._connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for proto in list(self._connections):
            proto.close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except TimeoutError:
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
            log.exception("closing %s: handler for api %d v%d failed", conn.peer, request.api_key, request.api_version)
            raise

    # -- SASL (see the module docstring) -----------------------------------------------------------

    def _gate(self, request: Request, conn: Connection) -> bytes | None:
        """Authentication state per connection. Returns a response to send, None to dispatch the
        request normally, or raises `_Close`."""
        security = self.security
        assert security is not None and security.sasl is not None  # only SASL listeners gate
        sasl = security.sasl
        key = request.api_key
        if key == CONTROLLER_API_KEY:
            if conn.authenticated and security.may_call_controller(conn.principal):
                return None
            raise _Close(f"{conn.principal} may not send inter-broker controller requests")
        if key == SASL_HANDSHAKE:
            if conn.authenticated or conn.sasl is not None or request.body is None:
                raise _Close("SaslHandshake out of order", self._error(request, ErrorCode.ILLEGAL_SASL_STATE))
            mechanism = request.body.mechanism
            conn.sasl = sasl.create(mechanism)
            if conn.sasl is None:
                response = encode_response(
                    key,
                    request.api_version,
                    request.correlation_id,
                    {"error_code": ErrorCode.UNSUPPORTED_SASL_MECHANISM, "mechanisms": sasl.mechanisms},
                )
                raise _Close(f"unsupported SASL mechanism {mechanism!r}", response)
            conn.sasl_raw = request.api_version == 0
            return encode_response(
                key,
                request.api_version,
                request.correlation_id,
                {"error_code": 0, "mechanisms": sasl.mechanisms},
            )
        if key == SASL_AUTHENTICATE:
            if conn.authenticated or conn.sasl is None or request.body is None:
                raise _Close("SaslAuthenticate out of order", self._error(request, ErrorCode.ILLEGAL_SASL_STATE))
            try:
                reply = conn.sasl.step(bytes(request.body.auth_bytes or b""))
            except SaslAuthenticationError as exc:
                response = encode_response(
                    key,
                    request.api_version,
                    request.correlation_id,
                    {
                        "error_code": ErrorCode.SASL_AUTHENTICATION_FAILED,
                        "error_message": str(exc),
                        "auth_bytes": b"",
                        "session_lifetime_ms": 0,
                    },
                )
                raise _Close(
                    f"authentication failed ({conn.sasl.mechanism}, user {conn.sasl.username!r}): {exc}",
                    response,
                ) from None
            self._maybe_authenticated(conn)
            return encode_response(
                key,
                request.api_version,
                request.correlation_id,
                {"error_code": 0, "error_message": None, "auth_bytes": reply, "session_lifetime_ms": 0},
            )
        if key == 18:
            return None
        raise _Close(f"api key {key} before SASL authentication")

    def _raw_sasl_token(self, conn: Connection, frame: bytes) -> bytes:
        sasl = conn.sasl
        if sasl is None:  # sasl_raw is only set together with a mechanism
            raise _Close("raw SASL token without a handshake")
        try:
            reply = sasl.step(bytes(frame))
        except SaslAuthenticationError as exc:
            raise _Close(f"authentication failed ({sasl.mechanism}, user {sasl.username!r}): {exc}") from None
        self._maybe_authenticated(conn)
        return _SIZE.pack(len(reply)) + reply

    @staticmethod
    def _maybe_authenticated(conn: Connection) -> None:
        if conn.sasl is not None and conn.sasl.complete:
            conn.principal = f"User:{conn.sasl.username}"
            conn.authenticated = True
            conn.sasl, conn.sasl_raw = None, False
            log.info("%s authenticated as %s", conn.peer, conn.principal)

    @staticmethod
    def _error(request: Request, code: int) -> bytes | None:
        fields: dict[int, dict[str, Any]] = {
            SASL_HANDSHAKE: {"error_code": code, "mechanisms": []},
            SASL_AUTHENTICATE: {
                "error_code": code,
                "error_message": "unexpected SASL request",
                "auth_bytes": b"",
                "session_lifetime_ms": 0,
            },
        }
        try:
            return encode_response(
                request.api_key, request.api_version, request.correlation_id, fields[request.api_key]
            )
        except Exception:
            return None


class _Failed:
    """A slot whose request failed: the connection closes when the responses before it are written."""

    __slots__ = ()


_FAILED = _Failed()


class _KafkaProtocol(asyncio.Protocol):
    """One client connection: frames in, responses out in request order.

    Requests are *started* in arrival order, each running up to its first
    await before the next starts (so appends keep their order); the hot ones run
    right here in the receive callback and, when they finish without waiting
    (most produce and fetch requests), their response is written at once with
    no task, queue or extra loop iteration. Requests that wait (acks=all for the
    ISR, long-poll fetches) continue as tasks while later ones start; responses
    are written strictly in request order from `_slots`. Pipelining is what lets
    librdkafka keep several produce requests in flight per broker.
    """

    def __init__(self, server: KafkaServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        # Set by connection_made, which asyncio calls before any other callback.
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.conn: Connection = None  # type: ignore[assignment]
        self.peer = "?"
        self._buf = bytearray()
        self._slots: deque = deque()  # per request in order: bytes | None (ready) | Task | _FAILED
        self._waiting_bytes = 0  # frame bytes of the requests whose task has not finished
        self._read_paused = False
        self._write_paused = False
        self._closing = False  # no more requests: close once the slots are written
        self._last_activity = loop.time()
        self._frame_started: float | None = None  # when the incomplete frame in _buf began
        self._idle_timer: asyncio.TimerHandle | None = None

    # -- transport callbacks ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername")
        self.peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        self.conn = Connection(self.peer, transport)  # type: ignore[arg-type]
        server = self.server
        if len(server._connections) >= server.max_connections:
            log.warning("refusing %s: %d connections open (max_connections)", self.peer, len(server._connections))
            self._closing = True
            transport.close()
            return
        server._connections.add(self)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)  # type: ignore[attr-defined]
        self._idle_timer = self.loop.call_later(server.idle_timeout_s, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self._closing = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        # Abandon what the closed connection can no longer receive.
        for slot in self._slots:
            if isinstance(slot, asyncio.Task) and not slot.done():
                slot.cancel()
        self._slots.clear()
        self._buf.clear()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._maybe_resume()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._last_activity = self.loop.time()
        buf = self._buf
        buf += data
        self._process()

    def eof_received(self) -> bool:
        # The client half-closed: answer what it asked, then close.
        self._closing = True
        self._flush()
        return True

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def finish(self) -> None:
        """Take no more requests; close once the answers in flight are written."""
        self._closing = True
        self._flush()

    # -- requests ---------------------------------------------------------------------------------

    def _process(self) -> None:
        """Handle the whole frames in the buffer while the in-flight window has room."""
        buf = self._buf
        pos, end = 0, len(buf)
        max_size = self.server.max_request_bytes
        while not self._closing and end - pos >= 4:
            if (
                len(self._slots) >= MAX_IN_FLIGHT_PER_CONNECTION
                or self._waiting_bytes >= MAX_WAITING_REQUEST_BYTES
                or self._write_paused
            ):
                self._pause_reading()
                break
            (size,) = _SIZE.unpack_from(buf, pos)
            if size < 0 or size > max_size:
                log.warning("closing %s: request size %d outside 0..%d", self.peer, size, max_size)
                self._abort()
                return
            if end - pos - 4 < size:
                break
            with memoryview(buf) as view:  # one copy (a bytearray slice would make two)
                frame = bytes(view[pos + 4 : pos + 4 + size])
            pos += 4 + size
            self._handle(frame)
        if pos:
            del buf[:pos]
        self._frame_started = (self._frame_started or self.loop.time()) if buf else None

    def _handle(self, frame: bytes) -> None:
        server, conn = self.server, self.conn
        if conn.sasl_raw:
            try:
                self._push(server._raw_sasl_token(conn, frame))
            except _Close as exc:
                log.warning("closing %s: %s", self.peer, exc)
                self._abort()
            return
        try:
            request = decode_request(frame, server.supported_apis)
        except MalformedRequestError as exc:
            log.warning("closing %s: malformed request: %s", self.peer, exc)
            self._abort()
            return
        security = server.security
        if (
            security is not None
            and security.sasl is not None
            and (
                not conn.authenticated or request.api_key in _PRE_AUTH_APIS[1:] or request.api_key == CONTROLLER_API_KEY
            )
        ):
            try:
                response = server._gate(request, conn)
            except _Close as exc:
                log.warning("closing %s: %s", self.peer, exc)
                if exc.response is not None:
                    self._push(exc.response)
                self._closing = True
                self._flush()
                return
            if response is not None:
                self._push(response)
                return
        coro = server._dispatch_one(request, conn)
        if request.api_key in _EAGER_APIS:
            try:
                done, value = run_eagerly(coro, self.loop)
            except Exception:  # logged by _dispatch_one
                self._push(_FAILED)
                return
        else:
            done, value = False, self.loop.create_task(coro)
        if done:
            self._push(value)
        else:
            size = len(frame)
            self._waiting_bytes += size
            value.add_done_callback(functools.partial(self._task_done, size))
            self._slots.append(value)

    def _push(self, item: bytes | _Failed | None) -> None:
        if not self._slots and not isinstance(item, _Failed):
            if item is not None and not self.transport.is_closing():
                self.transport.write(item)
            return
        self._slots.append(item)
        self._flush()

    def _task_done(self, size: int, _task: asyncio.Task) -> None:
        self._waiting_bytes -= size
        self._flush()

    def _flush(self) -> None:
        """Write the responses at the head of the line that are ready; close at a failed one."""
        slots = self._slots
        out: list[bytes] = []
        failed = False
        while slots:
            head = slots[0]
            if isinstance(head, asyncio.Task):
                if not head.done():
                    break
                slots.popleft()
                if head.cancelled() or head.exception() is not None:
                    failed = True
                    break
                head = head.result()
            else:
                slots.popleft()
                if head is _FAILED:
                    failed = True
                    break
            if head is not None:
                out.append(head)
        transport = self.transport
        if out and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        if failed or (self._closing and not slots):
            self._abort()
            return
        self._maybe_resume()

    # -- flow control and timeouts ----------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self._read_paused and not self.transport.is_closing():
            self._read_paused = True
            self.transport.pause_reading()

    def _maybe_resume(self) -> None:
        if (
            self._read_paused
            and not self._write_paused
            and not self._closing
            and len(self._slots) < MAX_IN_FLIGHT_PER_CONNECTION
            and self._waiting_bytes < MAX_WAITING_REQUEST_BYTES
        ):
            self._read_paused = False
            self.transport.resume_reading()
            if self._buf:
                self._process()

    def _abort(self) -> None:
        self._closing = True
        for slot in self._slots:
            if isinstance(slot, asyncio.Task) and not slot.done():
                slot.cancel()
        self._slots.clear()
        if self.transport is not None:
            self.transport.close()

    def _check_idle(self) -> None:
        """connections.max.idle.ms: close a connection with nothing in flight and no traffic for that
        long; a frame must also arrive whole within it (a client trickling one byte per second cannot
        hold a request buffer open forever)."""
        if self._closing:
            return
        timeout = self.server.idle_timeout_s
        now = self.loop.time()
        if self._frame_started is not None and now - self._frame_started >= timeout:
            log.info("closing %s: request incomplete after %.0f s", self.peer, timeout)
            self._abort()
            return
        if not self._slots and now - self._last_activity >= timeout:
            log.info("closing %s: idle for %.0f s (connections_max_idle_ms)", self.peer, timeout)
            self._abort()
            return
        due = min(
            self._last_activity + timeout,
            self._frame_started + timeout if self._frame_started is not None else float("inf"),
        )
        self._idle_timer = self.loop.call_later(max(due - now, 0.05), self._check_idle)
