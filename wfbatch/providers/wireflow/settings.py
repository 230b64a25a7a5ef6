"""Wireflow's section (`[wireflow]`, WFBATCH_WIREFLOW__*), its plans' limits and its label."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, model_validator

from wfbatch.providers.config import ProviderLimits, host_of


class WireflowPlan(StrEnum):
    FREE = "free"
    STARTER = "starter"
    PRO = "pro"
    ENTERPRISE = "enterprise"


# From Wireflow's rate-limit docs: (requests/min, executions/min, executions/day; None = unlimited).
WIREFLOW_PLAN_LIMITS: dict[WireflowPlan, tuple[int, int, int | None]] = {
    WireflowPlan.FREE: (10, 10, 50),
    WireflowPlan.STARTER: (20, 10, 200),
    WireflowPlan.PRO: (60, 10, 1000),
    WireflowPlan.ENTERPRISE: (200, 10, None),
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class WireflowSettings(ProviderLimits):
    api_key: SecretStr | None = None
    base_url: str = "https://www.wireflow.ai/api/v1"
    workflow_id: str | None = None
    prompt_node_id: str | None = None
    seed_node_id: str | None = None
    webhook_id: str | None = None
    plan: WireflowPlan = WireflowPlan.FREE
    mode: Literal["execute", "run", "webhook"] = "execute"

    def configuration_problems(self) -> list[str]:
        problems = []
        if self.api_key is None or not self.api_key.get_secret_value().strip():
            problems.append(
                "Wireflow needs an API key: set WFBATCH_WIREFLOW__API_KEY (or api_key under [wireflow]"
                " in wfbatch.toml)"
            )
        if not self.workflow_id:
            problems.append("Wireflow needs the id of the workflow to run: set WFBATCH_WIREFLOW__WORKFLOW_ID")
        if self.mode == "run" and not self.prompt_node_id:
            problems.append(
                "Wireflow mode 'run' needs the node id of the prompt input: set "
                "WFBATCH_WIREFLOW__PROMPT_NODE_ID (GET /workflows/{id}/run lists the inputs)"
            )
        return problems

    def label(self) -> str:
        base = self.base_url.rstrip("/")
        where = f"workflow {self.workflow_id or '?'} at {host_of(base)}"
        if self.mode != "execute":
            where += f", {self.mode} mode"
        if is_loopback(urlsplit(base).hostname or ""):
            where += "; a local address, e.g. the wfbatch simulator"
        return f"wireflow ({where})"

    @model_validator(mode="after")
    def _plan_defaults(self) -> WireflowSettings:
        """The plan fills in limits the user did not set explicitly."""
        rpm, epm, daily = WIREFLOW_PLAN_LIMITS[self.plan]
        if "requests_per_minute" not in self.model_fields_set:
            self.requests_per_minute = rpm
        if "executions_per_minute" not in self.model_fields_set:
            self.executions_per_minute = epm
        if "daily_executions" not in self.model_fields_set:
            self.daily_executions = daily
        return self
