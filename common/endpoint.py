"""The operator's HTTP endpoint of both programs (``--metrics-listen``): ``/metrics`` in
Prometheus' text format, ``/healthz`` and ``/readyz``.

Served by the standard library's WSGI server on its own threads, with prometheus-client's
exposition for ``/metrics``. A health check is a callable that returns None when healthy and a
one-line reason when not; it runs on a server thread, so it must not block for long.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, disable_created_metrics, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer


# A check answers with None (healthy) or the reason it is not, in one line.
Check = Callable[[], "str | None"]

# The paths served besides /metrics: Kubernetes' names, which most supervisors also know.
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"


class _Server(ThreadingWSGIServer):
    """One thread per request (a slow check does not hold the next scrape), IPv6 when asked."""

    def __init__(self, address: tuple[str, int], handler: type[WSGIRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: a scrape every few seconds is not news."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


class OperatorEndpoint:
    """``/metrics`` of ``registry`` and the ``checks`` (path -> Check) on ``host``:``port``, from
    ``start`` until ``stop``. A check that is healthy gives 200 ``ok``; one that is not gives 503
    and its reason; one that raises gives 503 and the error, as does a collector that raises.
    Other paths: 404."""

    def __init__(self, registry: CollectorRegistry, checks: Mapping[str, Check]) -> None:
        disable_created_metrics()  # no `_created` series beside each counter: nothing reads them
        self._metrics = make_wsgi_app(registry)
        self._checks = dict(checks)
        self._server: _Server | None = None

    def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen and serve on a daemon thread; returns the address bound (port 0 picks one).
        Raises OSError when the address cannot be bound."""
        self._server = make_server(host, port, self._app, server_class=_Server, handler_class=_QuietHandler)
        threading.Thread(target=self._server.serve_forever, name="operator-endpoint", daemon=True).start()
        bound = self._server.server_address
        return str(bound[0]), int(bound[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        check = self._checks.get(path)
        if check is None:
            if path == "/metrics":
                try:
                    return self._metrics(environ, start_response)
                except Exception as error:  # a figure that cannot be read (the spool does not answer)
                    return _answer(start_response, "503 Service Unavailable",
                                   f"metrics cannot be read: {type(error).__name__}: {error}")
            return _answer(start_response, "404 Not Found", "not found: try /metrics, "
                           + ", ".join(sorted(self._checks)))
        try:
            reason = check()
        except Exception as error:  # the answer is the error: a check must never kill the server
            reason = f"check failed: {type(error).__name__}: {error}"
        if reason is None:
            return _answer(start_response, "200 OK", "ok")
        return _answer(start_response, "503 Service Unavailable", reason)


def _answer(start_response: Callable[..., Any], status: str, text: str) -> list[bytes]:
    body = (text + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [body]
