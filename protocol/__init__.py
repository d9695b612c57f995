"""The wire format shared by hls-segment and hls-uploadd: pure functions, no I/O.

See docs/protocol.md for the format with examples of every message.
"""

from .auth import DEFAULT_KEY_ID, NONCE_BYTES, AuthRefused, ChallengeSession, compute_tag, sign, tag_input, verify
from .decoder import CLOSED, HELLO_REQUEST, NEED_DATA, Event, Hello, MessageDecoder, PayloadData, PayloadEnd, Signal
from .errors import ProtocolError
from .limits import CLOCK_WARNING_MS, DEFAULT_MAX_PAYLOAD_BYTES, IDLE_TIMEOUT_S, MAX_LINE_BYTES
from .message import (
    V1_FIELD_NAMES,
    IndexMessage,
    encode_message,
    parse_message,
    segment_file_name,
    segment_number,
    writer_label,
)
from .replies import (
    NOT_WRITER_PREFIX,
    TRY_AGAIN_PREFIX,
    Ack,
    Challenge,
    Reject,
    Reply,
    ReplyDecoder,
    encode_reply,
    one_line,
    parse_reply,
)

__all__ = [
    "AuthRefused",
    "CLOCK_WARNING_MS",
    "CLOSED",
    "Challenge",
    "ChallengeSession",
    "DEFAULT_KEY_ID",
    "HELLO_REQUEST",
    "Hello",
    "NONCE_BYTES",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "IDLE_TIMEOUT_S",
    "MAX_LINE_BYTES",
    "NEED_DATA",
    "NOT_WRITER_PREFIX",
    "V1_FIELD_NAMES",
    "Ack",
    "Event",
    "IndexMessage",
    "MessageDecoder",
    "PayloadData",
    "PayloadEnd",
    "ProtocolError",
    "Reject",
    "Reply",
    "ReplyDecoder",
    "Signal",
    "TRY_AGAIN_PREFIX",
    "compute_tag",
    "encode_message",
    "encode_reply",
    "one_line",
    "parse_message",
    "parse_reply",
    "segment_file_name",
    "segment_number",
    "sign",
    "tag_input",
    "verify",
    "writer_label",
]
