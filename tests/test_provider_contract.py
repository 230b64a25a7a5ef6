"""The provider contract kit: the same hostile-server cases run against every HTTP provider, each
through its own simulator over loopback, with the real client built by the registry.

The faults are the simulator's wire faults (`wfbatch/sim/wire.py`), which every route set takes:
the next API request is answered with a 5xx, a 429 carrying each retry header wfbatch reads, a
dropped connection, a cut or endless or trickling body, a key echoed back, or a nonsense charge.
A provider added to both registries is in this kit without a line here."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.conftest_sim import TEST_KEY, CountingGate, fast_options
from wfbatch.core.models import JobSpec
from wfbatch.providers.base import Finished, Pending, Provider, Submitted
from wfbatch.providers.config import ProviderLimits
from wfbatch.providers.errors import ProviderError, RateLimited, Transient, Unreachable
from wfbatch.providers.http import REDACTED
from wfbatch.providers.http.headers import x_ratelimit_dialect
from wfbatch.providers.registry import REGISTRY, build_provider, check_spec
from wfbatch.sim import SIM_PROVIDERS, RunningSimulator
from wfbatch.sim.wire import RETRY_SECONDS

HTTP_PROVIDERS = [name for name, entry in REGISTRY.items() if entry.traits.remote]
KEYED = [name for name in HTTP_PROVIDERS if SIM_PROVIDERS[name].needs_key]
CHARGING = [name for name in HTTP_PROVIDERS if SIM_PROVIDERS[name].charge_fields]
TRICKLE_SECONDS = 0.2


def test_every_http_provider_is_in_the_kit() -> None:
    assert sorted(SIM_PROVIDERS) == sorted(HTTP_PROVIDERS)


class OneSection:
    """The one settings section a provider is built from (the registry asks for it by name)."""

    def __init__(self, section: ProviderLimits) -> None:
        self.section = section

    def provider_limits(self, name: str) -> ProviderLimits:
        return self.section


@pytest.fixture(scope="module", params=HTTP_PROVIDERS)
def sim(request: pytest.FixtureRequest) -> Iterator[RunningSimulator]:
    options = fast_options(provider=request.param, latency=(0.0, 0.0), trickle_seconds=TRICKLE_SECONDS)
    with RunningSimulator(options) as running:
        yield running


@pytest.fixture
async def connect(sim: RunningSimulator) -> AsyncIterator[Any]:
    made: list[Provider] = []

    def make(**overrides: Any) -> Provider:
        name = sim.options.provider
        settings_class = REGISTRY[name].settings_class
        values: dict[str, Any] = {
            "api_key": TEST_KEY,
            "base_url": sim.base_url,
            "workflow_id": "wf_demo",
            "request_timeout": 5.0,
            **overrides,
        }
        section = settings_class(**{k: v for k, v in values.items() if k in settings_class.model_fields})
        provider = build_provider(name, OneSection(section), CountingGate())
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


def spec_for(sim: RunningSimulator, prompt: str = "a lighthouse at dusk") -> JobSpec:
    spec = JobSpec(sim.options.provider, prompt, None, None, 1024, 1024, 1234, 0)
    assert check_spec(spec) == []
    return spec


async def finish(provider: Provider, outcome: Submitted | Finished) -> Finished:
    for _ in range(300):
        if isinstance(outcome, Finished):
            return outcome
        handle = outcome.handle if isinstance(outcome, Submitted) else None
        assert handle is not None
        polled = await provider.poll(handle)
        if isinstance(polled, Finished):
            return polled
        assert isinstance(polled, Pending)
        await asyncio.sleep(0.02)
    raise AssertionError("the job did not finish")


async def submit_with(sim: RunningSimulator, provider: Provider, fault: str, key: str = "k1") -> Any:
    sim.state.wire.queue(fault)
    return await provider.submit(spec_for(sim), key)


async def test_the_simulator_serves_a_clean_run(sim: RunningSimulator, connect: Any) -> None:
    """The baseline the faults are measured against: with no fault queued, a job finishes."""
    provider = connect()
    finished = await finish(provider, await provider.submit(spec_for(sim), "clean"))
    images = await provider.download(finished)
    assert images and images[0].data


@pytest.mark.parametrize("fault", ["http_500", "http_503"])
async def test_a_server_error_is_transient(sim: RunningSimulator, connect: Any, fault: str) -> None:
    provider = connect()
    with pytest.raises(Transient) as caught:
        await submit_with(sim, provider, fault)
    assert caught.value.status == int(fault.removeprefix("http_"))
    assert not isinstance(caught.value, Unreachable)


@pytest.mark.parametrize("fault", ["retry_after_seconds", "retry_after_date"])
async def test_a_429_says_when_to_come_back(sim: RunningSimulator, connect: Any, fault: str) -> None:
    provider = connect()
    with pytest.raises(RateLimited) as caught:
        await submit_with(sim, provider, fault)
    delay = caught.value.retry_after
    assert delay is not None and math.isfinite(delay)
    # Seconds: exactly RETRY_SECONDS; an HTTP date: whole seconds, rounded up by the simulator.
    assert RETRY_SECONDS - 1 <= delay <= RETRY_SECONDS + 2


async def test_a_429_with_only_a_reset_header(sim: RunningSimulator, connect: Any) -> None:
    provider = connect()
    with pytest.raises(RateLimited) as caught:
        await submit_with(sim, provider, "ratelimit_reset")
    delay = caught.value.retry_after
    if REGISTRY[sim.options.provider].traits.rate_limit_dialect is x_ratelimit_dialect:
        assert delay is not None and RETRY_SECONDS - 1 <= delay <= RETRY_SECONDS + 2
    else:  # a dialect without X-RateLimit-Reset: no delay is made up from it
        assert delay is None or (math.isfinite(delay) and delay >= 0)


async def test_a_reset_connection_is_transient_and_the_provider_still_reachable(
    sim: RunningSimulator, connect: Any
) -> None:
    provider = connect(unreachable_after=1)
    with pytest.raises(Transient) as caught:
        await submit_with(sim, provider, "reset")
    assert not caught.value.connection_failed and not isinstance(caught.value, Unreachable)
    await finish(provider, await provider.submit(spec_for(sim), "k2"))  # nothing lingers


async def test_a_malformed_answer_is_never_taken_for_a_result(sim: RunningSimulator, connect: Any) -> None:
    provider = connect()
    with pytest.raises(ProviderError):
        outcome = await submit_with(sim, provider, "malformed")
        await provider.download(await finish(provider, outcome))


async def test_a_trickling_answer_ends_at_the_deadline(sim: RunningSimulator, connect: Any) -> None:
    provider = connect(request_timeout=5.0, request_deadline=1.0)
    with pytest.raises(Transient, match=r"no complete answer within 1 s"):
        await submit_with(sim, provider, "trickle")


async def test_an_endless_answer_is_cut_at_the_cap(sim: RunningSimulator, connect: Any) -> None:
    provider = connect(max_response_bytes=64 * 1024)
    with pytest.raises(ProviderError, match="too large"):
        await submit_with(sim, provider, "endless")


@pytest.fixture
def keyed(sim: RunningSimulator) -> None:
    if sim.options.provider not in KEYED:
        pytest.skip(f"{sim.options.provider} takes no API key: there is none to echo")


@pytest.mark.usefixtures("keyed")
async def test_a_key_echoed_in_a_refusal_is_never_shown(
    sim: RunningSimulator, connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    provider = connect()
    with caplog.at_level(logging.DEBUG, logger="wfbatch"), pytest.raises(ProviderError) as caught:
        await submit_with(sim, provider, "echo_key_error")
    error = caught.value
    shown = [str(error), error.message, str(error.request_id), repr(error), caplog.text]
    assert not [text for text in shown if TEST_KEY in text]
    assert REDACTED in str(error) or REDACTED in str(error.request_id)


@pytest.mark.usefixtures("keyed")
async def test_a_key_echoed_in_a_good_answer_is_never_kept(
    sim: RunningSimulator, connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    provider = connect()
    with caplog.at_level(logging.DEBUG, logger="wfbatch"):
        outcome = await submit_with(sim, provider, "echo_key")
        finished = await finish(provider, outcome)
    kept = [repr(outcome), repr(finished.to_json()), caplog.text]
    assert not [text for text in kept if TEST_KEY in text]


@pytest.mark.parametrize("fault", ["charge_negative", "charge_nan"])
async def test_a_nonsense_charge_is_refused(
    sim: RunningSimulator, connect: Any, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    if sim.options.provider not in CHARGING:
        pytest.skip(f"{sim.options.provider}'s answers report no charge: wfbatch prices its jobs itself")
    provider = connect()
    if REGISTRY[sim.options.provider].traits.synchronous:  # the submit's answer is the result
        outcome = await submit_with(sim, provider, fault, f"k-{fault}")
    else:
        outcome = await provider.submit(spec_for(sim), f"k-{fault}")
        assert isinstance(outcome, Submitted)
        await asyncio.sleep(0.05)  # latency 0: the next poll finds it done
        sim.state.wire.queue(fault)
    with caplog.at_level(logging.WARNING):
        finished = await finish(provider, outcome)
    assert finished.credits_used is None
    shown = "'-50'" if fault == "charge_negative" else "'NaN'"
    assert any(shown in record.getMessage() for record in caplog.records)
