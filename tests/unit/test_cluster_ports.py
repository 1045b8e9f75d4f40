"""Listening ports are picked outside the kernel's ephemeral range.

A broker's port taken from bind(0) lies in the ephemeral range; while that broker is down (killed by
a test or the chaos harness) any outgoing connection may take it as its source port, and the restart
fails with EADDRINUSE (seen in the chaos CI mix). Ports below the range are never handed out implicitly.
"""

from __future__ import annotations

import socket

from workbench.cluster import _LISTEN_PORT_FLOOR, _ephemeral_range, _free_port


def test_free_ports_are_below_the_ephemeral_range_and_bindable():
    low, _ = _ephemeral_range()
    ports = {_free_port() for _ in range(50)}
    assert all(_LISTEN_PORT_FLOOR <= p < low for p in ports), sorted(ports)
    for p in list(ports)[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))
