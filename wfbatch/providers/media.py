"""What kind of image a body is, from its first bytes (a server's Content-Type can lie), and
whether it is whole."""

from __future__ import annotations

import io

from PIL import Image as PILImage

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image(data: bytes) -> str | None:
    """The media type the bytes themselves announce, for the common formats."""
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def is_whole_image(data: bytes) -> bool:
    """Whether the bytes decode to the end. An answer cut short with intact framing (a proxy, a
    broken server) still starts like an image; only decoding it shows it is not one."""
    try:
        with PILImage.open(io.BytesIO(data)) as picture:
            picture.load()
    except (OSError, SyntaxError, ValueError):
        return False
    return True
