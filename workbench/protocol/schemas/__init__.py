"""Apache Kafka JSON message schemas that kafka-python 3.0's codec lacks.

Copied from Apache Kafka's clients/src/main/resources/common/message (Apache
License 2.0) and loaded by kafka-python's own schema machinery (see
`workbench.protocol.kip848`), so no message layout is hand-written.
"""
