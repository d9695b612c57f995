"""Each option of a command declared once, as an ``Option``; from the declarations come the typer
options, the environment variables, the TOML keys and the fields of the command's config.

A setting called ``max_inflight`` is ``--max-inflight`` on the command line, ``PREFIX_MAX_INFLIGHT``
in the environment and ``max_inflight`` (or ``max-inflight``) in the TOML file's table. click takes
the first of: the command line, the environment, the file (its ``default_map``), the default.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from .logs import log_format
from .settings import (
    MAX_SECRET_FILE_BYTES,
    ConfigError,
    as_bool,
    as_int,
    as_list,
    as_seconds,
    as_text,
    metrics_address,
    option_name,
    parse_toml,
    secret_file_warning,
    secret_from_file,
)

log = logging.getLogger(__name__)

# The distribution both commands come from: ``--version`` reports its version.
DISTRIBUTION = "hls-distributor"

_Command = TypeVar("_Command", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Kind:
    """How a setting is written: ``annotation`` is the type typer parses the command line and the
    environment into; ``parse(setting, value)`` checks a value from a TOML file or a caller and
    returns it as that type, raising ConfigError."""

    annotation: Any
    parse: Callable[[str, Any], Any]
    note: str = ""  # added to the help
    path_type: type | None = None  # what typer gives for a path annotation (str: the text as given)


TEXT = Kind(str, as_text)
INTEGER = Kind(int, as_int)
SECONDS = Kind(float, as_seconds)
SWITCH = Kind(bool, as_bool)
TEXT_LIST = Kind(list[str], as_list, "Repeatable; the environment variable separates them with spaces.")
# Paths (the environment variable split at ':') as given, not as pathlib.Path: Path('') is '.', and
# an error would name the current directory for an empty one.
PATH_LIST = Kind(list[Path], as_list, "Repeatable; the environment variable separates them with ':'.", str)


def _unchanged(flag: str, value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Option:
    """One setting of a command.

    ``default`` is a value of the kind's type, or None for "not set". ``convert(flag, value)``
    turns the setting's value (None when not set) into the value of its config field, raising
    ConfigError with ``flag`` (``--max-inflight``) in the message when the value is refused. With
    several ``fields``, it returns a tuple of one value per field.
    """

    name: str
    kind: Kind
    default: Any
    help: str
    convert: Callable[[str, Any], Any] = _unchanged
    fields: tuple[str, ...] = ()  # the config fields it fills; () : the one called ``name``
    metavar: str | None = None
    flags: tuple[str, ...] = ()  # typer's declarations when not ``--name``: ("--quiet", "-q")
    shown_default: str | None = None  # the help's default when it is computed, not ``default``

    @property
    def flag(self) -> str:
        return option_name(self.name)


def with_options(
    options: tuple[Option, ...], *, env_prefix: str, section: str, fail: Callable[[ConfigError], NoReturn],
    program: str,
) -> Callable[[_Command], _Command]:
    """Decorator for a typer command whose last parameter is ``**settings``: in its place, one typer
    option per declaration, ``--config FILE`` (env ``PREFIX_CONFIG``), whose ``[section]``
    table becomes click's ``default_map``, and ``--version`` (prints ``program VERSION``, exits).
    The command gets every setting by name (``config`` is not one). ``fail`` reports a config file
    that cannot be used, and must exit."""

    def decorate(command: _Command) -> _Command:
        signature = inspect.signature(command, eval_str=True)
        fixed = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        generated = [_parameter(option, env_prefix) for option in options]
        config = _config_parameter(options, env_prefix=env_prefix, section=section, fail=fail)
        version = _version_parameter(program)
        command.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*fixed, *generated, config, version]
        )
        return command

    return decorate


def version_line(program: str) -> str:
    """``program VERSION``, the version from the installed package's metadata."""
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = f"unknown ({DISTRIBUTION} is not installed)"
    return f"{program} {version}"


def _version_parameter(program: str) -> inspect.Parameter:
    def show(value: bool) -> None:
        if value:
            typer.echo(version_line(program))
            raise typer.Exit()

    declaration = typer.Option("--version", help="Print the version and exit.", is_eager=True,
                               expose_value=False, callback=show)
    return inspect.Parameter("version", inspect.Parameter.KEYWORD_ONLY, default=False,
                             annotation=Annotated[bool, declaration])


def _parameter(option: Option, env_prefix: str) -> inspect.Parameter:
    help_text = f"{option.help} {option.kind.note}" if option.kind.note else option.help
    declaration = typer.Option(
        *option.flags,
        envvar=env_prefix + option.name.upper(),
        metavar=option.metavar,
        help=help_text,
        show_default=option.shown_default or True,
        path_type=option.kind.path_type,
    )
    return inspect.Parameter(
        option.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=option.default,
        annotation=Annotated[option.kind.annotation, declaration],
    )


def _config_parameter(
    options: tuple[Option, ...], *, env_prefix: str, section: str, fail: Callable[[ConfigError], NoReturn]
) -> inspect.Parameter:
    def load(context: typer.Context, path: str | None) -> None:
        if path:
            try:
                context.default_map = settings_from_file(options, path, section=section)
            except ConfigError as error:
                fail(error)

    declaration = typer.Option(
        envvar=env_prefix + "CONFIG",
        metavar="FILE",
        help=f"TOML file with a [{section}] table of these settings.",
        is_eager=True,  # read before the options it gives defaults to
        expose_value=False,
        callback=load,
    )
    return inspect.Parameter(
        "config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[str | None, declaration]
    )


def settings_from_file(options: tuple[Option, ...], path: str | Path, *, section: str) -> dict[str, Any]:
    """The ``[section]`` table of the TOML file at ``path``, by setting name, each value checked by
    its option's kind. Raises ConfigError for a file that cannot be read or parsed, a key that is
    no option, or a value of the wrong type."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    return settings_from_toml(options, text, source=str(path), section=section)


def settings_from_toml(options: tuple[Option, ...], text: str, *, source: str, section: str) -> dict[str, Any]:
    """``settings_from_file`` for a file's text; ``source`` names it in errors."""
    table = parse_toml(text, source=source, section=section)
    kinds = {option.name: option.kind for option in options}
    unknown = sorted(set(table) - set(kinds))
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s): {', '.join(unknown)}")
    return {name: kinds[name].parse(name, value) for name, value in table.items()}


def config_fields(options: tuple[Option, ...], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The config fields the options fill, from settings by name (a missing one takes its default):
    each value checked by its kind, then converted. Raises ConfigError."""
    fields: dict[str, Any] = {}
    for option in options:
        value = settings.get(option.name, option.default)
        if value is not None:
            value = option.kind.parse(option.name, value)
        value = option.convert(option.flag, value)
        names = option.fields or (option.name,)
        fields.update(zip(names, value, strict=True) if len(names) > 1 else {names[0]: value})
    return fields


def read_secret(flag: str, path: str | None) -> bytes | None:
    """Convert for ``--secret-file PATH``: the shared secret the file holds, None when not given.
    A file its group or others can read gets a warning line."""
    return secret_from_file(path, _read_secret_file)


def _read_secret_file(name: str) -> bytes:
    """A secret file's first MAX_SECRET_FILE_BYTES + 1 bytes (never more, whatever the file).
    Raises OSError."""
    with open(Path(name).expanduser(), "rb") as file:
        warning = secret_file_warning(name, os.fstat(file.fileno()).st_mode)
        if warning is not None:
            log.warning("%s", warning)
        return file.read(MAX_SECRET_FILE_BYTES + 1)


def optional_text(flag: str, value: str | None) -> str | None:
    """Convert for an optional text setting: None when not given or empty."""
    return value or None


def optional_path(flag: str, path: str | None) -> Path | None:
    """Convert for an optional FILE read at start-up (``--tls-cert FILE``): expanded and made
    absolute; None when not given."""
    return Path(path).expanduser().absolute() if path else None


# Settings both programs have, declared once.
LOG_FORMAT = Option("log_format", TEXT, "text", "text, or json: one JSON object per line (docs/operations.md).",
                    convert=log_format, metavar="FORMAT")


def metrics_listen(serves: str) -> Option:
    """``--metrics-listen``: the operator's endpoint, serving ``serves`` (its paths, for the help)."""
    return Option("metrics_listen", TEXT, None, f"Serve {serves} on HOST:PORT, or PORT on 127.0.0.1.",
                  convert=metrics_address, fields=("metrics_address",), metavar="HOST:PORT", shown_default="off")
