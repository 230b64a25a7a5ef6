"""A batch's output names, from its name template, made when its file is checked: a template that
cannot be filled for an entry is an error naming that entry's line, before anything is enqueued."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from wfbatch.core.expand import ExpandedJob
from wfbatch.core.models import JobSpec, ParsedBatch
from wfbatch.core.name_template import missing, placeholders, render, safe_part, unique_names
from wfbatch.core.parsing import LineError

SLUG_CHARS = 48
"""As long as a default name's prompt slug."""
FINAL_SUFFIX = "-final"


def name_jobs(
    parsed: ParsedBatch, expanded: list[ExpandedJob], template: str, today: dt.date
) -> tuple[list[ExpandedJob], list[LineError]]:
    """`expanded` with each spec's `name` (and its final's) rendered, unique within the batch; or
    the lines whose entry cannot fill the template. Job `index` counts from 1, as ingest numbers."""
    problems: dict[int, LineError] = {}
    drafts: list[str] = []
    finals: list[str | None] = []
    for index, job in enumerate(expanded, start=1):
        line = job.source.line
        absent = missing(template, job.source.entry.fields)
        if "id" in placeholders(template) and job.source.entry.id is None:
            absent.append("id")
        if absent:
            fields = ", ".join(f"{{{name}}}" for name in absent)
            problems.setdefault(
                line, LineError(line, None, f"name template {template!r}: this entry has no {fields}")
            )
            continue
        try:
            draft = render(template, _values(parsed, job, job.spec, index, today, "draft"))
            final = None
            if job.final is not None:
                final = render(template, _values(parsed, job, job.final, index, today, "final"))
                final = final + FINAL_SUFFIX if final == draft else final
        except (KeyError, ValueError, IndexError) as error:
            problems.setdefault(line, LineError(line, None, f"name template {template!r}: {error}"))
            continue
        drafts.append(draft)
        finals.append(final)
    if problems:
        return expanded, sorted(problems.values(), key=lambda p: p.line)
    unique = unique_names(drafts + [f for f in finals if f is not None])
    drafts, final_names = unique[: len(drafts)], iter(unique[len(drafts) :])
    named = []
    for job, draft, final in zip(expanded, drafts, finals, strict=True):
        spec = replace(job.spec, name=draft)
        final_spec = replace(job.final, name=next(final_names)) if job.final and final else job.final
        named.append(job._replace(spec=spec, final=final_spec))
    return named, []


def _values(
    parsed: ParsedBatch, job: ExpandedJob, spec: JobSpec, index: int, today: dt.date, stage: str
) -> dict[str, object]:
    entry = job.source.entry
    return {
        **entry.fields,
        "batch": parsed.name,
        "index": index,
        "slug": safe_part(spec.prompt)[:SLUG_CHARS].strip("-") or "image",
        "seed": spec.seed,
        "model": spec.model or "default",
        "variant": spec.variant,
        "id": entry.id or "",
        "date": today.isoformat(),
        "stage": stage if parsed.stages else "",
    }
