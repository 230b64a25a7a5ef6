"""A local look-alike of the providers' APIs for tests and rehearsals: one package per provider
(`SIM_PROVIDERS`), each with the same routes, bodies, status codes and headers as the real service,
plus seeded latency, failures, faults, credits or quota and rate limits.

It is deliberately independent of `wfbatch.providers`: the clients are checked against it.
"""

from wfbatch.sim.app import build_app
from wfbatch.sim.options import FAULT_GROUPS, FAULT_KINDS, SimOptions
from wfbatch.sim.registry import PROVIDERS, SIM_PROVIDERS, SimProvider
from wfbatch.sim.server import AsyncRunningSimulator, RunningSimulator, is_loopback, serve
from wfbatch.sim.state import SimState

__all__ = [
    "FAULT_GROUPS",
    "FAULT_KINDS",
    "PROVIDERS",
    "SIM_PROVIDERS",
    "AsyncRunningSimulator",
    "RunningSimulator",
    "SimOptions",
    "SimProvider",
    "SimState",
    "build_app",
    "is_loopback",
    "serve",
]
