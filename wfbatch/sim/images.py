"""Real images, different for every generation (colours and shapes come from a hash of the
generation id, prompt and seed), so downstream code sees genuine, distinct image files: small PNG
previews for Wireflow's CDN, full-size PNG/JPEG/WebP for answers that carry the image itself."""

from __future__ import annotations

import hashlib
import io
from typing import Literal

from PIL import Image, ImageDraw

MAX_SIDE = 128


def preview_size(width: int, height: int) -> tuple[int, int]:
    """Keep the requested aspect ratio, longest side MAX_SIDE pixels."""
    width, height = max(1, width), max(1, height)
    scale = MAX_SIDE / max(width, height)
    return max(8, round(width * scale)), max(8, round(height * scale))


ImageFormat = Literal["png", "jpeg", "webp"]


def render_png(execution_id: str, prompt: str, seed: int | None, width: int, height: int) -> bytes:
    """A preview: the requested aspect ratio at most MAX_SIDE pixels wide."""
    return render_image(execution_id, prompt, seed, preview_size(width, height))


def render_image(
    key: str,
    prompt: str,
    seed: int | None,
    size: tuple[int, int],
    fmt: ImageFormat = "png",
    *,
    transparent: bool = False,
    quality: int = 100,
) -> bytes:
    """An image of exactly `size` pixels in `fmt`; `transparent` gives an alpha background (PNG and
    WebP only, like the API); `quality` is the JPEG/WebP compression level 0-100."""
    digest = hashlib.sha256(f"{key}\0{prompt}\0{seed}".encode()).digest()
    background = (digest[0], digest[1], digest[2], 0 if transparent else 255)
    image = Image.new("RGBA" if transparent else "RGB", size, background if transparent else background[:3])
    draw = ImageDraw.Draw(image)
    w, h = size
    for i in range(4):
        b = digest[3 + i * 7 : 10 + i * 7]
        x0, y0 = b[0] * w // 256, b[1] * h // 256
        x1, y1 = x0 + 8 + b[2] * w // 512, y0 + 8 + b[3] * h // 512
        shape = draw.ellipse if b[4] % 2 else draw.rectangle
        shape((x0, y0, x1, y1), fill=(b[4], b[5], b[6]))
    draw.text((4, h - 14), key[-10:], fill=(255, 255, 255))
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, format="PNG")
    else:
        image.save(out, format=fmt.upper(), quality=quality)
    return out.getvalue()
