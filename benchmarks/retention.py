"""What a long live stream leaves behind: segments produced, published and deleted, and the bytes
left on the segmenter's disk, in the bucket and in the spool.

    python benchmarks/retention.py [--segment-seconds 0.5] [--media-seconds 300] [--speed 4]
                                   [--cdn-allowance 2] [--send-segments]

Starts a loopback SeaweedFS (examples.embedded_s3), hls-uploadd (live playlists, --window 5,
retention on) and hls-segment, and pipes a generated H.264+AAC clip (GOP = SEGMENT_DURATION)
into it at ``--speed`` times real time: ``--media-seconds`` / ``--segment-seconds`` segments.
Once the stream has ended and every removed segment's deletion has fallen due, it prints the
figures. Path mode by default (the daemon reads and then removes each file); ``--send-segments``
sends them inline (the segmenter removes each file once acknowledged).
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import m3u8  # noqa: E402

from examples.embedded_s3 import EmbeddedS3  # noqa: E402
from tests.support.daemon import UploaderDaemon  # noqa: E402
from tests.support.media import MediaCache  # noqa: E402
from tests.support.pipeline import Feeder, Segmenter, segmenter_command  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
BUCKET = "retention"
KEY_PREFIX = "long"
WINDOW = 5

# boto3 in the daemon: path-style URLs for the loopback endpoint, as the tests configure it.
AWS_CONFIG = "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n"


def directory_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segment-seconds", type=float, default=0.5)
    parser.add_argument("--media-seconds", type=float, default=300.0)
    parser.add_argument("--speed", type=float, default=4.0, help="times real time")
    parser.add_argument("--cdn-allowance", type=float, default=2.0)
    parser.add_argument("--send-segments", action="store_true")
    args = parser.parse_args()

    clip = MediaCache(CACHE / "media").ts(seconds=args.media_seconds, gop_seconds=args.segment_seconds, fps=30,
                                           video_bitrate=400_000)
    with tempfile.TemporaryDirectory() as work_text:
        work = Path(work_text)
        (work / "aws-config").write_text(AWS_CONFIG)
        with EmbeddedS3(work / "weed") as s3_server:
            s3_server.create_bucket(BUCKET)
            # The daemon and the segmenter run this checkout's code.
            environment = {**s3_server.client_environment(), "AWS_CONFIG_FILE": str(work / "aws-config"),
                           "PYTHONPATH": str(ROOT)}
            segments = work / "segments"
            segments.mkdir()
            daemon = UploaderDaemon(work / "uploadd", [
                "--allow-dir", str(segments), "--bucket", BUCKET, "--window", str(WINDOW),
                "--cdn-allowance", str(args.cdn_allowance), "--end-silent-after", "0",
            ], env={**os.environ, **environment}).start()
            try:
                began = time.monotonic()
                command = segmenter_command(f"{args.segment_seconds:g}", segments / "out", daemon.port, BUCKET,
                                            KEY_PREFIX, *(["--send-segments"] if args.send_segments else []))
                segmenter = Segmenter(command, work / "segment.log", environment)
                feeder = Feeder(clip, segmenter.proc, args.media_seconds, speed=args.speed)
                feeder.start()
                code = segmenter.wait(args.media_seconds / args.speed * 3 + 120)
                if code != 0:
                    raise SystemExit(f"hls-segment exited {code}:\n{segmenter.log()[-3000:]}")
                figures = settle(s3_server, daemon, args)
                done = re.search(r"done: segments (\d+) to (\d+)", segmenter.log())
                figures["segments_produced"] = int(done.group(2)) - int(done.group(1)) + 1 if done else "?"
                figures["wall_s"] = round(time.monotonic() - began, 1)
                figures["bytes_left_on_disk"] = directory_bytes(segments)
                figures["segment_files_left_on_disk"] = len(list((segments / "out").glob("live-*.ts")))
                figures["spool_bytes"] = directory_bytes(daemon.spool_dir)
            finally:
                daemon.stop()
    for name, value in figures.items():
        print(f"{name:>28}: {value}")


def settle(s3_server: EmbeddedS3, daemon: UploaderDaemon, args: argparse.Namespace) -> dict[str, object]:
    """Wait for the final playlist and for the spool's deletion queue to empty; the figures."""
    client = s3_server.client()
    try:
        final = ""
        while "#EXT-X-ENDLIST" not in final:
            time.sleep(0.2)
            try:
                final = client.get_object(Bucket=BUCKET, Key=f"{KEY_PREFIX}/live.m3u8")["Body"].read().decode()
            except client.exceptions.NoSuchKey:
                pass
        spool = daemon.spool_dir / "spool.sqlite3"
        while True:
            with sqlite3.connect(f"file:{spool}?mode=ro", uri=True) as db:
                pending = db.execute("SELECT count(*) FROM deletions").fetchone()[0]
            if not pending:
                break
            time.sleep(0.5)
        objects = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=KEY_PREFIX + "/"):
            for item in page.get("Contents", []):
                objects[item["Key"]] = item["Size"]
    finally:
        client.close()
    playlist = m3u8.loads(final)
    published = len(re.findall(r" segment \S+ published", daemon.log()))
    segment_objects = {key: size for key, size in objects.items() if key.endswith(".ts")}
    return {
        "segment_seconds": args.segment_seconds,
        "segments_published": published,
        "segments_deleted": published - len(segment_objects),
        "segments_left_in_bucket": len(segment_objects),
        "segments_in_final_playlist": len(playlist.segments),
        "bytes_left_in_bucket": sum(objects.values()),
        "objects_left_in_bucket": len(objects),
    }


if __name__ == "__main__":
    main()
