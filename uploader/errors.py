"""The daemon's one exception root, and the one way it says "retry later". Pure."""

from __future__ import annotations


class UploaderError(Exception):
    """An error of hls-uploadd. ``str(error)`` is a one-line reason fit for the log and an ERR reply.

    ``transient`` (a class attribute, set once per error kind) is True when the same work may
    succeed later unchanged: the daemon's or a store's state is at fault (a disk full, a store
    down, a budget spent), so a peer is answered "try again" and a PUT is retried. False when
    retrying cannot help: the request or the setup is at fault.
    """

    transient: bool = False
