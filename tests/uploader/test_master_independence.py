"""EXT-X-INDEPENDENT-SEGMENTS in the master only on evidence (RFC 8216 4.3.5.1: it applies to
every segment). An open-GOP encoder's first segment starts with an IDR and says independent=1;
its later ones do not: a master written on the first segment's word would claim what the second
withdraws."""

from __future__ import annotations

from pathlib import Path

from tests.support.daemon import place_segment
from tests.support.rfc8216 import master_playlist_problems
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import http_get, wait_for
from uploader.master import INDEPENDENCE_EVIDENCE_SEGMENTS, master_playlist, needs_upload, sorted_variants, variant
from uploader.stream import RenditionInfo, StreamState, with_segment

from .conftest import StartUploader
from .test_daemon import ext_message

INFO = RenditionInfo("avc1.64000d,mp4a.40.2", "320x240", 25.0, None)
TAG = "#EXT-X-INDEPENDENT-SEGMENTS"


def publish(state: StreamState, independent: bool) -> StreamState:
    number = state.next_media_sequence
    return with_segment(state, uri=f"s-{number}.ts", duration_s=2.0, promised_s=2, discontinuity=False,
                        end=False, keep=5, size_bytes=50_000, independent=independent, info=INFO).state


def masters(claims: dict[str, list[bool]]) -> list[str | None]:
    """Every master the publisher would upload while the renditions' segments come in turn
    (segment 1 of each, then segment 2 of each, ...) saying ``claims``; None: not uploaded."""
    states = {name: StreamState() for name in claims}
    published = None
    texts: list[str | None] = []
    for number in range(max(len(c) for c in claims.values())):
        for name, said in claims.items():
            if number < len(said):
                states[name] = publish(states[name], said[number])
            current = sorted_variants([v for n, s in states.items() if (v := variant(n, s)) is not None])
            if needs_upload(published, current):
                published = current
                texts.append(master_playlist(current))
                assert master_playlist_problems(texts[-1]) == []
            else:
                texts.append(None)
    return texts


def test_an_open_gop_rendition_never_gets_the_tag_not_even_in_the_first_master() -> None:
    uploaded = [text for text in masters({"a.m3u8": [True, False, False], "b.m3u8": [True, False, False]}) if text]
    assert uploaded and not any(TAG in text for text in uploaded)


def test_the_tag_comes_with_each_renditions_second_independent_segment_and_stays() -> None:
    texts = masters({"a.m3u8": [True] * 4, "b.m3u8": [True] * 4})
    # a1, b1 (first master, no tag), a2 (a proven, b not), b2 (both: the tag), then nothing new.
    assert [text is not None and TAG in text for text in texts] == [False, False, False, True] + [False] * 4
    assert texts[1] is not None and TAG not in texts[1]
    assert texts[3] is not None and texts[3].count(TAG) == 1
    assert INDEPENDENCE_EVIDENCE_SEGMENTS == 2


def test_one_rendition_without_evidence_keeps_the_tag_out() -> None:
    proven = StreamState()
    for _ in range(3):
        proven = publish(proven, True)
    unproven = publish(StreamState(), True)
    variants = (variant("a.m3u8", proven), variant("b.m3u8", unproven))
    assert variants[0] is not None and variants[0].independent
    assert variants[1] is not None and not variants[1].independent
    assert TAG not in master_playlist(variants)  # type: ignore[arg-type]


def test_a_later_dependent_segment_withdraws_the_tag() -> None:
    # The residual risk docs/uploader.md names: evidence of one keyframe, contradicted later.
    texts = masters({"a.m3u8": [True, True, True, False], "b.m3u8": [True, True, True, True]})
    uploaded = [text for text in texts if text]
    assert TAG in uploaded[-2] and TAG not in uploaded[-1]


def test_the_daemon_claims_independence_only_on_evidence(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    """End to end. An open-GOP program: each rendition's segment 1 says independent=1, segment 2
    says 0; the master after the first segments must not carry the tag (it used to), nor any
    later one. A closed-GOP program: the tag once both renditions' second segments said 1."""
    daemon = start_uploader("--allow-dir", str(segments_dir))

    def master(program: str, *wanted: str) -> str:
        url = seaweed.object_url(bucket, f"{program}/master.m3u8")

        def current() -> str | None:
            reply = http_get(url)
            return reply.text if reply.status == 200 and all(w in reply.text for w in wanted) else None

        text = wait_for(current, message=f"the master of {program} with {wanted}")
        assert master_playlist_problems(text) == []
        return text

    def send(program: str, name: str, number: int, independent: bool) -> None:
        place_segment(segment_source, segments_dir, f"{program}-{name}", number)
        message = ext_message(segments_dir, bucket, number, index=f"{name}.m3u8", output_prefix=f"{program}-{name}",
                              key_prefix=program, independent=independent, codecs=INFO.codecs,
                              resolution=INFO.resolution, frame_rate=INFO.frame_rate)
        with daemon.connect() as client:
            client.send(message)
        playlist = seaweed.object_url(bucket, f"{program}/{name}.m3u8")
        wait_for(lambda: f"{program}-{name}-{number:05d}.ts" in http_get(playlist).text,
                 message=f"{program}/{name} segment {number} published")

    for program in ("open", "closed"):
        send(program, "low", 1, True)
        send(program, "high", 1, True)
        assert TAG not in master(program, "low.m3u8", "high.m3u8")
        send(program, "low", 2, program == "closed")
    assert TAG not in master("closed", "low.m3u8")  # high has no evidence yet
    for program in ("open", "closed"):
        send(program, "high", 2, program == "closed")
    assert TAG in master("closed", TAG)
    assert TAG not in master("open", "low.m3u8")
