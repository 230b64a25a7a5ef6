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
    image: str | None = Field(default=None, min_length=1, max_length=4096)
    """An input picture: a path (relative to the prompt file's folder or the HOME's `inputs/`) or an
    https:// URL; the job edits it (image-to-image) instead of starting from noise."""
    mask: str | None = Field(default=None, min_length=1, max_length=4096)
    """Where the provider takes a mask: which part of `image` to change (same forms as `image`)."""
    images: list[str] = Field(default_factory=list, max_length=16)
    """Reference pictures (same forms as `image`), for models that take several."""
    strength: float | None = Field(default=None, ge=0.0, le=1.0)
    """How far the result may move from `image` (0 = keep it, 1 = ignore it), where the model takes one."""


InputRole = Literal["image", "mask", "images"]
FromDraft = Literal["upscale", "refine", "regenerate"]
FROM_DRAFT_MODES: tuple[str, ...] = ("upscale", "refine", "regenerate")


@dataclass(frozen=True)
class InputImage:
    """One picture a job sends, checked at parse time. `sha256` (of the bytes) is what the cache key
    and the manifest carry: a renamed file is the same input, an edited one is not."""

    role: InputRole
    source: str
    """As written in the prompt file (a relative path or an https:// URL), or `draft:<job id>`."""
    location: str
    """Where the bytes are: an absolute path on this machine (resolved, no symlink), or the URL."""
    sha256: str
    """Of the bytes; for a URL, of the URL text (its bytes are fetched by the provider, not here)."""
    size: int = 0
    width: int = 0
    height: int = 0
    media_type: str = ""

    @property
    def is_url(self) -> bool:
        return self.location.startswith("https://")


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
    inputs: tuple[InputImage, ...] = ()
    """The pictures sent with the prompt (by role); in the cache key by content."""
    strength: float | None = None
    """How far an image-to-image result may move from its input (None: the provider's default)."""
    operation: str | None = None
    """What is done with `inputs`: None = generate (text-to-image, or image-to-image when an input
    is given), `upscale`, `refine` (a final from its draft). A final spec says here how its draft
    becomes the final (`upscale`, `refine`, or None = regenerate) before the draft is known."""

    def input_of(self, role: str) -> InputImage | None:
        return next((item for item in self.inputs if item.role == role), None)


STAGE_FIELDS: tuple[str, ...] = ("model", "provider", "width", "height", "quality", "params", "strength")
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
    from_draft: FromDraft | None = None
    """How an approved draft becomes its final: `upscale` it, `refine` it (image-to-image at the
    final's settings), or `regenerate` from the prompt; None = the best the final's provider offers."""


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
    inputs: dict[str, InputImage] | None = None
    """Every input picture the entries name, checked, by the reference as written (one look at a
    file used by 500 entries); None = not resolved yet (`core.inputs.resolve_inputs`)."""
