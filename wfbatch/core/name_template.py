"""Output names from a template: `[output] name = "{index:05d}-{slug}"`, `"{sku}/{index}-{variant}"`.

A template names the image's path inside its review folder, without the extension. `/` in the
template makes sub-folders; a value never does: every value is slugged before it is put in (a
`../` in a CSV cell becomes `-`), and every part of the result is checked again, so a name can never
leave the batch folder. Each part is cut to fit the file system's 255-byte limit.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from wfbatch.core.names import NAME_MAX, cut_utf8

RUNTIME_FIELDS: tuple[str, ...] = (
    "batch", "index", "slug", "seed", "model", "variant", "id", "date", "stage",
)
"""What every template may name; anything else must be one of the entry's own `fields`."""
DEFAULT_TEMPLATE = "{index:05d}-{slug}"
MAX_DEPTH = 8
"""Sub-folders at most (a template is a name, not a tree)."""
ROOM_FOR_SUFFIXES = 40
"""Bytes kept free in the last part for `-final`, a `-00001` that keeps names unique, and `.webp`."""
FALLBACK = "image"
_NOT_SAFE = re.compile(r"[^a-z0-9_]+")


class NameTemplateError(ValueError):
    """The template itself is wrong (syntax, a conversion, an attribute, `..`), whatever the entry."""


def safe_part(text: str) -> str:
    """One path part from user text: lowercase ASCII letters, digits, `_` and `-` (accents folded,
    anything else a `-`), never empty, `.` or `..`."""
    return _slug(text) or FALLBACK


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _NOT_SAFE.sub("-", ascii_text.lower()).strip("-")


def placeholders(template: str) -> list[str]:
    """The names the template uses, in order; raises NameTemplateError when it cannot be a name."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise NameTemplateError(f"name template {template!r}: {error}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise NameTemplateError(f"name template {template!r}: {{{name}}} must be a plain name")
        if conversion or (spec and "{" in spec):
            raise NameTemplateError(f"name template {template!r}: {{{name}}}: no conversions or nesting")
        names.append(name)
    parts = template.split("/")
    if any(part.strip() in {"", ".", ".."} for part in parts) or len(parts) > MAX_DEPTH:
        raise NameTemplateError(
            f"name template {template!r}: every '/'-separated part must name something"
            f" (no empty part, '.' or '..'; at most {MAX_DEPTH} parts)"
        )
    return names


def missing(template: str, fields: Iterable[str]) -> list[str]:
    """The template's names that neither wfbatch nor the entry's `fields` give."""
    given = set(RUNTIME_FIELDS) | set(fields)
    return [name for name in placeholders(template) if name not in given]


class _SafeFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        # Formatted first (`{index:05d}`), then slugged: a value cannot add a '/' or a '..'.
        # An empty value leaves its place empty: the part around it still names something.
        return _slug(format(value, format_spec))


def render(template: str, values: Mapping[str, Any]) -> str:
    """The path (`/`-separated, no extension) `template` gives for `values`. Raises KeyError naming
    a missing value, ValueError for a format spec the value does not take (`{slug:05d}`)."""
    text = _SafeFormatter().vformat(template, (), values)
    parts = [_fit(safe_literal(part)) for part in text.split("/")]
    parts[-1] = _fit(parts[-1], NAME_MAX - ROOM_FOR_SUFFIXES)
    return "/".join(parts)


def safe_literal(part: str) -> str:
    """A part as rendered: values are safe already; the template's own text is kept where it is
    harmless (letters, digits, `-`, `_`, `.` inside) and made safe where it is not."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", part).strip("-.")
    return cleaned if cleaned not in {"", ".", ".."} else FALLBACK


def _fit(part: str, limit: int = NAME_MAX) -> str:
    return cut_utf8(part.encode(), limit).decode().rstrip("-.") or FALLBACK


def unique_names(names: list[str]) -> list[str]:
    """`names` with every repeat (case-insensitive, as on macOS) made unique by its 1-based position,
    `-00007`: two images of one batch never share a file."""
    seen: set[str] = set()
    out: list[str] = []
    for position, name in enumerate(names, start=1):
        if name.lower() in seen:
            name = f"{name}-{position:05d}"
        seen.add(name.lower())
        out.append(name)
    return out
