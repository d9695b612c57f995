# hls-distributor: hls-segment, hls-uploadd and hls-ladder, with Debian's ffmpeg for a live encoder
# (and hls-ladder's decoder and encoders).
#   docker build -t hls-distributor .
#   docker run --rm hls-distributor hls-uploadd --help
# docker-compose.yml builds this image for the daemon, the encoder and the bucket set-up.
FROM python:3.11-slim

# ffmpeg is the encoder the compose file pipes into hls-segment (hls-segment itself reads the
# stream with PyAV, whose wheels carry their own FFmpeg libraries).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The project: its packages (common, protocol, segmenter, uploader), three console scripts (hls-segment,
# hls-uploadd, hls-ladder).
# README.md* : copied when present (pyproject.toml names it as the long description).
COPY pyproject.toml README.md* /tmp/build/
COPY common /tmp/build/common
COPY protocol /tmp/build/protocol
COPY segmenter /tmp/build/segmenter
COPY uploader /tmp/build/uploader
RUN pip install /tmp/build && rm -rf /tmp/build

# An unprivileged user. /segments and the spool directory belong to it, so named volumes
# mounted there start out writable (Docker copies a mount point's owner into a new volume).
RUN groupadd --system --gid 10001 hls \
    && useradd --system --uid 10001 --gid hls --create-home --home-dir /home/hls \
        --shell /usr/sbin/nologin hls \
    && install -d -o hls -g hls -m 0755 /segments /var/lib/hls-uploadd
ENV HLS_UPLOADD_SPOOL_DIR=/var/lib/hls-uploadd
USER hls
WORKDIR /home/hls

# hls-uploadd's index-message port (it listens on 127.0.0.1 unless --listen says otherwise).
EXPOSE 10234
CMD ["hls-uploadd"]
