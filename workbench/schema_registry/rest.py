"""The REST API of Confluent Schema Registry over `SchemaRegistry` (stdlib HTTP server, one thread a request).

Routes, bodies, status codes, `error_code`s and the `application/vnd.schemaregistry.v1+json`
content type follow Confluent's API reference (docs.confluent.io, "Schema Registry API"),
which is what `confluent_kafka.schema_registry.SchemaRegistryClient` speaks. Not served:
contexts other than the default, schema GUIDs, metadata/rule sets, `/exporters`, `/dek`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from workbench.schema_registry import errors
from workbench.schema_registry.formats import FORMATS
from workbench.schema_registry.registry import SchemaRegistry, parse_version

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
#: A schema document bigger than this is refused (Confluent has no limit of its own; a
#: request body is read whole into memory, so it needs one).
MAX_BODY = 8 * 1024 * 1024

Handler = Callable[..., Any]


def _true(query: dict[str, str], name: str) -> bool:
    return query.get(name, "false").lower() == "true"


class Routes:
    """Maps (method, path) to `SchemaRegistry` calls; I/O-free, so tests can call `dispatch` directly."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.r = registry
        S = r"(?P<subject>[^/]+)"
        V = r"(?P<version>[^/]+)"
        self.table: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", re.compile(r"/?"), lambda q, b: {}),
            ("GET", re.compile(r"/schemas/types"), lambda q, b: sorted(FORMATS)),
            ("GET", re.compile(r"/schemas/ids/(?P<id>\d+)"), self.schema_by_id),
            ("GET", re.compile(r"/schemas/ids/(?P<id>\d+)/schema"), self.raw_schema_by_id),
            ("GET", re.compile(r"/schemas/ids/(?P<id>\d+)/subjects"), self.subjects_by_id),
            ("GET", re.compile(r"/schemas/ids/(?P<id>\d+)/versions"), self.versions_by_id),
            ("GET", re.compile(r"/schemas"), self.all_schemas),
            ("GET", re.compile(r"/contexts"), lambda q, b: ["."]),
            ("GET", re.compile(r"/subjects"), self.subjects),
            ("GET", re.compile(rf"/subjects/{S}/versions"), self.versions),
            ("POST", re.compile(rf"/subjects/{S}/versions"), self.register),
            ("GET", re.compile(rf"/subjects/{S}/versions/{V}"), self.version),
            ("GET", re.compile(rf"/subjects/{S}/versions/{V}/schema"), self.raw_version),
            ("GET", re.compile(rf"/subjects/{S}/versions/{V}/referencedby"), self.referenced_by),
            ("DELETE", re.compile(rf"/subjects/{S}/versions/{V}"), self.delete_version),
            ("POST", re.compile(rf"/subjects/{S}"), self.lookup),
            ("DELETE", re.compile(rf"/subjects/{S}"), self.delete_subject),
            ("POST", re.compile(rf"/compatibility/subjects/{S}/versions/{V}"), self.compatible),
            ("POST", re.compile(rf"/compatibility/subjects/{S}/versions"), self.compatible_all),
            ("GET", re.compile(r"/config"), lambda q, b: {"compatibilityLevel": self.r.compatibility(None)}),
            ("PUT", re.compile(r"/config"), lambda q, b: self.put_config(None, b)),
            ("DELETE", re.compile(r"/config"), lambda q, b: {"compatibilityLevel": self.r.delete_compatibility(None)}),
            ("GET", re.compile(rf"/config/{S}"), self.get_config),
            ("PUT", re.compile(rf"/config/{S}"), lambda q, b, subject: self.put_config(subject, b)),
            ("DELETE", re.compile(rf"/config/{S}"), self.delete_config),
            ("GET", re.compile(r"/mode"), lambda q, b: {"mode": self.r.mode(None)}),
            ("PUT", re.compile(r"/mode"), lambda q, b: self.put_mode(None, b)),
            ("GET", re.compile(rf"/mode/{S}"), self.get_mode),
            ("PUT", re.compile(rf"/mode/{S}"), lambda q, b, subject: self.put_mode(subject, b)),
            ("DELETE", re.compile(rf"/mode/{S}"), lambda q, b, subject: {"mode": self.r.delete_mode(subject)}),
        ]

    def dispatch(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        """(status, JSON body) for one request; a `RestError` becomes Confluent's error document."""
        path = path.rstrip("/") or "/"
        allowed = False
        for m, pattern, handler in self.table:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if m != method:
                allowed = True
                continue
            kwargs = {k: unquote(v) for k, v in match.groupdict().items()}
            try:
                return 200, handler(query, body, **kwargs)
            except errors.RestError as exc:
                return exc.status, {"error_code": exc.code, "message": exc.message}
        if allowed:
            return 405, {"error_code": 405, "message": "HTTP 405 Method Not Allowed"}
        return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}

    # -- schemas by id ------------------------------------------------------------------------------

    def schema_by_id(self, q: dict, b: Any, id: str) -> dict:
        v = self.r.by_id(int(id), q.get("subject"))[0]
        out: dict[str, Any] = {}
        if v.schema_type != "AVRO":
            out["schemaType"] = v.schema_type
        if v.references:
            out["references"] = v.references
        out["schema"] = v.schema
        return out

    def raw_schema_by_id(self, q: dict, b: Any, id: str) -> Any:
        return _RawJson(self.r.by_id(int(id), q.get("subject"))[0].schema)

    def subjects_by_id(self, q: dict, b: Any, id: str) -> list[str]:
        deleted = _true(q, "deleted")
        return sorted({v.subject for v in self.r.by_id(int(id)) if deleted or not v.deleted})

    def versions_by_id(self, q: dict, b: Any, id: str) -> list[dict]:
        deleted = _true(q, "deleted")
        return [
            {"subject": v.subject, "version": v.version}
            for v in sorted(self.r.by_id(int(id)), key=lambda v: (v.subject, v.version))
            if deleted or not v.deleted
        ]

    def all_schemas(self, q: dict, b: Any) -> list[dict]:
        out = []
        for s in self.r.subjects(deleted=_true(q, "deleted"), prefix=q.get("subjectPrefix", "")):
            if _true(q, "latestOnly"):
                out.append(self.r.get_version(s, "latest").as_json())
            else:
                out += [self.r.get_version(s, n).as_json() for n in self.r.version_numbers(s)]
        return out

    # -- subjects -----------------------------------------------------------------------------------

    def subjects(self, q: dict, b: Any) -> list[str]:
        return self.r.subjects(deleted=_true(q, "deleted"), prefix=q.get("subjectPrefix", ""))

    def versions(self, q: dict, b: Any, subject: str) -> list[int]:
        return self.r.version_numbers(subject, deleted=_true(q, "deleted"))

    def version(self, q: dict, b: Any, subject: str, version: str) -> dict:
        return self.r.get_version(subject, parse_version(version), deleted=_true(q, "deleted")).as_json()

    def raw_version(self, q: dict, b: Any, subject: str, version: str) -> Any:
        return _RawJson(self.r.get_version(subject, parse_version(version), deleted=_true(q, "deleted")).schema)

    def referenced_by(self, q: dict, b: Any, subject: str, version: str) -> list[int]:
        v = self.r.get_version(subject, parse_version(version))
        return self.r.referenced_by(subject, v.version)

    @staticmethod
    def _schema_request(b: Any) -> tuple[str, Any, list]:
        if not isinstance(b, dict) or "schema" not in b:
            raise errors.RestError(422, 42201, 'Invalid schema: the request body needs a "schema" string')
        refs = b.get("references") or []
        if not isinstance(refs, list):
            raise errors.invalid_schema('"references" must be a list')
        schema_type = b.get("schemaType") or "AVRO"
        return str(schema_type).upper(), b["schema"], refs

    def register(self, q: dict, b: Any, subject: str) -> dict:
        schema_type, text, refs = self._schema_request(b)
        v = self.r.register(subject, schema_type, text, refs, schema_id=b.get("id"), version=b.get("version"))
        return {"id": v.id}

    def lookup(self, q: dict, b: Any, subject: str) -> dict:
        schema_type, text, refs = self._schema_request(b)
        return self.r.lookup(subject, schema_type, text, refs, deleted=_true(q, "deleted")).as_json()

    def delete_version(self, q: dict, b: Any, subject: str, version: str) -> int:
        return self.r.delete_version(subject, parse_version(version), permanent=_true(q, "permanent"))

    def delete_subject(self, q: dict, b: Any, subject: str) -> list[int]:
        return self.r.delete_subject(subject, permanent=_true(q, "permanent"))

    # -- compatibility ------------------------------------------------------------------------------

    def compatible(self, q: dict, b: Any, subject: str, version: str) -> dict:
        schema_type, text, refs = self._schema_request(b)
        new = self.r.parse(schema_type, text, refs)
        try:
            against = [self.r.get_version(subject, parse_version(version))]
        except errors.RestError as exc:
            if exc.code == 40401 or (exc.code == 40402 and version in ("latest", "-1")):
                return {"is_compatible": True}
            raise
        level = self.r.compatibility(subject)
        # Against one given version: the level's direction, without transitivity.
        messages = self.r.check(subject, new, level.removesuffix("_TRANSITIVE"), against)
        return self._compat_answer(q, messages)

    def compatible_all(self, q: dict, b: Any, subject: str) -> dict:
        schema_type, text, refs = self._schema_request(b)
        new = self.r.parse(schema_type, text, refs)
        try:
            numbers = self.r.version_numbers(subject)
        except errors.RestError:
            return {"is_compatible": True}
        against = [self.r.get_version(subject, n) for n in numbers]
        level = self.r.compatibility(subject)
        if not level.endswith("_TRANSITIVE") and level != "NONE":
            level += "_TRANSITIVE"
        return self._compat_answer(q, self.r.check(subject, new, level, against))

    @staticmethod
    def _compat_answer(q: dict, messages: list[str]) -> dict:
        out: dict[str, Any] = {"is_compatible": not messages}
        if _true(q, "verbose"):
            out["messages"] = messages
        return out

    # -- config and mode ----------------------------------------------------------------------------

    def get_config(self, q: dict, b: Any, subject: str) -> dict:
        if subject not in self.r.configs and not _true(q, "defaultToGlobal"):
            raise errors.subject_level_compatibility_not_configured(subject)
        return {"compatibilityLevel": self.r.compatibility(subject)}

    def put_config(self, subject: str | None, b: Any) -> dict:
        level = b.get("compatibility", b.get("compatibilityLevel")) if isinstance(b, dict) else None
        return {"compatibility": self.r.set_compatibility(subject, level)}

    def delete_config(self, q: dict, b: Any, subject: str) -> dict:
        return {"compatibilityLevel": self.r.delete_compatibility(subject)}

    def get_mode(self, q: dict, b: Any, subject: str) -> dict:
        if subject not in self.r.modes and not _true(q, "defaultToGlobal"):
            raise errors.subject_level_mode_not_configured(subject)
        return {"mode": self.r.mode(subject)}

    def put_mode(self, subject: str | None, b: Any) -> dict:
        return {"mode": self.r.set_mode(subject, b.get("mode") if isinstance(b, dict) else None)}


class _RawJson(str):
    """A handler's answer that is already JSON text (a raw schema)."""


def make_server(routes: Routes, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server answering `routes`; `server.server_address[1]` is the port it bound."""

    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "workbench-schema-registry"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

        def _handle(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            body: Any = None
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, {"error_code": 413, "message": f"request body over {MAX_BODY} bytes"})
                self.close_connection = True
                return
            if length:
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._send(400, {"error_code": 400, "message": "the request body is not JSON"})
                    return
            try:
                status, answer = routes.dispatch(self.command, url.path, query, body)
            except Exception as exc:  # a bug here must not take the registry down
                log.exception("%s %s failed", self.command, self.path)
                status, answer = 500, {"error_code": 500, "message": f"internal error: {exc}"}
            self._send(status, answer)

        def _send(self, status: int, answer: Any) -> None:
            data = (answer if isinstance(answer, _RawJson) else json.dumps(answer)).encode()
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    server = ThreadingHTTPServer((host, port), RequestHandler)
    server.daemon_threads = True
    return server
