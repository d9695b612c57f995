"""HMAC-SHA256 tags that authenticate a message with a shared secret."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

from .message import IndexMessage, encode_message


def compute_tag(message: IndexMessage, secret: bytes) -> str:
    """The tag over the message's wire bytes without its tag field."""
    return hmac.new(secret, encode_message(message.unsigned()), hashlib.sha256).hexdigest()


def sign(message: IndexMessage, secret: bytes) -> IndexMessage:
    return replace(message, tag=compute_tag(message, secret))


def verify(message: IndexMessage, secret: bytes) -> bool:
    """True when the message carries the right tag; compared in constant time."""
    if message.tag is None:
        return False
    return hmac.compare_digest(message.tag, compute_tag(message, secret))
