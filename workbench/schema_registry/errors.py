"""Confluent Schema Registry's REST errors: HTTP status plus `error_code` and `message`.

The codes are the ones Confluent's clients switch on (io.confluent.kafka.schemaregistry.
rest.exceptions.Errors); `confluent_kafka.schema_registry.SchemaRegistryError` carries them.
"""

from __future__ import annotations


class RestError(Exception):
    """An error the REST layer answers as `{"error_code": code, "message": message}`."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def subject_not_found(subject: str) -> RestError:
    return RestError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(subject: str, version: object) -> RestError:
    return RestError(404, 40402, f"Version {version} not found.")


def schema_not_found(detail: str = "Schema not found") -> RestError:
    return RestError(404, 40403, detail)


def subject_soft_deleted(subject: str) -> RestError:
    return RestError(404, 40404, f"Subject '{subject}' was soft deleted.Set permanent=true to delete permanently")


def subject_not_soft_deleted(subject: str) -> RestError:
    return RestError(404, 40405, f"Subject '{subject}' was not deleted first before being permanently deleted")


def version_soft_deleted(subject: str, version: int) -> RestError:
    return RestError(
        404,
        40406,
        f"Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently",
    )


def version_not_soft_deleted(subject: str, version: int) -> RestError:
    return RestError(
        404,
        40407,
        f"Subject '{subject}' Version {version} was not deleted first before being permanently deleted",
    )


def subject_level_compatibility_not_configured(subject: str) -> RestError:
    return RestError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")


def subject_level_mode_not_configured(subject: str) -> RestError:
    return RestError(404, 40409, f"Subject '{subject}' does not have subject-level mode configured")


def incompatible_schema(messages: list[str]) -> RestError:
    return RestError(
        409, 409, "Schema being registered is incompatible with an earlier schema for subject: " + "; ".join(messages)
    )


def invalid_schema(detail: str) -> RestError:
    return RestError(422, 42201, f"Invalid schema: {detail}")


def invalid_version(version: object) -> RestError:
    return RestError(
        422,
        42202,
        f"The specified version '{version}' is not a valid version id. Allowed values are between "
        '[1, 2^31-1] and the string "latest"',
    )


def invalid_compatibility_level(level: object) -> RestError:
    return RestError(
        422,
        42203,
        f"Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, "
        f"forward_transitive, and full_transitive: {level!r}",
    )


def invalid_mode(mode: object) -> RestError:
    return RestError(422, 42204, f"Invalid mode. Valid values are READWRITE, READONLY, IMPORT: {mode!r}")


def operation_not_permitted(detail: str) -> RestError:
    return RestError(422, 42205, detail)


def reference_exists(detail: str) -> RestError:
    return RestError(422, 42206, detail)


def store_error(detail: str) -> RestError:
    return RestError(500, 50001, f"Error in the backend data store: {detail}")


def operation_timeout(detail: str) -> RestError:
    return RestError(500, 50002, f"Operation timed out: {detail}")
