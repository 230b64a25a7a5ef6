"""The contracts the simulator speaks: one entry per provider, each naming what its package
(`wfbatch/sim/<name>/`) brings — its own options, its books (executions, credit or quota, limits:
a `SimBook`), its route set on the shared state (faults, request counters, `/_sim/*`), its
`wfbatch sim` options and how a run is described. Nothing else in the simulator or the CLI names a
provider; the first entry is the default."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click
from starlette.routing import BaseRoute

from wfbatch.sim.comfyui import options as comfyui_options
from wfbatch.sim.comfyui.routes import API as COMFYUI_API
from wfbatch.sim.comfyui.routes import comfyui_routes
from wfbatch.sim.comfyui.server import ComfyServer
from wfbatch.sim.fal import options as fal_options
from wfbatch.sim.fal.book import FalBook
from wfbatch.sim.fal.routes import API as FAL_API
from wfbatch.sim.fal.routes import fal_routes
from wfbatch.sim.openai import options as openai_options
from wfbatch.sim.openai.book import OpenAIBooks
from wfbatch.sim.openai.routes import API as OPENAI_API
from wfbatch.sim.openai.routes import openai_routes
from wfbatch.sim.options import ProviderOptions, SimOptions
from wfbatch.sim.replicate import options as replicate_options
from wfbatch.sim.replicate.book import ReplicateBook
from wfbatch.sim.replicate.routes import API as REPLICATE_API
from wfbatch.sim.replicate.routes import replicate_routes
from wfbatch.sim.stability import options as stability_options
from wfbatch.sim.stability.book import StabilityBook
from wfbatch.sim.stability.routes import API as STABILITY_API
from wfbatch.sim.stability.routes import stability_routes
from wfbatch.sim.state import Clock, SimBook, SimState
from wfbatch.sim.wireflow import options as wireflow_options
from wfbatch.sim.wireflow.book import WireflowBook
from wfbatch.sim.wireflow.routes import API as WIREFLOW_API
from wfbatch.sim.wireflow.routes import wireflow_routes


def _no_settings(options: SimOptions) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class SimProvider:
    name: str
    title: str
    api_prefix: str
    """Appended to the simulator's root URL, this is what the provider's client uses as base URL."""
    options: type[ProviderOptions]
    """Its own knobs, beyond the shared ones (`SimOptions.own`)."""
    book: Callable[[SimOptions, Clock], SimBook]
    """Makes its books, kept by the shared state (`SimState.book`); given the state's clock, which
    a book that is only ever told the time may ignore."""
    routes: Callable[[SimState], Sequence[BaseRoute]]
    describe: Callable[[SimOptions, int], str]
    """One line on what a run simulates (limits, credit, latency), given its number of servers."""
    made: Callable[[list[dict[str, Any]]], str]
    """What a run produced, from every server's `/_sim/stats` ("12 images")."""
    cli_options: Sequence[click.Option] = ()
    """Its own `wfbatch sim` options, each named after the field it sets (of `options`, or a shared one)."""
    settings: Callable[[SimOptions], dict[str, str]] = _no_settings
    """wfbatch settings (beyond base URL and key) a client needs for this run: {"WORKFLOW_ID": ...}."""
    needs_key: bool = True
    fleet: bool = False
    """`--servers N` runs N independent servers (one per simulated GPU)."""
    charge_fields: tuple[str, ...] = ()
    """Fields of its answers that report a charge (a hostile `charge_*` wire fault rewrites them)."""


SIM_PROVIDERS: dict[str, SimProvider] = {
    p.name: p
    for p in (
        SimProvider(
            "wireflow",
            "Wireflow",
            WIREFLOW_API,
            wireflow_options.WireflowOptions,
            WireflowBook,
            wireflow_routes,
            wireflow_options.describe,
            wireflow_options.made,
            wireflow_options.CLI_OPTIONS,
            settings=wireflow_options.env,
            charge_fields=("creditsUsed", "credits_used", "creditsCharged"),
        ),
        SimProvider(
            "openai",
            "OpenAI Images",
            OPENAI_API,
            openai_options.OpenAIOptions,
            OpenAIBooks,
            openai_routes,
            openai_options.describe,
            openai_options.made,
            openai_options.CLI_OPTIONS,
        ),
        SimProvider(
            "fal",
            "fal.ai queue",
            FAL_API,
            fal_options.FalOptions,
            FalBook,
            fal_routes,
            fal_options.describe,
            fal_options.made,
            fal_options.CLI_OPTIONS,
        ),
        SimProvider(
            "replicate",
            "Replicate predictions",
            REPLICATE_API,
            replicate_options.ReplicateOptions,
            ReplicateBook,
            replicate_routes,
            replicate_options.describe,
            replicate_options.made,
            replicate_options.CLI_OPTIONS,
        ),
        SimProvider(
            "stability",
            "Stability AI",
            STABILITY_API,
            stability_options.StabilityOptions,
            StabilityBook,
            stability_routes,
            stability_options.describe,
            stability_options.made,
            stability_options.CLI_OPTIONS,
        ),
        SimProvider(
            "comfyui",
            "ComfyUI",
            COMFYUI_API,
            comfyui_options.ComfyUIOptions,
            ComfyServer,
            comfyui_routes,
            comfyui_options.describe,
            comfyui_options.made,
            comfyui_options.CLI_OPTIONS,
            needs_key=False,
            fleet=True,
        ),
    )
}

PROVIDERS: tuple[str, ...] = tuple(SIM_PROVIDERS)
"""Contracts the simulator can speak, the default first."""
