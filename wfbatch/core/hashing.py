"""Prompt normalisation, cache keys, default seeds and idempotency keys.

All of these are pure functions of their inputs: the same job always hashes the same way on every
machine and after every restart, which is what makes the cache and provider idempotency work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import unicodedata
from json.encoder import encode_basestring
from typing import Any

from wfbatch.core.models import JobSpec

_WHITESPACE = re.compile(r"\s+")


def normalize_prompt(text: str) -> str:
    """Unicode NFC, trimmed, inner whitespace collapsed to one space."""
    if text.isascii() and text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        # Already normal, the usual case: ASCII is NFC, and a printable text's only whitespace is
        # the plain space (every other `\s` character is a control or separator), seen single and
        # inside. Four C scans instead of a regex substitution per job.
        return text
    if not text.isascii():  # ASCII is NFC already; the check is a C loop, normalize is not free
        text = unicodedata.normalize("NFC", text)
    return _WHITESPACE.sub(" ", text).strip()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def cache_key(spec: JobSpec) -> str:
    """sha256 of everything that determines the image; output format and quality are left out."""
    return spec_json_and_cache_key(spec)[1]


def spec_json_and_cache_key(spec: JobSpec) -> tuple[str, str]:
    """The spec as canonical JSON (what the store keeps) and its cache key, from ONE serialisation
    of each value: ingest makes both for every job, and two whole `json.dumps` per job were most
    of its cost. The key's text is byte for byte `canonical_json` of the key's fields (sorted
    keys, compact, raw UTF-8), so keys made before this function match (pinned by a test)."""
    prompt = _json_text(spec.prompt)
    normalized = normalize_prompt(spec.prompt)
    key_prompt = prompt if normalized == spec.prompt else _json_text(normalized)
    negative = _json_text(spec.negative_prompt)
    key_negative = _json_text(normalize_prompt(spec.negative_prompt) if spec.negative_prompt else None)
    model = _json_text(spec.model)
    provider = _json_text(spec.provider)
    params = canonical_json(spec.params) if spec.params else "{}"
    numbers = f'"seed":{int(spec.seed)},"variant":{int(spec.variant)},"width":{int(spec.width)}'
    key = (
        f'{{"height":{int(spec.height)},"model":{model},"negative_prompt":{key_negative},'
        f'"params":{params},"prompt":{key_prompt},"provider":{provider},{numbers}}}'
    )
    if spec.inputs or spec.strength is not None or spec.operation is not None:
        # Only then: every key made before inputs existed stays byte for byte. Inputs count by
        # role and content (sha256), never by name or place.
        extra = _input_key_fields(spec)
        key = f"{key[:-1]},{extra}}}"
    quality = "null" if spec.quality is None else str(int(spec.quality))
    stored = (
        f'{{"format":{_json_text(spec.format.value)},"height":{int(spec.height)},"model":{model},'
        f'"negative_prompt":{negative},"params":{params},"prompt":{prompt},"provider":{provider},'
        f'"quality":{quality},{numbers}}}'
    )
    if spec.name is not None:  # only then: specs stored before names existed stay byte for byte
        stored = f'{stored[:-1]},"name":{_json_text(spec.name)}}}'
    if spec.inputs or spec.strength is not None or spec.operation is not None:
        inputs = canonical_json([dataclasses.asdict(item) for item in spec.inputs])
        rest = canonical_json({"strength": spec.strength, "operation": spec.operation})[1:-1]
        stored = f'{stored[:-1]},"inputs":{inputs},{rest}}}'

    return stored, sha256_hex(key)


def _input_key_fields(spec: JobSpec) -> str:
    fields = {
        "inputs": [[item.role, item.sha256] for item in spec.inputs],
        "operation": spec.operation,
        "strength": spec.strength,
    }
    return canonical_json(fields)[1:-1]


def _json_text(value: str | None) -> str:
    # What json.dumps(value, ensure_ascii=False) returns for a string (the encoder calls this same C
    # function), without building a JSONEncoder per call: that was most of a job's serialisation.
    return "null" if value is None else encode_basestring(value)


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
