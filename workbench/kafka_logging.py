"""Where librdkafka's log lines go.

confluent-kafka clients print librdkafka's logs ("Connect to ... failed:
Connection refused") straight to stderr, which a notebook shows in red under
whatever cell runs while a broker is down. Every client the workbench creates
passes this logger instead, so those lines reach Python logging (quiet unless
configured: the `workbench` logger has a NullHandler, see `workbench/__init__.py`).
"""

import logging

KAFKA_LOGGER = logging.getLogger("workbench.kafka")
