"""The `.json` format: one batch spec object.

    {"name": "shoes", "provider": "local", "cache": true, "budget": 50,
     "defaults": {"width": 768},
     "prompts": ["a red shoe", {"prompt": "a blue shoe", "seed": 7}],
     "template": "Product photo of {product} on {background}",
     "vars": {"product": ["mug", "lamp"], "background": ["oak", "marble"]}}

`defaults` go under every entry (the entry wins, field by field). `draft` and `final` (each a few of
`model`, `provider`, `width`, `height`, `quality`, `params`) make a draft → final pipeline: jobs run
at the draft's fields set on top of the entry, and approving a draft queues its final at the final's;
`auto_approve: "all"` approves every draft as it finishes. `template` × `vars` is the cartesian
product, vars in the order given, the first varying slowest. `delivery` and `notify` override the
HOME's sections for this batch (`overrides`: the targets they name must be allowed by the HOME);
`budget_alert` is short for `notify.budget_alert`. `priority` (a higher one starts first), `weight`
(its share of a provider beside batches of the same priority) and `not_before` (an ISO 8601
date-time: accepted and counted now, started then) say how the batch shares the quota.
Errors point at the element, or at the key for spec-level problems and template-expanded entries
(`json_text` finds where they are).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from pydantic import ValidationError

from wfbatch.core.models import (
    FROM_DRAFT_MODES,
    MAX_PRIORITY,
    STAGE_FIELDS,
    AutoApprove,
    FromDraft,
    PromptEntry,
    Stages,
)
from wfbatch.core.name_template import NameTemplateError, placeholders
from wfbatch.core.parsing.entries import (
    FIELD_NAMES,
    EntryCollector,
    describe_error,
    did_you_mean,
    json_type_name,
)
from wfbatch.core.parsing.errors import ErrorSink, excerpt
from wfbatch.core.parsing.json_text import INVALID, JsonText, Member
from wfbatch.core.parsing.overrides import given, override_problem, target_problems
from wfbatch.core.targets import TargetPolicy
from wfbatch.core.when import EXAMPLE, BadMoment, parse_moment

SPEC_KEYS = (
    "name", "provider", "defaults", "prompts", "template", "vars", "cache", "budget",
    "draft", "final", "auto_approve", "delivery", "notify", "budget_alert",
    "name_template", "priority", "weight", "not_before",
)
MAX_NAME_CHARS = 200
MAX_WEIGHT = 1000.0
_NAME_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SpecSettings:
    """The batch-level settings of a spec (entries go to the EntryCollector)."""

    name: str | None = None
    provider: str | None = None
    cache: bool = True
    budget: float | None = None
    stages: Stages | None = None
    delivery: dict[str, Any] | None = None
    notify: dict[str, Any] | None = None
    name_template: str | None = None
    priority: int = 0
    weight: float = 1.0
    not_before: float | None = None


_Check = Callable[[Any], str | None]


def _check_name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return f"expected a string, got {json_type_name(value)}"
    name = value.strip()
    if not name:
        return "must not be empty"
    if len(name) > MAX_NAME_CHARS:
        return f"too long: {len(name):,} characters (the limit is {MAX_NAME_CHARS})"
    if name in {".", ".."} or _NAME_FORBIDDEN.search(name):
        return f"{excerpt(name)} cannot name a folder (no '/', '\\' or control characters)"
    return None


def _check_provider(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip()):
        return None
    return f"expected a provider name or null, got {json_type_name(value)}"


def _check_cache(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {json_type_name(value)}"


def _check_budget(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number of credits or null, got {json_type_name(value)}"
    if not math.isfinite(value) or value <= 0:
        return f"must be a positive number of credits (got {json.dumps(value)})"
    return None


def _check_budget_alert(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        got = excerpt(json.dumps(value))
        return f"expected a share of the budget from 0 to 1 (0.8: at 80 %), got {got}"
    return None


def _check_priority(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_PRIORITY:
        got = excerpt(json.dumps(value))
        return f"expected a whole number from -{MAX_PRIORITY:,} to {MAX_PRIORITY:,}, got {got}"
    return None


def _check_weight(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_WEIGHT:
        return f"expected a number more than 0 and at most {MAX_WEIGHT:g}, got {excerpt(json.dumps(value))}"
    return None


def _check_not_before(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return f"expected a date-time string such as \"{EXAMPLE}\", got {json_type_name(value)}"
    try:
        parse_moment(value)
    except BadMoment as error:
        return str(error)
    return None


def _check_name_template(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return f"expected a string like \"{{index:05d}}-{{slug}}\", got {json_type_name(value)}"
    try:
        placeholders(value)
    except NameTemplateError as error:
        return str(error)
    return None


def _check_auto_approve(value: Any) -> str | None:
    choices = [rule.value for rule in AutoApprove]
    if isinstance(value, str) and value in choices:
        return None
    return f"expected one of {', '.join(repr(c) for c in choices)}, got {excerpt(json.dumps(value))}"


def parse_json_spec(
    text: str, errors: ErrorSink, entries: EntryCollector, targets: TargetPolicy | None = None
) -> SpecSettings:
    """The spec's settings (its entries go to `entries`); `targets` says which webhook and bucket
    endpoint a batch may name (by default none but the HOME's own)."""
    document = JsonText(text)
    if not document.check_syntax(errors):
        return SpecSettings()
    start = document.skip_whitespace(0)
    if text[start] != "{":
        value, _ = document.read(start)
        line, column = document.position(start)
        kind = "an invalid value" if value is INVALID else json_type_name(value)
        errors.add(
            line,
            column,
            f"expected a batch spec object at the top level, got {kind} "
            '(for a plain list of prompts write {"prompts": [...]})',
        )
        return SpecSettings()
    spec = _SpecReader(document, errors, targets or TargetPolicy())
    members = spec.check_keys(document.members(start))
    settings = dataclasses.replace(spec.settings(members), stages=spec.stages(members))
    defaults = spec.defaults(members.get("defaults"))
    if "prompts" in members:
        spec.add_prompts(members["prompts"], defaults, entries)
    spec.add_template(members.get("template"), members.get("vars"), defaults, entries)
    if entries.attempted == 0 and not errors:
        errors.add(0, None, "empty batch: no prompts (give a non-empty 'prompts' list or a 'template')")
    return settings


class _SpecReader:
    """Reads the members of one spec, reporting every problem at the key (or element) it concerns."""

    def __init__(self, document: JsonText, errors: ErrorSink, targets: TargetPolicy) -> None:
        self._document = document
        self._errors = errors
        self._targets = targets

    def _error_at(self, offset: int, message: str) -> None:
        line, column = self._document.position(offset)
        self._errors.add(line, column, message)

    def _value(self, member: Member) -> Any:
        value, problem = self._document.read(member.value_offset)
        if problem is not None:
            self._error_at(member.value_offset, f"{member.key}: {problem}")
        return value

    def check_keys(self, found: list[Member]) -> dict[str, Member]:
        members: dict[str, Member] = {}
        for member in found:
            if member.key in members:
                self._error_at(member.key_offset, f"duplicate key {excerpt(member.key)}")
            elif member.key not in SPEC_KEYS:
                hint = did_you_mean(member.key, SPEC_KEYS)
                if not hint and member.key in FIELD_NAMES:
                    hint = f" (entry fields such as {member.key!r} go under 'defaults')"
                self._error_at(member.key_offset, f"unknown key {excerpt(member.key)}{hint}")
            else:
                members[member.key] = member
        return members

    def settings(self, members: dict[str, Member]) -> SpecSettings:
        name = self._optional(members.get("name"), _check_name)
        provider = self._optional(members.get("provider"), _check_provider)
        cache = self._optional(members.get("cache"), _check_cache)
        budget = self._optional(members.get("budget"), _check_budget)
        notify = self._override(members.get("notify"))
        alert = self._optional(members.get("budget_alert"), _check_budget_alert)
        if isinstance(alert, int | float):
            # Kept with the batch's notify overrides: an alert is a notification like the others.
            notify = {**(notify or {}), "budget_alert": float(alert)}
        template = self._optional(members.get("name_template"), _check_name_template)
        priority = self._optional(members.get("priority"), _check_priority)
        weight = self._optional(members.get("weight"), _check_weight)
        not_before = self._optional(members.get("not_before"), _check_not_before)
        return SpecSettings(
            priority=priority if isinstance(priority, int) and not isinstance(priority, bool) else 0,
            weight=float(weight) if isinstance(weight, int | float) and not isinstance(weight, bool) else 1.0,
            not_before=parse_moment(not_before).timestamp() if isinstance(not_before, str) else None,
            name_template=template if isinstance(template, str) else None,
            delivery=self._override(members.get("delivery")),
            notify=notify,
            name=name.strip() if isinstance(name, str) else None,
            provider=provider.strip() if isinstance(provider, str) else None,
            cache=cache if isinstance(cache, bool) else True,
            budget=float(budget) if isinstance(budget, int | float) else None,
        )

    def _override(self, member: Member | None) -> dict[str, Any] | None:
        """`delivery` or `notify`: the fields it sets, if they are valid and every target it names
        is allowed by the HOME (a refused target is reported at its own key)."""
        if member is None:
            return None
        value = self._optional(member, functools.partial(override_problem, member.key))
        if not value:
            return None
        refused = target_problems(member.key, value, self._targets)
        if not refused:
            return given(member.key, value)
        offsets = {nested.key: nested.key_offset for nested in self._document.members(member.value_offset)}
        for field, why in refused.items():
            self._error_at(offsets.get(field, member.key_offset), f"{member.key}.{field}: {why}")
        return None

    def stages(self, members: dict[str, Member]) -> Stages | None:
        """The draft → final pipeline, or None when the spec has neither `draft` nor `final`."""
        draft = self._stage(members.get("draft"))
        from_draft = self._from_draft(members.get("final"))
        final = self._stage(members.get("final"), skip=("from_draft",))
        rule = self._optional(members.get("auto_approve"), _check_auto_approve)
        if "draft" not in members and "final" not in members:
            if "auto_approve" in members:
                self._error_at(
                    members["auto_approve"].key_offset,
                    "auto_approve: there is no 'draft' or 'final' to approve (give them first)",
                )
            return None
        return Stages(
            draft=draft or {},
            final=final or {},
            auto_approve=AutoApprove(rule) if isinstance(rule, str) else AutoApprove.NONE,
            from_draft=from_draft,
        )

    def _from_draft(self, member: Member | None) -> FromDraft | None:
        """The final's `from_draft` (how an approved draft becomes it), checked; None if not given."""
        if member is None:
            return None
        value, problem = self._document.read(member.value_offset)  # a problem: reported by _stage
        if problem is not None or not isinstance(value, dict) or "from_draft" not in value:
            return None
        mode = value["from_draft"]
        if mode not in FROM_DRAFT_MODES:
            choices = ", ".join(repr(choice) for choice in FROM_DRAFT_MODES)
            self._error_at(member.key_offset, f"final.from_draft: expected one of {choices}, got {mode!r}")
            return None
        return cast(FromDraft, mode)

    def _stage(self, member: Member | None, skip: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """A stage's fields, validated as entry fields (and only the fields a stage may set);
        `skip`: the stage's own keys, read elsewhere."""
        if member is None:
            return None
        value = self._value(member)
        if value is INVALID:
            return None
        if isinstance(value, dict) and skip:
            value = {name: item for name, item in value.items() if name not in skip}
        key = member.key
        if not isinstance(value, dict):
            self._error_at(member.key_offset, f"{key}: expected an object, got {json_type_name(value)}")
            return None
        allowed = ", ".join(STAGE_FIELDS)
        ok = True
        for name in value:
            if name not in STAGE_FIELDS:
                hint = did_you_mean(name, STAGE_FIELDS)
                message = f"{key}: {excerpt(name)} cannot be set per stage{hint} (a stage sets {allowed})"
                self._error_at(member.key_offset, message)
                ok = False
        if not ok:
            return None
        try:
            entry = PromptEntry.model_validate({**value, "prompt": key})
        except ValidationError as exc:
            for detail in exc.errors(include_url=False):
                self._error_at(member.key_offset, f"{key}: {describe_error(detail)[1]}")
            return None
        validated = entry.model_dump(include=set(value))
        if isinstance(validated.get("provider"), str):
            validated["provider"] = validated["provider"].strip() or None
        return validated

    def _optional(self, member: Member | None, check: _Check) -> Any:
        """The member's value if it passes `check` (which returns an error message or None)."""
        if member is None:
            return None
        value = self._value(member)
        if value is INVALID:
            return None
        problem = check(value)
        if problem is not None:
            self._error_at(member.key_offset, f"{member.key}: {problem}")
            return None
        return value

    def defaults(self, member: Member | None) -> dict[str, Any]:
        """Validated defaults, or {} when absent or bad (so each entry is not blamed for them)."""
        if member is None:
            return {}
        value = self._value(member)
        if value is INVALID:
            return {}
        if not isinstance(value, dict):
            self._error_at(member.key_offset, f"defaults: expected an object, got {json_type_name(value)}")
            return {}
        if "prompt" in value:
            self._error_at(member.key_offset, "defaults: cannot set 'prompt' (each entry has its own)")
            return {}
        try:
            PromptEntry.model_validate({**value, "prompt": "defaults"})
        except ValidationError as exc:
            for detail in exc.errors(include_url=False):
                self._error_at(member.key_offset, f"defaults: {describe_error(detail)[1]}")
            return {}
        return value

    def add_prompts(self, member: Member, defaults: dict[str, Any], entries: EntryCollector) -> None:
        if self._document.text[member.value_offset] != "[":
            value = self._value(member)
            if value is not INVALID:
                self._error_at(member.key_offset, f"prompts: expected an array, got {json_type_name(value)}")
            return
        for index, offset in enumerate(self._document.items(member.value_offset)):
            value, problem = self._document.read(offset)
            line, column = self._document.position(offset)
            if problem is not None:
                self._errors.add(line, column, f"prompts[{index}]: {problem}")
                entries.refused()
                continue
            if isinstance(value, str):
                raw = {**defaults, "prompt": value}
            elif isinstance(value, dict):
                raw = {**defaults, **value}
            else:
                message = f"expected a string or an object, got {json_type_name(value)}"
                self._errors.add(line, column, f"prompts[{index}]: {message}")
                entries.refused()
                continue
            if not entries.add(raw, line, column):
                return

    def add_template(
        self,
        template_member: Member | None,
        vars_member: Member | None,
        defaults: dict[str, Any],
        entries: EntryCollector,
    ) -> None:
        if template_member is None:
            if vars_member is not None:
                self._error_at(vars_member.key_offset, "vars: given but there is no 'template' to fill")
            return
        template = self._value(template_member)
        if template is INVALID:
            return
        if not isinstance(template, str):
            self._error_at(
                template_member.key_offset, f"template: expected a string, got {json_type_name(template)}"
            )
            return
        parts = self._template_parts(template, template_member)
        placeholders = None if parts is None else list(dict.fromkeys(f for _, f in parts if f is not None))
        if placeholders is not None:  # `{product_photo}` in a default's image/mask is filled per entry too
            placeholders += [name for name in _input_placeholders(defaults) if name not in placeholders]
        variables = self._vars(vars_member, template_member, placeholders)
        if parts is None or variables is None:
            return
        self._expand(parts, variables, template_member, defaults, entries)

    def _template_parts(self, template: str, member: Member) -> list[tuple[str, str | None]] | None:
        """(literal text, placeholder name or None) pairs; None if the template is malformed."""
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            self._error_at(member.key_offset, f"template: {exc} (write '{{{{' and '}}}}' for literal braces)")
            return None
        parts: list[tuple[str, str | None]] = []
        ok = True
        for literal, field, format_spec, conversion in parsed:
            if field is not None and not field.isidentifier():
                shown = "{" + field + "}"
                self._error_at(
                    member.key_offset,
                    f"template: placeholder {excerpt(shown)} must be a plain name like {{product}} "
                    "(write '{{' and '}}' for literal braces)",
                )
                ok = False
            elif field is not None and (format_spec or conversion):
                shown = (
                    "{"
                    + field
                    + (f"!{conversion}" if conversion else "")
                    + (f":{format_spec}" if format_spec else "")
                    + "}"
                )
                self._error_at(
                    member.key_offset,
                    f"template: placeholder {excerpt(shown)}: conversions and format specs are not supported",
                )
                ok = False
            parts.append((literal, field))
        return parts if ok else None

    def _vars(
        self,
        vars_member: Member | None,
        template_member: Member,
        placeholders: list[str] | None,
    ) -> dict[str, list[str]] | None:
        """Each var's values, in the order given; None if any is unusable or does not fit the template.

        `placeholders` is None when the template itself is malformed: the vars are still checked.
        """
        given: dict[str, Any] = {}
        if vars_member is not None:
            value = self._value(vars_member)
            if value is INVALID:
                return None
            if not isinstance(value, dict):
                message = f"vars: expected an object, got {json_type_name(value)}"
                self._error_at(vars_member.key_offset, message)
                return None
            given = value
        variables: dict[str, list[str]] = {}
        ok = placeholders is not None
        for var in self._document.members(vars_member.value_offset) if vars_member else []:
            values = given[var.key]
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                self._error_at(var.key_offset, f"vars.{var.key}: expected a non-empty array of strings")
                ok = False
            elif placeholders is not None and var.key not in placeholders:
                hint = did_you_mean(var.key, placeholders)
                self._error_at(var.key_offset, f"vars.{var.key}: not used in the template{hint}")
                ok = False
            else:
                variables[var.key] = values
        for name in placeholders or []:
            if name not in given:
                message = f"template: placeholder {{{name}}} has no list in 'vars'"
                self._error_at(template_member.key_offset, message + did_you_mean(name, given))
                ok = False
        return variables if ok else None

    def _expand(
        self,
        parts: list[tuple[str, str | None]],
        variables: dict[str, list[str]],
        member: Member,
        defaults: dict[str, Any],
        entries: EntryCollector,
    ) -> None:
        line, column = self._document.position(member.key_offset)
        count = math.prod(len(values) for values in variables.values())
        if not entries.room_for(count):
            self._errors.add(line, column, "template: " + entries.too_many_message(entries.attempted + count))
            return
        names = list(variables)
        for combination in itertools.product(*variables.values()):
            filled = dict(zip(names, combination, strict=True))
            prompt = "".join(literal + (filled[field] if field else "") for literal, field in parts)
            raw = {**defaults, "prompt": prompt}
            for name in _INPUT_FIELDS:
                if isinstance(raw.get(name), str) and "{" in raw[name]:
                    raw[name] = _fill(raw[name], filled)
            if not entries.add(raw, line, column):
                return


_INPUT_FIELDS = ("image", "mask")


def _input_placeholders(defaults: dict[str, Any]) -> list[str]:
    """The `{name}`s in the defaults' `image` and `mask` (filled from `vars` like the template's)."""
    names: list[str] = []
    for field in _INPUT_FIELDS:
        value = defaults.get(field)
        if isinstance(value, str) and "{" in value:
            try:
                names += [name for _, name, _, _ in string.Formatter().parse(value) if name]
            except ValueError:
                continue  # not a template after all: the path is taken as written
    return list(dict.fromkeys(names))


def _fill(value: str, filled: dict[str, str]) -> str:
    try:
        return "".join(
            literal + (filled.get(name, "{" + name + "}") if name else "")
            for literal, name, _, _ in string.Formatter().parse(value)
        )
    except ValueError:
        return value
