"""Input pictures named by prompt entries (`image`, `mask`, `images`), checked at parse time.

A reference is an `https://` URL or a path relative to one of the allowed folders: the prompt
file's own folder (when it has one: `wfbatch run FILE`) and the HOME's `inputs/` folder. The path
is resolved with every symlink followed and must land inside the folder it was found from: a
`../../etc/passwd` or a symlink out of the folder is refused, so a dropped prompt file cannot make
wfbatch read (and send to a provider) a file outside those folders. An absolute path is refused
for the same reason.

Each distinct reference is read once per file (an input named by 500 entries is read once):
refused when missing, unreadable, empty, over MAX_INPUT_BYTES, or not an image Pillow can open
and verify. What is kept is an `InputImage` with the sha256 of the bytes, which is what the cache
key and the manifest carry.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from wfbatch.core.models import InputImage, InputRole, ParsedBatch, PromptEntry
from wfbatch.core.parsing.errors import LineError, excerpt

MAX_INPUT_BYTES = 20 * 1024 * 1024
"""The largest input read at all (20 MB): above every provider's per-file limit that wfbatch sends
as is (Stability's whole request is 10 MiB; each provider's own limit is checked per line)."""
_MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
# Pillow's guard against decompression bombs, made an error for what we only verify.
_MAX_PIXELS = 100_000_000


@dataclass(frozen=True)
class InputRoots:
    """The folders inputs may come from, in the order they are tried."""

    prompt_dir: Path | None
    """The prompt file's own folder; None when it has none (a file dropped into the inbox)."""
    inputs_dir: Path | None
    """The HOME's `inputs/` folder."""

    def folders(self) -> list[tuple[str, Path]]:
        named = [("the prompt file's folder", self.prompt_dir), ("the inputs folder", self.inputs_dir)]
        return [(name, folder) for name, folder in named if folder is not None]


class InputProblem(ValueError):
    """One reference that cannot be used; the message names the problem (not the line)."""


def references(entry: PromptEntry) -> Iterator[tuple[InputRole, str]]:
    """(role, reference) of every input an entry names, in a stable order."""
    if entry.image is not None:
        yield "image", entry.image
    if entry.mask is not None:
        yield "mask", entry.mask
    for reference in entry.images:
        yield "images", reference


def resolve_inputs(batch: ParsedBatch, roots: InputRoots) -> tuple[ParsedBatch, list[LineError]]:
    """`batch` with every reference its entries name checked (`ParsedBatch.inputs`), and one error
    per line and bad reference."""
    resolved: dict[str, InputImage] = {}
    refused: dict[str, str] = {}
    errors: list[LineError] = []
    for parsed in batch.entries:
        for role, reference in references(parsed.entry):
            if reference not in resolved and reference not in refused:
                try:
                    resolved[reference] = resolve_one(reference, role, roots)
                except InputProblem as problem:
                    refused[reference] = str(problem)
            if reference in refused:
                message = f"{role} {excerpt(reference)}: {refused[reference]}"
                errors.append(LineError(parsed.line, None, message))
    return replace(batch, inputs=resolved), errors


def resolve_one(reference: str, role: InputRole, roots: InputRoots) -> InputImage:
    if reference.startswith("https://"):
        if len(reference) <= len("https://") or any(ch.isspace() for ch in reference):
            raise InputProblem("not a usable https:// URL")
        digest = hashlib.sha256(reference.encode("utf-8")).hexdigest()
        return InputImage(role=role, source=reference, location=reference, sha256=digest)
    if "://" in reference or reference.startswith("data:"):
        raise InputProblem("only https:// URLs and paths are taken")
    if Path(reference).is_absolute() or reference.startswith("~"):
        raise InputProblem(f"an absolute path is not taken: give it relative to {_where(roots)}")
    if Path(os.path.normpath(reference)).parts[:1] == ("..",):
        raise InputProblem(f"refused: the path leads outside {_where(roots)} (through '..')")
    path = _locate(reference, roots)
    data = _read(path)
    width, height, media_type = _check_image(data)
    return InputImage(
        role=role,
        source=reference,
        location=str(path),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        width=width,
        height=height,
        media_type=media_type,
    )


def _where(roots: InputRoots) -> str:
    folders = roots.folders()
    return " or ".join(f"{name} ({folder})" for name, folder in folders) if folders else "the inputs folder"


def _locate(reference: str, roots: InputRoots) -> Path:
    """The resolved path of `reference` under the first allowed folder that has it; refused when it
    resolves outside the folder it was found from (`..`, a symlink out)."""
    escaped = False
    for _, folder in roots.folders():
        try:
            base = folder.resolve(strict=True)
        except OSError:
            continue
        candidate = base / reference
        if not os.path.lexists(candidate):
            continue
        try:
            resolved = candidate.resolve(strict=True)
        except OSError:
            continue  # a dangling symlink: as good as missing
        if not resolved.is_relative_to(base):
            escaped = True
            continue
        return resolved
    if escaped:
        raise InputProblem(f"refused: the path leads outside {_where(roots)} (through '..' or a symlink)")
    raise InputProblem(f"no such file in {_where(roots)}")


def _read(path: Path) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise InputProblem(f"cannot be read: {error.strerror or error}") from error
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputProblem("not a regular file")
        if info.st_size == 0:
            raise InputProblem("the file is empty (0 bytes)")
        if info.st_size > MAX_INPUT_BYTES:
            raise InputProblem(
                f"the file is too large: {info.st_size / 1_048_576:.1f} MB, over the"
                f" {MAX_INPUT_BYTES // 1_048_576} MB limit for an input"
            )
        try:
            data = handle.read(MAX_INPUT_BYTES + 1)
        except OSError as error:
            raise InputProblem(f"cannot be read: {error.strerror or error}") from error
    if not data:
        raise InputProblem("the file is empty (0 bytes)")
    if len(data) > MAX_INPUT_BYTES:
        limit = MAX_INPUT_BYTES // 1_048_576
        raise InputProblem(f"the file is too large: over the {limit} MB limit for an input")
    return data


def _check_image(data: bytes) -> tuple[int, int, str]:
    """(width, height, media type) of a picture Pillow can open and verify; else InputProblem."""
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            fmt = image.format or ""
            width, height = image.size
            if width * height > _MAX_PIXELS:
                raise InputProblem(f"the picture is too large: {width}x{height} pixels")
            image.verify()
    except InputProblem:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as err:
        raise InputProblem("not an image (PNG, JPEG, WebP or GIF) that can be opened") from err
    if fmt not in _MEDIA_TYPES:
        raise InputProblem(f"a {fmt or 'unknown'} picture: give a PNG, JPEG, WebP or GIF")
    return width, height, _MEDIA_TYPES[fmt]


def inputs_of(entry: PromptEntry, known: dict[str, InputImage] | None) -> tuple[InputImage, ...]:
    """The entry's inputs as checked (`resolve_inputs`); a reference not checked yet stays
    unchecked (sha256 empty), which `unchecked` reports before anything is enqueued."""
    found: list[InputImage] = []
    for role, reference in references(entry):
        checked = (known or {}).get(reference)
        if checked is None:
            found.append(InputImage(role=role, source=reference, location="", sha256=""))
        else:
            found.append(checked if checked.role == role else replace(checked, role=role))
    return tuple(found)


def unchecked(inputs: Sequence[InputImage]) -> list[str]:
    return [item.source for item in inputs if not item.sha256]
