"""Names derived from dropped files: cut to NAME_MAX by bytes between characters, suffix kept;
quoted for logs when they hold anything that does not print as itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wfbatch.core.names import NAME_MAX, fit_name, quote_name
from wfbatch.outputs import atomic_write_text


@pytest.mark.parametrize("character", ["é", "€", "😀"])  # 2, 3 and 4 bytes
@pytest.mark.parametrize("prefix", ["", "b66a1b2c3d4e5f-", "duplicate-"])
def test_a_name_at_the_limit_is_cut_between_characters_and_keeps_its_suffix(
    character: str, prefix: str
) -> None:
    width = len(character.encode())
    name = character * ((NAME_MAX - 6) // width) + ".jsonl"
    for number in (1, 2, 1234):
        fitted = fit_name(name, prefix=prefix, number=number)
        raw = fitted.encode()  # valid UTF-8, or this raises
        assert len(raw) <= NAME_MAX and len(raw) > NAME_MAX - width - 1
        assert fitted.startswith(prefix) and fitted.endswith(f"-{number}.jsonl" if number > 1 else ".jsonl")


def test_short_names_are_left_as_they_are_and_a_long_suffix_is_cut_like_the_stem() -> None:
    assert fit_name("shots.jsonl", prefix="b1-", number=2) == "b1-shots-2.jsonl"
    dotted = "a." + "x" * 250
    assert fit_name(dotted, prefix="duplicate-") == ("duplicate-" + dotted)[:NAME_MAX]


def test_undecodable_bytes_are_kept_and_counted_as_the_os_counts_them() -> None:
    name = os.fsdecode(b"\xff" * 250 + b".txt")
    fitted = fit_name(name, prefix="rejected-")
    assert len(os.fsencode(fitted)) == NAME_MAX and os.fsencode(fitted).endswith(b"\xff.txt")


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("shots.jsonl", "shots.jsonl"),
        ("-rf shots.jsonl", "-rf shots.jsonl"),
        ("a\nINFO forged.jsonl", repr("a\nINFO forged.jsonl")),
        ("a\x1b[2J.jsonl", repr("a\x1b[2J.jsonl")),
        ("right\u202eto-left.txt", repr("right\u202eto-left.txt")),
        (" leading.txt", repr(" leading.txt")),
        (os.fsdecode(b"bad\xff.txt"), repr(os.fsdecode(b"bad\xff.txt"))),
    ],
)
def test_names_that_do_not_print_as_themselves_are_quoted(name: str, quoted: str) -> None:
    assert quote_name(name) == quoted
    assert "\n" not in quote_name(name) and "\x1b" not in quote_name(name)


def test_an_atomic_write_to_a_name_at_the_limit_works(tmp_path: Path) -> None:
    # Its temporary sibling (`.<name>.<random>.tmp`) used to be over NAME_MAX: ENAMETOOLONG.
    target = tmp_path / ("é" * 119 + "x.jsonl.error.txt")
    assert len(target.name.encode()) == NAME_MAX
    atomic_write_text(target, "report")
    assert target.read_text() == "report" and [p.name for p in tmp_path.iterdir()] == [target.name]
