"""`wfbatch config`: the effective configuration, secrets masked."""

from __future__ import annotations

from pathlib import Path

import click

from wfbatch.cli.common import home_option, print_json, settings_from_flags
from wfbatch.settings import CONFIG_FILE_NAME


@click.command("config")
@home_option
def config_command(home: Path | None) -> None:
    """Print the effective configuration (defaults < wfbatch.toml < WFBATCH_* env < flags).

    API keys are shown as ********** — never in clear."""
    settings = settings_from_flags(home)
    data = settings.masked()
    data["config_file"] = str(settings.home / CONFIG_FILE_NAME)
    print_json(data)
