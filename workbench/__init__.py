"""workbench: a Jupyter-first Kafka workbench.

    from workbench import Cluster
    cluster = Cluster(brokers=3)          # broker processes speaking the Kafka protocol
    cluster.create_topic("orders", partitions=6)

    import workbench
    remote = workbench.connect("kafka:9092")   # the same API for a cluster started elsewhere

Names are imported on first use, so a broker process (`python -m workbench.broker`)
never loads the notebook side (pandas, DuckDB, widgets): it starts faster and smaller.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

__version__ = "0.1.0"

# A library's loggers stay quiet unless the application configures logging: without a handler,
# Python's last-resort handler would print every warning (librdkafka's "Connect to ... failed:
# Connection refused" while a broker is down, via `workbench.kafka`) to stderr, under whichever
# notebook cell happens to run.
logging.getLogger("workbench").addHandler(logging.NullHandler())

_EXPORTS = {
    "Cluster": "workbench.cluster",
    "ClusterError": "workbench.cluster",
    "ClusterStoppedError": "workbench.cluster",
    "Consumer": "workbench.client",
    "Delivery": "workbench.delivery",
    "KafkaConnection": "workbench.client",
    "Producer": "workbench.client",
    "Record": "workbench.client",
    "connect": "workbench.client",
    "load_ipython_extension": "workbench.sql.magic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
