"""Downloading a finished job's image from a provider's file host (a CDN, not the API): no key, no
gate, the same caps and deadline as every other request."""

from __future__ import annotations

from wfbatch.providers.base import Image
from wfbatch.providers.errors import Permanent, Transient
from wfbatch.providers.http.layer import HttpAnswer, HttpLayer
from wfbatch.providers.media import sniff_image

GONE = frozenset({404, 410})
"""A file host's answer for an output that no longer exists: asking again cannot bring it back."""


async def fetch_image(http: HttpLayer, url: str, *, gone_hint: str) -> Image:
    """GET one image. 404/410 is final (`gone_hint` says why outputs disappear at this provider);
    any other failure is worth another try."""
    try:
        answer: HttpAnswer = await http.send(
            None, "GET", url, headers={"Accept": "image/*"}, check=False, decode=False
        )
    except Transient as error:
        error.message = f"image download failed ({error.message}): {http.scrub(url)}"
        error.args = (error.message,)
        raise
    shown = http.scrub(url)
    if answer.status in GONE:
        raise Permanent(
            f"{http.provider}: the output is gone (HTTP {answer.status}) before it was downloaded: "
            f"{shown} ({gone_hint})",
            status=answer.status,
            request_id=answer.request_id,
        )
    if answer.status != 200:
        raise Transient(
            f"image download answered HTTP {answer.status}: {shown}",
            status=answer.status,
            request_id=answer.request_id,
        )
    data = answer.content
    declared = answer.headers.get("content-type", "").split(";")[0].strip().lower()
    media_type = sniff_image(data) or (declared if declared.startswith("image/") else None)
    if not data or media_type is None:
        what = "an empty body" if not data else f"{declared or 'untyped'} content, not an image"
        raise Transient(f"image download returned {what}: {shown}", status=200, request_id=answer.request_id)
    return Image(data=data, media_type=media_type, metadata={"url": shown})
