"""The `wfbatch` command: one group, one module per command."""

from __future__ import annotations

import logging

import click

from wfbatch import __version__
from wfbatch.cli.config_cmd import config_command
from wfbatch.cli.run_cmd import run_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wfbatch")
@click.option("-v", "--verbose", is_flag=True, help="Log what the engine does to stderr.")
def main(verbose: bool) -> None:
    """Push thousands of prompts through slow, rate-limited, metered image APIs."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


main.add_command(run_command)
main.add_command(config_command)
