"""A broken wfbatch.toml is one clear line (file:line:column or file: field: problem), exit 2, no
traceback and no secret; on SIGHUP the daemon keeps its settings and logs that line once."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_harness import clean_env, jsonl, running_daemon, short_tmpdir
from wfbatch.settings import SettingsError, load_settings

SECRET = "sk-never-echo-this-0123456789"
BROKEN_SYNTAX = 'provider = "local"\n[local]\nmax_in_flight 3\n'
BAD_FIELD = f'[wireflow]\napi_key = "{SECRET}"\nrequests_per_minute = "lots"\n'


def _home_with(config: str) -> Path:
    home = short_tmpdir("wfc-")
    (home / "wfbatch.toml").write_text(config)
    return home


def test_a_syntax_error_names_the_file_line_and_column() -> None:
    home = _home_with(BROKEN_SYNTAX)
    with pytest.raises(SettingsError) as caught:
        load_settings(home)
    assert str(caught.value).startswith(f"{home / 'wfbatch.toml'}:3:15: Expected '='")


def test_an_invalid_field_names_the_file_and_field_without_the_value() -> None:
    home = _home_with(f'[wireflow]\napi_key = {{ nested = "{SECRET}" }}\nrequests_per_minute = "lots"\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(home)
    message = str(caught.value)
    expected = f"{home / 'wfbatch.toml'}: wireflow.requests_per_minute: Input should be a valid integer"
    assert expected in message
    assert "wireflow.api_key" in message
    assert SECRET not in message and "\n" not in message


def test_an_invalid_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFBATCH_LOCAL__MAX_IN_FLIGHT", "lots")
    with pytest.raises(SettingsError, match=r"^WFBATCH_LOCAL__MAX_IN_FLIGHT: Input should be"):
        load_settings(short_tmpdir("wfc-"))


def test_a_config_that_is_not_text_is_one_line() -> None:
    home = short_tmpdir("wfc-")
    (home / "wfbatch.toml").write_bytes(b'provider = "\xff\xfe"\n')
    with pytest.raises(SettingsError, match=r"wfbatch\.toml: cannot be read: not UTF-8 text"):
        load_settings(home)


@pytest.mark.parametrize("command", [["status"], ["config"], ["run", "x.txt"], ["daemon"], ["jobs"]])
@pytest.mark.parametrize("config", [BROKEN_SYNTAX, BAD_FIELD], ids=["syntax", "field"])
def test_every_command_that_loads_settings_says_one_line_and_exits_2(
    command: list[str], config: str
) -> None:
    home = _home_with(config)
    out = subprocess.run(
        [sys.executable, "-m", "wfbatch", *command, "--home", str(home)],
        env=clean_env(), capture_output=True, text=True, timeout=30, check=False,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert "wfbatch.toml" in out.stderr and SECRET not in out.stderr + out.stdout


def test_sighup_with_a_broken_config_keeps_the_settings_and_logs_one_line() -> None:
    with running_daemon(env={"WFBATCH_LOCAL__LATENCY_MAX": "0.05"}) as daemon:
        config = daemon.home / "wfbatch.toml"
        config.write_text(BROKEN_SYNTAX)
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_until(lambda: "SIGHUP: configuration not reloaded" in daemon.log(), 10, "a reload error")
        config.write_text(BAD_FIELD)
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_until(lambda: "wireflow.requests_per_minute" in daemon.log(), 10, "the second error")
        # Still working with its old settings.
        daemon.drop("after.jsonl", jsonl("still running"))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 1)
        assert daemon.status()["providers"]["local"]["max_in_flight"] == 2
        log = daemon.log()
        assert "Traceback" not in log and SECRET not in log
        errors = [line for line in log.splitlines() if "SIGHUP" in line]
        assert len(errors) == 2, errors
        assert f"{config}:3:15: Expected '='" in errors[0]


def test_a_bad_schedule_window_is_said_plainly() -> None:
    # Seen in a rehearsal: "schedule.wireflow.windows: Value error, expected a window ...".
    home = _home_with('[schedule.wireflow]\nwindows = ["22:00-6:00x"]\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(home)
    where = f"{home / 'wfbatch.toml'}: schedule.wireflow.windows"
    expected = f'{where}: expected a window such as "22:00-06:00"'
    assert str(caught.value).startswith(expected), caught.value
