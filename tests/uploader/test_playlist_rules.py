"""hls-uploadd end to end on the RFC 8216 rules a live origin most easily breaks: a target
duration fixed once and never exceeded (4.3.3.1, 6.2.1), three target durations listed after any
removal (6.2.2), EVENT playlists only appended to and nothing changed after EXT-X-ENDLIST (6.2.1).

Real daemon, real SeaweedFS; every playlist version is read after each segment is published and
goes through the checker (tests/support/rfc8216.py).
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from protocol import Ack, Reject
from tests.support.daemon import UploaderDaemon, place_segment
from tests.support.media import MediaCache
from tests.support.rfc8216 import History
from tests.support.seaweed import SeaweedServer
from tests.support.segmenter_media import INDEX, KEY_PREFIX, PREFIX, run_segmenter, segment_files
from tests.support.viewer import fetch_playlist, http_get, wait_for

from .conftest import StartUploader
from .test_daemon import ext_message


def published(daemon: UploaderDaemon, number: int) -> bool:
    return f"segment seg-{number:05d}.ts published" in daemon.log()


def test_a_segment_over_the_target_keeps_the_target_and_is_logged_as_an_error(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    # SEGMENT_DURATION 2 promises no rounded EXTINF over 2; a peer that breaks the promise (here
    # two 5-s GOPs among 2-s ones, as a version-1 client cutting at keyframes sends) gets its
    # segments listed with their real duration, the target unchanged, and one ERROR.
    daemon = start_uploader("--allow-dir", str(segments_dir))
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    durations = [2.0, 2.0, 5.0, 5.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    history = History("live")  # not the session's checker: this history breaks 4.3.3.1 on purpose
    with daemon.connect() as client:
        for number, duration in enumerate(durations, start=1):
            place_segment(segment_source, segments_dir, "seg", number)
            message = ext_message(segments_dir, bucket, number, duration=duration, end=number == len(durations))
            assert client.send(message) == Ack(number)
            wait_for(lambda: published(daemon, number), message=f"segment {number} published")
            history.add(http_get(url).text)
    final = history.last
    assert final is not None and final.endlist and final.target_duration == 2
    assert [s.uri for s in final.segments][-1] == "seg-00010.ts"
    # The only problem any version has is the one the peer caused: both 5-s EXTINF over the target.
    # No target change, and every window after a removal held 3 x 2 s.
    problems = {re.sub(r"^version \d+: ", "", problem) for problem in history.problems}
    assert problems == {f"seg-0000{n}.ts: EXTINF 5 rounds to 5, over EXT-X-TARGETDURATION 2 (4.3.3.1)" for n in (3, 4)}
    errors = [line for line in daemon.log().splitlines() if " ERROR " in line]
    assert errors and errors[0].endswith(
        f"stream {bucket}/live/one/index.m3u8 segment seg-00003.ts: EXTINF 5 s rounds to 5 s, over"
        " EXT-X-TARGETDURATION 2 s (RFC 8216 4.3.3.1); listed anyway, but players may stall: the segmenter"
        " must cut segments of at most 2 s")
    assert len(errors) == 1, errors  # segment 4, a moment later, is counted into the next report


def test_short_segments_keep_three_target_durations_listed(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    # SEGMENT_DURATION 0.5 is sent as 1 (whole seconds): target 1, and the default window of 5
    # segments of 0.5 s would hold 2.5 s. The daemon lists 6 so that 3 s remain (RFC 8216 6.2.2).
    daemon = start_uploader("--allow-dir", str(segments_dir))
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    count = 14
    listed: list[tuple[int, Decimal]] = []
    with daemon.connect() as client:
        for number in range(1, count + 1):
            place_segment(segment_source, segments_dir, "seg", number)
            message = ext_message(segments_dir, bucket, number, segment_duration=1, duration=0.5)
            assert client.send(message) == Ack(number)
            wait_for(lambda: published(daemon, number), message=f"segment {number} published")
            playlist = fetch_playlist(url)  # through the checker: any removal leaving < 3 s fails the test
            assert playlist.target_duration == 1
            listed.append((len(playlist.segments), sum(Decimal(str(s.duration)) for s in playlist.segments)))
    assert listed[-1] == (6, Decimal(3))
    assert all(length == min(number, 6) for number, (length, _) in enumerate(listed, start=1))


def test_an_event_playlist_with_a_discontinuity_is_only_appended_to(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    # A new run (discontinuity=1) and a failed segment both tag the next segment; an EVENT
    # playlist must not gain EXT-X-DISCONTINUITY-SEQUENCE in its header for them (RFC 8216 6.2.1).
    daemon = start_uploader("--allow-dir", str(segments_dir), "--playlist-type", "event")
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    texts: list[str] = []
    with daemon.connect() as client:
        for number in range(1, 9):
            if number != 6:  # segment 6 never reaches the disk: it fails, segment 7 is tagged
                place_segment(segment_source, segments_dir, "seg", number)
            message = ext_message(segments_dir, bucket, number, discontinuity=number in (1, 4), end=number == 8)
            assert client.send(message) == Ack(number)
            wait_for(lambda: published(daemon, number) or f"seg-{number:05d}.ts failed permanently" in daemon.log(),
                     message=f"segment {number} published or failed")
            texts.append(http_get(url).text)
            fetch_playlist(url, playlist_type="event")  # the session's checker: append-only, line for line
    history = History("event")
    for text in texts:
        history.add(text)
    assert history.problems == []
    final = history.last
    assert final is not None and final.endlist
    assert [(s.uri, s.discontinuity) for s in final.segments] == [
        ("seg-00001.ts", False), ("seg-00002.ts", False), ("seg-00003.ts", False), ("seg-00004.ts", True),
        ("seg-00005.ts", False), ("seg-00007.ts", True), ("seg-00008.ts", False)]
    assert not any("DISCONTINUITY-SEQUENCE" in text for text in texts)
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]) if "ENDLIST" not in earlier)


def test_an_ended_stream_started_again_under_the_same_name_is_refused_and_its_playlist_stays(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, media: MediaCache, tmp_path: Path
) -> None:
    # After EXT-X-ENDLIST a playlist never changes (RFC 8216 6.2.1): a second hls-segment run
    # under the same BUCKET/KEY_PREFIX/INDEX_NAME is refused, says why in one line and exits 3;
    # its segments stay in OUTPUT_DIR; viewers keep the ended playlist, byte for byte.
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    daemon = start_uploader("--allow-dir", str(out_dir), "--keep-segment-files")
    clip = media.ts(seconds=6, gop_seconds=2)
    url = seaweed.object_url(bucket, f"{KEY_PREFIX}/{INDEX}")
    first = run_segmenter(clip, "2", out_dir, daemon.port, bucket=bucket)
    assert first.returncode == 0, first.stderr
    ended = wait_for(lambda: (r := http_get(url)).status == 200 and r.text.endswith("#EXT-X-ENDLIST\n") and r.body,
                     message="the ended playlist")
    fetch_playlist(url)
    produced = len(segment_files(out_dir))

    second = run_segmenter(clip, "2", out_dir, daemon.port, bucket=bucket)
    assert second.returncode == 3, second.stderr
    reason = (f"stream {bucket}/{KEY_PREFIX}/{INDEX} has ended and its playlist is final (RFC 8216 6.2.1):"
              " start the new run under another INDEX_NAME or KEY_PREFIX")
    last_line = second.stderr.splitlines()[-1]
    assert last_line == (f"hls-segment: 3 refused by the daemon (segment {produced + 1}-{produced + 3}:"
                         f" {reason})"), second.stderr
    assert "every message acknowledged" not in second.stderr
    assert len(segment_files(out_dir)) == produced + 3  # the new run's media is kept where it was cut
    for number in range(produced + 1, produced + 4):
        assert f"segment {PREFIX}-{number:05d}.ts refused: {reason}" in daemon.log()
        assert http_get(seaweed.object_url(bucket, f"{KEY_PREFIX}/{PREFIX}-{number:05d}.ts")).status == 404
    assert http_get(url).body == ended
    fetch_playlist(url)

    # A re-sent message of the ended run is still answered OK (idempotent), and changes nothing.
    with daemon.connect() as client:
        last = ext_message(out_dir, bucket, produced, index=INDEX, key_prefix=KEY_PREFIX, output_prefix=PREFIX,
                           end=True)
        assert client.send(last) == Ack(produced)
        refused = client.send(ext_message(out_dir, bucket, 1, index=INDEX, key_prefix=KEY_PREFIX,
                                          output_prefix=PREFIX, discontinuity=True))
        assert refused == Reject.because(reason)
    # And after a daemon restart, the spool still knows the stream ended.
    daemon.stop()
    daemon.start()
    with daemon.connect() as client:
        refused = client.send(ext_message(out_dir, bucket, produced + 4, index=INDEX, key_prefix=KEY_PREFIX,
                                          output_prefix=PREFIX))
        assert refused == Reject.because(reason)
    assert http_get(url).body == ended
