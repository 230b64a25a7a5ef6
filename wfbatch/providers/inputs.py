"""An input picture's bytes at send time, checked against the sha256 taken at parse time.

The prompt file was accepted with these exact pictures (the cache key holds their hashes): a file
changed or removed since is a permanent failure naming it, never a silent send of other bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from wfbatch.core.models import InputImage
from wfbatch.providers.errors import Permanent


def input_bytes(item: InputImage) -> bytes:
    if item.is_url:
        raise Permanent(f"input {item.source}: this provider needs the picture's bytes, not a URL")
    try:
        data = Path(item.location).read_bytes()
    except OSError as error:
        raise Permanent(f"input {item.source}: cannot be read any more: {error.strerror or error}") from error
    if hashlib.sha256(data).hexdigest() != item.sha256:
        raise Permanent(f"input {item.source}: the file changed since the prompt file was accepted")
    return data


def file_name(item: InputImage) -> str:
    """A name for a multipart file part: the hash (no user path leaves the machine) and a suffix."""
    suffix = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}
    return item.sha256[:16] + suffix.get(item.media_type, ".png")
