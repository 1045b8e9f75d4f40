"""`SchemaRegistry`: subjects, versions, ids, configs and modes, rebuilt from the `_schemas` log.

The state is a pure function of the `_schemas` records applied in offset order (`apply`),
as in Confluent's `KafkaStoreMessageHandler`: the registry writes a record, waits until its
own reader has applied it, and only then answers the REST call. So what a client was told
is in the replicated topic, and a restarted registry (or one started after a broker
SIGKILL) re-reads the same state. Writes are serialised by one lock: this process is the
only writer (Confluent's leader), which is what makes `max id + 1` a safe id.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from workbench.schema_registry import errors, records
from workbench.schema_registry.compatibility import DEFAULT_LEVEL, LEVELS, incompatibilities
from workbench.schema_registry.formats import FORMATS, InvalidSchema

MODES = ("READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT")
MAX_VERSION = 2**31 - 1


class Store(Protocol):
    """Where records go: `put` returns once the record is replicated and applied here."""

    def put(self, key: bytes, value: bytes | None) -> None: ...


@dataclass
class Version:
    subject: str
    version: int
    id: int
    schema_type: str
    schema: str
    references: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"subject": self.subject, "version": self.version, "id": self.id}
        if self.schema_type != "AVRO":
            out["schemaType"] = self.schema_type
        if self.references:
            out["references"] = self.references
        out["schema"] = self.schema
        return out


def parse_version(text: str | int) -> int | str:
    """A path's version: a positive int, or "latest" (also -1)."""
    if text in ("latest", "-1", -1):
        return "latest"
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise errors.invalid_version(text) from None
    if not 1 <= v <= MAX_VERSION:
        raise errors.invalid_version(text)
    return v


class SchemaRegistry:
    """The registry's state and rules; `apply` feeds it from the log, the other methods serve REST."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self._state = threading.RLock()
        self._write = threading.Lock()
        self.versions: dict[str, dict[int, Version]] = {}
        self.configs: dict[str | None, str] = {}
        self.modes: dict[str | None, str] = {}
        self.max_id = 0
        self.on_change: Callable[[], None] | None = None

    # -- the log ------------------------------------------------------------------------------------

    def apply(self, key_bytes: bytes | None, value_bytes: bytes | None) -> None:
        """Apply one `_schemas` record (unknown or malformed ones are skipped, as Confluent does)."""
        try:
            key = records.decode(key_bytes)
            value = records.decode(value_bytes)
        except ValueError:
            return
        if key is None:
            return
        kind = key.get("keytype")
        subject: Any = key.get("subject")
        with self._state:
            if kind == "SCHEMA":
                version = int(key["version"])
                if value is None:
                    self.versions.get(subject, {}).pop(version, None)
                    if subject in self.versions and not self.versions[subject]:
                        del self.versions[subject]
                    return
                v = Version(
                    value["subject"],
                    int(value["version"]),
                    int(value["id"]),
                    value.get("schemaType") or "AVRO",
                    value["schema"],
                    list(value.get("references") or []),
                    bool(value.get("deleted", False)),
                )
                self.versions.setdefault(v.subject, {})[v.version] = v
                self.max_id = max(self.max_id, v.id)
            elif kind == "CONFIG":
                if value is None:
                    self.configs.pop(subject, None)
                else:
                    self.configs[subject] = value["compatibilityLevel"]
            elif kind == "MODE":
                if value is None:
                    self.modes.pop(subject, None)
                else:
                    self.modes[subject] = value["mode"]
            elif kind == "DELETE_SUBJECT" and value is not None:
                for v in self.versions.get(subject, {}).values():
                    if v.version <= int(value["version"]):
                        v.deleted = True
            elif kind == "CLEAR_SUBJECT" and value is not None:
                self.versions.pop(subject, None)

    def _put(self, key: bytes, value: bytes | None) -> None:
        if self.store is None:
            self.apply(key, value)
            return
        self.store.put(key, value)

    # -- reads --------------------------------------------------------------------------------------

    def subjects(self, deleted: bool = False, prefix: str = "") -> list[str]:
        with self._state:
            return sorted(
                s
                for s, vs in self.versions.items()
                if s.startswith(prefix) and any(deleted or not v.deleted for v in vs.values())
            )

    def _live(self, subject: str, deleted: bool = False) -> list[Version]:
        vs = self.versions.get(subject)
        if not vs:
            raise errors.subject_not_found(subject)
        out = [v for _, v in sorted(vs.items()) if deleted or not v.deleted]
        if not out:
            raise errors.subject_not_found(subject)
        return out

    def version_numbers(self, subject: str, deleted: bool = False) -> list[int]:
        with self._state:
            return [v.version for v in self._live(subject, deleted)]

    def get_version(self, subject: str, version: int | str, deleted: bool = False) -> Version:
        with self._state:
            live = self._live(subject, deleted)
            if version == "latest":
                return live[-1]
            v = self.versions[subject].get(int(version))
            if v is None or (v.deleted and not deleted):
                raise errors.version_not_found(subject, version)
            return v

    def by_id(self, schema_id: int, subject: str | None = None) -> list[Version]:
        """Every version (deleted ones included, as Confluent serves ids of soft-deleted schemas) with this id."""
        with self._state:
            out = [v for vs in self.versions.values() for v in vs.values() if v.id == schema_id]
            if subject is not None and any(v.subject == subject for v in out):
                out = [v for v in out if v.subject == subject] + [v for v in out if v.subject != subject]
            if not out:
                raise errors.schema_not_found(f"Schema {schema_id} not found")
            return out

    def referenced_by(self, subject: str, version: int) -> list[int]:
        with self._state:
            return sorted(
                {
                    v.id
                    for vs in self.versions.values()
                    for v in vs.values()
                    if not v.deleted
                    and any(r.get("subject") == subject and int(r.get("version", -1)) == version for r in v.references)
                }
            )

    def compatibility(self, subject: str | None) -> str:
        with self._state:
            if subject is not None and subject in self.configs:
                return self.configs[subject]
            return self.configs.get(None, DEFAULT_LEVEL)

    def mode(self, subject: str | None) -> str:
        with self._state:
            if subject is not None and subject in self.modes:
                return self.modes[subject]
            return self.modes.get(None, "READWRITE")

    # -- parsing ------------------------------------------------------------------------------------

    def _reference_texts(self, references: list[dict[str, Any]], depth: int = 0) -> list[tuple[str, str]]:
        """`(name, schema text)` of every reference, theirs first, in dependency order."""
        if depth > 32:
            raise errors.invalid_schema("references nest deeper than 32 levels (a cycle?)")
        out: list[tuple[str, str]] = []
        for ref in references:
            if not isinstance(ref, dict) or not {"name", "subject", "version"} <= ref.keys():
                raise errors.invalid_schema(f"a reference needs name, subject and version: {ref!r}")
            try:
                target = self.get_version(ref["subject"], parse_version(ref["version"]))
            except errors.RestError:
                raise errors.invalid_schema(
                    f"reference {ref['name']!r} names subject {ref['subject']!r} version {ref['version']}, "
                    "which is not registered"
                ) from None
            out += self._reference_texts(target.references, depth + 1)
            out.append((ref["name"], target.schema))
        return out

    def parse(self, schema_type: str, text: Any, references: list[dict[str, Any]]) -> Any:
        fmt = FORMATS.get(schema_type)
        if fmt is None:
            raise RestError_unknown_type(schema_type)
        if not isinstance(text, str):
            raise errors.invalid_schema('the request\'s "schema" must be a string')
        try:
            return fmt.parse(text, self._reference_texts(references))
        except InvalidSchema as exc:
            raise errors.invalid_schema(str(exc)) from None

    def _parsed(self, v: Version) -> Any:
        return self.parse(v.schema_type, v.schema, v.references)

    def check(self, subject: str, new: Any, level: str, against: list[Version]) -> list[str]:
        fmt = FORMATS[new.schema_type]
        previous = [self._parsed(v) for v in against if v.schema_type == new.schema_type]
        if len(previous) != len(against):
            return [f"schema type {new.schema_type} differs from the subject's earlier versions"]
        return incompatibilities(level, fmt.can_read, new, previous)

    # -- writes -------------------------------------------------------------------------------------

    def _writable(self, subject: str | None) -> str:
        mode = self.mode(subject)
        if mode.startswith("READONLY"):
            raise errors.operation_not_permitted(f"Subject {subject} is in read-only mode")
        return mode

    def _find(self, subject: str, new: Any, references: list, deleted: bool = False) -> Version | None:
        for v in sorted(self.versions.get(subject, {}).values(), key=lambda v: v.version):
            same_kind = (deleted or not v.deleted) and v.schema_type == new.schema_type and v.references == references
            if same_kind and (v.schema == new.canonical or self._parsed(v).canonical == new.canonical):
                return v
        return None

    def lookup(self, subject: str, schema_type: str, text: Any, references: list, deleted: bool = False) -> Version:
        with self._state:
            self._live(subject, deleted)  # 40401 for an unknown (or wholly deleted) subject
            new = self.parse(schema_type, text, references)
            found = self._find(subject, new, references, deleted)
            if found is None:
                raise errors.schema_not_found()
            return found

    def register(
        self,
        subject: str,
        schema_type: str,
        text: Any,
        references: list,
        schema_id: int | None = None,
        version: int | None = None,
    ) -> Version:
        """Register under `subject` (same schema again: the existing version), checking compatibility."""
        with self._write:
            mode = self._writable(subject)
            with self._state:
                new = self.parse(schema_type, text, references)
                existing = self._find(subject, new, references)
                if existing is not None and schema_id in (None, existing.id):
                    return existing
                if mode != "IMPORT":
                    if schema_id is not None or version is not None:
                        raise errors.operation_not_permitted(
                            "Registering a schema with a given id or version needs IMPORT mode"
                        )
                    live = [v for v in self.versions.get(subject, {}).values() if not v.deleted]
                    live.sort(key=lambda v: v.version)
                    problems = self.check(subject, new, self.compatibility(subject), live)
                    if problems:
                        raise errors.incompatible_schema(problems)
                all_versions = self.versions.get(subject, {})
                if version is None:
                    version = max(all_versions, default=0) + 1
                if schema_id is None:
                    same = [
                        v
                        for vs in self.versions.values()
                        for v in vs.values()
                        if v.schema_type == new.schema_type and v.references == references and v.schema == new.canonical
                    ]
                    schema_id = same[0].id if same else self.max_id + 1
                else:
                    clash = [
                        v
                        for vs in self.versions.values()
                        for v in vs.values()
                        if v.id == schema_id and v.schema != new.canonical
                    ]
                    if clash:
                        raise errors.RestError(
                            422, 42205, f"Overwrite new schema with id {schema_id} is not permitted."
                        )
            self._put(
                records.schema_key(subject, version),
                records.schema_value(subject, version, schema_id, new.schema_type, new.canonical, references, False),
            )
            return self.get_version(subject, version)

    def delete_version(self, subject: str, version: int | str, permanent: bool) -> int:
        with self._write:
            self._writable(subject)
            with self._state:
                v = self.get_version(subject, version, deleted=True)
                if version == "latest":
                    v = self._live(subject)[-1]
                if permanent and not v.deleted:
                    raise errors.version_not_soft_deleted(subject, v.version)
                if not permanent and v.deleted:
                    raise errors.version_soft_deleted(subject, v.version)
                if self.referenced_by(subject, v.version):
                    raise errors.reference_exists(
                        f"One or more references exist to the schema {{subject={subject},version={v.version}}}."
                    )
            if permanent:
                self._put(records.schema_key(subject, v.version), None)
            else:
                self._put(
                    records.schema_key(subject, v.version),
                    records.schema_value(subject, v.version, v.id, v.schema_type, v.schema, v.references, True),
                )
            return v.version

    def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        with self._write:
            self._writable(subject)
            with self._state:
                vs = self.versions.get(subject)
                if not vs:
                    raise errors.subject_not_found(subject)
                live = [v for v in vs.values() if not v.deleted]
                if permanent and live:
                    raise errors.subject_not_soft_deleted(subject)
                if not permanent and not live:
                    raise errors.subject_soft_deleted(subject)
                for v in live:
                    if self.referenced_by(subject, v.version):
                        raise errors.reference_exists(
                            f"One or more references exist to the schema {{subject={subject},version={v.version}}}."
                        )
                numbers = sorted(vs)
            if permanent:
                for n in numbers:
                    self._put(records.schema_key(subject, n), None)
                if subject in self.configs:
                    self._put(records.config_key(subject), None)
                if subject in self.modes:
                    self._put(records.mode_key(subject), None)
                return numbers
            self._put(records.delete_subject_key(subject), records.delete_subject_value(subject, max(numbers)))
            return sorted(v.version for v in live)

    def set_compatibility(self, subject: str | None, level: Any) -> str:
        if not isinstance(level, str) or level.upper() not in LEVELS:
            raise errors.invalid_compatibility_level(level)
        with self._write:
            self._writable(subject)
            self._put(records.config_key(subject), records.config_value(level.upper()))
        return level.upper()

    def delete_compatibility(self, subject: str | None) -> str:
        with self._write:
            with self._state:
                if subject is not None and subject not in self.configs:
                    raise errors.subject_level_compatibility_not_configured(subject)
                previous = self.compatibility(subject)
            self._put(records.config_key(subject), None)
            return previous

    def set_mode(self, subject: str | None, mode: Any) -> str:
        if not isinstance(mode, str) or mode.upper() not in MODES:
            raise errors.invalid_mode(mode)
        with self._write:
            self._put(records.mode_key(subject), records.mode_value(mode.upper()))
        return mode.upper()

    def delete_mode(self, subject: str) -> str:
        with self._write:
            with self._state:
                if subject not in self.modes:
                    raise errors.subject_level_mode_not_configured(subject)
                previous = self.modes[subject]
            self._put(records.mode_key(subject), None)
            return previous


def RestError_unknown_type(schema_type: object) -> errors.RestError:
    return errors.invalid_schema(f"unknown schema type {schema_type!r}; the types are {sorted(FORMATS)}")
