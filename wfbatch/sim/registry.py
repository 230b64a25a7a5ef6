"""The contracts the simulator speaks: one route set per provider, all on the shared state
(faults, limits, credits/quota, latency, `/_sim/*`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.routing import BaseRoute

from wfbatch.sim.comfyui import API as COMFYUI_API
from wfbatch.sim.comfyui import comfyui_routes
from wfbatch.sim.fal import API as FAL_API
from wfbatch.sim.fal import fal_routes
from wfbatch.sim.openai import API as OPENAI_API
from wfbatch.sim.openai import openai_routes
from wfbatch.sim.options import PROVIDERS
from wfbatch.sim.replicate import API as REPLICATE_API
from wfbatch.sim.replicate import replicate_routes
from wfbatch.sim.stability import API as STABILITY_API
from wfbatch.sim.stability import stability_routes
from wfbatch.sim.state import SimState
from wfbatch.sim.wireflow import API as WIREFLOW_API
from wfbatch.sim.wireflow import wireflow_routes


@dataclass(frozen=True)
class SimProvider:
    name: str
    title: str
    api_prefix: str
    """Appended to the simulator's root URL, this is what the provider's client uses as base URL."""
    routes: Callable[[SimState], Sequence[BaseRoute]]


SIM_PROVIDERS: dict[str, SimProvider] = {
    p.name: p
    for p in (
        SimProvider("wireflow", "Wireflow", WIREFLOW_API, wireflow_routes),
        SimProvider("openai", "OpenAI Images", OPENAI_API, openai_routes),
        SimProvider("fal", "fal.ai queue", FAL_API, fal_routes),
        SimProvider("replicate", "Replicate predictions", REPLICATE_API, replicate_routes),
        SimProvider("stability", "Stability AI", STABILITY_API, stability_routes),
        SimProvider("comfyui", "ComfyUI", COMFYUI_API, comfyui_routes),
    )
}
assert tuple(SIM_PROVIDERS) == PROVIDERS, "options.PROVIDERS and the route sets disagree"
