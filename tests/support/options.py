"""A command's settings as its command line, environment and --config file give them, read by the
command itself (click's precedence included) but without running it."""

from __future__ import annotations

from typing import Any

import typer
import typer.main


def command_settings(app: typer.Typer, *args: str) -> dict[str, Any]:
    """The settings ``app`` would run with, by name, for the command-line words ``args``."""
    return typer.main.get_command(app).make_context("command", list(args)).params
