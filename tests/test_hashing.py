from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from wfbatch.core.hashing import cache_key, default_seed, idempotency_key, normalize_prompt
from wfbatch.core.models import ImageFormat, JobSpec

SPEC = JobSpec(
    provider="local",
    prompt="a red bicycle",
    negative_prompt=None,
    model=None,
    width=512,
    height=512,
    seed=7,
    variant=0,
)


def test_normalize_prompt_folds_unicode_and_whitespace() -> None:
    composed = "caf\u00e9"
    decomposed = "cafe\u0301"
    assert normalize_prompt(f"  {decomposed}\t\n  au   lait ") == f"{composed} au lait"


def test_cache_key_ignores_output_format_and_whitespace_but_not_seed() -> None:
    key = cache_key(SPEC)
    assert cache_key(replace(SPEC, format=ImageFormat.JPEG, quality=50)) == key
    assert cache_key(replace(SPEC, prompt="  a   red bicycle ")) == key
    assert cache_key(replace(SPEC, seed=8)) != key
    assert cache_key(replace(SPEC, variant=1)) != key
    assert cache_key(replace(SPEC, provider="wireflow")) != key
    assert cache_key(replace(SPEC, params={"steps": 4})) != key


def test_idempotency_key_depends_on_job_and_generation_only() -> None:
    assert idempotency_key("job-a", 0) == idempotency_key("job-a", 0)
    assert idempotency_key("job-a", 0) != idempotency_key("job-a", 1)
    assert idempotency_key("job-a", 0) != idempotency_key("job-b", 0)


@given(st.text(min_size=1), st.integers(min_value=0, max_value=99))
def test_default_seed_is_stable_and_in_range(prompt: str, variant: int) -> None:
    seed = default_seed(prompt, variant)
    assert seed == default_seed(prompt, variant)
    assert 0 <= seed < 2**32
