"""Choosing a batch's output folder so that two batches never share one.

`batch_dir_name` gives `2025-05-01-castles` for every batch named "castles" on that day: dropping
the same prompt file twice would mix both batches' images (same file names, one manifest).
`claim_batch_dir` gives the second one `2025-05-01-castles-2`.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path

from wfbatch.outputs.layout import batch_dir_name
from wfbatch.outputs.manifest import MANIFEST_FILE_NAME, Manifest, read_manifest, write_manifest

_MAX_SUFFIX = 10_000


def claim_batch_dir(output_root: Path, created: datetime, batch_name: str, batch_id: str) -> Path:
    """Create (or find again) the output folder of batch `batch_id` under `output_root`.

    The first free name among `<date>-<name>`, `<date>-<name>-2`, `-3`, ... is created and marked
    as this batch's with an empty `manifest.json`; a folder whose manifest already names
    `batch_id` is returned as it is, so calling this again (after a restart) is safe. Store the
    result with the batch rather than relying on that: a folder is only recognised by its manifest.
    `created` must be timezone-aware (the manifest's times are).
    """
    base_name = batch_dir_name(created, batch_name)
    for number in range(1, _MAX_SUFFIX):
        candidate = output_root / (base_name if number == 1 else f"{base_name}-{number}")
        try:
            # mkdir is the atomic claim: of two processes racing for a name, one gets it.
            candidate.mkdir(parents=True)
        except FileExistsError:
            if _belongs_to(candidate, batch_id):
                return candidate
            continue
        empty = Manifest(
            batch_id=batch_id, name=batch_name, created_at=created, updated_at=created, counts={}, entries=[]
        )
        write_manifest(candidate, empty)
        return candidate
    raise FileExistsError(f"no free folder name for batch {batch_name!r} under {output_root}")


def release_batch_dir(folder: Path, batch_id: str) -> None:
    """Undo `claim_batch_dir` for a batch that was never committed: remove its folder if it is
    still nothing but this batch's empty manifest (anything else in it is left alone)."""
    if not _belongs_to(folder, batch_id):
        return
    with contextlib.suppress(OSError):
        if {entry.name for entry in folder.iterdir()} == {MANIFEST_FILE_NAME}:
            (folder / MANIFEST_FILE_NAME).unlink()
            folder.rmdir()


def _belongs_to(folder: Path, batch_id: str) -> bool:
    try:
        return read_manifest(folder).batch_id == batch_id
    except (OSError, ValueError):
        return False  # a file, or a folder that is not (or not yet) a batch's: not ours
