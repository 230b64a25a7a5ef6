"""Prompt normalisation, cache keys, default seeds and idempotency keys.

All of these are pure functions of their inputs: the same job always hashes the same way on every
machine and after every restart, which is what makes the cache and provider idempotency work.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any

from wfbatch.core.models import JobSpec

_WHITESPACE = re.compile(r"\s+")


def normalize_prompt(text: str) -> str:
    """Unicode NFC, trimmed, inner whitespace collapsed to one space."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def cache_key(spec: JobSpec) -> str:
    """sha256 of everything that determines the image; output format and quality are left out."""
    return sha256_hex(
        canonical_json(
            {
                "provider": spec.provider,
                "model": spec.model,
                "prompt": normalize_prompt(spec.prompt),
                "negative_prompt": normalize_prompt(spec.negative_prompt) if spec.negative_prompt else None,
                "width": spec.width,
                "height": spec.height,
                "seed": spec.seed,
                "variant": spec.variant,
                "params": spec.params,
            }
        )
    )


def default_seed(prompt: str, variant: int) -> int:
    """A seed for entries that give none: stable per prompt and variant, so a rerun hits the cache
    and variants of one prompt differ."""
    digest = sha256_hex(f"{normalize_prompt(prompt)}\x00{variant}")
    return int(digest[:8], 16)


def idempotency_key(job_uid: str, generation: int) -> str:
    """The key sent with every start of a job.

    It depends only on the job and its *generation*, never on the clock or the attempt: automatic
    retries and re-sends after a crash reuse it, so the provider can replay instead of charging twice.
    The generation moves on only when the previous remote execution is known to have ended without
    an image (a FAILED execution retried by hand): a new key is then what the user asked for.
    """
    return "wfb-" + sha256_hex(f"{job_uid}:{generation}")[:32]


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def batch_identity(data: bytes, file_format: str, default_provider: str) -> str:
    """What makes two accepted prompt files the same batch: the bytes, how they are read (the same
    bytes as .txt and as .csv are different prompts) and the provider entries without one go to."""
    return sha256_hex(f"batch-identity-v1\x00{file_format}\x00{default_provider}\x00{content_hash(data)}")
