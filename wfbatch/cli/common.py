"""Pieces every command shares: settings from flags, JSON output, exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import ValidationError

from wfbatch.settings import Settings, load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3

home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="wfbatch's folder (default: $WFBATCH_HOME, else the platform's user data folder).",
)


prompt_files_argument = click.argument(
    "files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
provider_option = click.option(
    "--provider", default=None, help="Provider for entries that name none (default: config)."
)
budget_option = click.option(
    "--budget",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Credits each batch may spend (overrides the file's).",
)


def settings_from_flags(home: Path | None, **overrides: Any) -> Settings:
    """Build the settings, turning a configuration mistake into one clear line and exit code 2."""
    try:
        return load_settings(home, **{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        fail(f"configuration error: {problems}")


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    click.echo(f"wfbatch: {message}", err=True)
    sys.exit(code)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))
