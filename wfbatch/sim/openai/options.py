"""OpenAI's `wfbatch sim` knobs (Images and the Batch API) and description."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import click

from wfbatch.sim.cli import faults_text, latency_text, per_window, total
from wfbatch.sim.options import ProviderOptions, SimOptions

QuotaError = Literal["insufficient_quota", "billing_hard_limit"]


@dataclass(frozen=True)
class OpenAIOptions(ProviderOptions):
    """Images (providers.md §5; the shared `rpm` is its requests per window, None = unlimited, and
    `quota` the images the account may still generate) and the Batch API (§6)."""

    images_per_minute: int | None = None
    quota_error: QuotaError = "insufficient_quota"
    """How a spent quota answers: 429 `insufficient_quota` or 400 `billing_hard_limit_reached`."""
    no_retry_share: float = 0.0
    """Share of injected 5xx answers that carry `x-should-retry: false`."""
    url_ttl: float = 3600.0
    """How long a dall-e `url` answer stays downloadable (the docs say 60 minutes)."""
    batch_step: float = 60.0
    """Seconds a remote batch spends in each of validating, in_progress and finalizing."""
    batch_expire_after: int | None = None
    """A remote batch expires once this many of its lines are done; the rest never run."""
    batch_fail_input: bool = False
    """Every input file fails validation (the batch ends `failed` with `errors`)."""
    batch_not_image_marker: str | None = None
    """Batch lines whose prompt contains this text are made (and paid: a `200`) but come back with a
    `b64_json` that is not an image: a hostile answer, for rehearsing what a paid bad line costs."""
    batch_no_image_marker: str | None = None
    """Batch lines whose prompt contains this text are answered `200` (paid) with an empty `data`."""
    batch_broken_image_marker: str | None = None
    """Batch lines whose prompt contains this text are answered `200` (paid) with a PNG signature
    over junk: bytes that look like an image until they are decoded."""
    batch_server_error_marker: str | None = None
    """Batch lines whose prompt contains this text fail on the server's side: answered `500`
    (`server_error`) in the error file; nothing made, nothing charged."""
    batch_cut_line_marker: str | None = None
    """The output line of a prompt containing this text is cut short (not JSON): made and paid, but
    unreadable, custom_id and all; `request_counts` still count it."""

    def __post_init__(self) -> None:
        if self.images_per_minute is not None and self.images_per_minute < 1:
            raise ValueError("images_per_minute must be >= 1")
        if self.quota_error not in ("insufficient_quota", "billing_hard_limit"):
            raise ValueError("quota_error must be 'insufficient_quota' or 'billing_hard_limit'")
        if not 0.0 <= self.no_retry_share <= 1.0:
            raise ValueError(f"no_retry_share must be between 0 and 1, got {self.no_retry_share}")
        if self.batch_step < 0 or (self.batch_expire_after is not None and self.batch_expire_after < 0):
            raise ValueError("batch_step and batch_expire_after must be >= 0")


CLI_OPTIONS: tuple[click.Option, ...] = (
    click.Option(
        ["--images-per-minute"],
        type=click.IntRange(min=1),
        default=None,
        help="OpenAI: images per window [default: unlimited]; --rpm is its requests per window.",
    ),
    click.Option(
        ["--quota-error"],
        type=click.Choice(["insufficient_quota", "billing_hard_limit"]),
        default="insufficient_quota",
        show_default=True,
        help="OpenAI: how a spent quota answers (429 insufficient_quota or 400 billing_hard_limit_reached).",
    ),
    click.Option(
        ["--no-retry-share"],
        type=click.FloatRange(0, 1),
        default=0.0,
        show_default=True,
        help="OpenAI: share of injected 5xx answers that carry x-should-retry: false.",
    ),
    click.Option(
        ["--batch-step"],
        type=click.FloatRange(min=0),
        default=60.0,
        show_default=True,
        help="OpenAI Batch: seconds a batch spends validating, in progress and finalizing (each).",
    ),
    click.Option(
        ["--batch-expire-after"],
        type=click.IntRange(min=0),
        default=None,
        help="OpenAI Batch: a batch expires once this many of its lines are done.",
    ),
    click.Option(
        ["--batch-fail-input"], is_flag=True, help="OpenAI Batch: every input file fails validation."
    ),
)


def describe(options: SimOptions, servers: int) -> str:
    quota = "unlimited" if options.quota is None else f"{options.quota:g} images"
    parts = [
        f"{per_window(options.rpm, 'requests', options.window)}, "
        f"{per_window(OpenAIOptions.of(options).images_per_minute, 'images', options.window)}",
        f"quota {quota}",
        f"latency {latency_text(options)}",
    ]
    return "; ".join(parts + faults_text(options))


def made(all_stats: list[dict[str, Any]]) -> str:
    return f"{total(all_stats, 'openai', 'generations')} images"
