"""A local Wireflow look-alike (providers.md §1) for tests and rehearsals: same routes, bodies,
status codes and headers, plus seeded latency, failures, faults, credits and per-plan rate limits.

It is deliberately independent of `wfbatch.providers`: the client is checked against it.
"""

from wfbatch.sim.app import build_app
from wfbatch.sim.options import FAULT_GROUPS, FAULT_KINDS, SimOptions
from wfbatch.sim.server import AsyncRunningSimulator, RunningSimulator, is_loopback, serve
from wfbatch.sim.state import SimState

__all__ = [
    "FAULT_GROUPS",
    "FAULT_KINDS",
    "AsyncRunningSimulator",
    "RunningSimulator",
    "SimOptions",
    "SimState",
    "build_app",
    "is_loopback",
    "serve",
]
