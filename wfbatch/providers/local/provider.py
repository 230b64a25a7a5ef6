"""The built-in offline provider: renders a deterministic picture from prompt, seed and size.

No network, no key, no model: it exists so the demo, the test suite and rehearsals run anywhere.
Every picture says so on its face, and the provider's label says so wherever its name appears.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import textwrap

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from wfbatch.core.hashing import normalize_prompt
from wfbatch.core.models import JobSpec
from wfbatch.providers.base import (
    Finished,
    Image,
    Pending,
    ProviderDefaults,
    RemoteHandle,
    RequestGate,
    RequestKind,
    Submitted,
)
from wfbatch.providers.errors import Permanent, Transient
from wfbatch.providers.local.settings import LABEL, LocalSettings


class LocalProvider(ProviderDefaults):
    name = "local"
    label = LABEL

    def __init__(
        self, settings: LocalSettings, gate: RequestGate, *, rng: random.Random | None = None
    ) -> None:
        self._settings = settings
        self._gate = gate
        self._rng = rng or random.Random()

    async def submit(self, spec: JobSpec, idempotency_key: str) -> Submitted | Finished:
        await self._gate.acquire(RequestKind.START)
        settings = self._settings
        if settings.latency_max > 0:
            await asyncio.sleep(self._rng.uniform(settings.latency_min, settings.latency_max))
        request_id = "local-" + idempotency_key[-12:]
        if settings.permanent_fail_marker and settings.permanent_fail_marker in spec.prompt:
            raise Permanent(
                f"local renderer refused the prompt (contains {settings.permanent_fail_marker!r})",
                status=422,
                request_id=request_id,
            )
        if settings.fail_rate > 0 and self._rng.random() < settings.fail_rate:
            raise Transient("local renderer: simulated failure", status=503, request_id=request_id)
        data = await asyncio.to_thread(render_placeholder, spec)
        return Finished(
            remote_id=None,
            images=(Image(data=data, media_type="image/png", metadata={"renderer": "wfbatch-local"}),),
            credits_used=0.0,
            http_status=200,
            request_id=request_id,
        )

    async def poll(self, handle: RemoteHandle, *, priority: float = 0.0) -> Pending | Finished:
        raise Permanent("the local provider is synchronous: there is nothing to poll")

    async def download(self, finished: Finished) -> list[Image]:
        if not finished.images:
            raise Transient("the local render was not kept: render again")
        return list(finished.images)


def render_placeholder(spec: JobSpec) -> bytes:
    """A PNG that depends only on (prompt, seed, size): colours and shapes from their hash, the prompt
    written on it, and a line saying this is a placeholder."""
    prompt = normalize_prompt(spec.prompt)
    digest = hashlib.sha256(f"{prompt}\x00{spec.seed}\x00{spec.negative_prompt or ''}".encode()).digest()
    rng = random.Random(digest)
    width, height = spec.width, spec.height
    top = tuple(rng.randrange(40, 216) for _ in range(3))
    bottom = tuple(rng.randrange(40, 216) for _ in range(3))
    gradient = PILImage.linear_gradient("L").resize((width, height))
    image = PILImage.composite(
        PILImage.new("RGB", (width, height), bottom), PILImage.new("RGB", (width, height), top), gradient
    )
    draw = ImageDraw.Draw(image)
    for _ in range(3 + digest[0] % 6):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        radius = rng.randrange(max(4, min(width, height) // 12), max(5, min(width, height) // 3))
        colour = tuple(rng.randrange(256) for _ in range(3))
        box = (x0 - radius, y0 - radius, x0 + radius, y0 + radius)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    font_size = max(8, min(width, height) // 24)
    font = ImageFont.load_default(size=font_size)
    columns = max(8, int(width / (font_size * 0.6)))
    text = "\n".join(textwrap.wrap(prompt, columns)[:6])
    margin = font_size
    draw.multiline_text((margin, margin), text, fill="white", font=font, stroke_width=2, stroke_fill="black")
    footer = f"local placeholder · seed {spec.seed}"
    draw.text(
        (margin, height - 2 * font_size), footer, fill="white", font=font, stroke_width=2, stroke_fill="black"
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
