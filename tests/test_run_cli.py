"""`wfbatch run` end to end, as a user runs it: a subprocess with its own HOME."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from PIL import Image

from wfbatch.engine.intake.acceptance import check_prompts
from wfbatch.engine.intake.control import Accepted, Control, Resumed
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.outputs import read_manifest
from wfbatch.settings import load_settings
from wfbatch.store import Reuse, Store

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def wfbatch(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "WFBATCH_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "wfbatch", *args], capture_output=True, text=True, env=full_env, timeout=120
    )


def run_json(home: Path, *files: str | Path, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = wfbatch(home, "run", *map(str, files), "--json", env=env)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_second_run_is_served_entirely_from_the_cache(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, first = run_json(home, EXAMPLES / "training-data.csv")
    assert code == 0
    assert first["done"] == first["total"] == 3
    assert first["provider_requests"] == 3
    code, second = run_json(home, EXAMPLES / "training-data.csv")
    assert code == 0
    assert second["batch_ids"] != first["batch_ids"]  # finished before: a new batch
    assert second["cache_hits"] == second["total"] == 3
    assert second["provider_requests"] == 0
    manifest = read_manifest(Path(second["output_dirs"][0]))
    assert all(e.cache_hit for e in manifest.entries)
    for entry in manifest.entries:
        assert entry.file is not None
        with Image.open(Path(second["output_dirs"][0]) / entry.file) as image:
            image.verify()


def test_a_bad_line_rejects_the_whole_file_and_names_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad = tmp_path / "mixed.jsonl"
    bad.write_text('{"prompt": "good one"}\n{"prompt": "bad", "widht": 5}\n{"prompt": "good two"}\n')
    result = wfbatch(home, "run", str(bad), "--json")
    assert result.returncode == 2
    assert "mixed.jsonl:2" in result.stderr
    assert "did you mean 'width'" in result.stderr
    assert result.stdout == ""
    db = home / "wfbatch.db"
    if db.exists():
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
        finally:
            conn.close()


def test_failures_are_listed_with_status_message_and_request_id(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        '{"prompt": "ok", "width": 64, "height": 64}\n{"prompt": "FAILME", "width": 64, "height": 64}\n'
    )
    code, out = run_json(tmp_path / "home", prompts, env={"WFBATCH_LOCAL__PERMANENT_FAIL_MARKER": "FAILME"})
    assert code == 1
    assert out["done"] == 1 and out["failed"] == 1
    failure = out["failures"][0]
    assert failure["http_status"] == 422
    assert "FAILME" in failure["message"]
    assert failure["request_id"]
    assert failure["prompt"] == "FAILME"


def test_stopped_with_work_left_exits_3_with_the_reason(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "waits", "width": 64, "height": 64}\n')
    home = tmp_path / "home"
    home.mkdir()
    (home / "wfbatch.toml").write_text("[local]\ndaily_executions = 1\n")
    code, _ = run_json(home, prompts)
    assert code == 0
    other = tmp_path / "q.jsonl"
    other.write_text('{"prompt": "over the cap", "width": 64, "height": 64}\n')
    code, out = run_json(home, other)
    assert code == 3
    assert out["queued"] == 1
    assert "daily execution cap" in out["stop_reason"]["message"]
    # The unfinished batch is resumed, not duplicated, when the same file runs again.
    code, again = run_json(home, other)
    assert again["resumed"] == out["batch_ids"] and again["total"] == 1


async def test_run_enqueues_through_the_daemons_acceptance_and_runs_only_its_batches(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    """What `wfbatch run` does in-process: `Control.enqueue` (the second half of the daemon's
    `accept`) on an engine of its own batches. The same content again resumes the unfinished
    batch, taking this time's budget; a batch accepted some other way is not run."""
    settings = load_settings(home, provider="local")
    other = await Control(Engine(store, settings, layout)).accept(b"someone else's fox\n", "other.txt")
    assert isinstance(other, Accepted) and other.batch is not None
    engine = Engine(store, settings, layout, batch_ids=[])
    control = Control(engine)
    first = await control.enqueue(check_prompts(b"a red fox\n", "fox.txt", settings), reuse=Reuse.UNFINISHED)
    assert isinstance(first, Accepted) and first.batch is not None
    same = check_prompts(b"a red fox\n", "fox.txt", settings, budget=5.0)
    again = await control.enqueue(same, reuse=Reuse.UNFINISHED)
    assert isinstance(again, Resumed) and again.batch.id == first.batch.id and again.batch.budget == 5.0
    stored = await store.batches.get_batch(first.batch.id)
    assert stored is not None and stored.budget == 5.0
    assert engine.batch_ids == [first.batch.id]
    await engine.run_until_idle()
    assert (await store.counters.counts([first.batch.id]))["done"] == 1
    assert (await store.counters.counts([other.batch.id]))["queued"] == 1


def test_config_masks_secrets(tmp_path: Path) -> None:
    result = wfbatch(tmp_path / "home", "config", env={"WFBATCH_WIREFLOW__API_KEY": "sk-very-secret-123"})
    assert result.returncode == 0
    assert "sk-very-secret-123" not in result.stdout + result.stderr
    assert json.loads(result.stdout)["wireflow"]["api_key"] == "**********"


def test_a_size_the_model_does_not_take_is_refused_at_parse_time(tmp_path: Path) -> None:
    home = tmp_path / "home"
    lines = tmp_path / "file.jsonl"
    lines.write_text(
        '{"prompt": "fine", "provider": "openai"}\n'
        '{"prompt": "odd size", "provider": "openai", "width": 1000, "height": 1000, "variants": 2}\n'
    )
    key = {"WFBATCH_OPENAI__API_KEY": "sk-test-never-sent"}
    result = wfbatch(home, "run", str(lines), env=key)
    assert result.returncode == 2, result.stderr
    expected = (
        "file.jsonl:2: openai: size 1000x1000 is not one of 1024x1024, 1536x1024, 1024x1536 for gpt-image-1"
    )
    assert expected in result.stderr
    assert result.stderr.count("file.jsonl:2:") == 1  # once per line, not per variant
    assert "file.jsonl:1" not in result.stderr
    db = home / "wfbatch.db"
    if db.exists():
        with sqlite3.connect(db) as connection:
            assert connection.execute("SELECT COUNT(*) FROM jobs").fetchone() == (0,)
    result = wfbatch(home, "plan", str(lines), env=key)
    assert result.returncode == 2 and expected in result.stderr
