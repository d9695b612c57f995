"""The tests' SeaweedFS is the product's embedded S3 (examples/embedded_s3.py), plus test helpers."""

from __future__ import annotations

import re
import uuid

from examples.embedded_s3 import (
    EmbeddedS3 as SeaweedServer,
    SeaweedError,
    WeedPorts,
    find_weed,
    listening_ports,
    s3_client,
)

__all__ = ["SeaweedError", "SeaweedServer", "WeedPorts", "bucket_name", "find_weed", "listening_ports", "s3_client"]


def bucket_name(hint: str) -> str:
    """A valid, unique S3 bucket name (3-63 of [a-z0-9-]) that shows where it came from."""
    stem = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:40].strip("-") or "test"
    return f"{stem}-{uuid.uuid4().hex[:12]}"
