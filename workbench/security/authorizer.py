"""`Authorizer`: may this principal perform this operation on this resource?

ACLs come from the cluster config, one dict each, in the spirit of Kafka's
`kafka-acls.sh`:

    {"principal": "User:alice", "operation": "Read", "topic": "orders"}
    {"principal": "User:alice", "operation": "Read", "group": "billing"}
    {"principal": "User:bob", "operation": "Write", "topic": "logs-", "pattern_type": "prefixed"}
    {"principal": "User:*", "operation": "Describe", "topic": "*"}
    {"principal": "User:ops", "operation": "Create", "cluster": True}
    {"principal": "User:eve", "operation": "All", "topic": "*", "permission": "Deny"}

Rules are Kafka's (`AclAuthorizer`): with ACLs enabled everything not allowed
is denied; a matching Deny beats any Allow; super users (and the brokers'
own `User:broker`) may do anything; `All` matches every operation; Read,
Write, Delete and Alter imply Describe, and AlterConfigs implies
DescribeConfigs. Topic creation is allowed by Create on the cluster or on the
topic.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.security.credentials import BROKER_USER

OPERATIONS = (
    "Read",
    "Write",
    "Create",
    "Delete",
    "Alter",
    "Describe",
    "DescribeConfigs",
    "AlterConfigs",
    "ClusterAction",
    "IdempotentWrite",
    "All",
)
RESOURCE_TYPES = ("topic", "group", "cluster")
BROKER_PRINCIPAL = f"User:{BROKER_USER}"
ANONYMOUS = "User:ANONYMOUS"
_IMPLIES = {"Describe": {"Read", "Write", "Delete", "Alter"}, "DescribeConfigs": {"AlterConfigs"}}


@dataclass(frozen=True)
class Acl:
    principal: str
    operation: str
    resource_type: str
    name: str
    prefixed: bool = False
    allow: bool = True

    def matches(self, principal: str, operations: set[str], resource_type: str, name: str) -> bool:
        if self.resource_type != resource_type:
            return False
        if self.principal != "User:*" and self.principal != principal:
            return False
        if self.operation != "All" and self.operation not in operations:
            return False
        if self.resource_type == "cluster" or self.name == "*":
            return True
        return name.startswith(self.name) if self.prefixed else name == self.name


def parse_acl(entry: dict) -> Acl:
    if not isinstance(entry, dict):
        raise ValueError(
            f"an ACL is a dict such as {{'principal': 'User:alice', 'operation': 'Read', "
            f"'topic': 'orders'}}, not {entry!r}"
        )
    principal = entry.get("principal")
    if not isinstance(principal, str) or not principal.startswith("User:") or len(principal) < 6:
        raise ValueError(f"ACL {entry}: principal must look like 'User:alice' (or 'User:*')")
    operation = entry.get("operation")
    match = {op.lower(): op for op in OPERATIONS}.get(str(operation).lower())
    if match is None:
        raise ValueError(f"ACL {entry}: operation must be one of {', '.join(OPERATIONS)}")
    kinds = [k for k in RESOURCE_TYPES if k in entry]
    if len(kinds) != 1:
        raise ValueError(f"ACL {entry}: name exactly one resource: 'topic', 'group' or 'cluster'")
    kind = kinds[0]
    name = "kafka-cluster" if kind == "cluster" else entry[kind]
    if not isinstance(name, str) or not name:
        raise ValueError(f"ACL {entry}: the {kind} name must be a non-empty string ('*' for all)")
    pattern = str(entry.get("pattern_type", "literal")).lower()
    if pattern not in ("literal", "prefixed"):
        raise ValueError(f"ACL {entry}: pattern_type must be 'literal' or 'prefixed'")
    permission = str(entry.get("permission", "Allow")).lower()
    if permission not in ("allow", "deny"):
        raise ValueError(f"ACL {entry}: permission must be 'Allow' or 'Deny'")
    unknown = set(entry) - {"principal", "operation", "pattern_type", "permission", kind}
    if unknown:
        raise ValueError(f"ACL {entry}: unknown keys {sorted(unknown)}")
    return Acl(principal, match, kind, name, pattern == "prefixed", permission == "allow")


class Authorizer:
    """`acls=None` disables authorization (everything allowed), as with no authorizer in Kafka."""

    def __init__(self, acls: list[dict] | None = None, super_users: list[str] | None = None) -> None:
        self.enabled = acls is not None
        self.acls = [parse_acl(a) for a in (acls or [])]
        self.super_users = set(super_users or []) | {BROKER_PRINCIPAL}
        for su in self.super_users:
            if not isinstance(su, str) or not su.startswith("User:"):
                raise ValueError(f"super user {su!r} must look like 'User:admin'")

    def authorize(self, principal: str, operation: str, resource_type: str, name: str = "kafka-cluster") -> bool:
        if not self.enabled or principal in self.super_users:
            return True
        operations = {operation} | _IMPLIES.get(operation, set())
        matching = [a for a in self.acls if a.matches(principal, operations, resource_type, name)]
        if any(not a.allow for a in matching if a.operation in (operation, "All")):
            return False
        return any(a.allow for a in matching)

    def can_create_topic(self, principal: str, topic: str) -> bool:
        return self.authorize(principal, "Create", "cluster") or self.authorize(principal, "Create", "topic", topic)

    def has_any(self, principal: str, operation: str, resource_type: str) -> bool:
        """Is some resource of this type open to the principal for `operation` (KIP-679 idempotence)?"""
        if not self.enabled or principal in self.super_users:
            return True
        return any(
            a.allow
            and a.resource_type == resource_type
            and a.operation in (operation, "All")
            and a.principal in (principal, "User:*")
            for a in self.acls
        )
