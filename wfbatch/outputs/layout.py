"""Names and places inside a batch's output folder.

```
output/<YYYY-MM-DD>-<batch-name>/
    pending-review/00001-<prompt-slug>.png
    approved/
    rejected/
    manifest.json
    contact-sheet.png
```

Every name that comes from user text goes through `make_slug`, so a prompt or a batch name can
never steer a path out of the batch folder; `review_path` checks that again before anything is
written.
"""

from __future__ import annotations

import os
import re
import unicodedata
from datetime import datetime
from pathlib import Path, PurePosixPath

from wfbatch.core.models import ImageFormat
from wfbatch.core.states import ReviewStatus

FALLBACK_SLUG = "image"
"""The slug of a text with nothing usable in it (emoji only, another script, punctuation)."""

REVIEW_FOLDERS: dict[ReviewStatus, str] = {
    ReviewStatus.PENDING: "pending-review",
    ReviewStatus.APPROVED: "approved",
    ReviewStatus.REJECTED: "rejected",
}
"""The folder, inside a batch folder, that holds the images of each review status."""

FILE_EXTENSIONS: dict[ImageFormat, str] = {
    ImageFormat.PNG: "png",
    ImageFormat.WEBP: "webp",
    ImageFormat.JPEG: "jpg",
}
"""File extension per output format (`jpg`, the one users and viewers expect, not `jpeg`)."""

_NOT_SLUG_CHARACTERS = re.compile(r"[^a-z0-9]+")


class UnsafePathError(ValueError):
    """A file name or relative path would point outside the batch folder, or is not a plain name."""


def make_slug(text: str, max_len: int = 48) -> str:
    """A short, filesystem-safe rendering of `text`: lowercase ASCII letters, digits and `-`.

    Accents are folded (`Café` → `cafe`), other non-ASCII characters are dropped, and every run of
    anything else becomes one `-`. The result never starts or ends with `-`, is at most `max_len`
    characters (cut at a word boundary when that keeps at least half), and is never empty:
    a text with nothing usable in it gives `"image"`.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, not {max_len}")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_SLUG_CHARACTERS.sub("-", ascii_text.lower()).strip("-")
    if len(slug) > max_len:
        cut = slug[:max_len]
        boundary = cut.rfind("-")
        if slug[max_len] != "-" and boundary >= max_len // 2:
            cut = cut[:boundary]
        slug = cut.strip("-")
    return slug or FALLBACK_SLUG[:max_len]


def batch_dir_name(created: datetime, batch_name: str) -> str:
    """The batch folder's name, `YYYY-MM-DD-<slug of the batch name>`.

    The date is taken from `created` as given: pass a local time for folders that match the
    user's calendar. Two batches with the same name on the same day get the same name; see
    `claim_batch_dir` for the folder that keeps them apart.
    """
    return f"{created:%Y-%m-%d}-{make_slug(batch_name)}"


FINAL_SUFFIX = "-final"
"""Ends the name of a draft's final (`00001-a-castle-final.png`): it lands in approved/ beside its
draft, which keeps the plain name."""


def image_file_name(index: int, prompt: str, fmt: ImageFormat, *, final: bool = False) -> str:
    """`00001-<prompt slug>.png`: the index keeps files in batch order and the names unique (a
    draft's final adds FINAL_SUFFIX to its draft's name)."""
    if index < 0:
        raise ValueError(f"an image index cannot be negative ({index})")
    suffix = FINAL_SUFFIX if final else ""
    return f"{index:05d}-{make_slug(prompt)}{suffix}.{FILE_EXTENSIONS[fmt]}"


def review_path(batch_dir: Path, status: ReviewStatus, file_name: str) -> Path:
    """Where the image `file_name` lives in `batch_dir` when its review status is `status`.
    `file_name` may have sub-folders (`a1/00001-0.png`, from a name template), `/`-separated.

    Raises `UnsafePathError` unless every part of `file_name` is a plain name and the path stays
    inside `batch_dir`.
    """
    for part in file_name.split("/"):
        check_plain_file_name(part)
    path = batch_dir / REVIEW_FOLDERS[status] / file_name
    # Lexical check (no symlink resolution): a user may well symlink approved/ to another disk.
    inside = Path(os.path.normpath(path)).is_relative_to(os.path.normpath(batch_dir))
    if not inside:
        raise UnsafePathError(f"{file_name!r} would land outside the batch folder {batch_dir}")
    return path


def check_plain_file_name(file_name: str) -> None:
    """Raise `UnsafePathError` unless `file_name` is one plain path component."""
    if (
        file_name in {"", ".", ".."}
        or "/" in file_name
        or "\\" in file_name
        or "\0" in file_name
        or PurePosixPath(file_name).name != file_name
    ):
        raise UnsafePathError(f"{file_name!r} is not a plain file name")
