"""An HTTP proxy on a free loopback port in front of S3 that answers chosen requests itself.

For the replies a real S3 (or the load balancer or CDN in front of one) gives but the embedded
SeaweedFS never does on its own: a 502 with an HTML body, a 503 SlowDown, a 504, a reply lost
after S3 did the work (``Answer(forward=True)``). ``fail_next`` queues such answers for the next
requests of the given methods; every other request is forwarded unchanged (the Host header too,
so SigV4 signatures still match; the embedded SeaweedFS has no identities and checks none) and
its reply relayed. ``drop_headers``: request headers left out when forwarding, e.g.
``{"if-none-match"}`` for an S3 clone that ignores conditional writes. ``refuse_headers``:
requests carrying one of these headers get its answer, as an S3 clone that does not implement a
header refuses it (Backblaze B2 and Cloudflare R2 with boto3's CRC32 checksum headers, 2025).
``tls``: a server-side SSL context, for an HTTPS endpoint in front of the plain-HTTP store.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from .net import LOOPBACK

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "expect", "transfer-encoding", "proxy-connection"})


@dataclass(frozen=True, slots=True)
class Answer:
    """A reply the proxy gives instead of S3's; ``forward``: after forwarding the request to S3
    (whose reply is thrown away, as if lost on the way back)."""

    status: int
    body: bytes = b""
    content_type: str = "text/html"
    forward: bool = False


class S3ErrorProxy:
    """``with S3ErrorProxy((host, port)) as proxy: proxy.fail_next(2, Answer(502, b"<html>..."))``."""

    def __init__(self, target: tuple[str, int], *, tls: ssl.SSLContext | None = None) -> None:
        self.target = target
        self.answered: list[tuple[str, str, int]] = []  # (method, path, status) of every request
        self.stored: list[tuple[str, int]] = []  # (path, payload bytes) of every PUT the store took
        self.headers: list[tuple[str, dict[str, str]]] = []  # (method, headers by lower-case name) of every request
        self.drop_headers: frozenset[str] = frozenset()  # lower-case names
        self.refuse_headers: dict[str, Answer] = {}  # lower-case name -> the answer to a request with it
        self._queued: list[tuple[frozenset[str], str, Answer]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._scheme = "https" if tls else "http"
        if tls:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self._scheme}://{LOOPBACK}:{self.port}"

    def __enter__(self) -> S3ErrorProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, count: int, answer: Answer, *, methods: tuple[str, ...] = ("PUT",), path_ends: str = "") -> None:
        """Answer the next ``count`` requests whose method is one of ``methods`` (and whose path
        ends with ``path_ends``, e.g. ".m3u8" for playlists) with ``answer``."""
        with self._lock:
            self._queued += [(frozenset(methods), path_ends, answer)] * count

    def clear(self) -> None:
        """Forget the answers still queued: every request is forwarded again."""
        with self._lock:
            self._queued.clear()

    def statuses(self, method: str = "PUT") -> list[int]:
        with self._lock:
            return [status for m, _, status in self.answered if m == method]

    def _take(self, method: str, path: str) -> Answer | None:
        with self._lock:
            for position, (methods, path_ends, answer) in enumerate(self._queued):
                if method in methods and path.split("?")[0].endswith(path_ends):
                    del self._queued[position]
                    return answer
        return None

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.answered.append((method, path, status))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    raw = bytearray()
                    while True:
                        size_line = self.rfile.readline()
                        raw += size_line
                        size = int(size_line.split(b";")[0], 16)
                        chunk = self.rfile.read(size + 2)
                        raw += chunk
                        if size == 0:
                            while (trailer := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                                raw += trailer
                            raw += b"\r\n"
                            return bytes(raw)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _serve(self) -> None:
                body = self._body()
                with proxy._lock:
                    proxy.headers.append((self.command, {name.lower(): value for name, value in self.headers.items()}))
                answer = next((refusal for name, refusal in proxy.refuse_headers.items() if name in self.headers),
                              None) or proxy._take(self.command, self.path)
                if answer is not None and answer.forward:
                    self._forward(body)
                # Each request is recorded before its reply goes out: a client holding the reply
                # finds it in ``answered``.
                if answer is not None:
                    proxy._record(self.command, self.path, answer.status)
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                    return
                reply, data = self._forward(body)
                if self.command == "PUT" and 200 <= reply.status < 300:
                    size = self.headers.get("x-amz-decoded-content-length") or self.headers.get("Content-Length")
                    with proxy._lock:
                        proxy.stored.append((self.path.split("?")[0], int(size or 0)))
                proxy._record(self.command, self.path, reply.status)
                self.send_response(reply.status, reply.reason)
                for name, value in reply.getheaders():
                    if name.lower() not in _HOP_BY_HOP and (name.lower() != "content-length" or self.command == "HEAD"):
                        self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _forward(self, body: bytes) -> tuple[http.client.HTTPResponse, bytes]:
                upstream = http.client.HTTPConnection(*proxy.target, timeout=30)
                try:
                    upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for name, value in self.headers.items():
                        if name.lower() not in _HOP_BY_HOP and name.lower() not in proxy.drop_headers:
                            upstream.putheader(name, value)
                    if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                        upstream.putheader("Transfer-Encoding", "chunked")
                    upstream.endheaders(body)
                    reply = upstream.getresponse()
                    return reply, reply.read()
                finally:
                    upstream.close()

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _serve

        return Handler
