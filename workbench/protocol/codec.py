"""Kafka request/response framing over kafka-python's schema-generated codec.

I/O free, in the manner of h11: `decode_request(frame)` turns the bytes of one
size-delimited frame into a `Request`, and `encode_response(request, body)`
turns a response body into the bytes to send (size prefix included). No socket
appears here, so every rule is testable with byte strings.

Message layouts come from kafka-python 3's classes, which are generated from
Apache Kafka's own JSON message schemas (flexible versions and tagged fields
included), so we do not hand-write a single message layout. What this module
adds is what a *server* needs and a client library does not:

* the request header is parsed by hand (it is tiny and on the hot path), and
  its flexible-ness depends on the API and version, as in Kafka's
  `RequestHeaderData` (header v1 for non-flexible requests, v2 for flexible);
* the response header is v0 for non-flexible responses and v1 (a tagged field
  section) for flexible ones, **except ApiVersions, whose response header never
  carries tagged fields, even at v3** (KIP-511): one stray byte there and
  librdkafka misreads the body;
* response bodies may be given as plain dicts and lists, and are turned into
  the codec's data classes here, so handlers stay readable.
"""

from __future__ import annotations

import importlib
import inspect
import struct
from dataclasses import dataclass
from typing import Any, cast

from kafka.protocol.api_message import ApiMessage

from workbench.protocol.errors import MalformedRequestError
from workbench.protocol.fast_encode import FAST_ENCODERS

_HEADER = struct.Struct(">hhih")  # api_key, api_version, correlation_id, client_id length
_INT32 = struct.Struct(">i")

_CODEC_MODULES = (
    "kafka.protocol.admin",
    "kafka.protocol.consumer",
    "kafka.protocol.metadata",
    "kafka.protocol.producer",
    "kafka.protocol.sasl",
    "workbench.protocol.kip848",  # APIs kafka-python 3.0 lacks, from Kafka's JSON schemas
    "workbench.protocol.kip932",  # KIP-932 share groups, likewise
)


def _load_classes() -> tuple[dict[int, type[ApiMessage]], dict[int, type[ApiMessage]]]:
    requests: dict[int, type[ApiMessage]] = {}
    responses: dict[int, type[ApiMessage]] = {}
    for name in _CODEC_MODULES:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, ApiMessage) and getattr(obj, "_json", None):
                obj = cast(Any, obj)  # kafka-python's generated classes carry `type` and `API_KEY`
                table = requests if obj.type == "request" else responses
                table[obj.API_KEY] = obj
    return requests, responses


REQUEST_CLASSES, RESPONSE_CLASSES = _load_classes()


@dataclass(slots=True)
class Request:
    """One decoded request: header fields plus the codec's body object."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any  # a kafka-python ApiMessage instance, or None when the API is unknown to the codec
    size: int = 0
    raw: bytes = b""  # the undecoded body, kept only when `body` is None


def _read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise MalformedRequestError("truncated varint in request header")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise MalformedRequestError("varint too long in request header")


def is_flexible(api_key: int, api_version: int) -> bool:
    cls = REQUEST_CLASSES.get(api_key)
    return bool(cls is not None and cls.flexible_version_q(api_version))


def decode_request_header(frame: bytes | memoryview) -> tuple[int, int, int, str | None, int]:
    """Parse a request header; returns (api_key, api_version, correlation_id, client_id, body_offset).

    Works for any API key, known or not, so that an unsupported request can
    still be answered with its correlation id.
    """
    view = memoryview(frame)
    if len(view) < _HEADER.size:
        raise MalformedRequestError(f"request of {len(view)} bytes is shorter than a request header")
    api_key, api_version, correlation_id, client_len = _HEADER.unpack_from(view, 0)
    pos = _HEADER.size
    client_id: str | None = None
    if client_len >= 0:
        if pos + client_len > len(view):
            raise MalformedRequestError("client_id runs past the end of the request")
        client_id = bytes(view[pos : pos + client_len]).decode("utf-8", "replace")
        pos += client_len
    elif client_len != -1:
        raise MalformedRequestError(f"negative client_id length {client_len}")
    if is_flexible(api_key, api_version) and not (api_key == 18 and pos == len(view)):
        # Request header v2: a tagged-field section follows client_id. (An ApiVersions request of
        # a version we do not know may come without one; it is answered from the header alone.)
        count, pos = _read_uvarint(view, pos)
        for _ in range(count):
            _tag, pos = _read_uvarint(view, pos)
            size, pos = _read_uvarint(view, pos)
            pos += size
            if pos > len(view):
                raise MalformedRequestError("tagged field runs past the end of the request header")
    return api_key, api_version, correlation_id, client_id, pos


def decode_request(frame: bytes | memoryview, supported: dict[int, tuple[int, int]]) -> Request:
    """Decode one frame (without its 4-byte size prefix).

    A request for an API or version outside `supported` is returned with
    `body=None`; the caller answers it with UNSUPPORTED_VERSION. Bytes that do
    not parse raise `MalformedRequestError`.
    """
    api_key, api_version, correlation_id, client_id, pos = decode_request_header(frame)
    body = None
    versions = supported.get(api_key)
    if versions is not None and versions[0] <= api_version <= versions[1]:
        cls = REQUEST_CLASSES[api_key]
        view = memoryview(frame)[pos:]
        try:
            body = cls.decode(view, version=api_version)
        except MalformedRequestError:
            raise
        except Exception as exc:  # the codec raises assorted errors on garbage
            raise MalformedRequestError(
                f"cannot decode {cls.__name__} v{api_version}: {type(exc).__name__}: {exc}"
            ) from exc
    raw = bytes(memoryview(frame)[pos:]) if body is None else b""
    return Request(api_key, api_version, correlation_id, client_id, body, len(frame), raw)


def build(cls: Any, value: Any) -> Any:
    """Turn nested dicts/lists into the codec's data classes for `cls`."""
    if isinstance(value, dict):
        fields = cls._struct.fields
        kwargs = {}
        for name, item in value.items():
            field = fields.get(name)
            if field is None:
                raise KeyError(f"{cls.__name__} has no field {name!r}")
            if item is not None and field.is_struct_array():
                sub = field.data_class
                item = [build(sub, v) if isinstance(v, dict) else v for v in item]
            elif item is not None and field.is_struct() and isinstance(item, dict):
                item = build(field.data_class, item)
            kwargs[name] = item
        return cls(**kwargs)
    return value


def encode_response(api_key: int, api_version: int, correlation_id: int, body: Any) -> bytes:
    """Encode a response body (dict or codec object) with its header and size prefix."""
    if isinstance(body, dict):
        fast = FAST_ENCODERS.get(api_key)
        if fast is not None:
            frame = fast(api_version, correlation_id, body)
            if frame is not None:
                return frame
    cls = RESPONSE_CLASSES[api_key]
    if isinstance(body, dict):
        body = build(cls, body)
    payload = body.encode(version=api_version)
    flexible = cls.flexible_version_q(api_version) and api_key != 18  # ApiVersions: header v0 always
    header = _INT32.pack(correlation_id) + (b"\x00" if flexible else b"")
    return _INT32.pack(len(header) + len(payload)) + header + bytes(payload)


def encode_unsupported_api_versions(correlation_id: int, supported: dict[int, tuple[int, int]]) -> bytes:
    """ApiVersions answer for a version we do not speak: v0 layout, error 35, our ranges.

    This is what Kafka does (KIP-511) so a newer client can retry with a
    version both sides know.
    """
    body = {
        "error_code": 35,
        "api_keys": [{"api_key": k, "min_version": lo, "max_version": hi} for k, (lo, hi) in sorted(supported.items())],
    }
    return encode_response(18, 0, correlation_id, body)
