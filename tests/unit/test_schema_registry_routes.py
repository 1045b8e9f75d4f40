"""The REST routes over a registry applied in memory: Confluent's paths, bodies and error documents."""

from __future__ import annotations

import json

from workbench.schema_registry.registry import SchemaRegistry
from workbench.schema_registry.rest import Routes

V1 = json.dumps({"type": "record", "name": "U", "fields": [{"name": "a", "type": "string"}]})
V2 = json.dumps(
    {"type": "record", "name": "U", "fields": [{"name": "a", "type": "string"}, {"name": "b", "type": "int"}]}
)


def routes() -> Routes:
    return Routes(SchemaRegistry())


def test_register_get_and_lookup():
    r = routes()
    assert r.dispatch("POST", "/subjects/s/versions", {}, {"schema": V1}) == (200, {"id": 1})
    status, body = r.dispatch("GET", "/subjects/s/versions/latest", {}, None)
    assert status == 200 and (body["subject"], body["version"], body["id"]) == ("s", 1, 1)
    assert r.dispatch("GET", "/schemas/ids/1", {}, None) == (200, {"schema": V1.replace(" ", "")})
    assert r.dispatch("POST", "/subjects/s", {}, {"schema": V1})[1]["version"] == 1
    assert r.dispatch("GET", "/schemas/ids/1/versions", {}, None) == (200, [{"subject": "s", "version": 1}])
    assert r.dispatch("GET", "/schemas/types", {}, None) == (200, ["AVRO", "JSON", "PROTOBUF"])


def test_confluent_error_documents():
    r = routes()
    assert r.dispatch("GET", "/subjects/nope/versions", {}, None) == (
        404,
        {"error_code": 40401, "message": "Subject 'nope' not found."},
    )
    r.dispatch("POST", "/subjects/s/versions", {}, {"schema": V1})
    assert r.dispatch("GET", "/subjects/s/versions/0", {}, None)[1]["error_code"] == 42202
    assert r.dispatch("GET", "/subjects/s/versions/abc", {}, None)[1]["error_code"] == 42202
    assert r.dispatch("GET", "/subjects/s/versions/9", {}, None)[1]["error_code"] == 40402
    assert r.dispatch("POST", "/subjects/s/versions", {}, {"schema": "{"})[0:1] == (422,)
    assert r.dispatch("POST", "/subjects/s/versions", {}, {"schema": V2})[1]["error_code"] == 409
    assert r.dispatch("POST", "/subjects/s/versions", {}, {"schema": V1, "schemaType": "XML"})[1]["error_code"] == 42201
    assert r.dispatch("GET", "/config/s", {}, None)[1]["error_code"] == 40408
    assert r.dispatch("GET", "/mode/s", {}, None)[1]["error_code"] == 40409
    assert r.dispatch("PATCH", "/config", {}, None)[0] == 405
    assert r.dispatch("GET", "/nothing/here", {}, None)[0] == 404


def test_config_and_mode():
    r = routes()
    assert r.dispatch("GET", "/config", {}, None) == (200, {"compatibilityLevel": "BACKWARD"})
    assert r.dispatch("PUT", "/config/s", {}, {"compatibility": "full_transitive"}) == (
        200,
        {"compatibility": "FULL_TRANSITIVE"},
    )
    assert r.dispatch("GET", "/config/s", {}, None) == (200, {"compatibilityLevel": "FULL_TRANSITIVE"})
    assert r.dispatch("GET", "/config/t", {"defaultToGlobal": "true"}, None) == (
        200,
        {"compatibilityLevel": "BACKWARD"},
    )
    assert r.dispatch("DELETE", "/config/s", {}, None) == (200, {"compatibilityLevel": "FULL_TRANSITIVE"})
    assert r.dispatch("PUT", "/mode", {}, {"mode": "READONLY"}) == (200, {"mode": "READONLY"})
    assert r.dispatch("POST", "/subjects/s/versions", {}, {"schema": V1})[1]["error_code"] == 42205
    r.dispatch("PUT", "/mode", {}, {"mode": "IMPORT"})
    assert r.dispatch("POST", "/subjects/s/versions", {}, {"schema": V1, "id": 42, "version": 7}) == (200, {"id": 42})
    assert r.dispatch("GET", "/subjects/s/versions", {}, None) == (200, [7])


def test_references_resolve_and_block_deletes():
    r = routes()
    address = json.dumps({"type": "record", "name": "Address", "fields": [{"name": "city", "type": "string"}]})
    r.dispatch("POST", "/subjects/address/versions", {}, {"schema": address})
    person = json.dumps({"type": "record", "name": "Person", "fields": [{"name": "home", "type": "Address"}]})
    refs = [{"name": "Address", "subject": "address", "version": 1}]
    status, body = r.dispatch("POST", "/subjects/person/versions", {}, {"schema": person, "references": refs})
    assert status == 200, body
    assert r.dispatch("GET", "/subjects/address/versions/1/referencedby", {}, None) == (200, [body["id"]])
    assert r.dispatch("DELETE", "/subjects/address/versions/1", {}, None)[1]["error_code"] == 42206
    missing = [{"name": "Address", "subject": "address", "version": 5}]
    assert r.dispatch("POST", "/subjects/p2/versions", {}, {"schema": person, "references": missing})[0] == 422
