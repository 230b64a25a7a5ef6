"""The `wfbatch` command: one group, one module per command."""

from __future__ import annotations

import logging

import click

from wfbatch import __version__
from wfbatch.cli.lazy_group import LazyGroup

# Each command's module is imported when that command runs: a plain `status` must not pay for the
# daemon, the engine, boto3, the simulator and Textual (see lazy_group).
COMMANDS: dict[str, str] = {
    "run": "wfbatch.cli.run_cmd:run_command",
    "plan": "wfbatch.cli.plan_cmd:plan_command",
    "costs": "wfbatch.cli.costs_cmd:costs_command",
    "sim": "wfbatch.cli.sim_cmd:sim_command",
    "config": "wfbatch.cli.config_cmd:config_command",
    "tui": "wfbatch.cli.tui_cmd:tui_command",
    "daemon": "wfbatch.cli.daemon_cmd:daemon_command",
    "web": "wfbatch.cli.web_cmd:web_command",
    "status": "wfbatch.cli.remote_cmd:status_command",
    "jobs": "wfbatch.cli.remote_cmd:jobs_command",
    "show": "wfbatch.cli.remote_cmd:show_command",
    "retry": "wfbatch.cli.remote_actions:retry_command",
    "cancel": "wfbatch.cli.remote_actions:cancel_command",
    "edit": "wfbatch.cli.remote_actions:edit_command",
    "pause": "wfbatch.cli.remote_actions:pause_command",
    "resume": "wfbatch.cli.remote_actions:resume_command",
    "review": "wfbatch.cli.remote_actions:review_command",
    "budget": "wfbatch.cli.remote_actions:budget_command",
    "priority": "wfbatch.cli.share_cmd:priority_command",
    "weight": "wfbatch.cli.share_cmd:weight_command",
    "submit": "wfbatch.cli.remote_submit:submit_command",
    "db": "wfbatch.cli.db_cmd:db_command",
}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wfbatch")
@click.option("-v", "--verbose", is_flag=True, help="Log what the engine does to stderr.")
def main(verbose: bool) -> None:
    """Push thousands of prompts through slow, rate-limited, metered image APIs."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
