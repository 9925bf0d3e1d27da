"""Free loopback TCP ports for the servers mercato starts itself (engines, gateways, Redis, peers)."""

from __future__ import annotations

import contextlib
import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host``."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports free right now on ``host``.

    The sockets stay bound until all are chosen: asked one at a time, the kernel may hand out a
    port it has just released again (seen: an engine's KV-events port equal to its HTTP port).
    """
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in socks:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
