"""Output names from a template: `[output] name` and a spec's `name_template`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_run_cli import run_json, wfbatch
from wfbatch.core.name_template import NameTemplateError, placeholders, render, unique_names
from wfbatch.outputs import read_manifest


def test_values_are_slugged_so_they_cannot_make_folders_or_climb_out() -> None:
    values = {"sku": "../../etc/passwd", "index": 7, "variant": 0}
    assert render("{sku}/{index:05d}-{variant}", values) == "etc-passwd/00007-0"
    assert render("{sku}", {"sku": "Café / Crème"}) == "cafe-creme"
    assert render("{sku}", {"sku": "..."}) == "image"  # nothing usable: still a name


def test_a_long_value_is_cut_to_the_file_system_limit() -> None:
    name = render("{sku}/{sku}", {"sku": "é" * 400 + "x" * 400})
    folder, file = name.split("/")
    assert len(folder.encode()) <= 255 and len(file.encode()) <= 255 - 40


@pytest.mark.parametrize("template", ["../{index}", "{index}//x", "/{index}", "{index!r}", "{a.b}", "{"])
def test_a_template_that_cannot_be_a_name_is_refused(template: str) -> None:
    with pytest.raises(NameTemplateError):
        placeholders(template)


def test_repeats_get_their_position() -> None:
    assert unique_names(["a", "b", "A", "a"]) == ["a", "b", "A-00003", "a-00004"]


def test_a_csv_column_names_the_sub_folder_and_cannot_leave_the_batch(tmp_path: Path) -> None:
    prompts = tmp_path / "shoes.csv"
    prompts.write_text(
        "prompt,sku,variants\n"
        "a red shoe,A1,2\n"
        "a blue shoe,B2,1\n"
        'a sly shoe,"../../../escape",1\n'
    )
    home = tmp_path / "home"
    env = {"WFBATCH_OUTPUT__NAME": "{sku}/{index:03d}-{variant}"}
    code, summary = run_json(home, prompts, env=env)
    assert code == 0, summary
    folder = Path(summary["output_dirs"][0])
    manifest = read_manifest(folder)
    files = sorted(entry.file or "" for entry in manifest.entries)  # recorded in the manifest
    assert files == [
        "pending-review/a1/001-0.png",
        "pending-review/a1/002-1.png",
        "pending-review/b2/003-0.png",
        "pending-review/escape/004-0.png",
    ]
    assert all((folder / file).is_file() for file in files)
    # Every image of the HOME is inside the batch folder: the `../` became part of a name.
    assert {p for p in (home / "output").rglob("*.png") if not p.is_relative_to(folder)} == set()


def test_a_spec_template_that_an_entry_cannot_fill_names_the_line(tmp_path: Path) -> None:
    prompts = tmp_path / "shoes.json"
    prompts.write_text(
        '{"name_template": "{sku}/{index}",\n'
        ' "prompts": [\n'
        '  {"prompt": "a", "fields": {"sku": "a1"}},\n'
        '  {"prompt": "b"}]}\n'
    )
    result = wfbatch(tmp_path / "home", "run", str(prompts))
    assert result.returncode == 2
    assert "shoes.json:4: name template '{sku}/{index}': this entry has no {sku}" in result.stderr
    assert not (tmp_path / "home" / "output").exists() or not any((tmp_path / "home" / "output").iterdir())


def test_a_spec_template_names_its_images_and_repeats_stay_unique(tmp_path: Path) -> None:
    spec = {"name_template": "{batch}-{model}", "prompts": ["a", "b"], "name": "Shoes"}
    prompts = tmp_path / "shoes.json"
    prompts.write_text(json.dumps(spec))
    code, summary = run_json(tmp_path / "home", prompts)
    assert code == 0, summary
    manifest = read_manifest(Path(summary["output_dirs"][0]))
    assert [e.file for e in manifest.entries] == [
        "pending-review/shoes-default.png",
        "pending-review/shoes-default-00002.png",
    ]


def test_a_final_is_named_by_its_stage_or_after_its_draft() -> None:
    import datetime as dt

    from wfbatch.core.expand import expand_batch
    from wfbatch.core.output_names import name_jobs
    from wfbatch.core.parsing import parse_prompt_bytes

    spec = {"prompts": [{"prompt": "a", "fields": {"sku": "A1"}}], "draft": {"width": 256}, "final": {}}
    parsed = parse_prompt_bytes(json.dumps(spec).encode(), "s.json")
    expanded = expand_batch(parsed, "local")
    for template, draft, final in [
        ("{sku}/{stage}-{index}", "a1/draft-1", "a1/final-1"),
        ("{sku}/{index}", "a1/1", "a1/1-final"),
    ]:
        named, problems = name_jobs(parsed, expanded, template, dt.date(2026, 12, 7))
        assert problems == []
        final_spec = named[0].final
        assert final_spec is not None
        assert (named[0].spec.name, final_spec.name) == (draft, final)
