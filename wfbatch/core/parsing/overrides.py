"""A batch spec's `delivery` and `notify`: checked field by field as the HOME's sections are, and the
targets they name (`notify.webhook_url`, `delivery.endpoint_url` — `null` too: AWS itself —,
`delivery.url`'s bucket) against what the HOME allows (`wfbatch.core.targets`): a dropped file is
data, it cannot point the HOME's credentials anywhere.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from wfbatch.core.delivery import DeliveryOverride, NotifyOverride
from wfbatch.core.parsing.entries import did_you_mean, json_type_name
from wfbatch.core.parsing.errors import excerpt
from wfbatch.core.targets import TargetPolicy, TargetRule

OverrideModel = type[DeliveryOverride] | type[NotifyOverride]
OVERRIDES: dict[str, OverrideModel] = {"delivery": DeliveryOverride, "notify": NotifyOverride}

_HOME_ONLY = {
    "command": "set in the HOME's configuration only (a prompt file must not run programs)",
    "webhook_secret": "set in the HOME's configuration only (never stored with a batch)",
}


def override_problem(key: str, value: Any) -> str | None:
    """What is wrong with the spec's `delivery` or `notify` (`key`) as a value, or None."""
    model = OVERRIDES[key]
    if not isinstance(value, dict):
        return f"expected an object, got {json_type_name(value)}"
    for name, why in _HOME_ONLY.items():
        if name in value:
            return f"{name}: {why}"
    try:
        model.model_validate(value)
    except ValidationError as exc:
        return "; ".join(_problem(detail, model) for detail in exc.errors(include_url=False))
    return None


def target_problems(key: str, value: dict[str, Any], policy: TargetPolicy) -> dict[str, str]:
    """The targets in a (valid) override the HOME does not allow: field name → why."""
    refusals: dict[str, str | None] = {}
    if key == "notify":
        refusals["webhook_url"] = _url_refusal(value, "webhook_url", policy.webhooks)
    else:
        bucket = value.get("url")
        refusals["url"] = policy.buckets.refusal(bucket) if isinstance(bucket, str) else None
        refusals["endpoint_url"] = _url_refusal(value, "endpoint_url", policy.endpoints)
    return {field: why.removeprefix("refused: ") for field, why in refusals.items() if why is not None}


def _url_refusal(value: dict[str, Any], field: str, rule: TargetRule) -> str | None:
    if field not in value:
        return None  # the HOME's own
    url = value[field]
    return rule.refusal(url) if isinstance(url, str) else rule.default_refusal()


def given(key: str, value: dict[str, Any]) -> dict[str, Any]:
    """Only the fields the spec set: they override the HOME's, the rest is left to it."""
    return OVERRIDES[key].model_validate(value).given()


def _problem(detail: Any, model: OverrideModel) -> str:
    field = ".".join(str(part) for part in detail["loc"])
    if detail["type"] == "extra_forbidden":
        return f"unknown key {excerpt(field)}{did_you_mean(field, tuple(model.model_fields))}"
    return f"{field}: {str(detail['msg']).removeprefix('Value error, ')}"
