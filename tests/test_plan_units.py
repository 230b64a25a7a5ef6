"""`wfbatch plan` in the provider's unit, with the range a run will likely be charged where the
server picks the quality, and a batch API's window instead of "0m00s" (issue 30)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from wfbatch.cli.main import main as cli_main
from wfbatch.providers.registry import REGISTRY

OPENAI = {"WFBATCH_OPENAI__API_KEY": "sk-test"}


def _plan(tmp_path: Path, content: str, *args: str, **env: str) -> str:
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    home = {"WFBATCH_HOME": str(tmp_path / "h")}
    shown = CliRunner().invoke(cli_main, ["plan", str(path), *args], env={**home, **env})
    assert shown.exit_code == 0, shown.output
    return shown.output


def _lines(*entries: dict[str, object]) -> str:
    return "".join(json.dumps(e) + "\n" for e in entries)


def test_auto_quality_shows_what_the_run_will_likely_charge_and_what_budgets_reserve(tmp_path: Path) -> None:
    two = _lines({"prompt": "a fox"}, {"prompt": "a cat"})
    output = _plan(tmp_path, two, "--provider", "openai", **OPENAI)
    assert "estimated cost: 0.084–0.334 USD (quality auto: the server picks; budgets reserve 0.334)" in output
    assert "openai: 2 jobs, 0.042–0.167 USD each (quality auto" in output
    assert "credits" not in output  # dollars are not credits
    data = json.loads(_plan(tmp_path, two, "--provider", "openai", "--json", **OPENAI))
    assert data["likely_credits"] == [0.084, 0.334] and data["estimated_credits"] == 0.334
    assert data["unit"] == "USD"


def test_a_quality_given_is_one_price(tmp_path: Path) -> None:
    content = _lines({"prompt": "a fox", "params": {"quality": "medium"}})
    output = _plan(tmp_path, content, "--provider", "openai", **OPENAI)
    assert "estimated cost: 0.042 USD\n" in output and "–" not in output


def test_batch_mode_says_its_window_not_zero_minutes(tmp_path: Path) -> None:
    output = _plan(tmp_path, _lines({"prompt": "a fox"}), "--provider", "openai",
                   **OPENAI, WFBATCH_OPENAI__MODE="batch")
    assert "estimated duration: within 24h (batch mode)" in output
    assert "0m00s" not in output


def test_each_provider_prints_its_own_unit(tmp_path: Path) -> None:
    assert _plan(tmp_path, _lines({"prompt": "a fox"})).splitlines()[1] == "estimated cost: free"
    units = {name: entry.traits.cost_unit for name, entry in REGISTRY.items()}
    assert units["openai"] == units["fal"] == units["replicate"] == "USD"
    assert units["wireflow"] == units["stability"] == "credits"
    assert units["local"] == units["comfyui"] == "free"
