"""`wfbatch sim`: run the local provider simulator (any provider's contract) in the foreground; for
ComfyUI, `--servers N` runs N independent servers (one per simulated GPU) on consecutive ports."""

from __future__ import annotations

import json
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click

from wfbatch.settings import WireflowPlan
from wfbatch.sim import (
    FAULT_GROUPS,
    SIM_PROVIDERS,
    RunningSimulator,
    SimOptions,
    SimState,
    is_loopback,
    serve,
)


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


def _describe_openai(options: SimOptions) -> str:
    def per_window(value: int | None, what: str) -> str:
        return f"{'unlimited' if value is None else value} {what}/{options.window:g}s"

    quota = "unlimited" if options.quota is None else f"{options.quota:g} images"
    lo, hi = options.latency
    parts = [
        f"{per_window(options.rpm, 'requests')}, {per_window(options.images_per_minute, 'images')}",
        f"quota {quota}",
        f"latency {lo:g}-{hi:g}s",
    ]
    if options.error_rate:
        parts.append(f"error-rate {options.error_rate:g} ({','.join(options.faults)})")
    return "; ".join(parts)


def _describe_queue(options: SimOptions) -> str:
    """fal / Replicate: submits per window, credit in images, latency (and fal's concurrency)."""
    credit = "unlimited" if options.quota is None else f"{options.quota:g} images"
    lo, hi = options.latency
    rate = "unlimited" if options.rpm is None else f"{options.rpm}"
    parts = [f"{rate} submits/{options.window:g}s", f"credit {credit}", f"latency {lo:g}-{hi:g}s"]
    if options.provider == "fal":
        parts.insert(0, f"concurrency {options.concurrency}")
    else:
        parts.append(f"outputs kept {options.retention:g}s")
    return "; ".join(parts)


def _checkpoints(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise click.BadParameter("expected checkpoint file names, e.g. sd_xl_base_1.0.safetensors")
    return names


def _describe_stability(options: SimOptions) -> str:
    credits = "unlimited" if options.credits is None else f"{options.credits:g}"
    rate = options.rpm if options.rpm is not None else 150
    lo, hi = options.latency
    parts = [
        f"{rate} requests/{options.stability_window:g}s, {options.lockout:g}s lockout after a 429",
        f"credits {credits}",
        f"latency {lo:g}-{hi:g}s",
    ]
    if options.moderation_marker:
        parts.append(f"403 content_moderation for {options.moderation_marker!r}")
    if options.filter_marker:
        parts.append(f"CONTENT_FILTERED for {options.filter_marker!r}")
    return "; ".join(parts)


def _describe_comfyui(options: SimOptions, servers: int) -> str:
    lo, hi = options.latency
    parts = [
        f"{servers} server{'s' if servers > 1 else ''}, one prompt at a time each",
        f"run {lo:g}-{hi:g}s",
        f"checkpoints {', '.join(options.checkpoints)}",
    ]
    if options.legacy_comfyui:
        parts.append("legacy: ignores prompt_id, string errors")
    if options.fail_marker:
        parts.append(f"execution_error for {options.fail_marker!r}")
    return "; ".join(parts)


def _exports(options: SimOptions, urls: list[str]) -> str:
    """What to paste so wfbatch talks to this simulator (the key is a placeholder, never echoed)."""
    name = options.provider
    prefix = f"WFBATCH_{name.upper()}__"
    base = urls[0] if len(urls) == 1 else json.dumps(urls, separators=(",", ":"))
    values = {"WFBATCH_PROVIDER": name, f"{prefix}BASE_URL": base}
    if name != "comfyui":  # ComfyUI has no key
        values[f"{prefix}API_KEY"] = "<your --api-key>" if options.api_key else "sk-test"
    if name == "wireflow":
        values[f"{prefix}WORKFLOW_ID"] = options.workflow_ids[0]
    return "export " + " ".join(f"{key}={shlex.quote(value)}" for key, value in values.items())


def _describe(options: SimOptions, servers: int = 1) -> str:
    if options.provider == "stability":
        return _describe_stability(options)
    if options.provider == "comfyui":
        return _describe_comfyui(options, servers)
    if options.provider == "openai":
        return _describe_openai(options)
    if options.provider in ("fal", "replicate"):
        return _describe_queue(options)
    daily = options.executions_per_day
    credits = "unlimited" if options.credits is None else f"{options.credits:g}"
    lo, hi = options.latency
    parts = [
        f"plan {options.plan.value}: {options.requests_per_window} req + "
        f"{options.executions_per_window} executions per {options.window:g}s, "
        f"{'no daily cap' if daily is None else f'{daily}/day'}",
        f"credits {credits} at {options.cost:g}/execution",
        f"latency {lo:g}-{hi:g}s",
    ]
    if options.fail_rate:
        parts.append(f"fail-rate {options.fail_rate:g}")
    if options.error_rate:
        parts.append(f"error-rate {options.error_rate:g} ({','.join(options.faults)})")
    return "; ".join(parts)


@click.command("sim")
@click.option(
    "--provider",
    type=click.Choice(list(SIM_PROVIDERS)),
    default="wireflow",
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
    "--plan",
    type=click.Choice([p.value for p in WireflowPlan]),
    default=WireflowPlan.FREE.value,
    show_default=True,
    help="Wireflow plan whose rate limits to apply.",
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
    "--error-style",
    type=click.Choice(["string", "object"]),
    default="string",
    show_default=True,
    help='{"error": "msg"} or {"error": {"type", "code", "message"}}.',
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
@click.option("--api-key", default=None, help="Accept only this key [default: any sk-… or wf_… key].")
@click.option(
    "--images-per-minute",
    type=click.IntRange(min=1),
    default=None,
    help="OpenAI: images per window [default: unlimited]; --rpm is its requests per window.",
)
@click.option(
    "--quota",
    type=click.FloatRange(min=0),
    default=None,
    help="OpenAI, fal, Replicate: images the account may pay for [default: unlimited]; "
    "POST /_sim/topup raises it.",
)
@click.option(
    "--quota-error",
    type=click.Choice(["insufficient_quota", "billing_hard_limit"]),
    default="insufficient_quota",
    show_default=True,
    help="OpenAI: how a spent quota answers (429 insufficient_quota or 400 billing_hard_limit_reached).",
)
@click.option(
    "--moderation-marker",
    default=None,
    help="OpenAI, fal, Replicate, Stability: prompts containing this text are refused by the safety "
    "system (so are --fail-marker ones).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="fal: requests in progress at once; more wait IN_QUEUE.",
)
@click.option(
    "--retention",
    type=click.FloatRange(min=0, min_open=True),
    default=3600.0,
    show_default=True,
    help="Replicate: seconds a prediction's outputs are kept before data_removed.",
)
@click.option(
    "--no-retry-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="OpenAI: share of injected 5xx answers that carry x-should-retry: false.",
)
@click.option(
    "--batch-step",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="OpenAI Batch: seconds a batch spends validating, in progress and finalizing (each).",
)
@click.option(
    "--batch-expire-after",
    type=click.IntRange(min=0),
    default=None,
    help="OpenAI Batch: a batch expires once this many of its lines are done.",
)
@click.option(
    "--batch-fail-input", is_flag=True, help="OpenAI Batch: every input file fails validation."
)
@click.option(
    "--stability-window",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Stability: seconds of its rate window (--rpm requests per window, default 150).",
)
@click.option(
    "--lockout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Stability: seconds a 429 locks the account out (no Retry-After, like Stability).",
)
@click.option(
    "--filter-marker",
    default=None,
    help="Stability: prompts containing this text come back blurred with finish-reason "
    "CONTENT_FILTERED (charged).",
)
@click.option(
    "--checkpoints",
    default=",".join(SimOptions().checkpoints),
    show_default=True,
    callback=_checkpoints,
    metavar="NAME,...",
    help="ComfyUI: checkpoint files the server has; a graph naming another gets value_not_in_list.",
)
@click.option(
    "--legacy",
    "legacy_comfyui",
    is_flag=True,
    help="ComfyUI: behave like an old server (ignore the client's prompt_id, errors as strings).",
)
@click.option(
    "--servers",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="ComfyUI: independent servers (one per simulated GPU) on consecutive ports from --port.",
)
def sim_command(
    host: str,
    port: int,
    allow_remote: bool,
    plan: str,
    latency: tuple[float, float],
    fail_rate: float,
    fail_marker: str | None,
    error_rate: float,
    faults: tuple[str, ...],
    slow_seconds: float,
    cdn_error_rate: float,
    error_style: str,
    credits: float | None,
    cost: float,
    seed: int,
    window: float,
    rpm: int | None,
    epm: int | None,
    daily: int | None,
    api_key: str | None,
    provider: str,
    images_per_minute: int | None,
    quota: float | None,
    quota_error: str,
    moderation_marker: str | None,
    no_retry_share: float,
    concurrency: int,
    retention: float,
    batch_step: float,
    batch_expire_after: int | None,
    batch_fail_input: bool,
    stability_window: float,
    lockout: float,
    filter_marker: str | None,
    checkpoints: tuple[str, ...],
    legacy_comfyui: bool,
    servers: int,
) -> None:
    """Run a local provider simulator: rehearse a batch before spending credits."""
    if not is_loopback(host) and not allow_remote:
        raise click.UsageError(
            f"refusing to listen on {host}, which is not a loopback address; pass --allow-remote"
        )
    try:
        options = SimOptions(
            host=host,
            port=port,
            plan=WireflowPlan(plan),
            latency=latency,
            fail_rate=fail_rate,
            fail_marker=fail_marker,
            error_rate=error_rate,
            faults=faults,
            slow_seconds=slow_seconds,
            cdn_error_rate=cdn_error_rate,
            error_style="object" if error_style == "object" else "string",
            credits=credits,
            cost=cost,
            seed=seed,
            window=window,
            rpm=rpm,
            epm=epm,
            daily=daily,
            api_key=api_key,
            provider=provider,
            images_per_minute=images_per_minute,
            quota=quota,
            quota_error="billing_hard_limit" if quota_error == "billing_hard_limit" else "insufficient_quota",
            moderation_marker=moderation_marker,
            no_retry_share=no_retry_share,
            concurrency=concurrency,
            retention=retention,
            batch_step=batch_step,
            batch_expire_after=batch_expire_after,
            batch_fail_input=batch_fail_input,
            stability_window=stability_window,
            lockout=lockout,
            filter_marker=filter_marker,
            checkpoints=checkpoints,
            legacy_comfyui=legacy_comfyui,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if servers > 1 and provider != "comfyui":
        raise click.UsageError("--servers is for --provider comfyui (one server per GPU)")
    if servers > 1 and port and port + servers - 1 > 65535:
        raise click.UsageError(f"--port {port} --servers {servers} runs past port 65535")

    def ready(urls: list[str]) -> None:
        title = SIM_PROVIDERS[options.provider].title
        click.echo(f"{title} simulator at {', '.join(urls)} ({_describe(options, servers)}); Ctrl-C to stop")
        click.echo(_exports(options, urls))
        sys.stdout.flush()

    states: list[SimState] = []
    try:
        if servers == 1:
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
    def total(pick: Any) -> int:
        return sum(int(pick(stats)) for stats in all_stats)

    provider = options.provider
    if provider in ("openai", "stability"):
        made = f"{total(lambda s: s[provider]['generations'])} images"
    elif provider in ("fal", "replicate", "comfyui"):
        made = f"{total(lambda s: s[provider]['executions'])} executions"
    else:
        made = f"{total(lambda s: s['executions_created'])} executions"
    requests, limited = total(lambda s: s["requests"]["total"]), total(lambda s: s["rate_limited"])
    return f"stopped: {requests} requests, {made}, {limited} rate-limited"
