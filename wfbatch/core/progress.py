"""How far a running execution has come (ComfyUI's sampler steps, say): a hint shown in `show`, the
TUI and the events, never stored. Built only through `JobProgress.of`, which turns whatever a
server sent into something sane or nothing: a hostile or confused server can make progress vanish,
never make it lie (12/5 steps) or reach a terminal with escape codes."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_STEPS = 1_000_000
"""More steps than any sampler runs: a larger count is nonsense and is dropped."""
MAX_TEXT = 64


def clean_text(value: Any) -> str | None:
    """A short, printable name (no control characters: it ends up on a terminal), or None."""
    if not isinstance(value, str):
        return None
    text = "".join(ch for ch in value if ch.isprintable()).strip()[:MAX_TEXT]
    return text or None


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) else None


class JobProgress(BaseModel):
    """`step` of `steps` (both or neither), what runs now (`node`, e.g. "KSampler") and the phase
    the provider reports ("running", "finished", "failed", ... — free text: providers differ)."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    step: int | None = Field(default=None, ge=0, le=MAX_STEPS)
    steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    node: str | None = Field(default=None, max_length=MAX_TEXT)
    phase: str | None = Field(default=None, max_length=MAX_TEXT)

    @classmethod
    def of(
        cls, *, step: Any = None, steps: Any = None, node: Any = None, phase: Any = None
    ) -> JobProgress | None:
        """Progress from untrusted values: a step count that is not a whole number in 0..steps
        (negative, NaN, huge, past its end) is left out; None when nothing is left."""
        done, total = _whole(step), _whole(steps)
        if done is None or total is None or not 0 <= done <= total or not 1 <= total <= MAX_STEPS:
            done = total = None
        progress = cls(step=done, steps=total, node=clean_text(node), phase=clean_text(phase))
        return None if progress == cls() else progress

    def text(self) -> str:
        """`step 12/20 (KSampler)`, `running (VAEDecode)`, `finished`."""
        head = f"step {self.step}/{self.steps}" if self.step is not None else (self.phase or "running")
        return f"{head} ({self.node})" if self.node else head

    def short(self) -> str:
        """For a narrow column: `12/20`, else the phase."""
        return f"{self.step}/{self.steps}" if self.step is not None else (self.phase or "")
