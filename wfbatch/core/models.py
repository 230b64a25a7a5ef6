"""The shapes a prompt takes on its way to a provider.

`PromptEntry` is the user-facing, validated form of one line of a prompt file (pydantic, at the edge).
`JobSpec` is the resolved, immutable description of one image to generate: what the cache key and the
provider see. One entry with `variants: N` becomes N job specs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_SIZE = 1024
MAX_VARIANTS = 100
# Priorities only order jobs; the bound keeps them inside SQLite's 64-bit INTEGER, so a huge one is
# a parse error naming its line instead of an OverflowError at insert.
MAX_PRIORITY = 1_000_000


class ImageFormat(StrEnum):
    PNG = "png"
    WEBP = "webp"
    JPEG = "jpeg"


class PromptEntry(BaseModel):
    """One prompt as written in a prompt file; unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    prompt: str = Field(min_length=1, max_length=32_000)
    negative_prompt: str | None = Field(default=None, max_length=32_000)
    model: str | None = None
    width: int | None = Field(default=None, ge=16, le=8192)
    height: int | None = Field(default=None, ge=16, le=8192)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    format: ImageFormat | None = None
    quality: int | None = Field(default=None, ge=1, le=100)
    variants: int = Field(default=1, ge=1, le=MAX_VARIANTS)
    priority: int = Field(default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    provider: str | None = None
    tags: list[str] = Field(default_factory=list)
    id: str | None = Field(default=None, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    fields: dict[str, str | int | float] = Field(default_factory=dict)
    """Your own data for output names (`{sku}` in `[output] name`): never sent, not in the cache key.
    In a CSV, a column the name template names lands here."""
    mode: Literal["direct", "batch"] | None = None
    """How the job reaches its provider: `batch` through a batch API where the provider has one
    (half price, slow); None = the provider section's `mode`."""


@dataclass(frozen=True)
class JobSpec:
    """Everything that determines one image, after defaults are applied."""

    provider: str
    prompt: str
    negative_prompt: str | None
    model: str | None
    width: int
    height: int
    seed: int
    variant: int
    params: dict[str, Any] = field(default_factory=dict)
    # Output-only settings: not part of the cache key (conversion is local).
    format: ImageFormat = ImageFormat.PNG
    quality: int | None = None
    # Delivery, not content: not part of the cache key (the same image either way).
    mode: str | None = None
    """`batch`, `direct`, or None (the provider section's `mode` decides)."""
    name: str | None = None
    """Where the image goes in its review folder, without the extension (`a1/00001-0`), from the
    batch's name template; None: `<index>-<prompt slug>`. Output-only: not in the cache key."""


STAGE_FIELDS: tuple[str, ...] = ("model", "provider", "width", "height", "quality", "params")
"""The entry fields a spec's `draft` and `final` may set (what decides the price of an image)."""


class AutoApprove(StrEnum):
    NONE = "none"
    """Every draft waits for a person's approval."""
    ALL = "all"
    """Every finished draft is approved at once (the model routing without the review)."""


@dataclass(frozen=True)
class Stages:
    """A spec's draft → final pipeline: the entry fields each stage sets on top of the entry.
    Jobs run at the draft settings; an approved draft queues its final."""

    draft: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    auto_approve: AutoApprove = AutoApprove.NONE


@dataclass(frozen=True)
class ParsedEntry:
    """A validated entry and where it came from (1-based line in the file)."""

    line: int
    entry: PromptEntry


@dataclass(frozen=True)
class ParsedBatch:
    """A prompt file that validated completely: ready to become one batch."""

    name: str
    source_name: str
    provider: str | None
    cache: bool
    budget: float | None
    entries: list[ParsedEntry]
    delivery: dict[str, Any] | None = None
    """What a spec's `delivery` overrides of the HOME's [delivery] (None: nothing)."""
    notify: dict[str, Any] | None = None
    """What a spec's `notify` overrides of the HOME's [notify] (None: nothing)."""
    file_format: str = "txt"
    """How the content was read (txt, jsonl, csv, json): the same bytes read another way are
    different jobs, so it is part of the content's identity."""
    stages: Stages | None = None
    """The draft → final pipeline (a .json spec's `draft` / `final`), or None: one stage."""
    name_template: str | None = None
    """A .json spec's `name_template` for its output names; None: the HOME's `[output] name`."""
    priority: int = 0
    """A .json spec's batch `priority`: batches of a higher one start their jobs first."""
    weight: float = 1.0
    """A .json spec's `weight`: its share of a provider among batches of the same priority."""
    not_before: float | None = None
    """A .json spec's `not_before` (or `--at`), as unix seconds: no job starts before it."""
