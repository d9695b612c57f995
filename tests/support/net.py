"""Free loopback TCP ports for servers that tests start (the embedded S3 picks its own the same way)."""

from __future__ import annotations

import socket

from examples.embedded_s3 import LOOPBACK, free_ports

__all__ = ["LOOPBACK", "free_port", "free_ports", "port_is_listening"]


def free_port() -> int:
    return free_ports(1)[0]


def port_is_listening(port: int, host: str = LOOPBACK, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
