"""Errors by who is at fault."""


class ProtocolError(ValueError):
    """A peer sent bytes that break the protocol.

    ``str(error)`` is the short, one-line reason that goes back on the wire as ``ERR <reason>``.
    ``recoverable`` tells whether the connection can go on with the next line (a bad line) or
    must be closed because the byte stream itself lost its framing (a bad payload).
    """

    def __init__(self, reason: str, *, recoverable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.recoverable = recoverable
