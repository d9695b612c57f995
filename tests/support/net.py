"""Free loopback TCP ports for servers that tests start.

A test port is drawn below the kernel's ephemeral range (``ip_local_port_range``): a port the
kernel handed out for bind(0) is also what it hands out as the local port of outgoing
connections, so one chosen that way can be taken, between the choice and the server's bind, by
any connection a test's processes open (EADDRINUSE). The embedded S3 picks its own ports with
``free_ports`` and retries on such a loss.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

from examples.embedded_s3 import LOOPBACK, free_ports

__all__ = ["LOOPBACK", "free_port", "free_ports", "port_is_listening"]

# Test ports are drawn from here up to the ephemeral range's start.
LOWEST_TEST_PORT = 20000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A loopback port below the ephemeral range that was free a moment ago; if none of a
    hundred draws binds, one the kernel picks."""
    top = _ephemeral_start()
    if top > LOWEST_TEST_PORT:
        for port in random.sample(range(LOWEST_TEST_PORT, top), min(100, top - LOWEST_TEST_PORT)):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    return free_ports(1)[0]


def port_is_listening(port: int, host: str = LOOPBACK, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
