"""Small real PNGs, different for every execution (colours and shapes come from a hash of the
execution id, prompt and seed), so downstream code sees genuine, distinct image files."""

from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageDraw

MAX_SIDE = 128


def preview_size(width: int, height: int) -> tuple[int, int]:
    """Keep the requested aspect ratio, longest side MAX_SIDE pixels."""
    width, height = max(1, width), max(1, height)
    scale = MAX_SIDE / max(width, height)
    return max(8, round(width * scale)), max(8, round(height * scale))


def render_png(execution_id: str, prompt: str, seed: int | None, width: int, height: int) -> bytes:
    digest = hashlib.sha256(f"{execution_id}\0{prompt}\0{seed}".encode()).digest()
    size = preview_size(width, height)
    image = Image.new("RGB", size, (digest[0], digest[1], digest[2]))
    draw = ImageDraw.Draw(image)
    w, h = size
    for i in range(4):
        b = digest[3 + i * 7 : 10 + i * 7]
        x0, y0 = b[0] * w // 256, b[1] * h // 256
        x1, y1 = x0 + 8 + b[2] * w // 512, y0 + 8 + b[3] * h // 512
        shape = draw.ellipse if b[4] % 2 else draw.rectangle
        shape((x0, y0, x1, y1), fill=(b[4], b[5], b[6]))
    draw.text((4, h - 14), execution_id[-10:], fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
