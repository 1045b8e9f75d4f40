"""Errors of the notebook API, in a module of their own so that the client façade, `Cluster` and
the widgets can all raise and catch them without importing each other."""

from __future__ import annotations


class ClusterError(RuntimeError):
    """The cluster could not do what was asked; the message says why and what to do."""


class ClusterStoppedError(ClusterError):
    """The embedded cluster was stopped (`cluster.stop()`): its brokers are gone, so nothing is
    sent and nothing is waited for; the message says how to get a running cluster again."""


class ProduceError(RuntimeError):
    """A record was not acknowledged by the cluster."""
