"""The broker's security hook: who is on each connection, and what they may do.

`Security(config)` is built once per broker from its `BrokerConfig`:

* `sasl`: a `SaslServerFactory` when `sasl_mechanisms` is set (the listener then
  requires authentication), else None (a PLAINTEXT listener, every client is
  `User:ANONYMOUS`);
* `authorizer`: ACL checks, enabled when `acls` is set (deny by default);
* `supported_apis`: what ApiVersions advertises (SaslHandshake/SaslAuthenticate
  only when SASL is on).

`authorized_call(view, call, request, principal)` wraps every request handler:
it splits each request into the topics/groups the principal may touch and the
rest, lets the handler serve the first part, and answers the rest with
TOPIC_/GROUP_/CLUSTER_AUTHORIZATION_FAILED in the response's own shape, as
Kafka's `KafkaApis` does. Handlers therefore need no security code. Metadata
and ListGroups leave out what the principal may not describe.

This package does not import `workbench.broker`: `Security` reads its settings
from anything shaped like `SecurityConfig`, is told the advertised API versions,
and the hook sees the broker as a `BrokerView` (the metadata image and a way to
refresh it) with the handler already bound to its request (`call`).

Inter-broker traffic: brokers authenticate as `User:broker` with a secret the
`Cluster` generates per run; that principal is a super user. Replica fetches
(`replica_id >= 0`) need ClusterAction (brokers and super users), the private
controller request (API key 10000) is refused to anyone but `User:broker`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from workbench.protocol.api_keys import ApiKey
from workbench.protocol.errors import ErrorCode
from workbench.security.authorizer import BROKER_PRINCIPAL, Authorizer
from workbench.security.credentials import BROKER_USER
from workbench.security.sasl import CredentialStore, SaslServerFactory

if TYPE_CHECKING:
    from workbench.controller.image import MetadataImage
    from workbench.protocol.codec import Request

SASL_HANDSHAKE, SASL_AUTHENTICATE = ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE
SASL_APIS: dict[int, tuple[int, int]] = {SASL_HANDSHAKE: (0, 1), SASL_AUTHENTICATE: (0, 2)}
TOPIC_DENIED = ErrorCode.TOPIC_AUTHORIZATION_FAILED
GROUP_DENIED = ErrorCode.GROUP_AUTHORIZATION_FAILED
CLUSTER_DENIED = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4


def load_security_file(path: str | None) -> dict[str, Any]:
    """Settings kept out of the command line (readable by other local users via `ps`)."""
    if not path:
        return {}
    return json.loads(Path(path).read_text())


class SecurityConfig(Protocol):
    """The broker settings security reads (`workbench.broker.config.BrokerConfig` has them)."""

    @property
    def sasl_mechanisms(self) -> list[str]: ...
    @property
    def scram_credentials(self) -> dict[str, dict]: ...
    @property
    def inter_broker_secret(self) -> str | None: ...
    @property
    def acls(self) -> list[dict] | None: ...
    @property
    def super_users(self) -> list[str]: ...


class BrokerView(Protocol):
    """What the hook needs of the broker: the metadata image, and a way to catch it up."""

    @property
    def image(self) -> MetadataImage: ...

    def refresh_metadata(self) -> None: ...


Call = Callable[[], Awaitable[Any]]  # the request's handler, bound to the broker, request and connection


class Security:
    """One broker's SASL listener settings, ACLs and advertised APIs (see the module doc)."""

    def __init__(self, config: SecurityConfig, supported_apis: dict[int, tuple[int, int]]) -> None:
        mechanisms = list(config.sasl_mechanisms or [])
        self.sasl: SaslServerFactory | None = None
        if mechanisms:
            store = CredentialStore(config.scram_credentials, config.inter_broker_secret)
            self.sasl = SaslServerFactory(mechanisms, store)
        self.authorizer = Authorizer(config.acls, config.super_users)
        if self.sasl is not None and not config.inter_broker_secret:
            raise ValueError("a SASL listener needs inter_broker_secret for the brokers' own connections")
        if self.authorizer.enabled and self.sasl is None:
            raise ValueError("ACLs need authenticated users: set sasl_mechanisms and users as well")
        self.supported_apis = dict(supported_apis)
        if self.sasl is not None:
            self.supported_apis.update(SASL_APIS)
        self.inter_broker_secret = config.inter_broker_secret or ""  # required (checked above) with SASL
        self.inter_broker_mechanism = ""
        if self.sasl is not None:
            self.inter_broker_mechanism = "SCRAM-SHA-256" if "SCRAM-SHA-256" in mechanisms else "PLAIN"

    def inter_broker_login(self) -> tuple[str, str, str] | None:
        """How this broker authenticates to the others: (mechanism, "broker", secret), or None."""
        if self.sasl is None:
            return None
        return self.inter_broker_mechanism, BROKER_USER, self.inter_broker_secret

    @property
    def enabled(self) -> bool:
        return self.sasl is not None

    def may_call_controller(self, principal: str) -> bool:
        return self.sasl is None or principal == BROKER_PRINCIPAL

    def may_fetch_as_replica(self, principal: str) -> bool:
        if self.sasl is None or principal == BROKER_PRINCIPAL:
            return True
        return self.authorizer.enabled and self.authorizer.authorize(principal, "ClusterAction", "cluster")

    async def authorized_call(self, view: BrokerView, call: Call, req: Request, principal: str) -> Any:
        """Serve `req` through `call` (its handler), answering what `principal` may not do with
        the API's own authorization error and leaving out of listings what it may not describe."""
        key = req.api_key
        if key == ApiKey.API_VERSIONS:
            body = await call()
            if self.sasl is not None and isinstance(body, dict):
                body["api_keys"] = [
                    {"api_key": k, "min_version": lo, "max_version": hi}
                    for k, (lo, hi) in sorted(self.supported_apis.items())
                ]
            return body
        if (
            key == ApiKey.FETCH
            and req.api_version <= 14
            and req.body.replica_id >= 0
            and not self.may_fetch_as_replica(principal)
        ):
            return await _fetch(call, req, lambda _t: False)
        az = self.authorizer
        if not az.enabled:
            return await call()
        rule = _RULES.get(key)
        if rule is None:
            return await call()
        return await rule(view, call, req, az, principal)


# -- the rules -------------------------------------------------------------------------------------
#
# A rule gets (view, call, req, az, principal): it narrows `req.body` to what the principal may
# touch, awaits `call()` for that part and adds the denied part to the response, or answers alone.

Rule = Callable[[BrokerView, Call, "Request", Authorizer, str], Awaitable[Any]]
T = TypeVar("T")


def _split(items: Iterable[T] | None, allowed: Callable[[T], bool]) -> tuple[list[T], list[T]]:
    yes: list[T] = []
    no: list[T] = []
    for item in items or []:
        (yes if allowed(item) else no).append(item)
    return yes, no


def _denied(
    name: str,
    indexes: Iterable[int],
    *,
    code: int = TOPIC_DENIED,
    name_field: str = "name",
    list_field: str = "partitions",
    index_field: str = "partition_index",
    **fields: Any,
) -> dict[str, Any]:
    """One topic of a response, every partition answered `code`: the shape every per-partition
    API shares (the field names differ per API; `fields` are the API's other per-partition values)."""
    return {name_field: name, list_field: [{index_field: i, "error_code": code, **fields} for i in indexes]}


# -- topics ----------------------------------------------------------------------------------------


async def _metadata(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    everything = body.topics is None or (req.api_version == 0 and not body.topics)
    if everything:
        resp = await call()
        resp["topics"] = [t for t in resp["topics"] if az.authorize(p, "Describe", "topic", t["name"])]
        return resp
    view.refresh_metadata()
    denied, unknown, allowed = [], [], []
    for t in body.topics:
        if not az.authorize(p, "Describe", "topic", t.name):
            denied.append(t)
        elif t.name not in view.image.topics and not az.can_create_topic(p, t.name):
            unknown.append(t)  # may see it, may not auto-create it
        else:
            allowed.append(t)
    body.topics = allowed
    names = {t.name for t in allowed}
    resp = await call()
    resp["topics"] = [t for t in resp["topics"] if t["name"] in names]
    for t, code in [(t, TOPIC_DENIED) for t in denied] + [(t, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION) for t in unknown]:
        resp["topics"].append(
            {
                "error_code": code,
                "name": t.name,
                "topic_id": uuid.UUID(int=0),
                "is_internal": False,
                "partitions": [],
            }
        )
    return resp


async def _produce(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    body.topic_data, denied = _split(body.topic_data, lambda t: az.authorize(p, "Write", "topic", t.name))
    resp = await call()
    if resp is None:
        return None
    resp["responses"].extend(
        _denied(
            t.name,
            (pd.index for pd in t.partition_data),
            list_field="partition_responses",
            index_field="index",
            base_offset=-1,
            log_append_time_ms=-1,
            log_start_offset=-1,
            record_errors=[],
            error_message="not authorized to write",
        )
        for t in denied
    )
    return resp


async def _fetch(call: Call, req: Request, allowed: Callable[[str], bool]) -> Any:
    body = req.body
    body.topics, denied = _split(body.topics, lambda t: allowed(t.topic))
    resp = await call()
    resp["responses"].extend(
        _denied(
            t.topic,
            (fp.partition for fp in t.partitions),
            name_field="topic",
            high_watermark=-1,
            last_stable_offset=-1,
            log_start_offset=-1,
            aborted_transactions=None,
            preferred_read_replica=-1,
            records=b"",
        )
        for t in denied
    )
    return resp


async def _fetch_rule(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    return await _fetch(call, req, lambda name: az.authorize(p, "Read", "topic", name))


async def _list_offsets(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    body.topics, denied = _split(body.topics, lambda t: az.authorize(p, "Describe", "topic", t.name))
    resp = await call()
    resp["topics"].extend(
        _denied(t.name, (lp.partition_index for lp in t.partitions), timestamp=-1, offset=-1, leader_epoch=-1)
        for t in denied
    )
    return resp


async def _delete_records(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    body.topics, denied = _split(body.topics, lambda t: az.authorize(p, "Delete", "topic", t.name))
    resp = await call()
    resp["topics"].extend(
        _denied(t.name, (dp.partition_index for dp in t.partitions), low_watermark=-1) for t in denied
    )
    return resp


async def _create_topics(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    body.topics, denied = _split(body.topics, lambda t: az.can_create_topic(p, t.name))
    resp = await call()
    for t in denied:
        resp["topics"].append(
            {
                "name": t.name,
                "topic_id": uuid.UUID(int=0),
                "error_code": TOPIC_DENIED,
                "error_message": f"not authorized to create topic {t.name}",
                "num_partitions": -1,
                "replication_factor": -1,
                "configs": None,
            }
        )
    return resp


async def _delete_topics(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    by_id = {uuid.UUID(hex=t.id): name for name, t in view.image.topics.items()}

    def name_of(t: Any) -> str:
        return t.name or by_id.get(t.topic_id, "")

    denied: list[tuple[str, uuid.UUID]]
    if req.api_version >= 6:
        body.topics, refused = _split(body.topics, lambda t: az.authorize(p, "Delete", "topic", name_of(t)))
        denied = [(name_of(t), t.topic_id) for t in refused]
    else:
        body.topic_names, refused_names = _split(body.topic_names, lambda n: az.authorize(p, "Delete", "topic", n))
        denied = [(n, uuid.UUID(int=0)) for n in refused_names]
    resp = await call()
    for name, topic_id in denied:
        resp["responses"].append(
            {
                "name": name,
                "topic_id": topic_id or uuid.UUID(int=0),
                "error_code": TOPIC_DENIED,
                "error_message": "not authorized to delete",
            }
        )
    return resp


async def _create_partitions(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    body.topics, denied = _split(body.topics, lambda t: az.authorize(p, "Alter", "topic", t.name))
    resp = await call()
    for t in denied:
        resp["results"].append({"name": t.name, "error_code": TOPIC_DENIED, "error_message": "not authorized"})
    return resp


def _config_allowed(az: Authorizer, p: str, res: Any, operation: str) -> bool:
    if res.resource_type == RESOURCE_TOPIC:
        return az.authorize(p, operation, "topic", res.resource_name)
    return az.authorize(p, operation, "cluster")


def _config_denied(res: Any) -> dict[str, Any]:
    code = TOPIC_DENIED if res.resource_type == RESOURCE_TOPIC else CLUSTER_DENIED
    return {
        "error_code": code,
        "error_message": "not authorized",
        "resource_type": res.resource_type,
        "resource_name": res.resource_name,
    }


async def _describe_configs(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    body.resources, denied = _split(body.resources, lambda r: _config_allowed(az, p, r, "DescribeConfigs"))
    resp = await call()
    resp["results"].extend({**_config_denied(r), "configs": []} for r in denied)
    return resp


async def _alter_configs(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    body.resources, denied = _split(body.resources, lambda r: _config_allowed(az, p, r, "AlterConfigs"))
    resp = await call()
    resp["responses"].extend(_config_denied(r) for r in denied)
    return resp


async def _elect_leaders(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    if az.authorize(p, "Alter", "cluster"):
        return await call()
    results = [
        _denied(
            t.topic,
            t.partitions,
            code=CLUSTER_DENIED,
            name_field="topic",
            list_field="partition_result",
            index_field="partition_id",
            error_message="not authorized",
        )
        for t in (req.body.topic_partitions or [])
    ]
    return {"throttle_time_ms": 0, "error_code": CLUSTER_DENIED, "replica_election_results": results}


async def _init_producer_id(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    # KIP-679: idempotence needs Write on some topic (or IdempotentWrite on the cluster).
    if (
        req.body.transactional_id is not None
        or az.has_any(p, "Write", "topic")
        or az.authorize(p, "IdempotentWrite", "cluster")
    ):
        return await call()
    return {"throttle_time_ms": 0, "error_code": CLUSTER_DENIED, "producer_id": -1, "producer_epoch": -1}


# -- groups ----------------------------------------------------------------------------------------


def _group_ok(az: Authorizer, p: str, op: str, group: str | None) -> bool:
    return az.authorize(p, op, "group", group or "")


async def _find_coordinator(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    key_type = body.key_type if req.api_version >= 1 else 0
    if key_type != 0:
        return await call()
    denied_entry = {
        "error_code": GROUP_DENIED,
        "error_message": "not authorized to describe this group",
        "node_id": -1,
        "host": "",
        "port": -1,
    }
    if req.api_version >= 4:
        body.coordinator_keys, denied = _split(body.coordinator_keys, lambda k: _group_ok(az, p, "Describe", k))
        resp = await call()
        resp["coordinators"].extend({**denied_entry, "key": k} for k in denied)
        return resp
    if _group_ok(az, p, "Describe", body.key):
        return await call()
    return {"throttle_time_ms": 0, **denied_entry}


def _group_rule(operation: str, denied_response: Callable[[Request], dict[str, Any]]) -> Rule:
    async def rule(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
        if _group_ok(az, p, operation, req.body.group_id):
            return await call()
        return denied_response(req)

    return rule


_join_denied = _group_rule(
    "Read",
    lambda req: {
        "throttle_time_ms": 0,
        "error_code": GROUP_DENIED,
        "generation_id": -1,
        "protocol_type": None,
        "protocol_name": None if req.api_version >= 7 else "",
        "leader": "",
        "member_id": req.body.member_id or "",
        "members": [],
    },
)
_sync_denied = _group_rule("Read", lambda req: {"throttle_time_ms": 0, "error_code": GROUP_DENIED, "assignment": b""})
_heartbeat_denied = _group_rule("Read", lambda req: {"throttle_time_ms": 0, "error_code": GROUP_DENIED})
_leave_denied = _group_rule("Read", lambda req: {"throttle_time_ms": 0, "error_code": GROUP_DENIED, "members": []})


async def _offset_commit(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    if not _group_ok(az, p, "Read", body.group_id):
        return {
            "throttle_time_ms": 0,
            "topics": [
                _denied(t.name, (x.partition_index for x in t.partitions), code=GROUP_DENIED) for t in body.topics
            ],
        }
    body.topics, denied = _split(body.topics, lambda t: az.authorize(p, "Read", "topic", t.name))
    resp = await call()
    resp["topics"].extend(_denied(t.name, (x.partition_index for x in t.partitions)) for t in denied)
    return resp


def _filter_offsets(topics: list[dict], explicit: bool, az: Authorizer, p: str) -> list[dict]:
    out = []
    for t in topics:
        if az.authorize(p, "Describe", "topic", t["name"]):
            out.append(t)
        elif explicit:
            out.append(
                {
                    **t,
                    "partitions": [{**x, "committed_offset": -1, "error_code": TOPIC_DENIED} for x in t["partitions"]],
                }
            )
    return out


async def _offset_fetch(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    if req.api_version >= 8:
        body.groups, denied = _split(body.groups, lambda g: _group_ok(az, p, "Describe", g.group_id))
        explicit = {g.group_id: g.topics is not None for g in body.groups}
        resp = await call()
        for g in resp["groups"]:
            g["topics"] = _filter_offsets(g["topics"], explicit.get(g["group_id"], False), az, p)
        resp["groups"].extend({"group_id": g.group_id, "error_code": GROUP_DENIED, "topics": []} for g in denied)
        return resp
    if not _group_ok(az, p, "Describe", body.group_id):
        topics = []
        if req.api_version < 2 and body.topics:
            topics = [
                _denied(t.name, t.partition_indexes, code=GROUP_DENIED, committed_offset=-1, metadata="")
                for t in body.topics
            ]
        return {"throttle_time_ms": 0, "topics": topics, "error_code": GROUP_DENIED}
    resp = await call()
    resp["topics"] = _filter_offsets(resp["topics"], body.topics is not None, az, p)
    return resp


async def _list_groups(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    resp = await call()
    if not az.authorize(p, "Describe", "cluster"):
        resp["groups"] = [g for g in resp["groups"] if _group_ok(az, p, "Describe", g["group_id"])]
    return resp


async def _describe_groups(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    body.groups, denied = _split(body.groups, lambda g: _group_ok(az, p, "Describe", g))
    resp = await call()
    resp["groups"].extend(
        {
            "error_code": GROUP_DENIED,
            "group_id": g,
            "group_state": "",
            "protocol_type": "",
            "protocol_data": "",
            "members": [],
        }
        for g in denied
    )
    return resp


async def _delete_groups(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    body.groups_names, denied = _split(body.groups_names, lambda g: _group_ok(az, p, "Delete", g))
    resp = await call()
    resp["results"].extend({"group_id": g, "error_code": GROUP_DENIED} for g in denied)
    return resp


async def _offset_delete(view: BrokerView, call: Call, req: Request, az: Authorizer, p: str) -> Any:
    body = req.body
    if not _group_ok(az, p, "Delete", body.group_id):
        return {"error_code": GROUP_DENIED, "throttle_time_ms": 0, "topics": []}
    body.topics, denied = _split(body.topics, lambda t: az.authorize(p, "Read", "topic", t.name))
    resp = await call()
    resp["topics"].extend(_denied(t.name, (x.partition_index for x in t.partitions)) for t in denied)
    return resp


_RULES: dict[int, Rule] = {
    ApiKey.METADATA: _metadata,
    ApiKey.PRODUCE: _produce,
    ApiKey.FETCH: _fetch_rule,
    ApiKey.LIST_OFFSETS: _list_offsets,
    ApiKey.DELETE_RECORDS: _delete_records,
    ApiKey.CREATE_TOPICS: _create_topics,
    ApiKey.DELETE_TOPICS: _delete_topics,
    ApiKey.CREATE_PARTITIONS: _create_partitions,
    ApiKey.DESCRIBE_CONFIGS: _describe_configs,
    ApiKey.ALTER_CONFIGS: _alter_configs,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: _alter_configs,
    ApiKey.ELECT_LEADERS: _elect_leaders,
    ApiKey.INIT_PRODUCER_ID: _init_producer_id,
    ApiKey.FIND_COORDINATOR: _find_coordinator,
    ApiKey.JOIN_GROUP: _join_denied,
    ApiKey.SYNC_GROUP: _sync_denied,
    ApiKey.HEARTBEAT: _heartbeat_denied,
    ApiKey.LEAVE_GROUP: _leave_denied,
    ApiKey.OFFSET_COMMIT: _offset_commit,
    ApiKey.OFFSET_FETCH: _offset_fetch,
    ApiKey.LIST_GROUPS: _list_groups,
    ApiKey.DESCRIBE_GROUPS: _describe_groups,
    ApiKey.DELETE_GROUPS: _delete_groups,
    ApiKey.OFFSET_DELETE: _offset_delete,
}
