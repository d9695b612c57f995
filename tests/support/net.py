"""Free loopback TCP ports for servers that tests start.

A test port is drawn below the kernel's ephemeral range (``ip_local_port_range``): a port the
kernel handed out for bind(0) is also what it hands out as the local port of outgoing
connections, so one chosen that way can be taken, between the choice and the server's bind, by
any connection a test's processes open (EADDRINUSE). The embedded S3 picks its own ports with
``free_ports`` and retries on such a loss.

Each pytest-xdist worker draws from a slice of its own, in order, and never hands a port out
twice: a port chosen for a daemon that binds it only later cannot be chosen meanwhile for
another server, by this worker or the other.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
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


def _worker_ports() -> Iterator[int]:
    """This worker's slice of the test ports, in order, then again from its start."""
    top = _ephemeral_start()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker) if worker.isdigit() else 0
    size = max(0, top - LOWEST_TEST_PORT) // max(1, workers)
    first = LOWEST_TEST_PORT + index * size
    return itertools.cycle(range(first, first + size))


_ports = _worker_ports()


def free_port() -> int:
    """A loopback port below the ephemeral range, from this worker's slice, that was free a
    moment ago and was not handed out before (unless the slice has wrapped round); if none of a
    hundred draws binds, one the kernel picks."""
    for port in itertools.islice(_ports, 100):
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
