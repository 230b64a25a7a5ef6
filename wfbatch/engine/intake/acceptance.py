"""One way in: prompts become a batch the same way from the inbox, `submit` and `wfbatch run`.

`check_prompts` parses a file and checks everything that can be checked before anything is
enqueued — every line, the providers it names (known, and configured, without building a client)
and what each line's provider would refuse — raising one `PromptFileError` naming every problem.
`balance_warnings` compares what a batch is estimated to cost with the balances already known; it
sends no request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from wfbatch.core.expand import ExpandedJob, expand_batch
from wfbatch.core.inputs import InputRoots, resolve_inputs
from wfbatch.core.models import JobSpec, ParsedBatch
from wfbatch.core.name_template import RUNTIME_FIELDS, placeholders
from wfbatch.core.output_names import name_jobs
from wfbatch.core.parsing import LineError, PromptFileError, parse_prompt_bytes
from wfbatch.core.suggest import did_you_mean
from wfbatch.engine.intake.final_modes import final_modes
from wfbatch.engine.intake.ingest import entry_problems
from wfbatch.engine.outbox.targets import target_policy
from wfbatch.home import HomeLayout
from wfbatch.providers.registry import KNOWN_PROVIDERS, configuration_problems
from wfbatch.settings import Settings


@dataclass(frozen=True)
class CheckedPrompts:
    """A prompt file that passed every check: ready to enqueue."""

    raw: bytes
    parsed: ParsedBatch
    default_provider: str
    """Where entries that name no provider go."""
    expanded: list[ExpandedJob]
    """The jobs the file makes (`expand_batch`), checked: expanded once per file, used by the
    balance warning, the dry run's count and `ingest`."""


def check_prompts(
    raw: bytes,
    source_name: str,
    settings: Settings,
    *,
    fmt: str | None = None,
    provider: str | None = None,
    budget: float | None = None,
    not_before: float | None = None,
    prompt_dir: Path | None = None,
) -> CheckedPrompts:
    """Parse and check `raw` (see the module); raises PromptFileError naming every problem.
    `budget` and `not_before` (from --budget and --at) replace the file's own. `prompt_dir`: the
    prompt file's own folder, where its input pictures may be (None: only the HOME's `inputs/`; a
    file dropped into the inbox has no folder of its own)."""
    home_template = settings.output.name
    extra = frozenset(placeholders(home_template)) - set(RUNTIME_FIELDS) if home_template else frozenset()
    parsed = parse_prompt_bytes(raw, source_name, fmt, targets=target_policy(settings), extra_columns=extra)
    if budget is not None:
        parsed = replace(parsed, budget=budget)
    if not_before is not None:
        parsed = replace(parsed, not_before=not_before)
    default_provider = provider or settings.provider
    problems = provider_problems(parsed, default_provider, settings)
    parsed, input_problems = resolve_inputs(parsed, InputRoots(prompt_dir, HomeLayout(settings.home).inputs))
    problems += input_problems
    expanded = final_modes(expand_batch(parsed, default_provider))
    problems += entry_problems(expanded)
    template = parsed.name_template or home_template
    if template and not problems:
        expanded, naming = name_jobs(parsed, expanded, template, dt.date.today())
        problems += naming
    if problems:
        raise PromptFileError(source_name, sorted(problems, key=lambda error: error.line))
    return CheckedPrompts(raw, parsed, default_provider, expanded)


def provider_problems(parsed: ParsedBatch, default_provider: str, settings: Settings) -> list[LineError]:
    """Unknown providers (by the line that names them first), and providers whose configuration
    cannot work (a missing key, ...)."""
    wanted: dict[str, int] = {parsed.provider or default_provider: 0}
    for stage in (parsed.stages.draft, parsed.stages.final) if parsed.stages else ():
        if stage.get("provider"):
            wanted.setdefault(stage["provider"], 0)
    for entry in parsed.entries:
        if entry.entry.provider:
            wanted.setdefault(entry.entry.provider, entry.line)
    problems: list[LineError] = []
    for name, line in sorted(wanted.items(), key=lambda item: item[1]):
        if name not in KNOWN_PROVIDERS:
            known = ", ".join(KNOWN_PROVIDERS)
            hint = did_you_mean(name, KNOWN_PROVIDERS)
            problems.append(LineError(line, None, f"unknown provider {name!r}{hint} (known: {known})"))
            continue
        for problem in configuration_problems(name, settings):
            problems.append(LineError(line, None, f"provider {name!r} cannot be used: {problem}"))
    return problems


def specs_by_provider(jobs: Sequence[ExpandedJob]) -> dict[str, list[JobSpec]]:
    by_provider: dict[str, list[JobSpec]] = {}
    for job in jobs:
        by_provider.setdefault(job.spec.provider, []).append(job.spec)
    return by_provider


async def balance_warnings(
    prompts: Sequence[CheckedPrompts],
    balances: dict[str, float],
    estimate: Callable[[Sequence[JobSpec]], Awaitable[float]],
) -> tuple[str, ...]:
    """Work estimated to cost more than a provider's known balance is accepted, with a warning: the
    balance may be topped up before it runs out (and the out-of-credits pause handles it if not)."""
    jobs = [job for checked in prompts for job in checked.expanded]
    warnings: list[str] = []
    for name, specs in sorted(specs_by_provider(jobs).items()):
        balance = balances.get(name)
        if balance is None:
            continue
        cost = await estimate(specs)
        if cost > balance:
            warnings.append(
                f"{name}: this work is estimated at {cost:g} credits, more than the balance of"
                f" {balance:g}; it will pause when the credits run out"
            )
    return tuple(warnings)
