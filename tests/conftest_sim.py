"""Shared helpers for tests that run real clients against the Wireflow simulator on loopback.

Test modules import these names directly (`from tests.conftest_sim import ...`); the fixtures can also be
registered for the whole suite from `tests/conftest.py`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from pydantic import SecretStr

from wfbatch.core.models import JobSpec
from wfbatch.providers.base import RequestKind
from wfbatch.providers.wireflow.settings import WireflowSettings
from wfbatch.sim import RunningSimulator, SimOptions

TEST_KEY = "sk-test-5ecret-value-never-printed"


def fast_options(**overrides: Any) -> SimOptions:
    """Short latencies and generous limits: a simulator that only gets in the way when asked to."""
    base: dict[str, Any] = {"latency": (0.05, 0.1), "seed": 7, "rpm": 10_000, "epm": 10_000, "daily": 100_000}
    base.update(overrides)
    return SimOptions(**base)


class CountingGate:
    """A RequestGate that never waits and remembers what it was asked and told."""

    def __init__(self) -> None:
        self.acquired: Counter[RequestKind] = Counter()
        self.observed: list[tuple[int, dict[str, str]]] = []

    async def acquire(self, kind: RequestKind, priority: float = 0.0) -> None:
        self.acquired[kind] += 1

    def observe(self, kind: RequestKind, status: int, headers: Mapping[str, str]) -> None:
        self.observed.append((status, dict(headers)))


def wireflow_settings(sim: RunningSimulator, **overrides: Any) -> WireflowSettings:
    values: dict[str, Any] = {
        "api_key": SecretStr(TEST_KEY),
        "base_url": sim.base_url,
        "workflow_id": "wf_demo",
        "request_timeout": 5.0,
    }
    values.update(overrides)
    return WireflowSettings(**values)


def job_spec(prompt: str = "a lighthouse at dusk", **overrides: Any) -> JobSpec:
    values: dict[str, Any] = {
        "provider": "wireflow",
        "prompt": prompt,
        "negative_prompt": None,
        "model": None,
        "width": 512,
        "height": 384,
        "seed": 1234,
        "variant": 0,
    }
    values.update(overrides)
    return JobSpec(**values)


@pytest.fixture
def wireflow_sim() -> Iterator[RunningSimulator]:
    with RunningSimulator(fast_options()) as sim:
        yield sim


@pytest.fixture
def counting_gate() -> CountingGate:
    return CountingGate()
