"""systemd's service notification protocol: readiness, watchdog pings and stopping, as datagrams
of ``KEY=VALUE`` lines sent to the unix socket named by $NOTIFY_SOCKET (sd_notify(3),
https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html). Outside systemd
(no $NOTIFY_SOCKET) every call does nothing."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends notifications to the service manager named by ``environ`` (the process's by default).

    ``watchdog_interval_s``: how often to send WATCHDOG=1 (half of $WATCHDOG_USEC, as sd_watchdog_enabled(3)
    advises), or None when no watchdog is asked of this process.
    """

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        # A leading '@' names a socket in the abstract namespace.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval_s: float | None = None
        usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval_s = int(usec) / 2e6
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, state: str) -> None:
        """Send ``state`` (e.g. ``READY=1``); a failure is logged once, never raised: the service
        manager's absence must not stop the daemon."""
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(state.encode(), self._address)
        except OSError as error:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at $NOTIFY_SOCKET %s: %s", self._address, error.strerror or error)
