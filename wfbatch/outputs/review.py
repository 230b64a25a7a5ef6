"""Moving an image between `pending-review/`, `approved/` and `rejected/`."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from wfbatch.core.states import ReviewStatus
from wfbatch.outputs.layout import REVIEW_FOLDERS, UnsafePathError, review_path


def move_for_review(batch_dir: Path, relative_file: str, target: ReviewStatus) -> str:
    """Move the image `relative_file` (relative to `batch_dir`) into `target`'s review folder.

    Returns the image's new path relative to `batch_dir`, in the manifest's form
    (`approved/00001-x.png`). Idempotent: when the image is already in the target folder,
    nothing moves. The image is found by its file name in any review folder, so a record
    that lags behind the disk (a crash between the move and the database update) still works.

    Raises `FileNotFoundError` when the image is in none of the review folders,
    `FileExistsError` when both `relative_file` and a different file of the same name in the
    target folder exist (nothing is overwritten), and `UnsafePathError` when `relative_file`
    is not `<review folder>/<file name>`.
    """
    given = PurePosixPath(relative_file)
    if len(given.parts) < 2 or given.parts[0] not in REVIEW_FOLDERS.values():
        raise UnsafePathError(
            f"{relative_file!r} is not an image in a review folder "
            f"({', '.join(folder + '/' for folder in REVIEW_FOLDERS.values())})"
        )
    # The name under the review folder, sub-folders of a name template included (`a1/00001-0.png`).
    file_name = "/".join(given.parts[1:])
    given_path = review_path(batch_dir, _status_of(given.parts[0]), file_name)
    destination = review_path(batch_dir, target, file_name)
    destination_relative = f"{REVIEW_FOLDERS[target]}/{file_name}"

    if destination.is_file():
        if given_path != destination and given_path.is_file():
            raise FileExistsError(
                f"cannot move {relative_file} to {destination_relative} in {batch_dir}: "
                "a different file of that name is already there"
            )
        return destination_relative

    candidates = [given_path] + [review_path(batch_dir, status, file_name) for status in REVIEW_FOLDERS]
    source = next((path for path in candidates if path.is_file()), None)
    if source is None:
        raise FileNotFoundError(
            f"cannot move {relative_file} to {REVIEW_FOLDERS[target]}/: {file_name} is in none of "
            f"the review folders of {batch_dir}"
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    # Same batch folder, so same filesystem: the rename is atomic.
    source.replace(destination)
    return destination_relative


def _status_of(folder: str) -> ReviewStatus:
    return next(status for status, name in REVIEW_FOLDERS.items() if name == folder)
