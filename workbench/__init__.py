"""workbench: a Jupyter-first Kafka workbench.

    from workbench import Cluster
    cluster = Cluster(brokers=3)          # broker processes speaking the Kafka protocol
    cluster.create_topic("orders", partitions=6)

    import workbench
    remote = workbench.connect("kafka:9092")   # the same API for a cluster started elsewhere
"""

from workbench.client import Consumer, Delivery, KafkaConnection, Producer, Record, connect
from workbench.cluster import Cluster, ClusterError
from workbench.sql.magic import load_ipython_extension

__all__ = ["Cluster", "ClusterError", "Consumer", "Delivery", "KafkaConnection", "Producer", "Record", "connect",
           "load_ipython_extension"]
__version__ = "0.1.0"
