"""Command line of hls-ladder: one source, a bitrate ladder, one hls-segment per rendition.

Exit codes: 0 every rendition ended cleanly (ENDLIST); 1 a rendition's segmenter or the decoder
failed (the others were ended); 2 bad usage or configuration (or a segmenter refused its own);
130 stopped by a second SIGINT/SIGTERM/SIGHUP.

Signals: SIGINT, SIGTERM and SIGHUP end every rendition cleanly (ENDLIST); a second one stops at
once (the segmenters still end their streams).
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import typer

from common.logs import format_handler, logs_json
from common.options import (
    LOG_FORMAT, SECONDS, SWITCH, TEXT, TEXT_LIST, Option, config_fields, optional_path, optional_text, with_options,
)
from common.settings import ConfigError
from common.tls import check_cas

from .config import check_stalls, parse_segment_seconds, positive_seconds, seconds_or_zero
from .input import TLS_SCHEMES, tls_options
from .ladder import ENCODERS, PRESETS, Rendition, check_ladder, ladder_from_toml, rendition_from_spec
from .ladder_run import Ladder, LadderPlan

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
SECTION = "ladder"
ENV_PREFIX = "HLS_LADDER_"

log = logging.getLogger(__name__)

app = typer.Typer(add_completion=False, rich_markup_mode=None,
                  help="One source, a bitrate ladder: decode once, encode each rendition, segment and publish.")


def _ladder(flag: str, value: str) -> tuple[Rendition, ...]:
    if value in PRESETS:
        return PRESETS[value]
    path = Path(value).expanduser()
    if not path.suffix == ".toml" and not path.exists():
        raise ConfigError(f"{flag} {value!r} is neither a preset ({', '.join(PRESETS)}) nor a TOML file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{flag}: cannot read {value}: {getattr(error, 'strerror', None) or error}") from None
    return ladder_from_toml(text, source=value)


def _renditions(flag: str, specs: list[str] | None) -> tuple[Rendition, ...]:
    return check_ladder(tuple(rendition_from_spec(spec) for spec in specs)) if specs else ()


def _encoder(flag: str, value: str) -> str:
    if value not in ENCODERS:
        raise ConfigError(f"{flag} {value!r} is not one of {', '.join(ENCODERS)}")
    return value


def _frame_rate(flag: str, value: str | None) -> Fraction | None:
    if not value:
        return None
    try:
        rate = Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{flag} {value!r} is not a frame rate (25, 30000/1001, 29.97)") from None
    if not 1 <= rate <= 240:
        raise ConfigError(f"{flag} {value!r} is outside 1..240 frames per second")
    return rate


def _segment_seconds(flag: str, value: str) -> Fraction:
    try:
        return parse_segment_seconds(value)
    except ConfigError as error:
        raise ConfigError(str(error).replace("SEGMENT_DURATION", flag)) from None


# Every option of hls-ladder, in the order --help lists them. What hls-segment is told beyond
# its positional arguments comes from --uploader, --secret-file and --segment-option (or its
# own HLS_SEGMENT_* environment, which it inherits).
OPTIONS = (
    Option("ladder", TEXT, "modern", f"A preset ({', '.join(PRESETS)}) or a TOML file of [[rendition]] tables.",
           convert=_ladder, fields=("ladder_renditions",), metavar="PRESET|FILE"),
    Option("rendition", TEXT_LIST, None,
           "NAME:SIZE:VIDEO_BITRATE[:AUDIO_BITRATE], e.g. 720p:1280x720:2800k:128k; replaces --ladder.",
           convert=_renditions, fields=("given_renditions",), metavar="SPEC", shown_default="none"),
    Option("segment_seconds", TEXT, "2", "Target segment duration, seconds; keyframes fall on this grid.",
           convert=_segment_seconds, metavar="SECONDS"),
    Option("encoder", TEXT, "libx264", f"H.264 encoder: {', '.join(ENCODERS)}.", convert=_encoder, metavar="NAME"),
    Option("encoder_preset", TEXT, None, "The encoder's speed preset (libx264: veryfast; h264_nvenc: p4).",
           convert=optional_text, metavar="NAME", shown_default="the encoder's"),
    Option("frame_rate", TEXT, None, "Make the frames constant-rate at this rate first (25, 30000/1001).",
           convert=_frame_rate, metavar="FPS", shown_default="the source's"),
    Option("audio", SWITCH, True, "Encode the source's first audio track (when it has one).",
           flags=("--audio/--no-audio",)),
    Option("uploader", TEXT, None, "hls-segment --uploader: the daemon(s), HOST:PORT[,...].",
           convert=optional_text, metavar="HOST:PORT[,...]", shown_default="hls-segment's"),
    Option("secret_file", TEXT, None, "hls-segment --secret-file.", convert=optional_text, metavar="PATH"),
    Option("segment_option", TEXT_LIST, None, "Another hls-segment option for every rendition, e.g. "
           "--segment-option=--tls-ca=/etc/hls/ca.pem.", convert=lambda flag, value: tuple(value or ()),
           metavar="OPTION", shown_default="none"),
    Option("stall_warning", SECONDS, 10.0, "Warn when the source has sent nothing for this many seconds.",
           convert=positive_seconds, fields=("stall_warning_s",), metavar="SECONDS"),
    Option("stall_end", SECONDS, 0.0, "End the stream (ENDLIST) when the source has sent nothing for this many"
           " seconds; 0: never.", convert=seconds_or_zero, fields=("stall_end_s",), metavar="SECONDS"),
    Option("input_ca", TEXT, None, "CA certificate(s) (PEM) that sign an https:// (rtmps://, tls://) INPUT's TLS certificate.",
           convert=optional_path, metavar="FILE", shown_default="the system's CAs"),
    Option("ffmpeg", TEXT, "ffmpeg", "The ffmpeg program that decodes and encodes.", metavar="PATH"),
    Option("hls_segment", TEXT, None, "The hls-segment program.", metavar="PATH",
           convert=optional_text, shown_default="the one installed beside hls-ladder"),
    LOG_FORMAT,
    Option("quiet", SWITCH, False, "Warnings and errors only (hls-segment too).", flags=("--quiet", "-q")),
)


# The segmenters wait this long for their first bytes: the ladder watches the source itself
# (--stall-warning, --stall-end), from its start.
SEGMENTER_PROBE_TIMEOUT_S = 365 * 86400


@dataclass(frozen=True, slots=True)
class LadderConfig:
    """hls-ladder's validated settings (see OPTIONS) and positional arguments."""

    source: str
    output_dir: Path
    bucket: str
    key_prefix: str
    renditions: tuple[Rendition, ...]
    segment_seconds: Fraction
    encoder: str
    encoder_preset: str | None
    frame_rate: Fraction | None
    audio: bool
    uploader: str | None
    secret_file: str | None
    segment_option: tuple[str, ...]
    stall_warning_s: float
    stall_end_s: float
    input_ca: Path | None  # the CAs an https INPUT's certificate is checked against; None: the system's
    ffmpeg: str
    hls_segment: str
    log_format: str
    quiet: bool

    def __post_init__(self) -> None:
        check_stalls(self.stall_warning_s, self.stall_end_s)
        if self.input_ca is not None:
            if urlsplit(self.source).scheme not in TLS_SCHEMES:
                raise ConfigError("--input-ca applies to an https://, rtmps:// or tls:// INPUT, not to stdin, a file or another"
                                  " URL")
            check_cas("--input-ca", self.input_ca)

    @property
    def source_options(self) -> tuple[str, ...]:
        """ffmpeg's options that make it check the TLS certificate of an https://, rtmps:// or tls:// INPUT
        (segmenter.input.tls_options: ffmpeg checks none by default); none for anything else,
        which the ffmpeg command line refuses them for."""
        if urlsplit(self.source).scheme not in TLS_SCHEMES:
            return ()
        return tuple(arg for name, value in tls_options(self.source, self.input_ca).items()
                     for arg in (f"-{name}", value))

    @classmethod
    def from_settings(cls, *, source: str, output_dir: str, bucket: str, key_prefix: str,
                      settings: dict[str, Any]) -> LadderConfig:
        """Raises ConfigError."""
        fields = config_fields(OPTIONS, settings)
        given, ladder = fields.pop("given_renditions"), fields.pop("ladder_renditions")
        for program in ("ffmpeg",):
            if shutil.which(fields[program]) is None:
                raise ConfigError(f"--{program} {fields[program]!r}: no such program")
        fields["hls_segment"] = fields["hls_segment"] or _installed("hls-segment")
        if shutil.which(fields["hls_segment"]) is None:
            raise ConfigError(f"--hls-segment {fields['hls_segment']!r}: no such program")
        return cls(source=source, output_dir=Path(output_dir).absolute(), bucket=bucket, key_prefix=key_prefix,
                   renditions=given or ladder, **fields)

    def segmenter_command(self, rendition: Rendition, directory: Path) -> list[str]:
        """hls-segment for ``rendition``, reading stdin, its segments in ``directory``, its playlist
        NAME.m3u8 under KEY_PREFIX (the daemon lists every rendition of the key prefix in the
        master playlist). Stalls are the ladder's to handle, a source silent from the start too:
        the segmenter never ends on one."""
        command = [self.hls_segment, "-", _decimal(self.segment_seconds), str(directory), rendition.name,
                   f"{rendition.name}.m3u8", "", self.bucket, self.key_prefix, "--stall-end", "0",
                   "--probe-timeout", str(SEGMENTER_PROBE_TIMEOUT_S)]
        if self.uploader:
            command += ["--uploader", self.uploader]
        if self.secret_file:
            command += ["--secret-file", self.secret_file]
        if self.quiet:
            command.append("--quiet")
        if self.log_format != "text":
            command += ["--log-format", self.log_format]
        return command + list(self.segment_option)

    def plan(self) -> LadderPlan:
        return LadderPlan(source=self.source, renditions=self.renditions, segment_seconds=self.segment_seconds,
                          output_dir=self.output_dir, segmenter=self.segmenter_command, ffmpeg=self.ffmpeg,
                          encoder=self.encoder, encoder_preset=self.encoder_preset, frame_rate=self.frame_rate,
                          audio=self.audio, stall_warning_s=self.stall_warning_s, stall_end_s=self.stall_end_s,
                          source_options=self.source_options)


def _decimal(seconds: Fraction) -> str:
    """A segment duration as hls-segment reads it ("2", "2.5"); its grid is exact either way."""
    return str(seconds.numerator) if seconds.denominator == 1 else repr(float(seconds))


def _installed(name: str) -> str:
    """The console script ``name`` of this installation (beside hls-ladder or this Python), else
    PATH's. Raises ConfigError."""
    beside = (Path(sys.argv[0]).absolute().parent / name, Path(sys.executable).parent / name)
    found = next((str(path) for path in beside if path.exists()), None) or shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} is not installed beside hls-ladder nor on PATH (--hls-segment PATH)")
    return found


def _fail(message: str, code: int) -> NoReturn:
    if logs_json():
        log.error(message)
    else:
        print(f"hls-ladder: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def _config_error(error: ConfigError) -> NoReturn:
    _fail(str(error), EXIT_BAD_INPUT)


@app.command()
@with_options(OPTIONS, env_prefix=ENV_PREFIX, section=SECTION, fail=_config_error, program="hls-ladder")
def run(
    source: Annotated[str, typer.Argument(metavar="INPUT", help="'-' for stdin, or a URL or file FFmpeg opens"
                                          " (udp://, srt://, rtmp://, a camera).")],
    output_dir: Annotated[str, typer.Argument(metavar="OUTPUT_DIR", help="Segments go to OUTPUT_DIR/NAME/.")],
    bucket: Annotated[str, typer.Argument(metavar="BUCKET", help="S3 bucket.")],
    key_prefix: Annotated[str, typer.Argument(metavar="KEY_PREFIX", help="S3 key prefix of the renditions"
                                              " and their master playlist.")],
    **settings: Any,
) -> None:
    """Decode one live source once, encode every rendition of a ladder with keyframes on one grid,
    and publish each through its own hls-segment; the daemon writes the master playlist."""
    try:
        config = LadderConfig.from_settings(source=source, output_dir=output_dir, bucket=bucket,
                                            key_prefix=key_prefix, settings=settings)
    except ConfigError as error:
        _config_error(error)
    handler = format_handler(logging.StreamHandler(sys.stderr), config.log_format, static={"stream": key_prefix})
    if config.log_format == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.WARNING if config.quiet else logging.INFO)
    ladder = Ladder(config.plan())
    stops = 0

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal stops
        stops += 1
        log.warning("%s: %s", signal.Signals(signum).name,
                    "ending every rendition (again to stop at once)" if stops == 1 else "stopping at once")
        ladder.stop()

    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, handle)
    try:
        result = ladder.run()
    except OSError as error:  # a rendition's directory, a program that cannot be started
        _fail(f"cannot start: {error}", EXIT_BAD_INPUT)
    codes = result.segmenter_codes
    if stops > 1:
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.refused:
        _fail("a segmenter refused its configuration (its message is above)", EXIT_BAD_INPUT)
    failed = sorted(name for name, code in codes.items() if code)
    if result.failure or failed:
        _fail(result.failure or f"hls-segment failed for {', '.join(failed)}", EXIT_FAILURE)
    log.info("every rendition ended: %s", ", ".join(codes))


def main() -> None:
    app()
