"""Notebook widgets (ipywidgets 8, no front-end build): produce, browse, list topics with
their rates, monitor groups, watch the cluster, run SQL; `Dashboard` puts them in tabs.

    from workbench.widgets import Dashboard
    Dashboard(cluster)            # or cluster.dashboard()

Each widget talks to the brokers only through the Kafka protocol (the connection's
producer, consumer and admin clients) and the SQL layer, so it works the same with
`workbench.connect(...)` to a cluster started elsewhere (kill/restart buttons are shown
only for an embedded `Cluster`). Live parts run on background threads that stop with
`.close()` or when the cluster stops.
"""

from workbench.widgets.browser import TopicBrowser
from workbench.widgets.burrow import BurrowEvaluator
from workbench.widgets.cluster_view import ClusterView
from workbench.widgets.dashboard import Dashboard
from workbench.widgets.groups import GroupMonitor
from workbench.widgets.producer import ProducerPanel
from workbench.widgets.sql_panel import SqlPanel
from workbench.widgets.topic_overview import TopicOverview
from workbench.widgets.transactions import TransactionsPanel

__all__ = [
    "BurrowEvaluator",
    "ClusterView",
    "Dashboard",
    "GroupMonitor",
    "ProducerPanel",
    "SqlPanel",
    "TopicBrowser",
    "TopicOverview",
    "TransactionsPanel",
]
