"""Which pictures a decoder can start at (``segmenter.randomaccess``), on bytes built here.

The byte layouts are those of ITU-T H.264 7.3.1, ITU-T H.265 7.3.1.2 and ISO/IEC 13818-2 6.2;
the same rules on real encodes, and through hls-segment, are in test_independence.py.
"""

from __future__ import annotations

import pytest

from segmenter.randomaccess import SegmentStart, StartPicture, VideoCodec, codec_by_name, codec_by_stream_type


def test_no_video_is_independent_and_an_unjudged_codec_is_not() -> None:
    assert SegmentStart({}).independent  # an audio-only input
    start = SegmentStart({0: (VideoCodec.H264, 0), 1: (None, 0)})
    assert start.independent and start.reason == ""  # audio only in this segment: the video paused
    assert start.wants(0) and start.wants(1) and not start.wants(2)
    start.feed(1, b"\x00\x00\x01\xb6")  # an MPEG-4 part 2 VOP: not a codec whose pictures are judged
    assert not start.independent and not start.wants(1)
    assert start.reason == "its video codec is not one whose random access points are judged"
    assert codec_by_name("mpeg4") is None and codec_by_stream_type(0x10) is None
    assert codec_by_name("mpeg1video") is codec_by_stream_type(0x02) is VideoCodec.MPEG2


# MPEG-2 headers (ISO/IEC 13818-2 6.2.2.6, 6.2.3, 6.2.3.1) for what ffmpeg's encoder cannot make:
# field pictures, and broken_link.
def gop_header(*, closed: bool, broken: bool = False) -> bytes:
    return b"\x00\x00\x01\xb8\x00\x08\x00" + bytes([0x40 * closed | 0x20 * broken])


def picture(coding_type: int, structure: int = 3) -> bytes:
    header = b"\x00\x00\x01\x00\x00" + bytes([coding_type << 3]) + b"\xff\xf8"
    extension = b"\x00\x00\x01\xb5\x8f\xff" + bytes([0xf0 | structure]) + b"\x80"
    return header + extension + b"\x00\x00\x01\x01\x12\x34"  # and a slice


I, P, B = 1, 2, 3


@pytest.mark.parametrize(("stream", "independent"), [
    (gop_header(closed=False) + picture(I) + picture(B), False),  # open GOP, leading B
    (gop_header(closed=True) + picture(I) + picture(B), True),  # closed GOP: backward-predicted B
    (gop_header(closed=True, broken=True) + picture(I) + picture(B), False),  # the B pictures are dropped
    (gop_header(closed=False, broken=True) + picture(I) + picture(P), True),  # no leading B
    (gop_header(closed=False) + picture(I, 1) + picture(P, 2) + picture(B), False),  # I frame as two fields
    (gop_header(closed=False) + picture(I, 1) + picture(I, 2) + picture(P), True),
    (gop_header(closed=True) + picture(P), False),
    (gop_header(closed=False) + picture(I), True),  # the segment ends after it
])
def test_mpeg2_leading_b_pictures(stream: bytes, independent: bool) -> None:
    judge = StartPicture(VideoCodec.MPEG2)
    judge.feed(stream)
    assert judge.independent is independent
    # Fed a start code at a time, the verdict is the same.
    judge = StartPicture(VideoCodec.MPEG2)
    for piece in stream.split(b"\x00\x00\x01")[1:]:
        judge.feed(b"\x00\x00\x01" + piece)
    assert judge.independent is independent
