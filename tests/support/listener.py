"""A small daemon stand-in for segmenter tests: a real TCP peer speaking the real protocol.

It records every message (decoded with protocol.MessageDecoder; a writer's start-up message,
LAST_SEGMENT 0 with ``writer=``, apart in ``startups``) and the raw bytes of every connection,
replies ``OK n`` (or what ``reply`` returns), answers ``HELLO`` with a challenge of a new nonce and
its clock (or what ``hello`` returns; the nonces given are in ``nonces``), and can be started
late, stopped and started again on the same port.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

from protocol import (
    CLOSED,
    NEED_DATA,
    Ack,
    Challenge,
    Hello,
    IndexMessage,
    MessageDecoder,
    ProtocolError,
    Reject,
    Reply,
    encode_reply,
)

from .net import LOOPBACK

Responder = Callable[[IndexMessage], Reply | None]  # None: send no reply


def acknowledge(message: IndexMessage) -> Reply:
    return Ack(message.last_segment)


def challenge() -> Reply:
    """A daemon's answer to HELLO: a new nonce, and this host's clock."""
    return Challenge(secrets.token_hex(16), time.time_ns() // 1_000_000)


class Listener:
    def __init__(self, port: int, *, reply: Responder = acknowledge, replies: bool = True,
                 hello: Callable[[], Reply] = challenge) -> None:
        self.port = port
        self.reply = reply
        self.hello = hello
        self.nonces: list[str] = []  # of each HELLO answered with a challenge, in order
        self.replies = replies  # False: behave like the original daemon (read, close, no reply)
        self.messages: list[IndexMessage] = []
        self.startups: list[IndexMessage] = []  # start-up messages of writers (LAST_SEGMENT 0, writer=)
        self.connections: list[bytes] = []  # raw bytes of each finished connection
        self.errors: list[str] = []
        self._changed = threading.Condition()
        self._server: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()

    def __enter__(self) -> Listener:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((LOOPBACK, self.port))
        server.listen(16)
        self._server = server
        thread = threading.Thread(target=self._accept, args=(server,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            try:
                server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            server.close()
        with self._changed:
            for conn in list(self._open):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in self._threads:
            thread.join(5)
        self._threads = []

    def wait_for(self, predicate: Callable[[Listener], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"listener: condition not met in {timeout_s} s; got {len(self.messages)} messages")
                self._changed.wait(left)

    def wait_for_end(self, timeout_s: float = 30.0) -> list[IndexMessage]:
        self.wait_for(lambda listener: any(m.end for m in listener.messages), timeout_s)
        return list(self.messages)

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        decoder = MessageDecoder()
        raw = bytearray()
        with self._changed:
            self._open.add(conn)
        try:
            with conn:
                while True:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    raw += data
                    if data:
                        decoder.receive_data(data)
                    else:
                        decoder.receive_eof()
                    while True:
                        try:
                            event = decoder.next_event()
                        except ProtocolError as error:
                            self._record_error(str(error))
                            if self.replies:
                                conn.sendall(encode_reply(Reject.because(str(error))))
                            continue
                        if event is NEED_DATA or event is CLOSED:
                            break
                        if isinstance(event, Hello):
                            answer = self.hello()
                            if isinstance(answer, Challenge):
                                with self._changed:
                                    self.nonces.append(answer.nonce)
                            conn.sendall(encode_reply(answer))
                            continue
                        if isinstance(event, IndexMessage):
                            reply = self.reply(event)
                            startup = event.last_segment == 0 and event.writer is not None
                            with self._changed:
                                (self.startups if startup else self.messages).append(event)
                                self._changed.notify_all()
                            if self.replies and reply is not None:
                                conn.sendall(encode_reply(reply))
                    if not data:
                        return
        except OSError:
            return
        finally:
            with self._changed:
                self._open.discard(conn)
                self.connections.append(bytes(raw))
                self._changed.notify_all()

    def _record_error(self, reason: str) -> None:
        with self._changed:
            self.errors.append(reason)
            self._changed.notify_all()
