"""What a newcomer meets in the CLI at a real terminal's size: tables that fit 80 columns without
losing ids or states, batches named by a prefix or their name, one line for every mistake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.daemon_harness import DaemonProcess, clean_env, jsonl, running_daemon
from wfbatch.cli.main import main as cli_main
from wfbatch.cli.remote_render import fit_widths, short_ids
from wfbatch.protocol import error_headline

MARKER = "FAILME"
ENV = {
    "WFBATCH_LOCAL__LATENCY_MIN": "0.01",
    "WFBATCH_LOCAL__LATENCY_MAX": "0.03",
    "WFBATCH_LOCAL__PERMANENT_FAIL_MARKER": MARKER,
}
LONG = "a very long prompt about a ceramic mug on a wooden table in soft morning light, " * 3


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with running_daemon(env=ENV) as running:
        yield running


def _submit(daemon: DaemonProcess, name: str, content: str) -> str:
    path = daemon.socket.parent / name
    path.write_text(content)
    result = daemon.cli("submit", str(path), "--json")
    assert result.exit_code == 0, result.output
    batch_id: str = json.loads(result.stdout)[0]["batch_id"]
    return batch_id


def _settled(daemon: DaemonProcess, batch_id: str) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        jobs: list[dict[str, Any]] = daemon.get("/v1/jobs", batch=batch_id, limit=500)["items"]
        return jobs if all(j["state"] in ("done", "failed") for j in jobs) else None

    result: list[dict[str, Any]] = daemon.wait_until(done, 20, f"batch {batch_id} settled")
    return result


def test_failed_jobs_at_80_columns_keep_id_and_state_and_wide_shows_all(daemon: DaemonProcess) -> None:
    batch_id = _submit(daemon, "narrow.jsonl", jsonl(f"{MARKER} {LONG} one", f"{MARKER} {LONG} two", "fine"))
    failed = [j for j in _settled(daemon, batch_id) if j["state"] == "failed"]
    assert len(failed) == 2

    narrow = daemon.cli("jobs", "--state", "failed", "--batch", batch_id, columns=80)
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.stdout.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), narrow.stdout
    for job in failed:
        row = next(line for line in lines if line.split()[:1] == [str(job["id"])])
        assert "failed" in row.split()[1:3]  # after the id (and the batch, when there is room)
        # The error gets the room, the provider's words first, cut on the right with an ellipsis.
        assert job["error"]["message"][:12] in row and "…" in row
        assert "HTTP 422:" not in row  # the kind goes after the words: `… (HTTP 422)`

    for wide_flag in (["--wide"], ["-o", "wide"]):
        wide = daemon.cli("jobs", "--state", "failed", "--batch", batch_id, *wide_flag, columns=80)
        assert failed[0]["error"]["message"] in wide.stdout and batch_id in wide.stdout


def test_show_at_80_columns_keeps_the_attempts_outcome_and_http(daemon: DaemonProcess) -> None:
    batch_id = _submit(daemon, "show.jsonl", jsonl(f"{MARKER} {LONG}"))
    job = _settled(daemon, batch_id)[0]
    shown = daemon.cli("show", str(job["id"]), columns=80)
    assert shown.exit_code == 0, shown.output
    header = next(line for line in shown.stdout.splitlines() if line.startswith("at "))
    assert header.split()[:4] == ["at", "kind", "outcome", "http"]
    assert any("permanent" in line and "422" in line for line in shown.stdout.splitlines())
    as_json = json.loads(daemon.cli("show", str(job["id"]), "--json").stdout)
    # ISO 8601 on the wire, as in the manifests (not epoch floats).
    assert as_json["updated_at"].startswith("20") and "T" in as_json["updated_at"]
    assert "T" in as_json["attempts_history"][0]["at"]


def _json_of(result: Result) -> Any:
    """A command's JSON answer; on a failure, what it said instead (CI saw an empty answer once)."""
    assert result.exit_code == 0 and result.stdout.strip(), (result.exit_code, result.output)
    return json.loads(result.stdout)


def test_a_batch_is_named_by_a_unique_prefix_or_its_name(daemon: DaemonProcess) -> None:
    first = _submit(daemon, "prefix-a.jsonl", jsonl("prefix a"))
    second = _submit(daemon, "prefix-b.jsonl", jsonl("prefix b"))
    _settled(daemon, first)
    _settled(daemon, second)
    # `common` is shared by both; `unique` is the shortest prefix of `first` no other batch of this
    # (module-wide) daemon shares. A prefix one character past `common` is not enough: ids begin
    # with the second they were made in, so when the two came a second apart it is that second,
    # which an earlier test's batch made in it shares too.
    others = [b["id"] for b in daemon.get("/v1/batches", limit=500)["items"] if b["id"] != first]
    assert second in others
    unique = first[: 1 + max(len(os.path.commonprefix([first, other])) for other in others)]  # noqa: RUF071 (ids)
    common = os.path.commonprefix([first, second])  # noqa: RUF071 (ids, not paths)

    by_prefix = _json_of(daemon.cli("jobs", "--batch", unique, "--json"))
    assert {j["batch_id"] for j in by_prefix} == {first}
    by_name = _json_of(daemon.cli("jobs", "--batch", "prefix-b", "--json"))
    assert {j["batch_id"] for j in by_name} == {second}
    paused = daemon.cli("pause", "--batch", unique)
    assert paused.exit_code == 0 and first in paused.stdout
    assert daemon.cli("resume", "--batch", "prefix-a").exit_code == 0

    ambiguous = daemon.cli("jobs", "--batch", common)
    assert ambiguous.exit_code == 2 and first in ambiguous.output and second in ambiguous.output
    unknown = daemon.cli("jobs", "--batch", "no-such-batch")
    assert unknown.exit_code == 2 and "no batch 'no-such-batch'" in unknown.output
    assert daemon.cli("budget", "no-such-batch", "3").exit_code == 2


def test_review_with_two_decisions_is_refused() -> None:
    result = CliRunner().invoke(cli_main, ["review", "1", "--approve", "--reject"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "wfbatch: say one of --approve, --reject or --pending, not approve and reject"
    ]


def _one_line_exit_2(args: list[str], env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "wfbatch", *args], capture_output=True, text=True, timeout=60,
        env=clean_env(env),
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_an_unusable_home_is_one_line_and_exit_2(tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\n")
    a_file = tmp_path / "home-is-a-file"
    a_file.write_text("")
    line = _one_line_exit_2(["run", str(prompts), "--home", "/proc/wfbatch-home"])
    assert "/proc/wfbatch-home" in line and "cannot be used as wfbatch's home" in line
    line = _one_line_exit_2(["plan", str(prompts)], {"WFBATCH_HOME": str(a_file)})
    assert str(a_file) in line
    line = _one_line_exit_2(["run", str(prompts), "--home", str(a_file)])
    assert str(a_file) in line
    if os.geteuid() != 0:  # root writes into read-only folders
        read_only = tmp_path / "ro"
        read_only.mkdir()
        for sub in ("inbox", "archive", "rejected", "cache", "output"):
            (read_only / sub).mkdir()
        read_only.chmod(0o555)
        try:
            line = _one_line_exit_2(["run", str(prompts), "--home", str(read_only)])
        finally:
            read_only.chmod(0o755)
        assert str(read_only) in line


def test_plan_without_a_key_fails_and_an_unknown_provider_gets_a_suggestion(tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps({"name": "spec", "prompts": [{"prompt": "a fox", "variants": 2}]}))
    home = tmp_path / "h"
    for provider in ("fal", "replicate", "stability"):
        out = subprocess.run(
            [sys.executable, "-m", "wfbatch", "plan", str(prompts), "--provider", provider,
             "--home", str(home)],
            capture_output=True, text=True, timeout=60, env=clean_env(),
        )
        assert out.returncode == 2 and "needs an API key" in out.stderr, out.stderr
        assert " WARNING " not in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "wfbatch", "run", str(prompts), "--provider", "wirefow", "--home", str(home)],
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )
    assert out.returncode == 2 and "did you mean 'wireflow'?" in out.stderr


def test_run_json_on_a_terminal_draws_progress_on_stderr_and_keeps_stdout_clean(tmp_path: Path) -> None:
    import pty

    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"a fox number {i}\n" for i in range(6)))
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "wfbatch", "run", str(prompts), "--json", "--home", str(tmp_path / "h")],
            stdout=subprocess.PIPE, stderr=follower, env=clean_env({"COLUMNS": "100", "TERM": "xterm"}),
        )
        os.close(follower)
        stdout, _ = process.communicate(timeout=90)
        drawn = b""
        while True:  # the pty holds what was drawn; it reads EIO once the writer is gone and it is empty
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
    summary = json.loads(stdout)
    assert summary["done"] == 6
    text = drawn.decode("utf-8", "replace")
    assert "images" in text and "6/6" in text  # the last frame shows the end, never frozen short of it


def test_run_json_on_a_pipe_draws_nothing(tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\n")
    out = subprocess.run(
        [sys.executable, "-m", "wfbatch", "run", str(prompts), "--json", "--home", str(tmp_path / "h")],
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )
    assert out.returncode == 0 and json.loads(out.stdout)["done"] == 1
    assert "images" not in out.stderr


def test_fit_widths_gives_flexible_columns_the_rest() -> None:
    # id 3 and state 6 are kept whole; prompt (ratio 1) and error (ratio 2) share 60 cells.
    assert fit_widths([3, 6, 100, 100], [False, False, True, True], [1, 1, 1, 2], 69) == [3, 6, 20, 40]
    # A short prompt needs only its length: the error gets the surplus.
    assert fit_widths([3, 6, 5, 100], [False, False, True, True], [1, 1, 1, 2], 69) == [3, 6, 5, 55]


def test_short_batch_ids_are_unique_prefixes() -> None:
    ids = ["b6b0dcf816c6bde", "b6b0dcf844372e6", "c0ffee000000000"]
    assert short_ids(ids) == {
        "b6b0dcf816c6bde": "b6b0dcf81", "b6b0dcf844372e6": "b6b0dcf84", "c0ffee000000000": "c0ffee0",
    }


def test_a_failed_execution_is_not_called_http_200() -> None:
    assert error_headline(200) == "execution failed"
    assert error_headline(422) == "HTTP 422"


def test_today_is_counted_from_the_store_across_a_restart(tmp_path: Path) -> None:
    from tests.conftest_sim import fast_options
    from wfbatch.sim import RunningSimulator

    # 5xx answers to some starts: a refused start is no execution, and must not count as one.
    with RunningSimulator(fast_options(error_rate=0.3, faults=("5xx",), seed=11)) as sim:
        env = {
            "WFBATCH_PROVIDER": "wireflow",
            "WFBATCH_WIREFLOW__BACKOFF_INITIAL": "0.05",
            "WFBATCH_WIREFLOW__BASE_URL": sim.base_url,
            "WFBATCH_WIREFLOW__API_KEY": "sk-today-test",
            "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo",
            "WFBATCH_WIREFLOW__PLAN": "enterprise",
            "WFBATCH_WIREFLOW__POLL_INITIAL": "0.05",
            "WFBATCH_WIREFLOW__POLL_MAX": "0.2",
        }
        with running_daemon(env=env) as daemon:
            prompts = tmp_path / "three.jsonl"
            prompts.write_text(jsonl("one", "two", "three"))
            assert daemon.cli("submit", str(prompts)).exit_code == 0
            daemon.wait_for_jobs(lambda jobs: jobs["done"] == 3, timeout=30)
            created = sim.state.stats()["executions_created"]
            assert daemon.status()["providers"]["wireflow"]["daily_executions"] == created
            daemon.stop()
            daemon.start()
            assert daemon.status()["providers"]["wireflow"]["daily_executions"] == created


def test_a_plain_status_imports_neither_the_daemon_nor_the_tui_nor_boto3(tmp_path: Path) -> None:
    """`wfbatch status` loads its own command only (cli/lazy_group.py): the engine, boto3, the
    simulator and Textual cost a second or two of every `status` on a small machine."""
    probe = (
        "import sys\n"
        "from wfbatch.cli.main import main\n"
        "try:\n"
        "    main(['status', '--socket', sys.argv[1]])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('wfbatch.engine', 'wfbatch.daemon', 'wfbatch.sim', 'textual', 'boto3', 'matplotlib')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "nobody.sock")],
        env=clean_env({"WFBATCH_HOME": str(tmp_path / "home")}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "no wfbatch daemon answers on" in result.stderr  # it ran the command, which said why not
    assert result.stdout.strip() == "[]", result.stdout


def test_every_command_is_listed_and_loads() -> None:
    runner = CliRunner()
    listed = runner.invoke(cli_main, ["--help"])
    assert listed.exit_code == 0, listed.output
    names = "run plan sim config tui daemon status jobs show retry cancel edit pause resume review budget"
    for name in [*names.split(), "submit"]:
        assert f"  {name} " in listed.output
        shown = runner.invoke(cli_main, [name, "--help"])
        assert shown.exit_code == 0 and "Usage:" in shown.output, (name, shown.output)
