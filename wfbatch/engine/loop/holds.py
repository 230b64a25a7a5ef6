"""Why a job is not running: the one owner of every hold on everything, a provider or a batch.

Holds come from the user (pause everything, a provider or a batch: persisted, so they outlive a
restart), from the account (a bad key, no credit, an unreachable endpoint: the provider's limiter
pause), from money (a batch budget or a daily credit cap reached), from the clock (outside the
provider's [schedule] windows) and from the machine (a full disk). The dispatch loop, the idle
check, `status`, the views and the TUI all ask here; commands change holds only through here.
"""

from __future__ import annotations

from collections.abc import Iterable

from wfbatch.engine.loop.budget import Budget
from wfbatch.engine.loop.pool import ProviderPool
from wfbatch.engine.loop.storage import StorageHealth
from wfbatch.engine.loop.windows import Windows
from wfbatch.protocol import Hold
from wfbatch.store import BatchRow, StoreApi

GLOBAL_SCOPE = "global"
PROVIDER_SCOPE = "provider:"

RELOAD = "`kill -HUP <daemon pid>` (or `systemctl --user reload wfbatch`)"


def _provider_lift(name: str, kind: str) -> str:
    resume = f"`wfbatch resume --provider {name}`"
    return {
        "pause": resume,
        "credits": f"top up the account, then {resume}",
        "authentication": f"fix {name}'s API key in wfbatch.toml, then restart the daemon",
        "config": f"fix [{name}] in wfbatch.toml, then restart the daemon",
        "unreachable": f"tried again by itself after a back-off; {resume} tries at once",
        "daily_cap": f"lifts at midnight, or raise daily_executions under [{name}] and reload: {RELOAD}",
        "daily_credit_cap": (
            f"lifts at midnight, or raise daily_credit_cap under [{name}] and reload: {RELOAD}"
        ),
        "window": f"lifts by itself when a window opens, or change [schedule.{name}] and reload: {RELOAD}",
    }.get(kind, resume)


class Holds:
    def __init__(
        self, store: StoreApi, pool: ProviderPool, budget: Budget, storage: StorageHealth,
        windows: Windows | None = None,
    ) -> None:
        self._store = store
        self._pool = pool
        self._budget = budget
        self.storage = storage
        self.windows = windows
        self._user_global: str | None = None

    async def load(self) -> None:
        """The user's pauses, as persisted."""
        pauses = await self._store.pauses.by_scope()
        self._user_global = pauses.get(GLOBAL_SCOPE)
        for scope, reason in pauses.items():
            if scope.startswith(PROVIDER_SCOPE):
                self._pool.limiter(scope.removeprefix(PROVIDER_SCOPE)).pause(reason, {"by": "user"})

    # -- what holds what ----------------------------------------------------------------------

    def everything(self) -> str | None:
        """Why nothing at all runs now (a full disk, or a pause by the user), or None."""
        return self.storage.problem or self._user_global

    def provider(self, name: str) -> str | None:
        """Why nothing new starts on this provider (a pause, its daily execution or credit cap,
        outside its [schedule] windows)."""
        return self._pool.limiter(name).hold() or self._budget.provider_block(name) or self.window(name)

    def window(self, name: str) -> str | None:
        """Why the provider waits for its [schedule] window (a hold that lifts by itself), or None."""
        return self.windows.why(name) if self.windows is not None else None

    def batch(self, batch: BatchRow) -> str | None:
        """Why nothing new of this batch starts (paused by the user, or its budget), or None."""
        if batch.paused:
            return "paused by the user"
        return self._budget.paused_batches.get(batch.id)

    def provider_hold(self, name: str) -> Hold | None:
        """`provider(name)` with its kind and what lifts it."""
        limiter = self._pool.limiter(name)
        if limiter.paused is not None:
            details = limiter.pause_details
            kind = "pause" if details.get("by") == "user" else str(details.get("kind") or "pause")
            reason = limiter.paused
        elif (cap := limiter.hold()) is not None:
            kind, reason = "daily_cap", cap
        elif (block := self._budget.provider_block(name)) is not None:
            kind, reason = "daily_credit_cap", block
        elif (window := self.window(name)) is not None:
            kind, reason = "window", window
        else:
            return None
        return Hold(
            scope="provider", target=name, kind=kind, reason=reason.removeprefix(f"{name}: "),
            lift=_provider_lift(name, kind),
        )

    def batch_hold(self, batch: BatchRow) -> Hold | None:
        """`batch(batch)` with its kind and what lifts it."""
        if batch.paused:
            return Hold(
                scope="batch", target=batch.id, kind="pause", reason="paused by the user",
                lift=f"`wfbatch resume --batch {batch.id}`",
            )
        budget = self._budget.paused_batches.get(batch.id)
        if budget is None:
            return None
        return Hold(
            scope="batch", target=batch.id, kind="budget", reason=budget,
            lift=f"`wfbatch budget {batch.id} <credits>` (a higher budget, or `none`)",
        )

    def everything_hold(self) -> Hold | None:
        """`everything()` with its kind and what lifts it."""
        if self.storage.problem:
            return Hold(
                scope="everything", kind="disk", reason=self.storage.problem,
                lift="free space under HOME: work resumes by itself",
            )
        if self._user_global:
            return Hold(scope="everything", kind="pause", reason=self._user_global, lift="`wfbatch resume`")
        return None

    def all(self, providers: Iterable[str], batches: Iterable[BatchRow]) -> list[Hold]:
        """Every hold on these providers and batches (and on everything), most sweeping first."""
        found = [self.everything_hold()]
        found += [self.provider_hold(name) for name in sorted(providers)]
        found += [self.batch_hold(batch) for batch in batches]
        return [hold for hold in found if hold is not None]

    def held_for_notice(self, batch: BatchRow, providers: Iterable[str]) -> str | None:
        """Why this batch's queued work cannot start, for telling someone: a full disk, its budget,
        or its provider's account (a bad key, no credit, unreachable) or caps. The user's own
        pauses and [schedule] windows are left out: whoever set them knows."""
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
            # A [schedule] window is planned, not an incident: like the user's pauses, not told.
            why = limiter.hold() or self._budget.provider_block(name)
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
        await self._store.pauses.set_pause(GLOBAL_SCOPE, reason)
        self._user_global = reason

    async def resume_everything(self) -> None:
        await self._store.pauses.clear_pause(GLOBAL_SCOPE)
        self._user_global = None

    async def pause_provider(self, name: str, reason: str) -> None:
        await self._store.pauses.set_pause(PROVIDER_SCOPE + name, reason)
        self._pool.limiter(name).pause(reason, {"by": "user"})

    async def resume_provider(self, name: str) -> str | None:
        """Lift every pause of the provider (an out-of-credits one too: the next start finds out
        whether it was topped up); returns what it was paused for."""
        await self._store.pauses.clear_pause(PROVIDER_SCOPE + name)
        limiter = self._pool.limiter(name)
        was = limiter.paused
        limiter.resume()
        return was

    async def set_batch_paused(self, batch_id: str, paused: bool) -> str | None:
        """Pause or resume a batch; resuming also lets a budget-held batch re-check its cap.
        Returns the budget hold it had, if any."""
        await self._store.batches.set_batch_paused(batch_id, paused)
        budget_hold = self._budget.paused_batches.get(batch_id)
        if not paused:
            self._budget.set_budget(batch_id)
        return budget_hold
