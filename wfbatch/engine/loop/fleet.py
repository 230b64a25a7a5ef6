"""Which provider accounts this engine serves, as the engine asks it: one code path for one daemon
on SQLite (`SoloFleet`: every account, no lease rows) and several on PostgreSQL (store/pg/leases.py:
an account only while this daemon holds its advisory lock and its lease row).

The engine starts a job only on an account it holds, stamps the job with `claim_fields` as it moves
it to `submitting` (the claim), resumes at start only the jobs `adoptable` says are its own, and,
when accounts are taken over from a daemon that vanished, is told through `taken` so that it adopts
their jobs in flight (reconcile, re-send with the stored key, poll): never a re-run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wfbatch.store import DaemonRow, Fleet, JobRow, Wanted


class SoloFleet:
    """The one daemon of a HOME (SQLite, or `wfbatch run`): it holds every account, and every job
    in flight is its own."""

    def holds(self, provider: str, account: str) -> bool:
        return True

    def claim_fields(self, provider: str, account: str) -> dict[str, Any]:
        return {}

    def adoptable(self, job: JobRow) -> bool:
        return True

    async def start(self, taken: Callable[[], None], wanted: Wanted) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def writes_manifest(self, batch_id: str) -> bool:
        return True

    async def manifests_changed(self) -> set[str]:
        return set()

    def leaks_before(self, now: float) -> float | None:
        return None

    async def claim(self, job: JobRow) -> bool:
        return True

    async def unclaim(self, job: JobRow) -> None:
        return None

    async def members(self) -> tuple[str | None, list[DaemonRow]]:
        return None, []


__all__ = ["Fleet", "SoloFleet", "Wanted"]
