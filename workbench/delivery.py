"""`Delivery`: where an acknowledged record landed (topic, partition, offset).

What a produce acknowledgment tells the client, shared by the client façade
(`Producer.send(..., wait=True)`) and the producer panel, in a module of its own so that
widgets need not import `workbench.client` (which builds widgets).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Delivery:
    """Where an acknowledged record landed."""

    topic: str
    partition: int
    offset: int
