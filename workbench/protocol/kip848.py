"""KIP-848 message classes (ConsumerGroupHeartbeat 68, ConsumerGroupDescribe 69).

kafka-python 3.0 has no classes for these APIs, so they are declared here the
way kafka-python declares its own: an `ApiMessage` subclass per message, whose
layout kafka-python's schema machinery builds from Apache Kafka's JSON message
schema (in `workbench.protocol.schemas`). I/O-free, like the rest of the codec.
"""

from __future__ import annotations

from kafka.protocol.api_message import ApiMessage

_SCHEMAS = "workbench.protocol.schemas"

__all__ = [
    "ConsumerGroupDescribeRequest",
    "ConsumerGroupDescribeResponse",
    "ConsumerGroupHeartbeatRequest",
    "ConsumerGroupHeartbeatResponse",
]


class ConsumerGroupHeartbeatRequest(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class ConsumerGroupHeartbeatResponse(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class ConsumerGroupDescribeRequest(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class ConsumerGroupDescribeResponse(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass
