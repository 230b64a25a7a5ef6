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
product, vars in the order given, the first varying slowest. The `json` module does not say where nested
values are, so a small scan over the (already syntax-checked) text finds the top-level keys and each
`prompts` element with `raw_decode`: errors point at the element, or at the key for spec-level problems
and template-expanded entries.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from wfbatch.core.delivery import DeliveryOverride, NotifyOverride
from wfbatch.core.models import STAGE_FIELDS, AutoApprove, PromptEntry, Stages
from wfbatch.core.parsing.entries import (
    FIELD_NAMES,
    EntryCollector,
    JsonReader,
    Position,
    describe_error,
    did_you_mean,
    duplicate_keys_message,
    json_type_name,
)
from wfbatch.core.parsing.errors import ErrorSink, excerpt

SPEC_KEYS = (
    "name", "provider", "defaults", "prompts", "template", "vars", "cache", "budget",
    "draft", "final", "auto_approve", "delivery", "notify",
)
MAX_NAME_CHARS = 200
_WHITESPACE = re.compile(r"[ \t\n\r]*")  # exactly JSON's whitespace
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


@dataclass(frozen=True)
class _Member:
    """A top-level key of the spec and where its key and its value start."""

    key: str
    key_offset: int
    value_offset: int


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


def _check_auto_approve(value: Any) -> str | None:
    choices = [rule.value for rule in AutoApprove]
    if isinstance(value, str) and value in choices:
        return None
    return f"expected one of {', '.join(repr(c) for c in choices)}, got {excerpt(json.dumps(value))}"


_HOME_ONLY = {
    "command": "set in the HOME's configuration only (a prompt file must not run programs)",
    "webhook_secret": "set in the HOME's configuration only (never stored with a batch)",
}


def _check_override(model: type[DeliveryOverride] | type[NotifyOverride]) -> _Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"expected an object, got {json_type_name(value)}"
        for key, why in _HOME_ONLY.items():
            if key in value:
                return f"{key}: {why}"
        try:
            model.model_validate(value)
        except ValidationError as exc:
            return "; ".join(_override_problem(detail, model) for detail in exc.errors(include_url=False))
        return None

    return check


def _override_problem(detail: Any, model: type[DeliveryOverride] | type[NotifyOverride]) -> str:
    field = ".".join(str(part) for part in detail["loc"])
    if detail["type"] == "extra_forbidden":
        return f"unknown key {excerpt(field)}{did_you_mean(field, tuple(model.model_fields))}"
    return f"{field}: {str(detail['msg']).removeprefix('Value error, ')}"


class _Invalid:
    """Stands for a value that could not be decoded (its error is already reported)."""


_INVALID = _Invalid()


class _JsonText:
    """Positions inside a syntax-checked JSON document."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._strict = JsonReader()
        # Only used to find where a value ends: never fails on NaN or 5,000-digit numbers.
        self._skipper = json.JSONDecoder(parse_int=_ignore, parse_constant=_ignore)
        self._line_starts: list[int] | None = None

    def check_syntax(self, errors: ErrorSink) -> bool:
        try:
            self._skipper.decode(self.text)
        except json.JSONDecodeError as exc:
            errors.add(exc.lineno, exc.colno, f"invalid JSON: {exc.msg}")
            return False
        except RecursionError:
            errors.add(0, None, "invalid JSON: nested too deeply")
            return False
        return True

    def position(self, offset: int) -> Position:
        if self._line_starts is None:
            self._line_starts = [0, *(match.end() for match in re.finditer("\n", self.text))]
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def skip_whitespace(self, offset: int) -> int:
        match = _WHITESPACE.match(self.text, offset)
        return match.end() if match else offset

    def end_of_value(self, offset: int) -> int:
        return int(self._skipper.raw_decode(self.text, offset)[1])

    def read(self, offset: int) -> tuple[Any, str | None]:
        """The value at `offset`, or _INVALID and why (NaN, huge integer, duplicate keys inside)."""
        try:
            value, _ = self._strict.read_at(self.text, offset)
        except ValueError as exc:
            return _INVALID, f"invalid JSON: {exc}"
        except RecursionError:
            return _INVALID, "invalid JSON: nested too deeply"
        if self._strict.duplicate_keys:
            return _INVALID, duplicate_keys_message(self._strict.duplicate_keys)
        return value, None

    def members(self, offset: int) -> list[_Member]:
        """Keys of the object starting at `offset` ('{'), in order, duplicates included."""
        members: list[_Member] = []
        offset = self.skip_whitespace(offset + 1)
        while self.text[offset] != "}":
            key_offset = offset
            key, offset = self._skipper.raw_decode(self.text, offset)
            offset = self.skip_whitespace(self.skip_whitespace(offset) + 1)  # past ':'
            members.append(_Member(str(key), key_offset, offset))
            offset = self.skip_whitespace(self.end_of_value(offset))
            if self.text[offset] == ",":
                offset = self.skip_whitespace(offset + 1)
        return members

    def items(self, offset: int) -> list[int]:
        """Start offsets of the elements of the array starting at `offset` ('[')."""
        starts: list[int] = []
        offset = self.skip_whitespace(offset + 1)
        while self.text[offset] != "]":
            starts.append(offset)
            offset = self.skip_whitespace(self.end_of_value(offset))
            if self.text[offset] == ",":
                offset = self.skip_whitespace(offset + 1)
        return starts


def _ignore(_: str) -> int:
    return 0


def parse_json_spec(text: str, errors: ErrorSink, entries: EntryCollector) -> SpecSettings:
    document = _JsonText(text)
    if not document.check_syntax(errors):
        return SpecSettings()
    start = document.skip_whitespace(0)
    if text[start] != "{":
        value, _ = document.read(start)
        line, column = document.position(start)
        kind = "an invalid value" if value is _INVALID else json_type_name(value)
        errors.add(
            line,
            column,
            f"expected a batch spec object at the top level, got {kind} "
            '(for a plain list of prompts write {"prompts": [...]})',
        )
        return SpecSettings()
    spec = _SpecReader(document, errors)
    members = spec.check_keys(document.members(start))
    settings = spec.settings(members)
    stages = spec.stages(members)
    if stages is not None:
        settings = SpecSettings(
            name=settings.name,
            provider=settings.provider,
            cache=settings.cache,
            budget=settings.budget,
            stages=stages,
        )
    defaults = spec.defaults(members.get("defaults"))
    if "prompts" in members:
        spec.add_prompts(members["prompts"], defaults, entries)
    spec.add_template(members.get("template"), members.get("vars"), defaults, entries)
    if entries.attempted == 0 and not errors:
        errors.add(0, None, "empty batch: no prompts (give a non-empty 'prompts' list or a 'template')")
    return settings


class _SpecReader:
    """Reads the members of one spec, reporting every problem at the key (or element) it concerns."""

    def __init__(self, document: _JsonText, errors: ErrorSink) -> None:
        self._document = document
        self._errors = errors

    def _error_at(self, offset: int, message: str) -> None:
        line, column = self._document.position(offset)
        self._errors.add(line, column, message)

    def _value(self, member: _Member) -> Any:
        value, problem = self._document.read(member.value_offset)
        if problem is not None:
            self._error_at(member.value_offset, f"{member.key}: {problem}")
        return value

    def check_keys(self, found: list[_Member]) -> dict[str, _Member]:
        members: dict[str, _Member] = {}
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

    def settings(self, members: dict[str, _Member]) -> SpecSettings:
        name = self._optional(members.get("name"), _check_name)
        provider = self._optional(members.get("provider"), _check_provider)
        cache = self._optional(members.get("cache"), _check_cache)
        budget = self._optional(members.get("budget"), _check_budget)
        delivery = self._optional(members.get("delivery"), _check_override(DeliveryOverride))
        notify = self._optional(members.get("notify"), _check_override(NotifyOverride))
        return SpecSettings(
            delivery=DeliveryOverride.model_validate(delivery).given() if delivery else None,
            notify=NotifyOverride.model_validate(notify).given() if notify else None,
            name=name.strip() if isinstance(name, str) else None,
            provider=provider.strip() if isinstance(provider, str) else None,
            cache=cache if isinstance(cache, bool) else True,
            budget=float(budget) if isinstance(budget, int | float) else None,
        )

    def stages(self, members: dict[str, _Member]) -> Stages | None:
        """The draft → final pipeline, or None when the spec has neither `draft` nor `final`."""
        draft = self._stage(members.get("draft"))
        final = self._stage(members.get("final"))
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
        )

    def _stage(self, member: _Member | None) -> dict[str, Any] | None:
        """A stage's fields, validated as entry fields (and only the fields a stage may set)."""
        if member is None:
            return None
        value = self._value(member)
        if value is _INVALID:
            return None
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

    def _optional(self, member: _Member | None, check: _Check) -> Any:
        """The member's value if it passes `check` (which returns an error message or None)."""
        if member is None:
            return None
        value = self._value(member)
        if value is _INVALID:
            return None
        problem = check(value)
        if problem is not None:
            self._error_at(member.key_offset, f"{member.key}: {problem}")
            return None
        return value

    def defaults(self, member: _Member | None) -> dict[str, Any]:
        """Validated defaults, or {} when absent or bad (so each entry is not blamed for them)."""
        if member is None:
            return {}
        value = self._value(member)
        if value is _INVALID:
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

    def add_prompts(self, member: _Member, defaults: dict[str, Any], entries: EntryCollector) -> None:
        if self._document.text[member.value_offset] != "[":
            value = self._value(member)
            if value is not _INVALID:
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
        template_member: _Member | None,
        vars_member: _Member | None,
        defaults: dict[str, Any],
        entries: EntryCollector,
    ) -> None:
        if template_member is None:
            if vars_member is not None:
                self._error_at(vars_member.key_offset, "vars: given but there is no 'template' to fill")
            return
        template = self._value(template_member)
        if template is _INVALID:
            return
        if not isinstance(template, str):
            self._error_at(
                template_member.key_offset, f"template: expected a string, got {json_type_name(template)}"
            )
            return
        parts = self._template_parts(template, template_member)
        placeholders = None if parts is None else list(dict.fromkeys(f for _, f in parts if f is not None))
        variables = self._vars(vars_member, template_member, placeholders)
        if parts is None or variables is None:
            return
        self._expand(parts, variables, template_member, defaults, entries)

    def _template_parts(self, template: str, member: _Member) -> list[tuple[str, str | None]] | None:
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
        vars_member: _Member | None,
        template_member: _Member,
        placeholders: list[str] | None,
    ) -> dict[str, list[str]] | None:
        """Each var's values, in the order given; None if any is unusable or does not fit the template.

        `placeholders` is None when the template itself is malformed: the vars are still checked.
        """
        given: dict[str, Any] = {}
        if vars_member is not None:
            value = self._value(vars_member)
            if value is _INVALID:
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
        member: _Member,
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
            if not entries.add({**defaults, "prompt": prompt}, line, column):
                return
