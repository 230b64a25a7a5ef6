"""The spec JSON and cache key ingest makes from one serialisation: the key is byte for byte what
the old whole-dict canonical dump hashed (so caches made before still hit), the stored spec reads
back as the same JobSpec."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

import pytest

from wfbatch.core.hashing import (
    cache_key,
    canonical_json,
    normalize_prompt,
    sha256_hex,
    spec_json_and_cache_key,
)
from wfbatch.core.models import ImageFormat, JobSpec
from wfbatch.store.rows import spec_from_json


def old_cache_key(spec: JobSpec) -> str:
    """The cache key as it was computed until this change (a whole-dict canonical dump)."""
    negative = spec.negative_prompt
    fields: dict[str, Any] = {
        "provider": spec.provider,
        "model": spec.model,
        "prompt": _old_normalize(spec.prompt),
        "negative_prompt": _old_normalize(negative) if negative else None,
        "width": spec.width,
        "height": spec.height,
        "seed": spec.seed,
        "variant": spec.variant,
        "params": spec.params,
    }
    return sha256_hex(canonical_json(fields))


def _old_normalize(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


SPECS = [
    JobSpec("local", "a fox", None, None, 1024, 1024, 1, 0),
    JobSpec("wireflow", "  Caf\u0065\u0301  au\tlait\n ", "", "flux", 512, 768, 2**32 - 1, 3),
    JobSpec(
        "openai",
        '\u00e9t\u00e9 \U0001f98a "quoted" \\ back',
        "  blur\u00a0\u00a0x ",
        "m",
        16,
        8192,
        0,
        99,
        {"b": [1, 2.5, {"z": None, "a": "\u00fc"}], "a": True},
        ImageFormat.WEBP,
        80,
    ),
    JobSpec("fal", "x" * 500, "neg", None, 64, 64, 7, 1, {"steps": 30}, ImageFormat.JPEG, None),
]


@pytest.mark.parametrize("spec", SPECS)
def test_one_serialisation_gives_the_old_key_and_a_spec_that_reads_back(spec: JobSpec) -> None:
    stored, key = spec_json_and_cache_key(spec)
    assert key == old_cache_key(spec) == cache_key(spec)
    assert spec_from_json(stored) == spec
    assert stored == canonical_json(json.loads(stored))  # canonical: sorted keys, compact


def test_normalize_prompt_keeps_its_meaning() -> None:
    for text in ["  a  b\t\nc ", "Cafe\u0301", "\u00a0x\u2003y\u00a0", "plain"]:
        assert normalize_prompt(text) == _old_normalize(text)


def test_normalize_prompt_agrees_with_the_regex_for_every_whitespace_character() -> None:
    """The already-normal shortcut must never skip a text the substitution would change: every
    character `\\s` matches, alone, doubled, leading, trailing and inside, ASCII and not."""
    spaces = [chr(c) for c in range(0x110000) if re.match(r"\s", chr(c))]
    for space in [*spaces, "x", "\u00e9"]:
        for text in [f"a{space}b", f"a{space}{space}b", f"{space}a", f"a{space}", f"a {space}b", space]:
            assert normalize_prompt(text) == _old_normalize(text), repr(text)
