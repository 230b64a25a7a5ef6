"""ComfyUI's `wfbatch sim` knobs and description."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from wfbatch.sim.cli import latency_text, total
from wfbatch.sim.options import ProviderOptions, SimOptions


@dataclass(frozen=True)
class ComfyUIOptions(ProviderOptions):
    """ComfyUI's own knobs (providers.md §7); the shared `latency` is each run, `fail_marker` an
    execution_error."""

    checkpoints: tuple[str, ...] = ("sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors")
    legacy_comfyui: bool = False
    """Behave like an old ComfyUI: ignore a client's prompt_id, send `error` as a string."""
    comfyui_ws: bool = True
    """Serve `/ws` (progress events). False: like an old server or a proxy without WebSockets."""


def _checkpoints(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise click.BadParameter("expected checkpoint file names, e.g. sd_xl_base_1.0.safetensors")
    return names


CLI_OPTIONS: tuple[click.Option, ...] = (
    click.Option(
        ["--checkpoints"],
        default=",".join(ComfyUIOptions().checkpoints),
        show_default=True,
        callback=_checkpoints,
        metavar="NAME,...",
        help="ComfyUI: checkpoint files the server has; a graph naming another gets value_not_in_list.",
    ),
    click.Option(
        ["--legacy", "legacy_comfyui"],
        is_flag=True,
        help="ComfyUI: behave like an old server (ignore the client's prompt_id, errors as strings).",
    ),
)


def describe(options: SimOptions, servers: int) -> str:
    own = ComfyUIOptions.of(options)
    parts = [
        f"{servers} server{'s' if servers > 1 else ''}, one prompt at a time each",
        f"run {latency_text(options)}",
        f"checkpoints {', '.join(own.checkpoints)}",
    ]
    if own.legacy_comfyui:
        parts.append("legacy: ignores prompt_id, string errors")
    if options.fail_marker:
        parts.append(f"execution_error for {options.fail_marker!r}")
    return "; ".join(parts)


def made(all_stats: list[dict[str, Any]]) -> str:
    return f"{total(all_stats, 'comfyui', 'executions')} executions"
