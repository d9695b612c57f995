"""The segmenter's exceptions: every error it raises on purpose is a ``SegmenterError``. Pure.

``common.settings.ConfigError`` (a bad option, shared with the daemon) stays outside this tree;
OS errors (an unwritable directory, a failing disk) are raised as the OS reported them, except a
full OUTPUT_DIR, which ends the stream and is an ``OutputFull``.
"""

from __future__ import annotations

from protocol import writer_label


class SegmenterError(Exception):
    """Root of the segmenter's own errors; the message is the reason, fit for the operator."""


class InputError(SegmenterError):
    """The input cannot be segmented (nothing arrived, empty, not media): exit code 2."""


class OutputFull(SegmenterError):
    """OUTPUT_DIR ran out of space: the stream was ended with what was stored (exit code 1)."""


class NotTheWriter(SegmenterError):
    """The daemon refused this segmenter as the stream's writer (another one owns it, or took it
    over): it stopped (exit code 4). The message is the daemon's reason, then this segmenter's
    own ``writer`` id as the daemon's refusals and logs name it (``protocol.writer_label``)."""

    def __init__(self, reason: str, writer: str | None) -> None:
        super().__init__(f"{reason} (this OUTPUT_DIR writes as {writer_label(writer)})")
