"""The `wfbatch` command: one group, one module per command."""

from __future__ import annotations

import logging

import click

from wfbatch import __version__
from wfbatch.cli.config_cmd import config_command
from wfbatch.cli.daemon_cmd import daemon_command
from wfbatch.cli.plan_cmd import plan_command
from wfbatch.cli.remote_actions import (
    budget_command,
    cancel_command,
    edit_command,
    pause_command,
    resume_command,
    retry_command,
    review_command,
)
from wfbatch.cli.remote_cmd import jobs_command, show_command, status_command
from wfbatch.cli.remote_submit import submit_command
from wfbatch.cli.run_cmd import run_command
from wfbatch.cli.sim_cmd import sim_command
from wfbatch.cli.tui_cmd import tui_command


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
main.add_command(plan_command)
main.add_command(sim_command)
main.add_command(config_command)
main.add_command(tui_command)
main.add_command(daemon_command)
main.add_command(status_command)
main.add_command(jobs_command)
main.add_command(show_command)
main.add_command(retry_command)
main.add_command(cancel_command)
main.add_command(edit_command)
main.add_command(pause_command)
main.add_command(resume_command)
main.add_command(review_command)
main.add_command(budget_command)
main.add_command(submit_command)
