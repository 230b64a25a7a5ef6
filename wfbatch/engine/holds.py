"""Why a job is not running: the one owner of every hold on everything, a provider or a batch.

Holds come from the user (pause everything, a provider or a batch: persisted, so they outlive a
restart), from the account (a bad key, no credit, an unreachable endpoint: the provider's limiter
pause), from money (a batch budget or a daily credit cap reached) and from the machine (a full
disk). The dispatch loop, the idle check, `status`, the views and the TUI all ask here; commands
change holds only through here.
"""

from __future__ import annotations

from collections.abc import Iterable

from wfbatch.engine.budget import Budget
from wfbatch.engine.pool import ProviderPool
from wfbatch.engine.storage import StorageHealth
from wfbatch.store import BatchRow, Store

GLOBAL_SCOPE = "global"
PROVIDER_SCOPE = "provider:"


class Holds:
    def __init__(self, store: Store, pool: ProviderPool, budget: Budget, storage: StorageHealth) -> None:
        self._store = store
        self._pool = pool
        self._budget = budget
        self.storage = storage
        self._user_global: str | None = None

    async def load(self) -> None:
        """The user's pauses, as persisted."""
        pauses = await self._store.pauses()
        self._user_global = pauses.get(GLOBAL_SCOPE)
        for scope, reason in pauses.items():
            if scope.startswith(PROVIDER_SCOPE):
                self._pool.limiter(scope.removeprefix(PROVIDER_SCOPE)).pause(reason, {"by": "user"})

    # -- what holds what ----------------------------------------------------------------------

    def everything(self) -> str | None:
        """Why nothing at all runs now (a full disk, or a pause by the user), or None."""
        return self.storage.problem or self._user_global

    def provider(self, name: str) -> str | None:
        """Why nothing new starts on this provider (a pause, its daily execution or credit cap)."""
        return self._pool.limiter(name).hold() or self._budget.provider_block(name)

    def batch(self, batch: BatchRow) -> str | None:
        """Why nothing new of this batch starts (paused by the user, or its budget), or None."""
        if batch.paused:
            return "paused by the user"
        return self._budget.paused_batches.get(batch.id)

    def held_for_notice(self, batch: BatchRow, providers: Iterable[str]) -> str | None:
        """Why this batch's queued work cannot start, for telling someone: a full disk, its budget,
        or its provider's account (a bad key, no credit, unreachable) or caps. The user's own
        pauses are left out: whoever paused knows."""
        if self.storage.problem is not None:
            return self.storage.problem
        if batch.paused or self._user_global is not None:
            return None
        budget = self._budget.paused_batches.get(batch.id)
        if budget is not None:
            return budget
        for name in sorted(providers):
            limiter = self._pool.limiter(name)
            if limiter.paused and limiter.pause_details.get("by") == "user":
                continue
            why = self.provider(name)
            if why:
                return f"{name}: {why.removeprefix(f'{name}: ')}"
        return None

    def budget_held_batches(self) -> list[str]:
        """Batches whose next new execution would cross their budget."""
        return list(self._budget.paused_batches)

    def reasons(self, providers: Iterable[str], paused_batch_ids: Iterable[str]) -> list[str]:
        """Every hold on this work, said plainly: the idle check's (and `run`'s exit 3) answer."""
        reasons = []
        for name in sorted(providers):
            why = self.provider(name)
            if why:  # provider errors often start with the provider's name already
                reasons.append(f"{name}: {why.removeprefix(f'{name}: ')}")
        paused = sorted(paused_batch_ids)
        if paused:
            reasons.append("paused batches: " + ", ".join(paused))
        reasons += [
            f"batch {batch_id}: {why}" for batch_id, why in sorted(self._budget.paused_batches.items())
        ]
        return reasons

    # -- the user's holds ---------------------------------------------------------------------

    async def pause_everything(self, reason: str) -> None:
        await self._store.set_pause(GLOBAL_SCOPE, reason)
        self._user_global = reason

    async def resume_everything(self) -> None:
        await self._store.clear_pause(GLOBAL_SCOPE)
        self._user_global = None

    async def pause_provider(self, name: str, reason: str) -> None:
        await self._store.set_pause(PROVIDER_SCOPE + name, reason)
        self._pool.limiter(name).pause(reason, {"by": "user"})

    async def resume_provider(self, name: str) -> str | None:
        """Lift every pause of the provider (an out-of-credits one too: the next start finds out
        whether it was topped up); returns what it was paused for."""
        await self._store.clear_pause(PROVIDER_SCOPE + name)
        limiter = self._pool.limiter(name)
        was = limiter.paused
        limiter.resume()
        return was

    async def set_batch_paused(self, batch_id: str, paused: bool) -> str | None:
        """Pause or resume a batch; resuming also lets a budget-held batch re-check its cap.
        Returns the budget hold it had, if any."""
        await self._store.set_batch_paused(batch_id, paused)
        budget_hold = self._budget.paused_batches.get(batch_id)
        if not paused:
            self._budget.set_budget(batch_id)
        return budget_hold
