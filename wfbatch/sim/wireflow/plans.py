"""Wireflow's plans and their limits, as its rate-limit docs state them (the simulator keeps its own
copy: it is checked against the client, not built from it)."""

from __future__ import annotations

from enum import StrEnum


class WireflowPlan(StrEnum):
    FREE = "free"
    STARTER = "starter"
    PRO = "pro"
    ENTERPRISE = "enterprise"


# (requests/min, executions/min, executions/day; None = unlimited).
PLAN_LIMITS: dict[WireflowPlan, tuple[int, int, int | None]] = {
    WireflowPlan.FREE: (10, 10, 50),
    WireflowPlan.STARTER: (20, 10, 200),
    WireflowPlan.PRO: (60, 10, 1000),
    WireflowPlan.ENTERPRISE: (200, 10, None),
}
