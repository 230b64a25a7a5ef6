"""`wfbatch sim`: run the local provider simulator (any provider's contract) in the foreground; for
ComfyUI, `--servers N` runs N independent servers (one per simulated GPU) on consecutive ports; for
the others, `--accounts N` (or `--api-key` given several times) serves several accounts on one port."""

from __future__ import annotations

import json
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click

from wfbatch.sim import (
    FAULT_GROUPS,
    SIM_PROVIDERS,
    RunningSimulator,
    SimOptions,
    SimState,
    is_loopback,
    serve,
)
from wfbatch.sim.cli import total
from wfbatch.sim.keys import SimKeys, generated_keys
from wfbatch.sim.keys import label as key_label


def _latency(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float]:
    try:
        parts = [float(p) for p in value.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or parts[0] < 0 or parts[1] < parts[0]:
        raise click.BadParameter("expected MIN,MAX seconds with 0 <= MIN <= MAX, e.g. 2,8")
    return parts[0], parts[1]


def _faults(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(FAULT_GROUPS))
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; choose from {', '.join(FAULT_GROUPS)}")
    return kinds


def _exports(options: SimOptions, urls: list[str]) -> str:
    """What to paste so wfbatch talks to this simulator (the key is a placeholder, never echoed)."""
    sim = SIM_PROVIDERS[options.provider]
    prefix = f"WFBATCH_{sim.name.upper()}__"
    base = urls[0] if len(urls) == 1 else json.dumps(urls, separators=(",", ":"))
    values = {"WFBATCH_PROVIDER": sim.name, f"{prefix}BASE_URL": base}
    if sim.needs_key:
        values[f"{prefix}API_KEY"] = "<your --api-key>" if options.api_key else "sk-test"
    values.update({prefix + key: value for key, value in sim.settings(options).items()})
    return "export " + " ".join(f"{key}={shlex.quote(value)}" for key, value in values.items())


def _account_exports(options: SimOptions, url: str, *, shown: bool) -> str:
    """The accounts' settings, one per key: the invented keys of `--accounts` are printed (they are
    the simulator's own), keys the user gave are not."""
    sim = SIM_PROVIDERS[options.provider]
    prefix = f"WFBATCH_{sim.name.upper()}__"
    values = {"WFBATCH_PROVIDER": sim.name}
    values.update({prefix + key: value for key, value in sim.settings(options).items()})
    for index, key in enumerate(options.api_keys):
        account = f"{prefix}ACCOUNTS__{index}__"
        values[account + "NAME"] = key_label(index)
        values[account + "API_KEY"] = key if shown else f"<your --api-key #{index + 1}>"
        values[account + "BASE_URL"] = url
    return "export " + " ".join(f"{key}={shlex.quote(value)}" for key, value in values.items())


def _provider_options(command: click.Command) -> click.Command:
    """Each simulator package declares its own options (see wfbatch.sim.registry)."""
    for sim in SIM_PROVIDERS.values():
        command.params.extend(sim.cli_options)
    return command


@_provider_options
@click.command("sim")
@click.option(
    "--provider",
    type=click.Choice(list(SIM_PROVIDERS)),
    default=next(iter(SIM_PROVIDERS)),
    show_default=True,
    help="Which provider's API to speak.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8787, show_default=True, type=click.IntRange(0, 65535), help="0 = any free port."
)
@click.option(
    "--allow-remote", is_flag=True, help="Allow a non-loopback --host (the simulator has no real security)."
)
@click.option(
    "--latency",
    default="1,5",
    show_default=True,
    metavar="MIN,MAX",
    callback=_latency,
    help="Execution run time in seconds, uniform.",
)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of executions that end FAILED.",
)
@click.option("--fail-marker", default=None, help="Prompts containing this text always fail.")
@click.option(
    "--error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of API requests answered with an injected fault.",
)
@click.option(
    "--faults",
    default=",".join(FAULT_GROUPS),
    show_default=True,
    callback=_faults,
    help="Which faults --error-rate may inject.",
)
@click.option(
    "--slow-seconds",
    type=click.FloatRange(min=0),
    default=90.0,
    show_default=True,
    help="How long a 'slow' fault stalls.",
)
@click.option(
    "--cdn-error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of image downloads that fail.",
)
@click.option(
    "--credits", type=click.FloatRange(min=0), default=None, help="Starting balance [default: unlimited]."
)
@click.option(
    "--cost",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Credits per successful execution.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for latencies, failures and faults."
)
@click.option(
    "--window",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds in a rate-limit 'minute' (a 'day' is 1440 of them).",
)
@click.option("--rpm", type=click.IntRange(min=1), default=None, help="Override requests per window.")
@click.option("--epm", type=click.IntRange(min=1), default=None, help="Override executions per window.")
@click.option("--daily", type=click.IntRange(min=1), default=None, help="Override executions per day.")
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="Accept only this key [default: any sk-… or wf_… key]; given several times, each key is an "
    "account with its own windows, quota, credit and stats, on this one port.",
)
@click.option(
    "--accounts",
    type=click.IntRange(1, 64),
    default=None,
    help="Serve this many accounts on this one port, with invented keys (printed), each with its own "
    "windows, quota, credit and stats (GET /_sim/stats lists them as key1, key2, …).",
)
@click.option(
    "--quota",
    type=click.FloatRange(min=0),
    default=None,
    help="Images the account may pay for [default: unlimited], where the API counts images; "
    "POST /_sim/topup raises it.",
)
@click.option(
    "--moderation-marker",
    default=None,
    help="Prompts containing this text are refused by the safety system (so are --fail-marker ones).",
)
@click.option(
    "--servers",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Independent servers (one per simulated GPU) on consecutive ports from --port, for "
    + ", ".join(name for name, sim in SIM_PROVIDERS.items() if sim.fleet)
    + ".",
)
def sim_command(
    host: str,
    port: int,
    allow_remote: bool,
    provider: str,
    servers: int,
    api_keys: tuple[str, ...],
    accounts: int | None,
    **knobs: Any,
) -> None:
    """Run a local provider simulator: rehearse a batch before spending credits."""
    if not is_loopback(host) and not allow_remote:
        raise click.UsageError(
            f"refusing to listen on {host}, which is not a loopback address; pass --allow-remote"
        )
    others = {p.name for name, sim in SIM_PROVIDERS.items() if name != provider for p in sim.cli_options}
    chosen = {key: value for key, value in knobs.items() if key not in others}
    if accounts is not None and api_keys:
        raise click.UsageError("give --accounts N or --api-key several times, not both")
    if accounts is not None:
        chosen["api_keys"] = generated_keys(accounts)
    elif len(api_keys) > 1:
        chosen["api_keys"] = api_keys
    elif api_keys:
        chosen["api_key"] = api_keys[0]
    try:
        options = SimOptions(host=host, port=port, provider=provider, **chosen)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if servers > 1 and not SIM_PROVIDERS[provider].fleet:
        fleets = ", ".join(name for name, sim in SIM_PROVIDERS.items() if sim.fleet)
        raise click.UsageError(f"--servers is for --provider {fleets} (one server per GPU)")
    if servers > 1 and options.api_keys:
        raise click.UsageError("--servers and several accounts do not go together")
    if options.api_keys and not SIM_PROVIDERS[provider].needs_key:
        raise click.UsageError(f"the {provider} simulator takes no key: it has no accounts")
    if servers > 1 and port and port + servers - 1 > 65535:
        raise click.UsageError(f"--port {port} --servers {servers} runs past port 65535")

    sim = SIM_PROVIDERS[options.provider]

    def ready(urls: list[str]) -> None:
        described = sim.describe(options, servers)
        if options.api_keys:
            described += f"; {len(options.api_keys)} accounts, each its own limits and credit"
        click.echo(f"{sim.title} simulator at {', '.join(urls)} ({described}); Ctrl-C to stop")
        click.echo(
            _account_exports(options, urls[0], shown=accounts is not None)
            if options.api_keys
            else _exports(options, urls)
        )
        sys.stdout.flush()

    states: list[SimState] = []
    try:
        if servers == 1 and options.api_keys:
            keys = SimKeys(options, clock=time.time)
            states.extend(keys.states)
            serve(options, state=keys, on_ready=lambda url: ready([url]))
        elif servers == 1:
            states.append(SimState(options))
            serve(options, state=states[0], on_ready=lambda url: ready([url]))
        else:
            _serve_several(options, servers, ready, states)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from exc
    click.echo(_stopped(options, [state.stats() for state in states]))


def _serve_several(
    options: SimOptions, count: int, ready: Callable[[list[str]], None], states: list[SimState]
) -> None:
    """ComfyUI servers, each with its own queue, history and output folder (like separate GPUs),
    in background threads until Ctrl-C; `states` gets each one's state as it starts (the summary)."""
    started: list[RunningSimulator] = []
    try:
        for index in range(count):
            port = options.port + index if options.port else 0
            sim = RunningSimulator(replace(options, port=port, seed=options.seed + index))
            try:
                sim.start()
            except RuntimeError as exc:
                raise OSError(str(exc)) from exc
            started.append(sim)
            states.append(sim.state)
        ready([sim.base_url for sim in started])
        # SIGTERM stops as Ctrl-C does (uvicorn does the same for one server in the foreground).
        signal.signal(signal.SIGTERM, _interrupt)
        threading.Event().wait()  # until Ctrl-C raises KeyboardInterrupt here
    except KeyboardInterrupt:
        pass
    finally:
        for sim in started:
            sim.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stopped(options: SimOptions, all_stats: list[dict[str, Any]]) -> str:
    made = SIM_PROVIDERS[options.provider].made(all_stats)
    requests, limited = total(all_stats, "requests", "total"), total(all_stats, "rate_limited")
    return f"stopped: {requests} requests, {made}, {limited} rate-limited"
