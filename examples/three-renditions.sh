#!/usr/bin/env bash
# One source, three ffmpeg encoders at the original's ladder (128k, 256k and 364k in all, audio
# included; 320x240, 480x360, 640x480, one GOP of 2 s each so the renditions line up), three
# hls-segment processes and one hls-uploadd that writes the master playlist.
#
#   examples/three-renditions.sh [SECONDS]      # default 30; Ctrl-C ends it early
#
# S3: $AWS_ENDPOINT_URL (with credentials in the environment) when set, else an embedded
# SeaweedFS on loopback started here. The bucket is $BUCKET (default "live"), created if missing.
# Needs ffmpeg. Prints the master playlist URL (and the player page, which plays the master).
set -euo pipefail

RUN_SECONDS=${1:-30}
BUCKET=${BUCKET:-live}
KEY_PREFIX=${KEY_PREFIX:-program}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# This checkout's .venv (./dev demo, ./dev s3 or ./dev test make it) when there is one, else PATH's.
if [ -x "$HERE/.venv/bin/python" ]; then
    PATH="$HERE/.venv/bin:$PATH"
    PYTHON=${PYTHON:-$HERE/.venv/bin/python}
fi
PYTHON=${PYTHON:-python3}
for tool in hls-uploadd hls-segment; do
    command -v "$tool" >/dev/null || {
        echo "three-renditions: $tool not found: run ./dev s3 once (it makes $HERE/.venv with it; Ctrl-C it), or pip install -e '$HERE[embedded]'" >&2
        exit 2
    }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/three-renditions.XXXXXX")
SECRET="$WORK/secret"
PIDS=()

cleanup() {
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "logs and segments kept in $WORK"
}
trap cleanup EXIT INT TERM

command -v ffmpeg >/dev/null || { echo "three-renditions: ffmpeg is needed" >&2; exit 2; }

if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
    # An embedded SeaweedFS for the length of the run; it writes its endpoint, then waits.
    PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$WORK" "$BUCKET" <<'PY' > "$WORK/s3.log" 2>&1 &
import signal, sys, threading
from pathlib import Path
from examples.embedded_s3 import EmbeddedS3
work, bucket = Path(sys.argv[1]), sys.argv[2]
s3 = EmbeddedS3(work / "s3")
s3.start()
s3.create_bucket(bucket)
lines = [f"{k}={v}" for k, v in s3.client_environment().items()] + [f"AWS_ENDPOINT_URL={s3.endpoint_url}"]
(work / "s3.env.tmp").write_text("\n".join(lines) + "\n")
(work / "s3.env.tmp").rename(work / "s3.env")
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
stop.wait()
s3.stop()
PY
    PIDS+=($!)
    for _ in $(seq 300); do [ -f "$WORK/s3.env" ] && break; sleep 0.1; done
    [ -f "$WORK/s3.env" ] || { echo "three-renditions: the embedded S3 did not start: $(tail -n 1 "$WORK/s3.log")" >&2; exit 1; }
    set -a; . "$WORK/s3.env"; set +a
fi

# A shared secret, as segmenters on other hosts would use (here all on loopback).
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$SECRET"
chmod 600 "$SECRET"

hls-uploadd --listen 127.0.0.1:0 --port-file "$WORK/port" --spool-dir "$WORK/spool" \
    --allow-dir "$WORK" --bucket "$BUCKET" --endpoint-url "$AWS_ENDPOINT_URL" \
    --secret-file "$SECRET" --player-page > "$WORK/uploadd.out" 2> "$WORK/uploadd.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
PORT=$(cat "$WORK/port")

# One source (a test pattern and a tone), encoded three times from the same frames.
for spec in "low 320x240 96k" "mid 480x360 224k" "high 640x480 332k"; do
    set -- $spec
    name=$1 size=$2 vbps=$3
    mkdir -p "$WORK/$name"
    ffmpeg -hide_banner -loglevel error -re \
        -f lavfi -i "testsrc2=size=640x480:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
        -t "$RUN_SECONDS" -s "$size" \
        -c:v libx264 -preset veryfast -tune zerolatency -b:v "$vbps" -maxrate "$vbps" -bufsize "$vbps" \
        -g 50 -keyint_min 50 -sc_threshold 0 -pix_fmt yuv420p \
        -c:a aac -b:a 32k -f mpegts - 2> "$WORK/$name-ffmpeg.log" |
    hls-segment - 2 "$WORK/$name" "$name" "$name.m3u8" "" "$BUCKET" "$KEY_PREFIX" \
        --uploader "127.0.0.1:$PORT" --secret-file "$SECRET" -q 2> "$WORK/$name-segment.log" &
    PIDS+=($!)
done

echo "master playlist: $AWS_ENDPOINT_URL/$BUCKET/$KEY_PREFIX/master.m3u8"
echo "player page:     $AWS_ENDPOINT_URL/$BUCKET/$KEY_PREFIX/index.html"
echo "running for $RUN_SECONDS s (Ctrl-C to stop)"
# Wait for the three pipelines (the last three PIDs), then let the daemon publish the ENDLISTs.
for pid in "${PIDS[@]: -3}"; do wait "$pid" || true; done
"$PYTHON" - "$AWS_ENDPOINT_URL/$BUCKET/$KEY_PREFIX" <<'PY' || true
import sys, time, urllib.error, urllib.request
base = sys.argv[1]
def get(name):
    try:
        return urllib.request.urlopen(f"{base}/{name}").read().decode()
    except urllib.error.URLError:
        return ""
deadline = time.monotonic() + 30  # the daemon publishes the last segments and the ENDLISTs
while time.monotonic() < deadline:
    master = get("master.m3u8")
    ended = all("#EXT-X-ENDLIST" in get(f"{n}.m3u8") for n in ("low", "mid", "high"))
    if ended and master.count("#EXT-X-STREAM-INF") == 3:
        break
    time.sleep(0.5)
print("--- master.m3u8\n" + master)
PY
