"""Command line of hls-segment: the one place where errors become a message and an exit code.

Exit codes: 0 done, every message acknowledged; 1 an unexpected failure (e.g. the disk; a full
OUTPUT_DIR ends the stream first);
2 bad usage, configuration or input; 3 messages left undelivered or refused by the daemon;
4 refused as the stream's writer (another segmenter writes it, or took it over);
130 stopped by a second SIGINT/SIGTERM/SIGHUP/SIGQUIT without finishing.

Signals: SIGINT, SIGTERM, SIGHUP (a closed terminal) and SIGQUIT end the stream cleanly: the open
segment is finished and announced as the last (ENDLIST); a second one stops at once. SIGUSR1
logs a status line; SIGUSR2 switches DEBUG logging on, or back.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Annotated, Any, NoReturn

import av
import av.logging
import typer

from common.logs import format_handler, logs_json
from common.options import with_options
from common.settings import ConfigError

from .config import ENV_PREFIX, OPTIONS, SECTION, SegmenterConfig
from .errors import NotTheWriter, OutputFull
from .input import InputError
from .notifier import DeliveryReport
from .progress import Progress, StatusAwareHandler
from .segmenter import Segmenter

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_UNDELIVERED = 3
EXIT_NOT_WRITER = 4
EXIT_INTERRUPTED = 130

log = logging.getLogger(__name__)

app = typer.Typer(add_completion=False, rich_markup_mode=None, help="Live segmenter: MPEG-TS in, HLS segments and index messages out.")


def _fail(message: str, code: int) -> NoReturn:
    if logs_json():
        log.error(message)
    else:
        print(f"hls-segment: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def _config_error(error: ConfigError) -> NoReturn:
    _fail(str(error), EXIT_BAD_INPUT)


@app.command()
@with_options(OPTIONS, env_prefix=ENV_PREFIX, section=SECTION, fail=_config_error, program="hls-segment")
def run(
    input: Annotated[str, typer.Argument(metavar="INPUT", help="'-' for stdin, or a file or URL FFmpeg opens.")],
    segment_duration: Annotated[str, typer.Argument(metavar="SEGMENT_DURATION", help="Target seconds, e.g. 10 or 2.5.")],
    output_dir: Annotated[str, typer.Argument(metavar="OUTPUT_DIR", help="Where segment files are written.")],
    output_prefix: Annotated[str, typer.Argument(metavar="OUTPUT_PREFIX", help="Segments are OUTPUT_PREFIX-%05u.ts.")],
    index_name: Annotated[str, typer.Argument(metavar="INDEX_NAME", help="Playlist name, e.g. stream-128k.m3u8.")],
    http_prefix: Annotated[str, typer.Argument(metavar="HTTP_PREFIX", help="URL prefix of segments in the playlist.")],
    bucket: Annotated[str, typer.Argument(metavar="BUCKET", help="S3 bucket.")],
    key_prefix: Annotated[str, typer.Argument(metavar="KEY_PREFIX", help="S3 key prefix.")],
    **settings: Any,
) -> None:
    """Cut a live stream into HLS segments and tell hls-uploadd about each one."""
    stop, abort = threading.Event(), threading.Event()
    try:
        segmenter_config = SegmenterConfig.from_settings(
            input=input, segment_duration=segment_duration, output_dir=output_dir,
            output_prefix=output_prefix, index_name=index_name, http_prefix=http_prefix,
            bucket=bucket, key_prefix=key_prefix, settings=settings,
        )
    except ConfigError as error:
        _config_error(error)
    json_lines = segmenter_config.log_format == "json"
    progress = Progress(quiet=segmenter_config.quiet or json_lines)  # no status line between JSON lines
    _setup_logging(segmenter_config, status_line=progress.status_line)
    _install_signal_handlers(stop, abort, progress)
    if segmenter_config.metrics_address is not None:
        _serve_metrics(segmenter_config)
    try:
        summary = Segmenter(segmenter_config, stop=stop, abort=abort, progress=progress).run()
    except (ConfigError, InputError) as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        _fail("stopped before the current segment was finished", EXIT_INTERRUPTED)
    except OutputFull as error:
        _fail(str(error), EXIT_FAILURE)
    except NotTheWriter as error:
        _fail(f"stopped: {error}", EXIT_NOT_WRITER)
    except OSError as error:
        _fail(f"{error.filename or 'I/O'}: {error.strerror or error}", EXIT_FAILURE)
    problem = _undelivered(summary.delivery, segmenter_config)
    if problem:
        _fail(problem, EXIT_UNDELIVERED)
    if unconfirmed := summary.delivery.unconfirmed:
        log.warning("%d message(s) queued by the daemon but not yet confirmed published (segment %s of %s); kept in"
                    " %s and re-sent by the next run, which a daemon that has them takes as duplicates",
                    len(unconfirmed), _ranges([m.last_segment for m in unconfirmed]), segmenter_config.index_name,
                    summary.delivery.outbox)
    log.info("done: segments %d to %d, every message acknowledged", summary.first_segment, summary.last_segment)


def _undelivered(report: DeliveryReport, config: SegmenterConfig) -> str:
    parts = []
    peer = ", ".join(f"{host}:{port}" for host, port in config.uploaders)
    if report.undelivered:
        numbers = _ranges([m.last_segment for m in report.undelivered])
        parts.append(
            f"{len(report.undelivered)} message(s) not delivered to {peer} (segment {numbers} of "
            f"{config.index_name}); kept in {report.outbox} and re-sent by the next run"
        )
    if report.refused:
        numbers = _ranges([m.last_segment for m, _ in report.refused])
        parts.append(f"{len(report.refused)} refused by the daemon (segment {numbers}: {report.refused[-1][1]})")
    return "; ".join(parts)


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3, 5'."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _serve_metrics(config: SegmenterConfig) -> None:
    """Start the --metrics-listen endpoint: /metrics, and /healthz, which fails while the input
    has sent nothing for --stall-warning seconds."""
    from common.endpoint import HEALTH_PATH, OperatorEndpoint

    from . import metrics

    def healthy() -> str | None:
        silent_s = metrics.input_silent_s()
        if silent_s is not None and silent_s >= config.stall_warning_s:
            return f"no input for {silent_s:.0f} s (--stall-warning {config.stall_warning_s:g})"
        return None

    assert config.metrics_address is not None
    host, port = config.metrics_address
    try:
        host, port = OperatorEndpoint(metrics.REGISTRY, {HEALTH_PATH: healthy}).start(host, port)
    except OSError as error:
        _fail(f"cannot serve --metrics-listen {host}:{port}: {error.strerror}", EXIT_BAD_INPUT)
    log.info("metrics on http://%s/metrics, health on /healthz", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


def _setup_logging(config: SegmenterConfig, *, status_line: bool) -> None:
    stream = f"{config.bucket}/{config.key_prefix}/{config.index_name}" if config.key_prefix else (
        f"{config.bucket}/{config.index_name}")
    handler = format_handler(StatusAwareHandler(sys.stderr, clear=status_line), config.log_format,
                             static={"stream": stream})
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if config.quiet else logging.INFO)
    # FFmpeg's own warnings say what it skipped in damaged input (resyncs, corrupt packets).
    av.logging.set_level(av.logging.WARNING)


def _install_signal_handlers(stop: threading.Event, abort: threading.Event, progress: Progress) -> None:
    configured_level = logging.getLogger().level

    def handle(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            stop.set()
            log.warning("%s: finishing the current segment, then stopping (again to stop at once)",
                        signal.Signals(signum).name)
            return
        abort.set()
        raise KeyboardInterrupt

    def status(signum: int, frame: FrameType | None) -> None:
        log.warning("SIGUSR1: status: %s", progress.summary())  # WARNING: shown with --quiet too

    def debug(signum: int, frame: FrameType | None) -> None:
        root = logging.getLogger()
        root.setLevel(configured_level if root.level == logging.DEBUG else logging.DEBUG)
        log.warning("SIGUSR2: log level now %s (SIGUSR2 again switches back)", logging.getLevelName(root.level))

    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(number, handle)
    signal.signal(signal.SIGUSR1, status)
    signal.signal(signal.SIGUSR2, debug)


def main() -> None:
    app()
