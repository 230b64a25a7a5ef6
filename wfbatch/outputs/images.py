"""Converting a provider's image to the requested format, with the generation metadata inside.

Where the metadata goes, and why:

- PNG: one text chunk per key (tEXt when the value is Latin-1, else UTF-8 iTXt; `prompt`,
  `seed`, ... show up as-is in image viewers and `exiftool`), plus one iTXt chunk named
  `wfbatch` holding the whole dict as JSON. `read_embedded_metadata` reads that one, so values
  round-trip exactly and other tools' chunks named `prompt` (ComfyUI writes one) are not
  mistaken for ours.
- JPEG and WebP: EXIF ImageDescription (tag 0x010E) holding `{"wfbatch": {...}}` as JSON.
  Pillow writes and reads EXIF for both formats with no extra dependency. XMP was not chosen:
  Pillow writes it, but reading it back (`Image.getxmp`) needs `defusedxml`, which is not a
  dependency, and only warns when it is missing. EXIF ASCII tags are 7-bit in Pillow (anything
  else becomes `?`), so the JSON is written with `\\uXXXX` escapes: plain ASCII on disk, exact
  text once decoded.
- JPEG keeps all its EXIF in one 64 KiB segment. When two maximum-length prompts do not fit,
  the longest values are shortened and the dict says so in `truncated_keys`; `manifest.json`
  always has the full text.

Nothing of the provider's own metadata is carried over (Pillow does not copy text chunks,
EXIF or XMP unless asked), except the ICC colour profile, which is kept when the pixels stay in
the same RGB colour space, and the EXIF orientation, which is applied to the pixels.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path

from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from wfbatch.core.models import ImageFormat

METADATA_KEY = "wfbatch"
"""Name of the PNG chunk, and of the top-level JSON key in EXIF, that holds the whole metadata dict."""

METADATA_KEYS = (
    "prompt",
    "negative_prompt",
    "seed",
    "model",
    "provider",
    "cache_key",
    "job_id",
    "batch_id",
)
"""The keys the engine embeds. Other keys are accepted too (letters, digits, `_`)."""

DEFAULT_QUALITY = 90
"""JPEG and WebP quality when the prompt sets none: Pillow's defaults (75, 80) show artefacts."""

EXIF_IMAGE_DESCRIPTION = 0x010E
EXIF_SOFTWARE = 0x0131

# A JPEG marker segment holds at most 65535 bytes, 2 of which are its length.
_JPEG_MAX_EXIF_BYTES = 65533
_METADATA_KEY_PATTERN = re.compile(r"[A-Za-z0-9_]{1,79}")  # PNG keywords: 1-79 Latin-1 characters
_RGB_MODES = frozenset({"RGB", "RGBA", "RGBX", "RGBa", "P", "PA"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# What Pillow raises for bytes it cannot decode; it is not consistent across plugins.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can read (truncated, corrupt, or not an image at all).

    The engine treats it as a transient download problem: the download is tried again.
    """


def encode_image(
    data: bytes,
    fmt: ImageFormat,
    quality: int | None,
    metadata: Mapping[str, str | None],
) -> bytes:
    """Convert `data` (any format Pillow reads) to `fmt`, with `metadata` embedded.

    Pixels: PNG and WebP are RGBA when the source has any transparency, else RGB; JPEG is RGB,
    transparency flattened onto white. An animated source gives its first frame.
    `quality` (1-100, default `DEFAULT_QUALITY`) applies to JPEG and lossy WebP; PNG is lossless
    and ignores it. Metadata entries whose value is empty or None are skipped.
    """
    if quality is not None and not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, not {quality}")
    fields = _clean_metadata(metadata)
    source = decode_image(data)
    icc_profile = source.info.get("icc_profile") if source.mode in _RGB_MODES else None
    output = io.BytesIO()
    if fmt is ImageFormat.PNG:
        _to_rgb_or_rgba(source).save(output, "PNG", pnginfo=_png_text_chunks(fields), icc_profile=icc_profile)
    elif fmt is ImageFormat.WEBP:
        _to_rgb_or_rgba(source).save(
            output,
            "WEBP",
            quality=quality or DEFAULT_QUALITY,
            exif=_exif_bytes(fields, max_bytes=None),
            icc_profile=icc_profile,
        )
    elif fmt is ImageFormat.JPEG:
        _flatten_onto_white(source).save(
            output,
            "JPEG",
            quality=quality or DEFAULT_QUALITY,
            exif=_exif_bytes(fields, max_bytes=_JPEG_MAX_EXIF_BYTES),
            icc_profile=icc_profile,
        )
    else:  # pragma: no cover - ImageFormat has exactly the three members above
        raise ValueError(f"unsupported output format {fmt!r}")
    return output.getvalue()


def decode_image(data: bytes) -> Image.Image:
    """Decode `data` fully into memory, upright (EXIF orientation applied), first frame only.

    Raises `ImageDecodeError` when Pillow cannot read it.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            # load() inside the try: a truncated file opens fine and fails only when decoded.
            opened.load()
            # Returns a copy in every case, so the image outlives the `with`. Corrupt EXIF only
            # makes Pillow warn (the image stays unrotated); warnings are not silenced here
            # because `warnings.catch_warnings` is process-global, and this runs in threads.
            return ImageOps.exif_transpose(opened)
    except _DECODE_ERRORS as error:
        raise ImageDecodeError(f"cannot decode the image ({len(data)} bytes): {error}") from error


INTEGER_KEYS = frozenset({"seed"})
"""Keys embedded as text but typed as integers in the manifest: read back as the manifest has them."""


def read_embedded_metadata(path: str | os.PathLike[str]) -> dict[str, str | int]:
    """The wfbatch metadata embedded in the PNG, WebP or JPEG file at `path` (the seed as an int,
    as in the manifest).

    Returns an empty dict when the file carries none (an image from elsewhere). Raises
    `FileNotFoundError` when the file is missing, `ImageDecodeError` when it is not an image.
    """
    path = Path(path)
    with path.open("rb") as file:
        try:
            with Image.open(file) as image:
                # Our PNG chunk precedes the pixel data, so `info` has it without decoding;
                # `text` also looks at chunks after the pixels (it decodes the image to get there).
                png_chunk = image.info.get(METADATA_KEY)
                if png_chunk is None and image.format == "PNG":
                    png_chunk = getattr(image, "text", {}).get(METADATA_KEY)
                if png_chunk is not None:
                    return _parse_metadata_json(str(png_chunk), nested=False)
                description = image.getexif().get(EXIF_IMAGE_DESCRIPTION)
        except _DECODE_ERRORS as error:
            raise ImageDecodeError(f"cannot read {path} as an image: {error}") from error
    if isinstance(description, str):
        return _parse_metadata_json(description, nested=True)
    return {}


def _clean_metadata(metadata: Mapping[str, str | None]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, value in metadata.items():
        if not _METADATA_KEY_PATTERN.fullmatch(key) or key == METADATA_KEY:
            raise ValueError(f"{key!r} cannot be a metadata key (letters, digits and _ only; not 'wfbatch')")
        if value:
            fields[key] = value
    return fields


def _to_rgb_or_rgba(image: Image.Image) -> Image.Image:
    target = "RGBA" if _has_transparency(image) else "RGB"
    return image if image.mode == target else image.convert(target)


def _flatten_onto_white(image: Image.Image) -> Image.Image:
    if not _has_transparency(image):
        return image if image.mode == "RGB" else image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def _png_text_chunks(fields: Mapping[str, str]) -> PngInfo:
    chunks = PngInfo()
    for key, value in fields.items():
        chunks.add_text(key, value)
    chunks.add_itxt(METADATA_KEY, json.dumps(fields, ensure_ascii=False))
    return chunks


def _exif_bytes(fields: Mapping[str, str], max_bytes: int | None) -> bytes:
    exif = _exif_with(fields)
    if max_bytes is None or len(exif) <= max_bytes:
        return exif
    shortened = dict(fields)
    truncated: set[str] = set()
    while len(exif) > max_bytes:
        longest = max(shortened, key=lambda key: len(shortened[key]))
        if len(shortened[longest]) < 16:  # pragma: no cover - only a huge number of keys gets here
            raise ValueError("the metadata does not fit in a JPEG's EXIF segment")
        shortened[longest] = shortened[longest][: len(shortened[longest]) * 3 // 4]
        truncated.add(longest)
        shortened["truncated_keys"] = ",".join(sorted(truncated))
        exif = _exif_with(shortened)
    return exif


def _exif_with(fields: Mapping[str, str]) -> bytes:
    exif = Image.Exif()
    exif[EXIF_IMAGE_DESCRIPTION] = json.dumps({METADATA_KEY: fields}, ensure_ascii=True)
    exif[EXIF_SOFTWARE] = "wfbatch"
    return exif.tobytes()


def _typed(key: str, value: str) -> str | int:
    if key in INTEGER_KEYS and value.lstrip("-").isdigit():
        return int(value)
    return value


def _parse_metadata_json(text: str, *, nested: bool) -> dict[str, str | int]:
    """The metadata dict in `text`, or {} when `text` is not wfbatch metadata."""
    try:
        parsed: object = json.loads(text)
    except ValueError:
        return {}
    if nested:
        parsed = parsed.get(METADATA_KEY) if isinstance(parsed, dict) else None
    if not isinstance(parsed, dict):
        return {}
    return {
        key: _typed(key, value)
        for key, value in parsed.items()
        if isinstance(key, str) and isinstance(value, str)
    }
