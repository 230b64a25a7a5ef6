"""Prompt files → ParsedBatch, or a PromptFileError naming every bad line (real files in tmp_path)."""

from __future__ import annotations

import csv
import io
import json
import pickle
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wfbatch.core.parsing.entries as parsing_entries
import wfbatch.core.parsing.files as parsing_files
from tests.deadlines import scaled
from wfbatch.core import parsing
from wfbatch.core.models import ImageFormat, ParsedBatch
from wfbatch.core.parsing import (
    SUPPORTED_SUFFIXES,
    LineError,
    PromptFileError,
    parse_prompt_bytes,
    parse_prompt_file,
)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def parse(tmp_path: Path, name: str, content: str | bytes) -> ParsedBatch:
    return parse_prompt_file(write(tmp_path, name, content))


def rejected(tmp_path: Path, name: str, content: str | bytes) -> list[LineError]:
    with pytest.raises(PromptFileError) as caught:
        parse(tmp_path, name, content)
    assert caught.value.source_name == name
    return caught.value.errors


def only_error(tmp_path: Path, name: str, content: str | bytes) -> LineError:
    errors = rejected(tmp_path, name, content)
    assert len(errors) == 1, errors
    return errors[0]


def prompts(batch: ParsedBatch) -> list[str]:
    return [parsed.entry.prompt for parsed in batch.entries]


def lines(batch: ParsedBatch) -> list[int]:
    return [parsed.line for parsed in batch.entries]


# --- .txt -------------------------------------------------------------------------------------------


def test_txt_one_prompt_a_line_skipping_blanks_and_comments(tmp_path: Path) -> None:
    batch = parse(tmp_path, "cats.txt", "# my cats\n\na red cat\n   # indented comment\n  a blue cat  \n\n")
    assert prompts(batch) == ["a red cat", "a blue cat"]
    assert lines(batch) == [3, 5]
    assert batch.name == "cats"
    assert batch.source_name == "cats.txt"
    assert (batch.provider, batch.cache, batch.budget) == (None, True, None)


def test_txt_hash_inside_a_line_is_part_of_the_prompt(tmp_path: Path) -> None:
    assert prompts(parse(tmp_path, "a.txt", "a cat #1\n")) == ["a cat #1"]


def test_suffix_is_case_insensitive(tmp_path: Path) -> None:
    assert prompts(parse(tmp_path, "LOUD.TXT", "a cat\n")) == ["a cat"]


def test_txt_prompt_over_the_limit_names_line_and_length_without_echoing_it(tmp_path: Path) -> None:
    error = only_error(tmp_path, "long.txt", "fine\n" + "x" * 10_000_000 + "\nalso fine\n")
    assert error.line == 2
    assert "10,000,000 characters" in error.message
    assert "32,000" in error.message
    assert len(error.message) < 200


# --- .jsonl -----------------------------------------------------------------------------------------


def test_jsonl_entries_with_fields(tmp_path: Path) -> None:
    content = (
        '{"prompt": "a cat", "width": 512, "height": 768, "seed": 7, "format": "webp", "tags": ["pets"]}\n'
        "\n"
        '{"prompt": "a dog", "variants": 3, "params": {"steps": 30}, "id": "dog"}\n'
    )
    batch = parse(tmp_path, "pets.jsonl", content)
    assert prompts(batch) == ["a cat", "a dog"]
    assert lines(batch) == [1, 3]
    first, second = (parsed.entry for parsed in batch.entries)
    assert (first.width, first.height, first.seed, first.format, first.tags) == (
        512,
        768,
        7,
        ImageFormat.WEBP,
        ["pets"],
    )
    assert (second.variants, second.params, second.id) == (3, {"steps": 30}, "dog")


def test_jsonl_unknown_field_did_you_mean_with_line_and_column(tmp_path: Path) -> None:
    errors = rejected(tmp_path, "a.jsonl", '{"prompt": "ok"}\n  {"promt": "typo"}\n')
    assert [(error.line, error.column) for error in errors] == [(2, 3), (2, 3)]
    messages = [error.message for error in errors]
    assert "unknown field 'promt' (did you mean 'prompt'?)" in messages
    assert "missing required field 'prompt'" in messages


def test_jsonl_pydantic_errors_name_the_field_one_error_each(tmp_path: Path) -> None:
    errors = rejected(tmp_path, "a.jsonl", '{"prompt": "a", "width": 8, "quality": 500, "format": "gif"}\n')
    messages = sorted(error.message for error in errors)
    assert len(messages) == 3
    assert messages[0].startswith("format: Input should be 'png', 'webp' or 'jpeg'")
    assert "(got 'gif')" in messages[0]
    assert messages[1].startswith("quality: Input should be less than or equal to 100")
    assert messages[2] == "width: Input should be greater than or equal to 16 (got 8)"


def test_jsonl_nested_error_location(tmp_path: Path) -> None:
    error = only_error(tmp_path, "a.jsonl", '{"prompt": "a", "tags": ["ok", 3]}\n')
    assert error.message.startswith("tags[1]: Input should be a valid string")


def test_jsonl_syntax_error_gives_column_in_the_line(tmp_path: Path) -> None:
    error = only_error(tmp_path, "a.jsonl", '{"prompt": "ok"}\n{"prompt": "a",}\n')
    assert (error.line, error.column) == (2, 16)
    assert error.message.startswith("invalid JSON: Expecting property name")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("[1, 2]", "expected a JSON object"),
        ('"just a string"', "expected a JSON object"),
        ('{"prompt": "a", "prompt": "b"}', "duplicate key 'prompt'"),
        ('{"prompt": "a", "seed": NaN}', "NaN is not valid JSON"),
        ('{"prompt": "a", "params": {"x": 1e999}}', "out of range"),
        ('{"prompt": "a", "seed": ' + "9" * 5000 + "}", "5,000 digits is too large"),
        ('{"prompt": "a \\ud83d"}', "unpaired surrogate"),
        ('{"prompt": ""}', "prompt: String should have at least 1 character"),
        ("[" * 100_000, "invalid JSON"),
    ],
)
def test_jsonl_bad_lines(tmp_path: Path, line: str, expected: str) -> None:
    error = only_error(tmp_path, "a.jsonl", '{"prompt": "fine"}\n' + line + "\n")
    assert error.line == 2
    assert expected in error.message


def test_jsonl_integer_digit_limit_is_exact_after_the_whole_file_screen(tmp_path: Path) -> None:
    """The .jsonl reader screens the whole file once for long digit runs and skips the per-integer
    check when there is none: 100 digits pass, 101 are refused, wherever they are in the file."""
    fine = '{"prompt": "a", "params": {"n": ' + "7" * 100 + "}}\n"
    assert prompts(parse(tmp_path, "a.jsonl", '{"prompt": "b"}\n' + fine)) == ["b", "a"]
    error = only_error(tmp_path, "b.jsonl", '{"prompt": "b"}\n' * 3 + fine.replace("7" * 100, "7" * 101))
    assert (error.line, error.message) == (4, "invalid JSON: integer with 101 digits is too large")


def test_jsonl_escaped_surrogate_pair_is_fine(tmp_path: Path) -> None:
    assert prompts(parse(tmp_path, "a.jsonl", '{"prompt": "smile \\ud83d\\ude00"}\n')) == ["smile 😀"]


def test_jsonl_ten_megabyte_prompt(tmp_path: Path) -> None:
    error = only_error(tmp_path, "a.jsonl", '{"prompt": "' + "x" * 10_000_000 + '"}\n')
    assert (error.line, error.column) == (1, 1)
    assert "at most 32000 characters (got 10,000,000 characters)" in error.message
    assert len(error.message) < 200


# --- .csv -------------------------------------------------------------------------------------------


def test_csv_columns_tags_params_and_empty_cells(tmp_path: Path) -> None:
    content = (
        "prompt,width,tags,params,seed\n"
        'a cat,512,pets; cute,"{""steps"": 30}",\n'
        "a dog,,animals,,42\n"
        '"a bird, flying",64,"sky,blue",,\n'
    )
    batch = parse(tmp_path, "animals.csv", content)
    assert prompts(batch) == ["a cat", "a dog", "a bird, flying"]
    cat, dog, bird = (parsed.entry for parsed in batch.entries)
    assert (cat.width, cat.tags, cat.params, cat.seed) == (512, ["pets", "cute"], {"steps": 30}, None)
    assert (dog.width, dog.tags, dog.seed) == (None, ["animals"], 42)
    assert bird.tags == ["sky", "blue"]
    assert batch.name == "animals"


def test_csv_line_numbers_follow_multiline_cells(tmp_path: Path) -> None:
    content = 'prompt,width\n"a cat\non two lines",512\n\nnext,64\n'
    batch = parse(tmp_path, "a.csv", content)
    assert prompts(batch) == ["a cat\non two lines", "next"]
    assert lines(batch) == [2, 5]


def test_csv_error_points_at_the_cell(tmp_path: Path) -> None:
    content = 'prompt,width\n"a cat\non two lines",abc\nok,12\n'
    errors = rejected(tmp_path, "a.csv", content)
    assert [(error.line, error.column) for error in errors] == [(3, 15), (4, 4)]
    assert errors[0].message.startswith("width: Input should be a valid integer")
    assert "(got 'abc')" in errors[0].message
    assert errors[1].message.startswith("width: Input should be greater than or equal to 16")


def test_csv_semicolon_delimited_with_capitalised_header(tmp_path: Path) -> None:
    batch = parse(tmp_path, "a.csv", "Prompt;Width\na cat, sitting;512\n")
    assert prompts(batch) == ["a cat, sitting"]
    assert batch.entries[0].entry.width == 512


def test_csv_unknown_and_duplicate_columns(tmp_path: Path) -> None:
    errors = rejected(tmp_path, "a.csv", "prompt,widht,prompt\na,512,b\n")
    assert [(error.line, error.column) for error in errors] == [(1, 8), (1, 14)]
    assert errors[0].message == "unknown column 'widht' (did you mean 'width'?)"
    assert errors[1].message == "duplicate column 'prompt'"


def test_csv_without_prompt_column(tmp_path: Path) -> None:
    error = only_error(tmp_path, "a.csv", "a red cat\na blue cat\n")
    assert error.line == 1
    assert "header with a 'prompt' column" in error.message
    assert "'a red cat'" in error.message


def test_csv_row_problems_all_reported(tmp_path: Path) -> None:
    content = "prompt,params\na cat,{},extra\n,{}\nok,[1]\nok2,{bad\n"
    errors = rejected(tmp_path, "a.csv", content)
    assert [(error.line, error.column) for error in errors] == [(2, 10), (3, 1), (4, 4), (5, 5)]
    assert (
        errors[0].message == "row has 3 cells but the header has 2 columns (quote cells that contain commas)"
    )
    assert errors[1].message == "missing required field 'prompt'"
    assert errors[2].message == 'params: expected a JSON object like {"steps": 30}, got an array'
    assert errors[3].message.startswith("params: not valid JSON")


def test_csv_header_typo_without_prompt_column(tmp_path: Path) -> None:
    errors = rejected(tmp_path, "a.csv", "promt,width\na cat,512\n")
    assert [(error.line, error.column) for error in errors] == [(1, None), (1, 1)]
    assert errors[1].message == "unknown column 'promt' (did you mean 'prompt'?)"


def test_csv_giant_cell(tmp_path: Path) -> None:
    error = only_error(tmp_path, "a.csv", "prompt\nok\n" + "x" * 10_000_000 + "\n")
    assert error.line == 3
    assert "longer than 131,072 characters" in error.message


def test_csv_header_only_is_empty(tmp_path: Path) -> None:
    error = only_error(tmp_path, "a.csv", "prompt,width\n\n")
    assert (error.line, error.message) == (0, "empty file: no prompts")


# --- .json ------------------------------------------------------------------------------------------

SPEC = """{
  "name": "products",
  "provider": "local",
  "cache": false,
  "budget": 25,
  "defaults": {"width": 768, "height": 512, "tags": ["catalog"]},
  "prompts": [
    "a plain shot",
    {"prompt": "a wide shot", "width": 1024}
  ],
  "template": "Product photo of {product} on {background}",
  "vars": {"product": ["mug", "lamp"], "background": ["oak", "marble", "glass"]}
}
"""


def test_json_spec_prompts_then_template_expansion(tmp_path: Path) -> None:
    batch = parse(tmp_path, "spec.json", SPEC)
    assert (batch.name, batch.provider, batch.cache, batch.budget) == ("products", "local", False, 25.0)
    assert prompts(batch) == [
        "a plain shot",
        "a wide shot",
        "Product photo of mug on oak",
        "Product photo of mug on marble",
        "Product photo of mug on glass",
        "Product photo of lamp on oak",
        "Product photo of lamp on marble",
        "Product photo of lamp on glass",
    ]
    assert lines(batch) == [8, 9, 11, 11, 11, 11, 11, 11]


def test_json_defaults_apply_under_each_entry_and_the_entry_wins(tmp_path: Path) -> None:
    batch = parse(tmp_path, "spec.json", SPEC)
    widths = [parsed.entry.width for parsed in batch.entries]
    assert widths == [768, 1024, 768, 768, 768, 768, 768, 768]
    assert all(parsed.entry.height == 512 for parsed in batch.entries)
    assert all(parsed.entry.tags == ["catalog"] for parsed in batch.entries)


def test_json_name_defaults_to_the_stem(tmp_path: Path) -> None:
    batch = parse(tmp_path, "shoes.json", '{"prompts": ["a shoe"]}')
    assert (batch.name, batch.provider, batch.cache, batch.budget) == ("shoes", None, True, None)


def test_json_template_without_placeholders_is_one_entry(tmp_path: Path) -> None:
    assert prompts(parse(tmp_path, "a.json", '{"template": "just {{braces}}"}')) == ["just {braces}"]


def test_json_syntax_error_line_and_column(tmp_path: Path) -> None:
    error = only_error(tmp_path, "a.json", '{\n  "prompts": [\n    "a",,\n  ]\n}\n')
    assert (error.line, error.column) == (3, 9)
    assert error.message == "invalid JSON: Expecting value"


def test_json_bad_entries_point_at_the_element(tmp_path: Path) -> None:
    content = '{"prompts": [\n  "ok",\n  {"promt": "x"},\n    42,\n  {"prompt": "a", "prompt": "b"}\n]}\n'
    errors = rejected(tmp_path, "a.json", content)
    located = [(error.line, error.column, error.message) for error in errors]
    assert (3, 3, "unknown field 'promt' (did you mean 'prompt'?)") in located
    assert (3, 3, "missing required field 'prompt'") in located
    assert (4, 5, "prompts[2]: expected a string or an object, got a number") in located
    assert (5, 3, "prompts[3]: duplicate key 'prompt': each field may appear only once") in located
    assert len(errors) == 4


def test_json_unknown_top_level_keys(tmp_path: Path) -> None:
    errors = rejected(tmp_path, "a.json", '{"prompts": ["a"],\n "nmae": "x",\n "width": 512}')
    assert [(error.line, error.column) for error in errors] == [(2, 2), (3, 2)]
    assert errors[0].message == "unknown key 'nmae' (did you mean 'name'?)"
    assert errors[1].message == "unknown key 'width' (entry fields such as 'width' go under 'defaults')"


def test_json_template_errors_point_at_template_and_vars(tmp_path: Path) -> None:
    content = (
        "{\n"
        '  "template": "{product} on {backgruond}",\n'
        '  "vars": {\n'
        '    "product": [],\n'
        '    "background": ["oak"],\n'
        '    "light": ["soft", 3]\n'
        "  }\n"
        "}\n"
    )
    located = [(e.line, e.column, e.message) for e in rejected(tmp_path, "a.json", content)]
    assert located == [
        (2, 3, "template: placeholder {backgruond} has no list in 'vars' (did you mean 'background'?)"),
        (4, 5, "vars.product: expected a non-empty array of strings"),
        (5, 5, "vars.background: not used in the template (did you mean 'backgruond'?)"),
        (6, 5, "vars.light: expected a non-empty array of strings"),
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ('{"template": "{a!r}", "vars": {"a": ["x"]}}', "template: placeholder '{a!r}': conversions"),
        ('{"template": "{} and {}"}', "template: placeholder '{}' must be a plain name"),
        ('{"template": "{a.b}", "vars": {"a": ["x"]}}', "must be a plain name"),
        ('{"template": "oops {", "vars": {}}', "template: Single '{' encountered"),
        ('{"template": 3}', "template: expected a string, got a number"),
        ('{"prompts": ["a"], "vars": {"a": ["x"]}}', "vars: given but there is no 'template'"),
        ('{"template": "{a}", "vars": ["x"]}', "vars: expected an object, got an array"),
        ('{"prompts": "a cat"}', "prompts: expected an array, got a string"),
        ('{"prompts": ["a"], "cache": "no"}', "cache: expected true or false, got a string"),
        ('{"prompts": ["a"], "budget": -5}', "budget: must be a positive number of credits (got -5)"),
        ('{"prompts": ["a"], "budget": true}', "budget: expected a number of credits or null"),
        ('{"prompts": ["a"], "budget": NaN}', "budget: invalid JSON: NaN is not valid JSON"),
        ('{"prompts": ["a"], "budget_alert": 1.5}', "budget_alert: expected a share of the budget"),
        ('{"prompts": ["a"], "notify": {"budget_alert": -1}}', "budget_alert: Input should be greater than"),
        ('{"prompts": ["a"], "name": "../etc"}', "name: '../etc' cannot name a folder"),
        ('{"prompts": ["a"], "name": ""}', "name: must not be empty"),
        ('{"prompts": ["a"], "provider": 7}', "provider: expected a provider name or null"),
        ('{"prompts": ["a"], "defaults": {"widht": 5}}', "defaults: unknown field 'widht' (did you mean"),
        ('{"prompts": ["a"], "defaults": {"prompt": "x"}}', "defaults: cannot set 'prompt'"),
        ('{"prompts": ["a"], "defaults": []}', "defaults: expected an object, got an array"),
        ('{"prompts": ["a"], "prompts": ["b"]}', "duplicate key 'prompts'"),
        ("[1, 2]", "expected a batch spec object at the top level, got an array"),
        ('{"prompts": []}', "empty batch: no prompts"),
        ("{}", "empty batch: no prompts"),
    ],
)
def test_json_spec_errors(tmp_path: Path, spec: str, expected: str) -> None:
    errors = rejected(tmp_path, "a.json", spec)
    assert any(expected in error.message for error in errors), errors


def test_a_spec_budget_alert_is_kept_with_the_batch_notify_overrides(tmp_path: Path) -> None:
    batch = parse(tmp_path, "a.json", '{"prompts": ["a"], "budget": 10, "budget_alert": 0.8}')
    assert batch.notify == {"budget_alert": 0.8}


def test_json_bad_defaults_are_reported_once_not_per_entry(tmp_path: Path) -> None:
    content = '{"defaults": {"width": 3},\n "prompts": ["a", "b", "c"]}'
    error = only_error(tmp_path, "a.json", content)
    assert (error.line, error.column) == (1, 2)
    assert error.message == "defaults: width: Input should be greater than or equal to 16 (got 3)"


def test_json_template_expansion_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing_files, "MAX_ENTRIES", 10)
    content = (
        '{"prompts": ["a", "b"],\n "template": "{a}{b}", "vars": {"a": ["1","2","3"], "b": ["1","2","3"]}}'
    )
    error = only_error(tmp_path, "a.json", content)
    assert (error.line, error.column) == (2, 2)
    assert "too many prompts: 11 (the limit is 10 per file)" in error.message


def test_json_huge_template_product_is_refused_before_expanding(tmp_path: Path) -> None:
    values = json.dumps([str(i) for i in range(1000)])
    content = f'{{"template": "{{a}}{{b}}{{c}}", "vars": {{"a": {values}, "b": {values}, "c": {values}}}}}'
    # This process's CPU time, not the wall clock: what a loaded machine's other processes take does
    # not count, what expanding the product would take does.
    started = time.process_time()
    error = only_error(tmp_path, "a.json", content)
    assert "too many prompts: 1,000,000,000" in error.message
    assert time.process_time() - started < scaled(2)


# --- rules shared by every format -------------------------------------------------------------------


def test_one_bad_entry_rejects_the_whole_file(tmp_path: Path) -> None:
    content = '{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c", "seed": -1}\n{"prompt": "d"}\n'
    with pytest.raises(PromptFileError) as caught:
        parse(tmp_path, "a.jsonl", content)
    assert [error.line for error in caught.value.errors] == [3]


def test_every_bad_line_is_named_in_order(tmp_path: Path) -> None:
    content = "\n".join(['{"prompt": "ok"}', "nope", '{"prompt": "ok"}', "{", '{"width": 512}'])
    errors = rejected(tmp_path, "a.jsonl", content)
    assert [error.line for error in errors] == [2, 4, 5]


def test_errors_are_capped_with_a_summary(tmp_path: Path) -> None:
    errors = rejected(tmp_path, "a.jsonl", "\n".join(["{}"] * 1500))
    assert len(errors) == 1001
    assert errors[999].line == 1000
    assert errors[-1] == LineError(0, None, "... and 500 more errors not shown")


def test_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    content = '{"prompt": "a", "id": "x"}\n{"prompt": "b", "id": "y"}\n{"prompt": "c", "id": "x"}\n'
    error = only_error(tmp_path, "a.jsonl", content)
    assert (error.line, error.message) == (3, "duplicate id 'x' (first used on line 1)")


def test_duplicate_ids_from_a_template_default(tmp_path: Path) -> None:
    content = '{"defaults": {"id": "same"}, "template": "{a}", "vars": {"a": ["x", "y"]}}'
    error = only_error(tmp_path, "a.json", content)
    assert (error.line, error.column, error.message) == (1, 30, "duplicate id 'same' (first used on line 1)")


def test_too_many_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing_files, "MAX_ENTRIES", 3)
    error = only_error(tmp_path, "a.txt", "a\nb\nc\nd\ne\n")
    assert (error.line, error.message) == (4, "too many prompts: the limit is 3 per file")


def test_report_format(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError) as caught:
        parse(tmp_path, "a.jsonl", '{"prompt": "a", "width": 1}\n\nnot json\n')
    assert caught.value.report() == (
        "a.jsonl:1:1: width: Input should be greater than or equal to 16 (got 1)\n"
        "a.jsonl:3:1: invalid JSON: Expecting value\n"
    )
    assert str(caught.value).startswith("a.jsonl:1:1: width: Input should be")
    assert str(caught.value).endswith("(and 1 more)")


def test_report_without_line_or_column() -> None:
    error = PromptFileError(
        "x.txt", [LineError(0, None, "empty file: no prompts"), LineError(4, None, "a\nb")]
    )
    assert error.report() == "x.txt: empty file: no prompts\nx.txt:4: a\\nb\n"


def test_error_survives_pickling(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError) as caught:
        parse(tmp_path, "a.txt", "")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.source_name, copy.errors) == ("a.txt", caught.value.errors)


# --- encodings, line endings, binary, sizes ---------------------------------------------------------


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_bom_crlf_and_lone_cr(tmp_path: Path, suffix: str) -> None:
    bodies = {
        ".txt": ["# c", "a cat", "", "a dog"],
        ".jsonl": ['{"prompt": "a cat"}', "", "", '{"prompt": "a dog"}'],
        ".csv": ["prompt", "a cat", "", "a dog"],
        ".json": ['{"prompts": [', '"a cat",', "", '"a dog"]}'],
    }
    for ending in ("\r\n", "\r"):
        data = b"\xef\xbb\xbf" + ending.join(bodies[suffix]).encode() + ending.encode()
        batch = parse(tmp_path, "a" + suffix, data)
        assert prompts(batch) == ["a cat", "a dog"]
        assert lines(batch)[-1] == 4


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_non_utf8_names_line_column_and_offset(tmp_path: Path, ending: str) -> None:
    data = ending.join(["a cat", "a caf\xe9 latte", "ok", "\xff"]).encode("latin-1")
    errors = rejected(tmp_path, "a.txt", data)
    assert [(error.line, error.column) for error in errors] == [(2, 6), (4, 1)]
    offset = len(f"a cat{ending}a caf")
    assert errors[0].message == f"not valid UTF-8: byte 0xE9 at byte offset {offset} (save the file as UTF-8)"


def test_non_utf8_after_a_bom_counts_the_bom_in_the_offset(tmp_path: Path) -> None:
    error = only_error(tmp_path, "a.txt", b"\xef\xbb\xbfab\xff\n")
    assert (error.line, error.column) == (1, 3)
    assert "byte offset 5" in error.message


def test_utf16_file(tmp_path: Path) -> None:
    error = only_error(tmp_path, "a.txt", "a cat\n".encode("utf-16"))
    assert (error.line, error.message) == (0, "the file is UTF-16 encoded; save it as UTF-8")


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_binary_file(tmp_path: Path, suffix: str) -> None:
    error = only_error(tmp_path, "a" + suffix, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert error.line == 3
    assert "NUL byte" in error.message
    assert "binary" in error.message


def test_control_characters(tmp_path: Path) -> None:
    error = only_error(tmp_path, "a.txt", "fine\nbad \x1b[31m red\n")
    assert (error.line, error.column) == (2, 5)
    assert error.message.startswith("control character U+001B")


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
@pytest.mark.parametrize("content", ["", "\n\n  \r\n", "# only a comment\n"])
def test_empty_files(tmp_path: Path, suffix: str, content: str) -> None:
    if suffix != ".txt" and content.startswith("#"):
        return  # a comment is only a comment in .txt
    error = only_error(tmp_path, "a" + suffix, content)
    assert error == LineError(0, None, "empty file: no prompts")


def test_file_size_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing_files, "MAX_FILE_BYTES", 1024 * 1024)
    error = only_error(tmp_path, "a.txt", "a cat\n" * 200_000)
    assert error.line == 0
    assert error.message == "file is too large: over 1 MB (the limit)"


def test_unsupported_suffix(tmp_path: Path) -> None:
    error = only_error(tmp_path, "a.yaml", "prompt: a cat\n")
    assert error.message == "unsupported file type ('.yaml'): use one of .txt, .jsonl, .csv, .json"


# --- parse_prompt_bytes -----------------------------------------------------------------------------


def test_bytes_with_explicit_format_overrides_the_suffix() -> None:
    batch = parse_prompt_bytes(b'{"prompt": "a cat"}\n', "upload", fmt="jsonl")
    assert (batch.name, batch.source_name, prompts(batch)) == ("upload", "upload", ["a cat"])


def test_bytes_format_from_the_name() -> None:
    assert prompts(parse_prompt_bytes(b"prompt\na cat\n", "x.csv")) == ["a cat"]


def test_bytes_unknown_format() -> None:
    with pytest.raises(PromptFileError) as caught:
        parse_prompt_bytes(b"a cat", "x.txt", fmt="yaml")
    assert "unknown prompt file format 'yaml'" in caught.value.errors[0].message


def test_parse_file_io_errors_are_not_prompt_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        parse_prompt_file(tmp_path / "missing.txt")


# --- performance ------------------------------------------------------------------------------------


def test_hundred_thousand_lines_parse_in_seconds(tmp_path: Path) -> None:
    count = 100_000
    jsonl = "\n".join(
        json.dumps({"prompt": f"prompt {i}", "width": 512, "tags": ["t"]}) for i in range(count)
    )
    txt = "\n".join(f"prompt number {i}" for i in range(count))
    for name, content in (("big.jsonl", jsonl), ("big.txt", txt)):
        started = time.process_time()
        batch = parse(tmp_path, name, content)
        assert len(batch.entries) == count
        assert time.process_time() - started < scaled(10)


def test_many_identical_typos_stay_fast(tmp_path: Path) -> None:
    started = time.process_time()
    errors = rejected(tmp_path, "a.jsonl", "\n".join(['{"promt": "x"}'] * 20_000))
    assert len(errors) == 1001
    assert time.process_time() - started < scaled(10)


def test_max_entries_default_is_sane() -> None:
    assert parsing_entries.MAX_ENTRIES == parsing.MAX_ENTRIES >= 100_000


# --- properties -------------------------------------------------------------------------------------

FORMATS = ("txt", "jsonl", "csv", "json")
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOKENS = [
    "{", "}", "[", "]", '"', ",", ";", ":", "\n", "\r\n", "\r", " ", "#", "\ufeff", "\x00", "\x1b", "\xe9",
    "prompt", "promt", "width", "tags", "params", "template", "vars", "defaults", "prompts", "name", "id",
    '"prompt"', '"template"', '"vars"', '"prompts"', "{a}", "{}", "{{", "}}", "{a!r}", "512", "-1", "1e999",
    "NaN", "true", "null", "\\ud800", "\\ud83d\\ude00", "a cat", '""', "9" * 120,
]  # fmt: skip
token_soup = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["prompt", "width", "tags", "template", "vars", "x"]), children, max_size=4
        )
    ),
    max_leaves=20,
)


def check_outcome(data: bytes, fmt: str) -> None:
    """Either a batch with entries, or a PromptFileError whose every error is well formed."""
    try:
        batch = parse_prompt_bytes(data, "fuzz." + fmt)
    except PromptFileError as error:
        assert error.errors
        for line_error in error.errors:
            assert line_error.line >= 0
            assert line_error.column is None or line_error.column >= 1
            assert line_error.message.strip()
        assert error.report().count("\n") == len(error.errors)
    else:
        assert batch.entries
        assert all(parsed.line >= 1 for parsed in batch.entries)


@FUZZ
@given(data=st.binary(max_size=2000), fmt=st.sampled_from(FORMATS))
def test_arbitrary_bytes_never_crash(data: bytes, fmt: str) -> None:
    check_outcome(data, fmt)


@FUZZ
@given(text=token_soup, fmt=st.sampled_from(FORMATS))
def test_token_soup_never_crashes(text: str, fmt: str) -> None:
    check_outcome(text.encode("utf-8", errors="surrogatepass"), fmt)


@FUZZ
@given(value=json_values, fmt=st.sampled_from(("json", "jsonl")), indent=st.sampled_from([None, 2]))
def test_arbitrary_json_never_crashes(value: object, fmt: str, indent: int | None) -> None:
    check_outcome(json.dumps(value, indent=indent).encode(), fmt)


@FUZZ
@given(
    value=st.fixed_dictionaries(
        {},
        optional={
            "prompts": st.lists(json_values | st.text(max_size=10), max_size=4),
            "template": st.sampled_from(["{a}", "{a} {b}", "x", "{a", "{a!r}", "{}"]),
            "vars": st.dictionaries(st.sampled_from(["a", "b", "c"]), json_values, max_size=3),
            "defaults": json_values,
            "cache": json_values,
            "budget": json_values,
            "name": json_values,
        },
    )
)
def test_arbitrary_specs_never_crash(value: dict[str, object]) -> None:
    check_outcome(json.dumps(value).encode(), "json")


prompt_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=80
).filter(lambda text: text.strip() != "")
entries = st.fixed_dictionaries(
    {"prompt": prompt_text},
    optional={
        "width": st.integers(16, 8192),
        "seed": st.integers(0, 2**32 - 1),
        "format": st.sampled_from(["png", "webp", "jpeg"]),
        "tags": st.lists(st.text(max_size=10), max_size=3),
        "params": st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
        "variants": st.integers(1, 100),
    },
)


@FUZZ
@given(
    items=st.lists(entries, min_size=1, max_size=30),
    ending=st.sampled_from(["\n", "\r\n", "\r"]),
    ensure_ascii=st.booleans(),
    bom=st.booleans(),
)
def test_wellformed_jsonl_round_trips(
    items: list[dict[str, object]], ending: str, ensure_ascii: bool, bom: bool
) -> None:
    text = ending.join(json.dumps(item, ensure_ascii=ensure_ascii) for item in items) + ending
    batch = parse_prompt_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(), "round.jsonl")
    assert len(batch.entries) == len(items)
    assert prompts(batch) == [item["prompt"] for item in items]
    assert lines(batch) == list(range(1, len(items) + 1))


@FUZZ
@given(texts=st.lists(prompt_text.filter(lambda t: "\r" not in t), min_size=1, max_size=30))
def test_wellformed_csv_round_trips(texts: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["prompt", "seed"])
    writer.writerows([text, index] for index, text in enumerate(texts))
    batch = parse_prompt_bytes(buffer.getvalue().encode(), "round.csv")
    assert prompts(batch) == [text.strip() for text in texts]
    assert [parsed.entry.seed for parsed in batch.entries] == list(range(len(texts)))


@FUZZ
@given(texts=st.lists(prompt_text.filter(lambda t: not t.strip().startswith("#")), min_size=1, max_size=30))
def test_wellformed_txt_round_trips(texts: list[str]) -> None:
    batch = parse_prompt_bytes("\n".join(texts).encode(), "round.txt")
    assert prompts(batch) == [text.strip() for text in texts]


@pytest.mark.parametrize("priority", [10**30, -(10**30), 1_000_001])
def test_a_priority_beyond_a_million_is_an_error_naming_its_line(tmp_path: Path, priority: int) -> None:
    # Unbounded, 10**30 passed validation and failed at the SQLite insert (OverflowError), every rescan.
    too_urgent = json.dumps({"prompt": "too urgent", "priority": priority})
    content = '{"prompt": "fine", "priority": 5}\n' + too_urgent
    error = only_error(tmp_path, "urgent.jsonl", content)
    assert error.line == 2 and "priority" in str(error), error
    lowest = parse(tmp_path, "ok.jsonl", '{"prompt": "x", "priority": -1000000}')
    assert lowest.entries[0].entry.priority == -(10**6)
