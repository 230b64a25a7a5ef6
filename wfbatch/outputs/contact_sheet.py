"""`contact-sheet.png`: every image of a batch as a labelled thumbnail, for a look at a glance.

Layout: square cells of `thumb` pixels in a grid, `PADDING` pixels apart and around, with a
`LABEL_HEIGHT` band under each cell for its label. A sheet of `rows` x `columns` cells is

    width  = columns * (thumb + PADDING) + PADDING
    height = rows * (thumb + LABEL_HEIGHT + PADDING) + PADDING
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from wfbatch.outputs.atomic import atomic_write_bytes

CONTACT_SHEET_FILE_NAME = "contact-sheet.png"
PADDING = 8
LABEL_HEIGHT = 16
MIN_THUMB = 32

_BACKGROUND = (32, 32, 32)
_PLACEHOLDER = (96, 96, 96)
_TEXT = (230, 230, 230)
_UNREADABLE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)

_Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


def render_contact_sheet(
    items: Sequence[tuple[str, Path]],
    *,
    thumb: int = 160,
    columns: int | None = None,
    max_items: int = 400,
) -> bytes:
    """A PNG contact sheet of `items`, each a (label, image path) pair, in the order given.

    Thumbnails keep their aspect ratio, centred in their cell. A file that is missing or cannot
    be read gets a grey cell saying so; past `max_items`, one last cell says "+N more"; with no
    items at all, the sheet is one cell saying "no images yet". `columns` defaults to the
    square root of the number of cells, rounded up. Labels are drawn in Pillow's default font,
    ASCII only (the engine passes the index and the prompt's start).
    """
    if thumb < MIN_THUMB:
        raise ValueError(f"thumb must be at least {MIN_THUMB} pixels, not {thumb}")
    if max_items < 1:
        raise ValueError(f"max_items must be at least 1, not {max_items}")
    if columns is not None and columns < 1:
        raise ValueError(f"columns must be at least 1, not {columns}")

    shown = items[:max_items]
    hidden = len(items) - len(shown)
    cell_count = max(1, len(shown) + (1 if hidden else 0))
    column_count = min(columns or math.ceil(math.sqrt(cell_count)), cell_count)
    row_count = math.ceil(cell_count / column_count)
    sheet = Image.new(
        "RGB",
        (
            column_count * (thumb + PADDING) + PADDING,
            row_count * (thumb + LABEL_HEIGHT + PADDING) + PADDING,
        ),
        _BACKGROUND,
    )
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()

    def cell_origin(position: int) -> tuple[int, int]:
        row, column = divmod(position, column_count)
        return PADDING + column * (thumb + PADDING), PADDING + row * (thumb + LABEL_HEIGHT + PADDING)

    for position, (label, path) in enumerate(shown):
        x, y = cell_origin(position)
        thumbnail = _load_thumbnail(path, thumb)
        if isinstance(thumbnail, Image.Image):
            offset = (x + (thumb - thumbnail.width) // 2, y + (thumb - thumbnail.height) // 2)
            sheet.paste(thumbnail, offset, mask=thumbnail)
        else:
            _draw_message_cell(draw, font, (x, y), thumb, thumbnail)
        _draw_text_centred(draw, font, label, (x, y + thumb), thumb, LABEL_HEIGHT)
    if hidden:
        _draw_message_cell(draw, font, cell_origin(len(shown)), thumb, f"+{hidden} more")
    if not items:
        _draw_message_cell(draw, font, cell_origin(0), thumb, "no images yet")

    output = io.BytesIO()
    sheet.save(output, "PNG", optimize=False)
    return output.getvalue()


def write_contact_sheet(batch_dir: Path, items: Sequence[tuple[str, Path]]) -> Path:
    """Render the contact sheet of `items` and write it atomically as `batch_dir/contact-sheet.png`."""
    path = batch_dir / CONTACT_SHEET_FILE_NAME
    atomic_write_bytes(path, render_contact_sheet(items))
    return path


def _load_thumbnail(path: Path, size: int) -> Image.Image | str:
    """The thumbnail as RGBA, or the message to show instead of it."""
    try:
        with Image.open(path) as image:
            # JPEG only: decode at a reduced scale, several times faster for big images.
            image.draft("RGB", (size, size))
            image.thumbnail((size, size))
            return image.convert("RGBA")
    except FileNotFoundError:
        return "missing"
    except _UNREADABLE_ERRORS:
        return "unreadable"


def _draw_message_cell(
    draw: ImageDraw.ImageDraw, font: _Font, origin: tuple[int, int], thumb: int, message: str
) -> None:
    x, y = origin
    draw.rectangle((x, y, x + thumb - 1, y + thumb - 1), fill=_PLACEHOLDER)
    _draw_text_centred(draw, font, message, origin, thumb, thumb)


def _draw_text_centred(
    draw: ImageDraw.ImageDraw,
    font: _Font,
    text: str,
    origin: tuple[int, int],
    width: int,
    height: int,
) -> None:
    # The bitmap fallback font cannot encode non-ASCII text; the default one lacks most glyphs.
    text = text.encode("ascii", "replace").decode("ascii")
    while len(text) > 1 and draw.textlength(text, font=font) > width:
        text = text[:-4] + "..." if len(text) > 4 else text[:-1]
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = origin[0] + (width - (right - left)) // 2 - left
    y = origin[1] + (height - (bottom - top)) // 2 - top
    draw.text((x, y), text, fill=_TEXT, font=font)
