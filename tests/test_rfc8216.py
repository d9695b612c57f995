"""The RFC 8216 checker itself: one good history per playlist type, one bad history per rule.

A checker that accepts a bad playlist lets every test that relies on it pass on a broken
product, so each rule here is shown to fire on a history that breaks it; and a checker that
refuses a good one hides real problems in noise, so conformant histories must pass untouched.
"""

from __future__ import annotations

import pytest

from tests.support.rfc8216 import (
    History,
    history_problems,
    master_playlist_problems,
    media_playlist_problems,
    rendition_problems,
)


def playlist(first: int, durations: list[str], *, target: int = 2, version: int = 3, endlist: bool = False,
             discontinuity_sequence: int | None = None, tagged: tuple[int, ...] = (), kind: str | None = None,
             uri: str = "seg-{}.ts") -> str:
    """A media playlist of segments ``first``, ``first + 1``...; ``tagged`` numbers get a DISCONTINUITY."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{version}", f"#EXT-X-TARGETDURATION:{target}",
             f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    if discontinuity_sequence is not None:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    if kind:
        lines.append(f"#EXT-X-PLAYLIST-TYPE:{kind}")
    for number, duration in enumerate(durations, start=first):
        if number in tagged:
            lines.append("#EXT-X-DISCONTINUITY")
        lines += [f"#EXTINF:{duration},", uri.format(number)]
    if endlist:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def window(first: int, last: int, **options: object) -> str:
    return playlist(first, ["2.0"] * (last - first + 1), **options)  # type: ignore[arg-type]


GOOD_LIVE = [window(1, 1), window(1, 2), window(1, 3), window(1, 4), window(2, 5), window(3, 6),
             window(3, 6, endlist=True)]


@pytest.mark.parametrize(("kind", "texts"), [
    ("live", GOOD_LIVE),
    ("live", [window(1, 3), window(5, 8)]),  # a client that missed versions in between
    ("live", [window(1, 4, tagged=(3,), discontinuity_sequence=0),
              window(2, 5, tagged=(3,), discontinuity_sequence=0),
              window(4, 7, discontinuity_sequence=1)]),
    ("event", [window(1, 1, kind="EVENT"), window(1, 2, kind="EVENT"), window(1, 3, kind="EVENT", endlist=True)]),
    ("event", [window(1, 1, kind="EVENT"), window(1, 3, kind="EVENT", tagged=(3,)),
               window(1, 4, kind="EVENT", tagged=(3,), endlist=True)]),
    ("vod", [window(1, 3, kind="VOD", endlist=True), window(1, 3, kind="VOD", endlist=True)]),
])
def test_a_conformant_history_has_no_problem(kind: str, texts: list[str]) -> None:
    assert history_problems(texts, kind) == []


def test_keys_and_maps_apply_until_the_next_and_move_as_segments_slide_out() -> None:
    key = '#EXT-X-KEY:METHOD=AES-128,URI="k1.key"'
    first = window(1, 4).replace("#EXTINF", key + "\n#EXTINF", 1)
    second = window(2, 5).replace("#EXTINF", key + "\n#EXTINF", 1)
    assert history_problems([first, second]) == []


def test_decimal_integers_may_have_leading_zeros_but_not_pass_2_to_the_64() -> None:
    assert media_playlist_problems(window(7, 8).replace("SEQUENCE:7", "SEQUENCE:007")) == []
    problems = media_playlist_problems(window(1, 1).replace("SEQUENCE:1", f"SEQUENCE:{2**64}"))
    assert any("not a decimal-integer" in problem for problem in problems), problems


def test_a_window_of_exactly_three_target_durations_is_enough() -> None:
    assert history_problems([playlist(1, ["2", "2", "2", "2"]), playlist(2, ["2", "2", "2"])]) == []


@pytest.mark.parametrize(("texts", "kind", "expected"), [
    # 6.2.2: a removal that leaves under 3 x target, as a count-only window of short segments does.
    ([playlist(1, ["2", "2", "2"]), playlist(2, ["2", "2", "1.9"])], "live", "under three target durations"),
    ([playlist(1, ["0.5"] * 5, target=1), playlist(2, ["0.5"] * 5, target=1)], "live",
     "leaving 2.5 s, under three target durations (3 s)"),
    # 4.3.3.4: segments after ENDLIST.
    ([window(1, 3, endlist=True), window(1, 4, endlist=True)], "live", "added after EXT-X-ENDLIST"),
    ([window(1, 3, endlist=True), window(1, 4)], "live", "EXT-X-ENDLIST was taken away"),
    # 6.2.1: an EVENT playlist dropping a segment, or changing a line that is not at its end.
    ([window(1, 4, kind="EVENT"), window(2, 5, kind="EVENT")], "event", "removed from an EVENT playlist"),
    ([window(1, 3, kind="EVENT"), window(1, 4, kind="EVENT", tagged=(4,), discontinuity_sequence=0)], "event",
     "an EVENT playlist changed other than by appending: line 5 was '#EXT-X-PLAYLIST-TYPE:EVENT',"
     " now '#EXT-X-DISCONTINUITY-SEQUENCE:0'"),
    ([window(1, 3, kind="EVENT"), window(1, 3, kind="EVENT").replace("#EXTM3U\n", "#EXTM3U\n# a comment\n")],
     "event", "an EVENT playlist changed other than by appending: line 2"),
    # 6.2.1: after EXT-X-ENDLIST nothing changes, not even a removal or a header line.
    ([window(1, 4, endlist=True), window(2, 4, endlist=True)], "live", "the playlist changed after EXT-X-ENDLIST"),
    ([window(1, 4, endlist=True), window(1, 4, endlist=True, discontinuity_sequence=0)], "live",
     "the playlist changed after EXT-X-ENDLIST: line 5 was '#EXTINF:2.0,', now '#EXT-X-DISCONTINUITY-SEQUENCE:0'"),
    ([window(1, 3, kind="EVENT", endlist=True), window(1, 3, kind="EVENT")], "event",
     "the playlist changed after EXT-X-ENDLIST: line 12 '#EXT-X-ENDLIST' and after removed"),
    # 6.2.2: a live playlist with PLAYLIST-TYPE.
    ([window(1, 3, kind="EVENT")], "live", "a live playlist carries EXT-X-PLAYLIST-TYPE"),
    # 6.2.2: a tagged segment slides out without DISCONTINUITY-SEQUENCE incremented...
    ([window(1, 4, tagged=(2,), discontinuity_sequence=0), window(3, 6, tagged=(4,), discontinuity_sequence=0)],
     "live", "Discontinuity Sequence Number changed"),
    # ...or with no such tag at all.
    ([window(1, 4, tagged=(2,)), window(3, 6)], "live", "no EXT-X-DISCONTINUITY-SEQUENCE"),
    ([window(1, 4), window(2, 5, tagged=(5,))], "live", "no EXT-X-DISCONTINUITY-SEQUENCE"),
    # 6.2.1: the count may only be incremented, not added (at 0) to a header that had none.
    ([window(1, 3), window(1, 4, tagged=(4,), discontinuity_sequence=0)], "live",
     "EXT-X-DISCONTINUITY-SEQUENCE:0 was added"),
    # 6.2.2: a media sequence number reused for another URI, and a URI given another number.
    ([window(1, 4), window(2, 5, uri="other-{}.ts")], "live", "was seg-2.ts, now other-2.ts"),
    ([window(1, 4), playlist(7, ["2"] * 4, uri="seg-{}.ts").replace("seg-8.ts", "seg-4.ts")], "live",
     "seg-4.ts had media sequence number 4, now 8"),
    # 6.2.1: an EXTINF or a DISCONTINUITY of a listed segment changed.
    ([window(1, 4), playlist(1, ["2.0", "1.5", "2.0", "2.0"])], "live", "segment 2 changed"),
    ([window(1, 4), window(1, 4, tagged=(3,), discontinuity_sequence=0)], "live", "segment 3 changed"),
    # 4.3.3.1: EXTINF rounded half up over the target.
    ([playlist(1, ["2.5"])], "live", "EXTINF 2.5 rounds to 3, over EXT-X-TARGETDURATION 2"),
    ([playlist(1, ["2", "5.0", "2"])], "live", "EXTINF 5.0 rounds to 5, over EXT-X-TARGETDURATION 2"),
    # 4.3.2.1, 7: fractional EXTINF with VERSION 2.
    ([playlist(1, ["1.5"], version=2)], "live", "need EXT-X-VERSION 3"),
    # 6.2.1: the target duration changed, raised or lowered, in any playlist type.
    ([window(1, 3), window(1, 4, target=3)], "live", "EXT-X-TARGETDURATION changed from 2 to 3"),
    ([window(1, 3, target=3), window(4, 7)], "live", "EXT-X-TARGETDURATION changed from 3 to 2"),
    ([window(1, 3, kind="EVENT"), window(1, 4, kind="EVENT", target=5)], "event",
     "EXT-X-TARGETDURATION changed from 2 to 5"),
    # 6.2.2: media sequence went back; segments removed from the end.
    ([window(3, 6), window(2, 6)], "live", "EXT-X-MEDIA-SEQUENCE went back"),
    ([window(1, 5), window(2, 4)], "live", "removed from the end"),
    ([window(1, 4, tagged=(2,), discontinuity_sequence=1), window(3, 6, discontinuity_sequence=0)], "live",
     "EXT-X-DISCONTINUITY-SEQUENCE went back"),
    # 6.2.1: VOD never changes; it is complete.
    ([window(1, 3, kind="VOD")], "vod", "VOD playlist without EXT-X-ENDLIST"),
    ([window(1, 3, kind="VOD", endlist=True), window(1, 4, kind="VOD", endlist=True)], "vod", "VOD playlist changed"),
    ([window(1, 3)], "event", "carries EXT-X-PLAYLIST-TYPE None"),
    ([window(1, 3), window(1, 3, version=4)], "live", "EXT-X-VERSION changed"),
])
def test_a_history_breaking_one_rule_is_reported(texts: list[str], kind: str, expected: str) -> None:
    problems = history_problems(texts, kind)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(("text", "expected"), [
    ("#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n", "first line is not #EXTM3U"),
    ("\ufeff" + window(1, 1), "byte order mark"),
    (window(1, 1).rstrip("\n"), "not terminated by a line feed"),
    (window(1, 1).replace("seg-1", "seg\x01-1"), "control character"),
    ("#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:2,\na.ts\n", "EXT-X-TARGETDURATION is missing"),
    (window(1, 1).replace("#EXT-X-VERSION:3", "#EXT-X-VERSION:3\n#EXT-X-VERSION:3"), "more than once"),
    (window(1, 1).replace("#EXT-X-TARGETDURATION:2", "#EXT-X-TARGETDURATION:2.0"), "not a decimal-integer"),
    (window(1, 2).replace("#EXTINF:2.0,\nseg-2.ts", "seg-2.ts"), "segment seg-2.ts has no EXTINF"),
    (window(1, 1).replace("#EXTINF:2.0,", "#EXTINF:2.0"), "is not '<duration>,[<title>]'"),
    (window(1, 1).replace("#EXTINF:2.0,", "#EXTINF:abc,"), "is not '<duration>,[<title>]'"),
    (window(1, 1) + "#EXTINF:2,\n", "with no segment URI"),
    (window(1, 1) + "#EXT-X-MEDIA-SEQUENCE:1\n", "after the first segment"),
    (window(1, 1, tagged=(1,)).replace("#EXTINF", "#EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXTINF"),
     "after an EXT-X-DISCONTINUITY"),
    (window(1, 1) + "#EXT-X-TARGETDURATON:2\n", "no RFC 8216 tag"),
    (window(1, 1) + '#EXT-X-STREAM-INF:BANDWIDTH=1\n', "master playlist tag"),
    (window(1, 1, kind="LIVE"), "neither EVENT nor VOD"),
    (window(1, 1).replace("seg-1.ts", "seg 1.ts"), "white space"),
    (window(1, 1).replace("#EXTINF:2.0,", "#EXT-X-DISCONTINUITY:1\n#EXTINF:2.0,"), "takes no value"),
])
def test_one_version_breaking_one_rule_is_reported(text: str, expected: str) -> None:
    problems = media_playlist_problems(text)
    assert any(expected in problem for problem in problems), problems


def test_the_product_s_own_playlist_shape_is_conformant() -> None:
    text = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:8\n"
            "#EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXT-X-DISCONTINUITY\n#EXTINF:10,\nhttp://cdn/a-00008.ts\n"
            "#EXTINF:9.96,\nhttp://cdn/a-00009.ts\n#EXT-X-ENDLIST\n")
    assert media_playlist_problems(text) == []


def test_a_removed_segment_must_stay_downloadable_for_its_duration_plus_the_longest_playlist() -> None:
    history = History()
    history.add(playlist(1, ["2", "2", "2"]))
    history.add(playlist(1, ["2", "2", "2", "2"]))
    removed = history.add(playlist(2, ["2", "2", "2"]))
    assert [(r.uri, r.available_s) for r in removed] == [("seg-1.ts", 2 + 8)]
    assert history.problems == []


def test_renditions_must_share_target_duration_and_discontinuity_sequence_numbers() -> None:
    low = window(1, 4, tagged=(3,), discontinuity_sequence=0)
    assert rendition_problems({"low": low, "high": low.replace("seg-", "hi-")}) == []
    assert any("EXT-X-TARGETDURATION" in p for p in rendition_problems({"low": low, "high": window(1, 4, target=3)}))
    problems = rendition_problems({"low": low, "high": window(1, 4, tagged=(2,), discontinuity_sequence=0)})
    assert any("segment 2 has Discontinuity Sequence Numbers" in p for p in problems), problems


MASTER = ('#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n'
          '#EXT-X-STREAM-INF:BANDWIDTH=222592,AVERAGE-BANDWIDTH=221652,CODECS="avc1.64000d,mp4a.40.2",'
          'RESOLUTION=320x240,FRAME-RATE=25.000\nlow.m3u8\n')


def test_a_master_playlist_with_an_audio_group_is_conformant() -> None:
    text = MASTER.replace("#EXT-X-STREAM-INF", '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="English",URI="en.m3u8"\n'
                          "#EXT-X-STREAM-INF").replace("FRAME-RATE=25.000", 'FRAME-RATE=25.000,AUDIO="aac"')
    assert master_playlist_problems(text) == []


@pytest.mark.parametrize(("text", "expected"), [
    (MASTER.replace("BANDWIDTH=222592,", ""), "without BANDWIDTH"),
    (MASTER.replace('CODECS="avc1.64000d,mp4a.40.2",', ""), "without CODECS"),
    (MASTER.replace("low.m3u8\n", ""), "has no URI"),
    (MASTER.replace("320x240", "320*240"), "decimal-resolution"),
    (MASTER.replace("BANDWIDTH=222592", "BANDWIDTH=2.5"), "not a decimal-integer"),
    (MASTER.replace("RESOLUTION", "BANDWIDTH"), "does not parse"),
    (MASTER + "#EXT-X-TARGETDURATION:2\n", "media playlist tag"),
    (MASTER + "other.m3u8\n", "follows no EXT-X-STREAM-INF"),
    (MASTER.replace("#EXT-X-VERSION:3", "#EXT-X-VERSION:3\n#EXT-X-VERSION:3"), "more than once"),
    (MASTER.replace("low.m3u8", "low stream.m3u8"), "white space"),
    (MASTER.replace("FRAME-RATE=25.000", 'FRAME-RATE=25.000,AUDIO="aac"'), "names no EXT-X-MEDIA group"),
    (MASTER.replace("#EXT-X-STREAM-INF", '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac"\n#EXT-X-STREAM-INF'),
     "EXT-X-MEDIA without NAME"),
])
def test_a_master_playlist_breaking_one_rule_is_reported(text: str, expected: str) -> None:
    assert master_playlist_problems(MASTER) == []
    problems = master_playlist_problems(text)
    assert any(expected in problem for problem in problems), problems


def signed_window(first: int, last: int, signature: str) -> str:
    """``window`` of presigned URLs, all signed with ``signature``."""
    uri = "https://s3.example/live/seg-{}.ts?X-Amz-Expires=60&X-Amz-Signature=" + signature
    return window(first, last, uri=uri)


def test_a_private_stream_s_urls_signed_again_keep_their_resource_and_are_conformant() -> None:
    history = History("live", signed=True)
    for version, (first, last) in enumerate([(1, 3), (1, 4), (2, 5), (3, 6)]):
        history.add(signed_window(first, last, f"sig{version}"))
    assert history.problems == []


def test_a_private_stream_s_unsigned_url_or_changed_resource_is_reported() -> None:
    history = History("live", signed=True)
    history.add(signed_window(1, 3, "a"))
    history.add(window(1, 4, uri="https://s3.example/live/seg-{}.ts"))
    assert history.problems and all("not a signed URL" in p for p in history.problems), history.problems
    history = History("live", signed=True)
    history.add(signed_window(1, 3, "a"))
    history.add(window(1, 4, uri="https://s3.example/other/seg-{}.ts?X-Amz-Expires=60&X-Amz-Signature=b"))
    assert any("media sequence number 1 was https://s3.example/live/seg-1.ts" in p for p in history.problems), \
        history.problems
    # Without signed=True, a URI signed again is another URI for the same media sequence number.
    assert history_problems([signed_window(1, 3, "a"), signed_window(1, 4, "b")], "live")
