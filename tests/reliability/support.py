"""Shared by the reliability suites: the short/soak switch, a simulator, and a daemon wired to it.

`make soak` sets WFBATCH_SOAK=1 (read at import: the suite's autouse fixture clears WFBATCH_* for
each test); without it every suite runs its short form inside `make test`."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

SOAK = os.environ.get("WFBATCH_SOAK") == "1"
T = TypeVar("T")


def pick(short: T, soak: T) -> T:
    return soak if SOAK else short


def wireflow_env(base_url: str, api_key: str, **limits: str) -> dict[str, str]:
    """A daemon (or `wfbatch run`) talking to the simulator with quick polls and backoff."""
    env = {
        "WFBATCH_PROVIDER": "wireflow",
        "WFBATCH_WIREFLOW__BASE_URL": base_url,
        "WFBATCH_WIREFLOW__API_KEY": api_key,
        "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo",
        "WFBATCH_WIREFLOW__PLAN": "enterprise",
        "WFBATCH_WIREFLOW__REQUESTS_PER_MINUTE": "100000",
        "WFBATCH_WIREFLOW__EXECUTIONS_PER_MINUTE": "100000",
        "WFBATCH_WIREFLOW__MAX_IN_FLIGHT": "4",
        "WFBATCH_WIREFLOW__POLL_INITIAL": "0.05",
        "WFBATCH_WIREFLOW__POLL_MAX": "0.3",
        "WFBATCH_WIREFLOW__BACKOFF_INITIAL": "0.1",
        "WFBATCH_WIREFLOW__BACKOFF_MAX": "1.0",
        "WFBATCH_WIREFLOW__REQUEST_TIMEOUT": "5",
        "WFBATCH_INBOX__STABLE_SECONDS": "0.1",
    }
    env.update({f"WFBATCH_WIREFLOW__{k.upper()}": v for k, v in limits.items()})
    return env


def db_rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the daemon's database from outside (read-only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def state_counts(db: Path) -> Mapping[str, int]:
    return dict(db_rows(db, "SELECT state, COUNT(*) FROM jobs GROUP BY state"))
