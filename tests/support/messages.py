"""The original extension's example message, as bytes on the wire and as fields: the message the
protocol and spool tests start from."""

from __future__ import annotations

from protocol import IndexMessage

ORIGINAL = (
    b"stream-128k.m3u8, /tmp/, 10, sample_128k, http://d3vmly3syseqo9.cloudfront.net/stream0001/,"
    b" 1, 5, 0, ionlivestream, stream0001"
)
ORIGINAL_MESSAGE = IndexMessage(
    index="stream-128k.m3u8",
    output_directory="/tmp/",
    segment_duration=10,
    output_prefix="sample_128k",
    http_prefix="http://d3vmly3syseqo9.cloudfront.net/stream0001/",
    first_segment=1,
    last_segment=5,
    end=False,
    bucket="ionlivestream",
    key_prefix="stream0001",
)
