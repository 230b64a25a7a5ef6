"""The words a newcomer reads: a suggestion for a mistyped command, counted nouns, figures without
float noise, a plan that says when drafting first costs more, and a CSV whose quote never closes."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.test_drafts import PREMIUM, TEST_KEY
from wfbatch.cli.main import main as cli_main
from wfbatch.core.words import figure, plural


def _plan(tmp_path: Path, name: str, content: str, **env: str) -> tuple[int, str]:
    path = tmp_path / name
    path.write_text(content)
    home = {"WFBATCH_HOME": str(tmp_path / "h")}
    shown = CliRunner().invoke(cli_main, ["plan", str(path)], env={**home, **env})
    return shown.exit_code, shown.output


def test_a_mistyped_command_gets_a_suggestion() -> None:
    shown = CliRunner().invoke(cli_main, ["stauts"])
    assert shown.exit_code == 2
    assert "Did you mean 'status'?" in shown.output
    unknown = CliRunner().invoke(cli_main, ["xyzzy"])
    assert unknown.exit_code == 2 and "Did you mean" not in unknown.output


def test_counted_nouns_and_figures() -> None:
    assert [plural(1, "entry"), plural(2, "entry"), plural(1, "job"), plural(1200, "job")] == [
        "1 entry", "2 entries", "1 job", "1,200 jobs"
    ]
    assert figure(0.1 + 0.11) == "0.21"
    assert figure(1.0) == "1"


def test_plan_of_one_prompt_says_one_entry_and_never_that_nothing_was_enqueued(tmp_path: Path) -> None:
    code, output = _plan(tmp_path, "one.txt", "a red fox\n")
    assert code == 0, output
    assert output.startswith("1 entry → 1 job, 1 unique")
    code, output = _plan(tmp_path, "bad.csv", 'prompt,seed\n"a fox, unterminated,1\nb,2\n')
    assert code == 2
    assert "enqueued" not in output
    assert 'bad.csv:2: a quoted cell opened on this line is never closed (a missing ")' in output


def test_a_csv_cell_over_several_lines_is_still_one_good_row(tmp_path: Path) -> None:
    code, output = _plan(tmp_path, "ok.csv", 'prompt,seed\nfine,1\n"two\nlines",2\n')
    assert code == 0, output
    assert output.startswith("2 entries → 2 jobs")


def test_plan_says_when_drafting_first_costs_more(tmp_path: Path) -> None:
    """Drafts at a final's price: the pipeline adds the drafts' cost; say so instead of `saving -x`."""
    spec = {
        "name": "shoes", "prompts": [f"a shoe, take {i}" for i in range(10)],
        "draft": {"model": PREMIUM, "width": 512, "height": 512},
        "final": {"model": PREMIUM, "width": 1024, "height": 1024},
    }
    env = {"WFBATCH_PROVIDER": "replicate", "WFBATCH_REPLICATE__API_KEY": TEST_KEY,
           "WFBATCH_REPLICATE__BASE_URL": "http://127.0.0.1:9"}
    code, output = _plan(tmp_path, "shoes.json", json.dumps(spec), **env)
    assert code == 0, output
    assert "saving -" not in output
    assert "drafting first costs" in output and "more" in output


def test_budget_is_one_option_with_one_range_and_jobs_review_has_help() -> None:
    from wfbatch.cli.plan_cmd import plan_command
    from wfbatch.cli.remote_submit import submit_command
    from wfbatch.cli.run_cmd import run_command

    def budget(command: click.Command) -> str:
        option = next(p for p in command.params if p.name == "budget")
        assert isinstance(option, click.Option)
        return f"{option.type!r} {option.help}"

    assert budget(submit_command) == budget(run_command) == budget(plan_command)
    assert "x>=0" in CliRunner().invoke(cli_main, ["submit", "--help"]).output
    shown = CliRunner().invoke(cli_main, ["jobs", "--help"]).output
    assert "Only jobs with this review status" in shown


def test_status_lines_are_never_cut_mid_word_at_80_columns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wfbatch.cli.remote_render import render_status
    from wfbatch.protocol import DeliveryBacklog, Status

    monkeypatch.setenv("COLUMNS", "80")
    reason = "NoSuchBucket: s3://wfbatch-deliveries-of-the-marketing-team-2026/renders does not exist"
    render_status(Status(
        version="0", jobs={"done": 3}, paused=False, providers={}, batches=[],
        pipeline={"drafts": 120, "drafts_done": 118, "approved": 40, "rejected": 70, "finals": 40,
                  "finals_done": 39},
        delivery=DeliveryBacklog(done=1, held=2, held_reasons=[reason]),
    ))
    lines = capsys.readouterr().out.splitlines()
    assert any(reason in line for line in lines)  # one line: a terminal wraps it, rich does not fold it
    assert any(line.endswith("39/40 finals made") and line.startswith("drafts → finals") for line in lines)


def test_a_run_that_made_nothing_names_no_images_folder(tmp_path: Path) -> None:
    path = tmp_path / "broken.txt"
    path.write_text("a BROKEN thing\n")
    env = {"WFBATCH_HOME": str(tmp_path / "h"), "WFBATCH_PROVIDER": "local",
           "WFBATCH_LOCAL__PERMANENT_FAIL_MARKER": "BROKEN"}
    shown = CliRunner().invoke(cli_main, ["run", str(path)], env=env)
    assert shown.exit_code == 1, shown.output
    assert "images:" not in shown.output
    assert "0 done, 1 failed" in shown.output
