"""A Confluent-compatible schema registry: REST API, `_schemas` storage, compatibility per format.

The registry is its own process (`python -m workbench.schema_registry`), started by
`Cluster(schema_registry=True)`: other processes (a second kernel, kcat, a Java client)
reach it over HTTP for as long as the cluster runs, whatever happens to the kernel's
threads, and it dies with its parent as brokers do. It keeps nothing on local disk: its
state is the compacted, replicated `_schemas` topic, read and written with confluent-kafka
through the Kafka protocol (Confluent's model), so it survives a broker SIGKILL and
restarts with everything it had acknowledged.

Modules: `registry` (state and rules), `store` (`_schemas`), `records` (its key/value JSON),
`rest` (HTTP routes), `compatibility` (levels), `avro` / `json_schema` / `protobuf` (formats),
`process` (start and stop the process), `wire` (the Confluent wire format of values).
"""
