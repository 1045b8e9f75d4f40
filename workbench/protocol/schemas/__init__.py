"""Apache Kafka JSON message schemas that kafka-python 3.0's codec lacks.

Copied from Apache Kafka's clients/src/main/resources/common/message (Apache
License 2.0) and loaded by kafka-python's own schema machinery (see
`workbench.protocol.kip848`), so no message layout is hand-written.

The KIP-932 schemas (Share*.json) are Kafka 4.1's; where the stored copy we could read was an older
revision, its `validVersions` line was brought to 4.1's (the stable v1, ShareFetch/ShareAcknowledge
1-2), keeping the fields of the newest revision available (librdkafka 2.16's ShareConsumer decodes
what the broker sends with them, tests/integration/test_share_groups.py).
"""
