"""What signing a private stream's URLs costs each playlist upload (--url-mode, uploader/urls.py).

Renders one media playlist of N segments as the publisher does before each upload: public
(relative URIs), presigned (a SigV4 presigned URL per segment, botocore with the daemon's client
settings) and cloudfront-signed (an RSA-2048 SHA-1 signature per segment, `cryptography`), and
prints the time per playlist and per URL, and each mode's ratio against public. A live window
lists 5 segments; an EVENT playlist lists every segment of its stream, so its cost grows with it.
Then the same through ``SignedUrls`` as the publisher uses it: a URL reused until a quarter of
its TTL has passed, so an upload signs only the segment new since the last one.

    python benchmarks/url_signing.py [--segments 5 100 1000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from uploader.cli import SigningSettings, s3_client  # noqa: E402
from uploader.playlist import PlaylistOptions, PlaylistType, media_playlist  # noqa: E402
from uploader.stream import PublishedSegment, StreamState  # noqa: E402
from uploader.urls import SignedUrls, UrlMode, cloudfront_signer, presigned_signer  # noqa: E402

TTL_S = 3600.0


def state(count: int) -> StreamState:
    segments = tuple(PublishedSegment(n, f"live-{n:05d}.ts", 2.0, False, key=f"stream0001/live-{n:05d}.ts")
                     for n in range(1, count + 1))
    return StreamState(target_duration_s=2, segments=segments, next_media_sequence=count + 1)


def per_playlist_s(render: Callable[[], str], repeat: int) -> float:
    """The median time of one render, seconds."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        render()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, nargs="+", default=[5, 100, 1000])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    client = s3_client(SigningSettings(UrlMode.PRESIGNED, "http://127.0.0.1:8333", "us-east-1", "path", None, None,
                                       None, s3_checksums=None, max_inflight=1))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    signers = {
        "presigned": presigned_signer(client),
        "cloudfront-signed": cloudfront_signer("d111111abcdef8.cloudfront.net", "K2JCJMDEHXQW5F", pem),
    }
    print(f"one playlist render, median of {args.repeat}:")
    for count in args.segments:
        options = PlaylistOptions(window=count, playlist_type=PlaylistType.EVENT)
        stream = state(count)
        public = per_playlist_s(lambda: media_playlist(stream, options), args.repeat)
        print(f"  {count:5d} segments: public {public * 1e3:8.3f} ms")
        for mode, sign in signers.items():
            def uri(segment: PublishedSegment, sign: Callable[[str, str, float], str] = sign) -> str:
                return sign("ionlivestream", segment.key or segment.uri, TTL_S)
            took = per_playlist_s(lambda: media_playlist(stream, options, uri), args.repeat)
            print(f"  {count:5d} segments: {mode:17} {took * 1e3:8.3f} ms = {took / count * 1e6:6.1f} us per URL,"
                  f" x{took / public:.0f} public")
            urls = SignedUrls(sign, TTL_S)
            media_playlist(state(count - 1), options, lambda s: urls("ionlivestream", s.key or s.uri))  # the last upload
            reused = per_playlist_s(lambda: media_playlist(stream, options, lambda s: urls("ionlivestream", s.key or s.uri)),
                                    args.repeat)
            print(f"  {count:5d} segments: {mode:17} {reused * 1e3:8.3f} ms with URLs reused (x{reused / public:.1f}"
                  " public)")


if __name__ == "__main__":
    main()
