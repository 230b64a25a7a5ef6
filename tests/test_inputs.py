"""Input pictures named by prompt entries: checked at parse time (exit 2, nothing enqueued, the line
named), resolved only inside the prompt file's folder and HOME/inputs, hashed by content."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from tests.test_run_cli import wfbatch
from wfbatch.core.hashing import cache_key
from wfbatch.core.parsing import PromptFileError
from wfbatch.engine.intake.acceptance import check_prompts
from wfbatch.settings import load_settings

STABILITY_KEY = {"WFBATCH_STABILITY__API_KEY": "sk-test-never-sent"}


def picture(path: Path, size: tuple[int, int] = (96, 64), color: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="PNG")
    return path


def no_jobs(home: Path) -> None:
    db = home / "wfbatch.db"
    if db.exists():
        with sqlite3.connect(db) as connection:
            assert connection.execute("SELECT COUNT(*) FROM jobs").fetchone() == (0,)


def test_passwd_a_symlink_out_an_empty_and_a_50_mb_file_are_each_refused_naming_the_line(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    work = tmp_path / "prompts"
    picture(work / "ok.png")
    outside = picture(tmp_path / "elsewhere" / "secret.png")
    (work / "link.png").symlink_to(outside)
    (work / "empty.png").write_bytes(b"")
    with (work / "huge.png").open("wb") as handle:  # sparse: 50 MB on paper, nothing on disk
        handle.truncate(50 * 1024 * 1024)
    (work / "notes.png").write_text("not a picture at all\n")
    lines = [
        {"prompt": "fine", "image": "ok.png", "strength": 0.5},
        {"prompt": "passwd", "image": "../../etc/passwd", "strength": 0.5},
        {"prompt": "symlink out", "image": "link.png", "strength": 0.5},
        {"prompt": "empty", "image": "empty.png", "strength": 0.5},
        {"prompt": "huge", "image": "huge.png", "strength": 0.5},
        {"prompt": "text", "image": "notes.png", "strength": 0.5},
        {"prompt": "absolute", "image": "/etc/passwd", "strength": 0.5},
        {"prompt": "missing", "image": "nope.png", "strength": 0.5},
    ]
    spec = work / "shots.jsonl"
    on_ultra = {"provider": "stability", "model": "ultra"}
    spec.write_text("".join(json.dumps({**line, **on_ultra}) + "\n" for line in lines))
    result = wfbatch(home, "run", str(spec), "--json", env=STABILITY_KEY)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    err = result.stderr
    assert "shots.jsonl:1:" not in err
    passwd = next(line for line in err.splitlines() if "shots.jsonl:2:" in line)
    assert passwd.startswith("shots.jsonl:2: image '../../etc/passwd': ")
    assert "refused: the path leads outside" in passwd
    assert "shots.jsonl:3: image 'link.png': refused: the path leads outside" in err
    assert "shots.jsonl:4: image 'empty.png': the file is empty (0 bytes)" in err
    assert "shots.jsonl:5: image 'huge.png': the file is too large: 50.0 MB, over the 20 MB limit" in err
    assert "shots.jsonl:6: image 'notes.png': not an image" in err
    assert "shots.jsonl:7: image '/etc/passwd': an absolute path is not taken" in err
    assert "shots.jsonl:8: image 'nope.png': no such file" in err
    no_jobs(home)


def test_dot_dot_out_of_the_folder_is_refused_even_when_the_file_exists(tmp_path: Path) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    picture(tmp_path / "a" / "outside.png")
    settings = load_settings(home=tmp_path / "home", stability={"api_key": "sk-x"})
    raw = json.dumps({"prompt": "p", "image": "../outside.png", "strength": 0.4, "provider": "stability"})
    with pytest.raises(PromptFileError) as caught:
        check_prompts(raw.encode(), "f.jsonl", settings, prompt_dir=work)
    assert "f.jsonl:1: image '../outside.png': refused: the path leads outside" in caught.value.report()


def test_inputs_come_from_the_prompt_folder_or_home_inputs_and_are_keyed_by_content(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = load_settings(home=home, stability={"api_key": "sk-x"})
    work = tmp_path / "work"
    picture(work / "shoe.png", color="blue")
    picture(home / "inputs" / "mask.png", color="white")
    picture(home / "inputs" / "renamed.png", color="blue")  # the same bytes as shoe.png
    csv_text = "prompt,image,strength,provider,model\nshoe on oak,shoe.png,0.6,stability,ultra\n"
    checked = check_prompts(csv_text.encode(), "rows.csv", settings, prompt_dir=work)
    spec = checked.expanded[0].spec
    image = spec.input_of("image")
    assert image is not None and image.location == str((work / "shoe.png").resolve())
    assert image.width == 96 and image.media_type == "image/png" and spec.strength == 0.6
    renamed = check_prompts(csv_text.replace("shoe.png", "renamed.png").encode(), "rows.csv", settings)
    assert cache_key(renamed.expanded[0].spec) == cache_key(spec)  # by content, not name or place
    picture(work / "shoe.png", color="green")
    changed = check_prompts(csv_text.encode(), "rows.csv", settings, prompt_dir=work)
    assert cache_key(changed.expanded[0].spec) != cache_key(spec)
    assert cache_key(replace(spec, inputs=())) != cache_key(spec)


def test_a_provider_that_takes_no_image_is_a_line_error_naming_who_can(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = load_settings(home=home, stability={"api_key": "sk-x"})
    picture(home / "inputs" / "shoe.png")
    raw = (
        '{"prompt": "ok", "image": "shoe.png", "strength": 0.5, "provider": "stability",'
        ' "model": "sd3.5-large"}\n'
        '{"prompt": "no", "image": "shoe.png", "provider": "local"}\n'
        '{"prompt": "core", "image": "shoe.png", "strength": 0.5, "provider": "stability", "model": "core"}\n'
        '{"prompt": "no strength", "image": "shoe.png", "provider": "stability", "model": "ultra"}\n'
    )
    with pytest.raises(PromptFileError) as caught:
        check_prompts(raw.encode(), "f.jsonl", settings)
    report = caught.value.report()
    assert "f.jsonl:1" not in report
    assert "f.jsonl:2: local: local cannot take an input image; these can: openai (" in report
    assert "; stability (ultra and sd3 models" in report
    assert "f.jsonl:3: stability: core takes no image" in report
    assert "f.jsonl:4: stability: stability needs a strength" in report


def test_template_vars_fill_the_image_path(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = load_settings(home=home, stability={"api_key": "sk-x"})
    for name in ("mug", "lamp"):
        picture(home / "inputs" / f"{name}.png", color="red" if name == "mug" else "blue")
    spec = {
        "provider": "stability",
        "defaults": {"model": "ultra", "image": "{product}.png", "strength": 0.7},
        "template": "{product} on {background}",
        "vars": {"product": ["mug", "lamp"], "background": ["oak", "marble", "slate"]},
    }
    checked = check_prompts(json.dumps(spec).encode(), "s.json", settings)
    assert len(checked.expanded) == 6
    sources = [job.spec.input_of("image").source for job in checked.expanded]  # type: ignore[union-attr]
    assert sources == ["mug.png"] * 3 + ["lamp.png"] * 3


def test_a_symlinked_inputs_file_inside_the_folder_is_taken(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = load_settings(home=home, stability={"api_key": "sk-x"})
    target = picture(home / "inputs" / "real" / "a.png")
    (home / "inputs" / "alias.png").symlink_to(target)
    entry = {"prompt": "p", "image": "alias.png", "strength": 0.3, "provider": "stability", "model": "ultra"}
    raw = json.dumps(entry)
    checked = check_prompts(raw.encode(), "f.jsonl", settings)
    assert checked.expanded[0].spec.inputs[0].location == str(target.resolve())


def test_wireflow_takes_no_picture_and_says_who_can() -> None:
    # providers.md §12.6: no upload, mask, strength or upscale contract is published for Wireflow.
    from wfbatch.core.models import InputImage, JobSpec
    from wfbatch.providers.validation import spec_problems

    picture = InputImage("image", "a.png", "/x/a.png", "0" * 64, 10, 8, 8, "image/png")
    spec = JobSpec("wireflow", "p", None, None, 1024, 1024, 1, 0, inputs=(picture,))
    [problem] = spec_problems(spec)
    assert problem.startswith("wireflow cannot take an input image; these can: openai (")
    final = JobSpec("wireflow", "p", None, None, 1024, 1024, 1, 0, operation="upscale")
    assert spec_problems(final)[0].startswith("wireflow cannot take a final made by upscale of its draft")


def test_submit_lets_the_daemon_read_pictures_beside_the_file_and_nowhere_else(tmp_path: Path) -> None:
    from tests.conftest_sim import TEST_KEY
    from tests.daemon_harness import running_daemon
    from tests.test_stability import stability_sim

    shoot = tmp_path / "shoot"
    photo = picture(shoot / "shoe.png")
    picture(tmp_path / "outside.png")
    good = shoot / "good.jsonl"
    on_ultra = {"strength": 0.5, "model": "ultra"}
    good.write_text(json.dumps({"prompt": "the shoe", "image": "shoe.png", **on_ultra}))
    bad = shoot / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "image": "../outside.png", **on_ultra}))
    with stability_sim() as sim:
        env = {
            "WFBATCH_PROVIDER": "stability",
            "WFBATCH_STABILITY__API_KEY": TEST_KEY,
            "WFBATCH_STABILITY__BASE_URL": sim.base_url,
        }
        with running_daemon(env=env) as daemon:
            refused = daemon.cli("submit", str(bad))
            assert refused.exit_code == 2
            assert "bad.jsonl:1: image '../outside.png': refused: the path leads outside" in refused.output
            accepted = daemon.cli("submit", str(good))
            assert accepted.exit_code == 0, accepted.output
            daemon.wait_until(lambda: daemon.status()["jobs"]["done"] == 1)
            [job] = daemon.get("/v1/jobs")["items"]
            detail = daemon.get(f"/v1/jobs/{job['id']}")
        received = sim.state.stats()["stability"]["received_images"]
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    assert detail["inputs"] == [
        {"role": "image", "source": "shoe.png", "path": str(photo.resolve()), "url": None, "sha256": digest}
    ]
    assert [item["sha256"] for item in received] == [digest]
