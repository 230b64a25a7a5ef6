"""The shared HTTP layer against a hostile simulator over loopback: endless and trickling bodies,
a key echoed back in ids and URLs, nonsense charges, and a provider that stops answering."""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from tests.conftest_sim import TEST_KEY, CountingGate, fast_options, job_spec, wireflow_settings
from wfbatch.providers.base import Finished, Pending, Submitted
from wfbatch.providers.errors import Permanent, Transient, Unreachable
from wfbatch.providers.http import REDACTED
from wfbatch.providers.wireflow.client import WireflowProvider
from wfbatch.sim import RunningSimulator

MiB = 1024 * 1024


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., RunningSimulator]]:
    started: list[RunningSimulator] = []

    def start(**overrides: Any) -> RunningSimulator:
        sim = RunningSimulator(fast_options(**overrides))
        sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
async def make_provider() -> AsyncIterator[Callable[..., WireflowProvider]]:
    made: list[WireflowProvider] = []

    def make(sim: RunningSimulator | None = None, **overrides: Any) -> WireflowProvider:
        if sim is None:  # nothing listens on port 9
            overrides.setdefault("base_url", "http://127.0.0.1:9/api/v1")
        settings = wireflow_settings(sim, **overrides) if sim else _dead_settings(**overrides)
        provider = WireflowProvider(settings, CountingGate())
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


def _dead_settings(**overrides: Any) -> Any:
    from pydantic import SecretStr

    from wfbatch.providers.wireflow.settings import WireflowSettings

    return WireflowSettings(api_key=SecretStr(TEST_KEY), workflow_id="wf_demo", **overrides)


async def finish(provider: WireflowProvider, submitted: Submitted | Finished) -> Finished:
    if isinstance(submitted, Finished):
        return submitted
    for _ in range(200):
        outcome = await provider.poll(submitted.handle)
        if isinstance(outcome, Finished):
            return outcome
        assert isinstance(outcome, Pending)
        await asyncio.sleep(0.03)
    raise AssertionError("execution did not finish")


async def test_endless_image_body_fails_too_large(sim_factory: Any, make_provider: Any) -> None:
    sim = sim_factory()
    provider = make_provider(sim, max_response_bytes=MiB)
    finished = await finish(provider, await provider.submit(job_spec(), "k1"))
    sim.state.queue_fault("endless", route="files")
    tracemalloc.start()
    try:
        with pytest.raises(Permanent, match="too large") as caught:
            await provider.download(finished)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"{MiB} bytes" in caught.value.message
    assert peak < 16 * MiB  # flat: the body is dropped at the cap, never held whole
    # The next download is whole again: nothing of the aborted one lingers.
    images = await provider.download(finished)
    assert images[0].media_type == "image/png"


async def test_endless_poll_answer_fails_too_large(sim_factory: Any, make_provider: Any) -> None:
    sim = sim_factory()
    provider = make_provider(sim, max_response_bytes=64 * 1024)
    submitted = await provider.submit(job_spec(), "k1")
    assert isinstance(submitted, Submitted)
    sim.state.queue_fault("endless", route="poll")
    with pytest.raises(Permanent, match="too large"):
        await provider.poll(submitted.handle)


async def test_trickling_answer_ends_at_the_deadline(sim_factory: Any, make_provider: Any) -> None:
    # Each byte arrives well within request_timeout (a per-read timeout never fires); the deadline
    # bounds the whole answer.
    sim = sim_factory(trickle_seconds=0.2)
    provider = make_provider(sim, request_timeout=5.0, request_deadline=1.0)
    submitted = await provider.submit(job_spec(), "k1")
    assert isinstance(submitted, Submitted)
    sim.state.queue_fault("trickle", route="poll")
    # The deadline's own error, not a per-read timeout's (no stopwatch: it would time the load).
    with pytest.raises(Transient, match=r"no complete answer within 1 s"):
        await provider.poll(submitted.handle)


async def test_echoed_key_is_scrubbed_from_ids(sim_factory: Any, make_provider: Any) -> None:
    sim = sim_factory()
    provider = make_provider(sim)
    sim.state.queue_fault("echo_key", route="execute")
    submitted = await provider.submit(job_spec(), "k1")
    assert isinstance(submitted, Submitted)
    assert TEST_KEY not in submitted.remote_id and REDACTED in submitted.remote_id
    assert submitted.request_id == f"req_{REDACTED}"


async def test_echoed_key_is_scrubbed_from_urls_and_request_ids(sim_factory: Any, make_provider: Any) -> None:
    sim = sim_factory(latency=(0.0, 0.0))
    provider = make_provider(sim)
    submitted = await provider.submit(job_spec(), "k1")
    assert isinstance(submitted, Submitted)
    await asyncio.sleep(0.05)
    sim.state.queue_fault("echo_key", route="poll")
    finished = await finish(provider, submitted)
    assert finished.request_id == f"req_{REDACTED}"
    assert finished.urls and all(TEST_KEY not in url and REDACTED in url for url in finished.urls)
    assert TEST_KEY not in repr(finished.to_json())


@pytest.mark.parametrize(("fault", "shown"), [("credits_negative", "'-50'"), ("credits_nan", "'NaN'")])
async def test_nonsense_charges_are_refused(
    sim_factory: Any, make_provider: Any, caplog: pytest.LogCaptureFixture, fault: str, shown: str
) -> None:
    sim = sim_factory(latency=(0.0, 0.0))
    provider = make_provider(sim)
    submitted = await provider.submit(job_spec(), "k1")
    assert isinstance(submitted, Submitted)
    await asyncio.sleep(0.05)
    sim.state.queue_fault(fault, route="poll")
    with caplog.at_level(logging.WARNING):
        finished = await finish(provider, submitted)
    assert finished.credits_used is None
    assert any("wireflow" in r.getMessage() and shown in r.getMessage() for r in caplog.records)


async def test_consecutive_connection_failures_make_it_unreachable(make_provider: Any) -> None:
    provider = make_provider(unreachable_after=3)
    for _ in range(2):
        with pytest.raises(Transient) as caught:
            await provider.balance()
        assert caught.value.connection_failed and not isinstance(caught.value, Unreachable)
    with pytest.raises(Unreachable, match="3 connection failures in a row") as final:
        await provider.balance()
    assert TEST_KEY not in str(final.value)


async def test_resets_from_a_provider_that_is_there_never_count_as_unreachable(
    sim_factory: Any, make_provider: Any
) -> None:
    """A connection reset mid-request (or a slow answer) means the provider was reached: the job's
    request is retried, and the provider is never paused as unreachable for it."""
    sim = sim_factory()
    provider = make_provider(sim, unreachable_after=2)
    for _ in range(3):
        sim.state.queue_fault("reset", route="usage")
        with pytest.raises(Transient) as caught:
            await provider.balance()
        assert not caught.value.connection_failed and not isinstance(caught.value, Unreachable)
    await provider.balance()
