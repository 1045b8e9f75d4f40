"""Access control: SASL authentication (PLAIN, SCRAM-SHA-256) and topic/group ACLs.

* `credentials`: salted SCRAM credentials (what brokers store instead of passwords);
* `sasl`: I/O-free server (and client) state machines for PLAIN and SCRAM-SHA-256;
* `authorizer`: the ACL check `(principal, operation, resource) -> allowed`;
* `enforce`: applies the authorizer to decoded requests and responses (the broker's hook).
"""
