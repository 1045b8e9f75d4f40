"""`WireClient`: a minimal blocking Kafka-protocol client.

Used where the notebook side needs a request the client libraries do not
expose (Metadata with leader epochs, ListOffsets for the log end offset), and
by tests that need exact bytes on the wire. Request and response layouts come
from kafka-python's schema-generated classes; batches from aiokafka's record
builder, as a real producer makes them.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

from aiokafka.record.default_records import DefaultRecordBatchBuilder


class WireClient:
    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.correlation_id = 0

    @classmethod
    def to(cls, bootstrap: str) -> WireClient:
        host, port = bootstrap.split(",")[0].rsplit(":", 1)
        return cls(host, int(port))

    def send_raw(self, payload: bytes) -> None:
        self.sock.sendall(payload)

    def recv_frame(self) -> bytes:
        head = self._recv_exactly(4)
        (size,) = struct.unpack(">i", head)
        return self._recv_exactly(size)

    def _recv_exactly(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by the broker")
            buf += chunk
        return buf

    def request(self, request: Any, version: int) -> Any:
        """Send a kafka-python request object at `version`; return the decoded response."""
        self.correlation_id += 1
        request.API_VERSION = version
        request.with_header(correlation_id=self.correlation_id, client_id="wire-test")
        self.sock.sendall(bytes(request.encode(header=True, framed=True)))
        frame = self.recv_frame()
        (cid,) = struct.unpack_from(">i", frame)
        assert cid == self.correlation_id
        response_cls = request.header.get_response_class()
        offset = 4 + (1 if response_cls.flexible_version_q(version) and request.API_KEY != 18 else 0)
        return response_cls.decode(frame[offset:], version=version)

    def is_closed(self, wait: float = 2.0) -> bool:
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, OSError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def make_batch(
    values: list[bytes],
    *,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    key: bytes | None = None,
    transactional: bool = False,
) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=int(transactional),
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        batch_size=1 << 24,
    )
    now = int(time.time() * 1000)
    for i, value in enumerate(values):
        builder.append(i, timestamp=now, key=key, value=value, headers=[])
    return bytes(builder.build())
