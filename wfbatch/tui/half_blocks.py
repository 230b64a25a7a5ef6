"""A picture drawn with "▀" cells (top pixel as foreground, bottom pixel as background).

Works in every terminal with colour; used where the terminal cannot draw real pictures and in
headless runs (tests, snapshots), where it is deterministic.
"""

from __future__ import annotations

from PIL import Image as PILImage
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

UPPER_HALF = "▀"


def half_block_rows(picture: PILImage.Image, columns: int, rows: int) -> list[list[Segment]]:
    """Scale `picture` to fit `columns` × `rows` cells (two pixels a cell, vertically), keeping its shape."""
    if columns <= 0 or rows <= 0:
        return []
    scale = min(columns / picture.width, (rows * 2) / picture.height)
    width = max(1, round(picture.width * scale))
    height = max(2, round(picture.height * scale))
    height += height % 2
    small = picture.convert("RGB").resize((width, height), PILImage.Resampling.LANCZOS)
    pixels = small.load()
    assert pixels is not None
    lines: list[list[Segment]] = []
    for y in range(0, height, 2):
        line: list[Segment] = []
        for x in range(width):
            top = pixels[x, y]
            bottom = pixels[x, y + 1]
            assert isinstance(top, tuple) and isinstance(bottom, tuple)
            style = Style(color=Color.from_rgb(*top[:3]), bgcolor=Color.from_rgb(*bottom[:3]))
            line.append(Segment(UPPER_HALF, style))
        lines.append(line)
    return lines


class HalfBlockImage(Widget):
    DEFAULT_CSS = """
    HalfBlockImage { width: auto; height: auto; }
    """

    def __init__(self, picture: PILImage.Image, *, max_rows: int = 18, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self.picture = picture
        self.max_rows = max_rows
        self._lines: list[list[Segment]] = []
        self._for_width = -1

    def _layout(self, columns: int) -> list[list[Segment]]:
        if columns != self._for_width:
            self._lines = half_block_rows(self.picture, columns, self.max_rows)
            self._for_width = columns
        return self._lines

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return len(self._layout(container.width)[0]) if self._layout(container.width) else 0

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._layout(width))

    def render_line(self, y: int) -> Strip:
        lines = self._layout(self.content_size.width)
        if y >= len(lines):
            return Strip.blank(self.content_size.width)
        return Strip(lines[y]).extend_cell_length(self.content_size.width)
