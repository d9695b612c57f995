"""The segmenter's exceptions: every error it raises on purpose is a ``SegmenterError``. Pure.

``common.settings.ConfigError`` (a bad option, shared with the daemon) stays outside this tree;
OS errors (a full disk, an unwritable directory) are raised as the OS reported them.
"""

from __future__ import annotations


class SegmenterError(Exception):
    """Root of the segmenter's own errors; the message is the reason, fit for the operator."""


class InputError(SegmenterError):
    """The input cannot be segmented (nothing arrived, empty, not media): exit code 2."""
