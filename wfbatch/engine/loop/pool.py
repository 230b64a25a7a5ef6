"""The providers an engine talks to: each built on first use behind its own limiter, paused for
account trouble (a bad key, no credit, an unreachable endpoint), and asked for its balance."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from wfbatch.engine.clock import Clock
from wfbatch.engine.events import EventSink
from wfbatch.engine.loop.limiter import ProviderLimiter, start_of_today
from wfbatch.engine.loop.uploads import StoreUploads
from wfbatch.protocol import ProviderEvent
from wfbatch.providers.base import Provider, RequestKind, ServerState
from wfbatch.providers.config import Account
from wfbatch.providers.errors import AuthenticationFailed, OutOfCredits, ProviderError, Unreachable
from wfbatch.providers.registry import (
    KNOWN_PROVIDERS,
    build_provider,
    configuration_problems,
    provider_label,
    traits,
)
from wfbatch.settings import Settings
from wfbatch.store import StoreApi, ledger_day

log = logging.getLogger("wfbatch.engine")

UNREACHABLE_BACKOFF_MIN = 5.0
UNREACHABLE_BACKOFF_MAX = 300.0
BALANCE_REFRESH = 600.0
BALANCE_REFRESH_PAUSED = 15.0
# While a provider charges for work, its balance is read this often (at most half a request a
# minute), so the balance shown is never ten minutes behind what was spent.
BALANCE_REFRESH_AFTER_SPEND = 120.0
BALANCE_AT_START_WITHIN = 5.0


SUMMARIZED = "wfbatch_summarized"
"""A log record's attribute: what it says reaches the user anyway (`run`'s summary, `status`), so a
one-shot `run` without -v leaves it out of stderr instead of saying it twice."""

class _Gate:
    """The limiter as a provider sees it: every request waits here for its turn."""

    def __init__(self, limiter: ProviderLimiter, on_start_429: Callable[[], None] | None = None) -> None:
        self._limiter = limiter
        self._on_start_429 = on_start_429

    async def acquire(self, kind: RequestKind, priority: float = 0.0) -> None:
        await self._limiter.acquire(kind, priority)

    def observe(self, kind: RequestKind, status: int, headers: Mapping[str, str]) -> None:
        if kind is RequestKind.START and status == 429 and self._on_start_429 is not None:
            self._on_start_429()
        self._limiter.observe(kind, status, headers)


class ProviderPool:
    def __init__(
        self, store: StoreApi, settings: Settings, clock: Clock, events: EventSink, wake: Callable[[], None]
    ) -> None:
        self._store = store
        self.settings = settings
        self._clock = clock
        self._emit = events
        self._wake = wake
        self.limiters: dict[str, ProviderLimiter] = {}
        """One per provider: its pauses (by the user, for its configuration, or every account held)
        and, with one account, its limits too."""
        self.pool_limiters: dict[tuple[str, str], ProviderLimiter] = {}
        """With several accounts: one per (provider, quota pool), the limits its accounts share."""
        self.account_holds: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        """With several accounts: why an account starts nothing (a bad key, no credit), its details."""
        self._providers: dict[tuple[str, str], Provider] = {}
        self.balances: dict[str, float] = {}
        """Credit balances the providers reported (refreshed by the daemon's loop)."""
        self.balance_read_at: dict[str, float] = {}
        """When each balance was read (wall clock): a balance is shown with its age."""
        self.account_balances: dict[tuple[str, str], float] = {}
        """With several accounts: each key's balance as its provider last reported it."""
        self._spent_since_read: set[str] = set()
        self.starts_per_key: set[tuple[str, str]] = set()
        """(provider, account) of keys with several workflows whose server was found to limit starts
        per key, not per workflow: their workflows share one start window."""
        self._unreachable_backoff: dict[str, float] = {}
        self._balance_looked: dict[str, float] = {}

    def label(self, name: str) -> str:
        return provider_label(name, self.settings)

    def limiter(self, name: str) -> ProviderLimiter:
        limiter = self.limiters.get(name)
        if limiter is None:
            limiter = ProviderLimiter(
                name,
                self.settings.provider_limits(name),
                self._clock,
                starts_count_as_requests=traits(name).starts_count_as_requests,
                dialect=traits(name).rate_limit_dialect,
            )
            self.limiters[name] = limiter
        return limiter

    def accounts(self, name: str) -> list[Account]:
        """The provider's accounts, as configured now (one, `default`, for a single key)."""
        return self.settings.provider_limits(name).account_list()

    def account(self, name: str, account: str | None) -> Account:
        """The named account (a job's own), else the first: a job started before accounts existed,
        or whose account left the configuration, goes to the first."""
        accounts = self.accounts(name)
        return next((found for found in accounts if found.name == account), accounts[0])

    def account_limiter(self, name: str, account: str | None) -> ProviderLimiter:
        """The limiter of the account's quota pool: the provider's own when it has one account."""
        accounts = self.accounts(name)
        if len(accounts) == 1:
            return self.limiter(name)
        chosen = self.account(name, account)
        limiter = self.pool_limiters.get((name, chosen.pool))
        if limiter is None:
            limiter = ProviderLimiter(
                f"{name} pool {chosen.pool}",
                chosen.section,
                self._clock,
                starts_count_as_requests=traits(name).starts_count_as_requests,
                dialect=traits(name).rate_limit_dialect,
            )
            self.pool_limiters[(name, chosen.pool)] = limiter
            self._share_key_windows(name, chosen, limiter)
        return limiter

    def _siblings(self, name: str, account: Account) -> list[ProviderLimiter]:
        """The limiters already made for the other workflows of this account's key."""
        if account.owner is None:
            return []
        return [
            found
            for other in self.accounts(name)
            if other.owner == account.owner and other.name != account.name
            and (found := self.pool_limiters.get((name, other.pool))) is not None
        ]

    def _share_key_windows(self, name: str, account: Account, limiter: ProviderLimiter) -> None:
        """A workflow of a key with several: the key's request window is one for all of them (and
        its start window too, once the server showed it counts starts per key)."""
        siblings = self._siblings(name, account)
        if siblings:
            limiter.requests = siblings[0].requests
            if (name, account.key_account) in self.starts_per_key:
                limiter.executions = siblings[0].executions

    def key_told_to_wait(self, name: str, account: str | None, wait: float, message: str) -> None:
        """A 429 on one workflow of a key: the key was told to wait, so each of its workflows
        waits (a request of theirs inside the Retry-After would be an early retry)."""
        for other in self._siblings(name, self.account(name, account)):
            other.wait_out(wait, message)

    def start_refused(self, name: str, account: str) -> None:
        """A start of a per-workflow account got a 429 that its workflow's own window allowed: the
        server limits starts per key, not per workflow. From now on the key's workflows share one
        start window (the recent starts of all of them in it); said once in the log."""
        chosen = self.account(name, account)
        if chosen.owner is None or (name, chosen.owner) in self.starts_per_key:
            return
        self.starts_per_key.add((name, chosen.owner))
        mine = self.account_limiter(name, chosen.name)
        others = self._siblings(name, chosen)
        merged = sorted(t for lim in (mine, *others) for t in lim.executions.times())
        mine.executions.reset_to(merged)
        for other in others:
            other.executions = mine.executions
        count = len(others) + 1
        log.warning(
            "%s: account %s: the server refused a start its workflow's own window allowed, so it"
            " limits starts per key, not per workflow: its %d workflows now share one window of %s starts",
            name, chosen.owner, count, mine.executions.limit if mine.executions.limit is not None else "?",
        )

    def account_hold(self, name: str, account: str) -> str | None:
        """Why this account starts nothing now (a bad key, no credit, its pool's daily cap)."""
        held = self.account_holds.get((name, account))
        capped = held is not None and held[1].get("kind") == "daily_credit_cap"
        if held is not None and capped and held[1].get("day") != ledger_day(self._clock.wall()):
            del self.account_holds[(name, account)]  # a new day: its cap starts afresh
            self.hold_if_every_account_is()
            held = None
        if held is not None:
            return held[0]
        return self.account_limiter(name, account).hold() if len(self.accounts(name)) > 1 else None

    async def get(self, name: str, account: str | None = None) -> Provider | None:
        """The account's client (built on first use; the first account's when none is named), or
        None while the configuration cannot work."""
        chosen = self.account(name, account)
        provider = self._providers.get((name, chosen.name))
        if provider is not None:
            return provider
        limiter = self.account_limiter(name, chosen.name)
        several = len(self.accounts(name)) > 1
        pool_members = [a.name for a in self.accounts(name) if a.pool == chosen.pool] if several else None
        # Read before anything is built: no await between the check below and storing the provider,
        # so two jobs resumed at once cannot each build one (and leak the other's connections).
        since = start_of_today(self._clock.wall())
        starts_today = await self._store.jobs.starts_since(name, since, pool_members)
        if (name, chosen.name) in self._providers:
            return self._providers[(name, chosen.name)]
        limiter.daily_starts = starts_today
        try:
            refused = (lambda: self.start_refused(name, chosen.name)) if chosen.owner is not None else None
            provider = build_provider(name, self.settings, _Gate(limiter, refused), chosen.section)
        except ValueError as error:
            self.pause(name, f"configuration error: {error}", {"kind": "config"})
            return None
        keep_uploads_in = getattr(provider, "keep_uploads_in", None)
        if keep_uploads_in is not None:  # a provider with its own file storage remembers uploads here
            keep_uploads_in(StoreUploads(self._store, name, chosen.name))
        self._providers[(name, chosen.name)] = provider
        return provider

    def servers(self, name: str) -> list[ServerState]:
        """The provider's servers where it has several (none until it is first built)."""
        provider = self._providers.get((name, self.account(name, None).name))
        return provider.servers() if provider is not None else []

    def pause(self, name: str, reason: str, details: dict[str, Any]) -> None:
        self.limiter(name).pause(reason, details)
        self._emit(ProviderEvent(event="paused", provider=name, reason=reason, details=details))

    def pause_for_account(
        self,
        name: str,
        error: AuthenticationFailed | Unreachable | OutOfCredits,
        account: str | None = None,
    ) -> str:
        """A bad key, no credit or an unreachable endpoint holds the whole account, never one job
        at a time: with one account, the provider. Returns the reason shown to people."""
        if isinstance(error, OutOfCredits):
            reason = credits_reason(name, error)
            details: dict[str, Any] = {
                "kind": "credits", "required": error.required, "available": error.available,
                "breakdown": error.breakdown,
            }
        elif isinstance(error, AuthenticationFailed):
            # Until SIGHUP or a restart: a key does not start working by itself.
            reason, details = error.message, {"kind": "authentication"}
        else:
            backoff = self._unreachable_backoff.get(self._backoff_key(name, account), UNREACHABLE_BACKOFF_MIN)
            reason = error.message
            details = {"kind": "unreachable", "since": self._clock.monotonic(), "backoff": backoff}
        if len(self.accounts(name)) == 1:
            if not isinstance(error, OutOfCredits):
                # The message names the provider already; `run` says it in its summary (SUMMARIZED).
                log.warning("paused: %s", error.message, extra={SUMMARIZED: True})
            self.pause(name, reason, details)
            return reason
        chosen = self.account(name, account).name
        log.warning("%s: account %s held: %s", name, chosen, reason)
        # A key's trouble is every one of its workflows' (they share the key and its credit).
        for sharing in self.settings.provider_limits(name).key_accounts(chosen):
            self.account_holds[(name, sharing)] = (reason, details)
        shown = f"account {chosen}: {reason}"
        self._emit(ProviderEvent(event="paused", provider=name, reason=shown, details=details))
        self.hold_if_every_account_is()
        return f"account {chosen}: {reason}"

    def hold_account_for_today(self, name: str, account: str | None, reason: str) -> None:
        """The account's own daily credit cap is reached: it starts nothing more today; the
        provider's other accounts go on (the provider is held once every one of them is)."""
        chosen = self.account(name, account).name
        details = {"kind": "daily_credit_cap", "day": ledger_day(self._clock.wall())}
        if (name, chosen) in self.account_holds:
            return
        log.warning("%s: account %s held: %s", name, chosen, reason)
        for sharing in self.settings.provider_limits(name).key_accounts(chosen):
            self.account_holds[(name, sharing)] = (reason, details)
        shown = f"account {chosen}: {reason}"
        self._emit(ProviderEvent(event="paused", provider=name, reason=shown, details=details))
        self.hold_if_every_account_is()

    def hold_if_every_account_is(self) -> None:
        """A provider with several accounts is held only when every one of them is (then it says
        which and why); it is let go as soon as one of them can start again."""
        for name in {provider for provider, _ in self.account_holds} | set(self.limiters):
            accounts = self.accounts(name)
            if len(accounts) == 1:
                continue
            limiter = self.limiter(name)
            held = {a.name: self.account_hold(name, a.name) for a in accounts}
            if all(held.values()):
                if limiter.paused is None or limiter.pause_details.get("kind") == "accounts":
                    reason = "every account held: " + "; ".join(f"{a}: {why}" for a, why in held.items())
                    limiter.pause(reason, {"kind": "accounts"})
            elif limiter.pause_details.get("kind") == "accounts":
                limiter.resume()
                self._emit(ProviderEvent(event="resumed", provider=name))
                self._wake()

    def _backoff_key(self, name: str, account: str | None) -> str:
        return name if len(self.accounts(name)) == 1 else f"{name}/{self.account(name, account).name}"

    def probe_unreachable(self) -> None:
        """An unreachable provider is tried again after a backoff (5 s, doubling, at most 5 min): the
        pause lifts and the next start is the probe; if it fails the same way the pause returns."""
        now = self._clock.monotonic()
        for name, limiter in self.limiters.items():
            details = limiter.pause_details
            if details.get("kind") != "unreachable":
                continue
            backoff = float(details.get("backoff", UNREACHABLE_BACKOFF_MIN))
            if now - float(details.get("since", now)) >= backoff:
                log.info("%s: trying again after %.0f s (%s)", name, backoff, limiter.paused)
                limiter.resume()
                self._unreachable_backoff[name] = min(UNREACHABLE_BACKOFF_MAX, backoff * 2)
                self._emit(ProviderEvent(event="resumed", provider=name))
                self._wake()
        for (name, account), (reason, details) in list(self.account_holds.items()):
            if details.get("kind") != "unreachable":
                continue
            backoff = float(details.get("backoff", UNREACHABLE_BACKOFF_MIN))
            if now - float(details.get("since", now)) >= backoff:
                log.info("%s: account %s: trying again after %.0f s (%s)", name, account, backoff, reason)
                del self.account_holds[(name, account)]
                self._unreachable_backoff[f"{name}/{account}"] = min(UNREACHABLE_BACKOFF_MAX, backoff * 2)
                self.hold_if_every_account_is()
                self._wake()

    async def learn_balances(self, within: float = BALANCE_AT_START_WITHIN) -> None:
        """Before prompts are accepted: the balance of every configured provider that can tell one,
        so accepting a batch can warn about it without a request of its own (bounded: a provider
        that does not answer in time is asked again later)."""
        for name in KNOWN_PROVIDERS:
            if traits(name).reports_balance and not configuration_problems(name, self.settings):
                with contextlib.suppress(TimeoutError):  # not wait_for: see core.tasks.wait_event
                    async with asyncio.timeout(within):
                        await self.refresh_balance(name)

    async def refresh_due_balances(self) -> None:
        """Every look at a balance is a request against the provider's limits: rarely, unless an
        out-of-credits pause waits for a top-up."""
        now = self._clock.monotonic()
        for name in sorted({provider for provider, _ in self._providers} | set(self.balances)):
            if not traits(name).reports_balance:
                continue
            paused = self.limiter(name).pause_details.get("kind") == "credits"
            if paused:
                period = BALANCE_REFRESH_PAUSED
            else:
                period = BALANCE_REFRESH_AFTER_SPEND if name in self._spent_since_read else BALANCE_REFRESH
            if now >= self._balance_looked.get(name, -math.inf) + period:
                await self.refresh_balance(name)

    def spent_on(self, name: str) -> None:
        """A job of this provider ended (and may have been charged): read its balance sooner."""
        self._spent_since_read.add(name)

    async def refresh_balance(self, name: str) -> float | None:
        """Ask the provider for its balance (None if it has none to tell). An out-of-credits pause
        lifts by itself once the balance covers what the refused start required."""
        if not traits(name).reports_balance:
            return None
        self._balance_looked[name] = self._clock.monotonic()
        if len(self.accounts(name)) > 1:
            return await self._refresh_account_balances(name)
        provider = await self.get(name)
        if provider is None:
            return None
        try:
            balance = await provider.balance()
        except (AuthenticationFailed, Unreachable) as error:
            self.pause_for_account(name, error)
            return None
        except ProviderError as error:
            log.warning("%s: could not read the balance: %s", name, error)
            return None
        if balance is None:
            return None
        self.balances[name] = balance
        self.balance_read_at[name] = self._clock.wall()
        self._spent_since_read.discard(name)
        limiter = self.limiter(name)
        required = limiter.pause_details.get("required")
        if limiter.pause_details.get("kind") == "credits" and balance >= (required or 0) and balance > 0:
            log.info("%s: balance %g covers the %s credits required: resuming", name, balance, required)
            limiter.resume()
            self._emit(ProviderEvent(event="resumed", provider=name, balance=balance))
            self._wake()
        return balance

    async def _refresh_account_balances(self, name: str) -> float | None:
        """Each account's balance (a disabled account is not asked); the provider's is their sum.
        An account held for credit is let go once its own balance covers what its start required."""
        total: float | None = None
        keys_read: set[str] = set()
        for account in self.accounts(name):
            held = self.account_holds.get((name, account.name))
            if held is not None and held[1].get("kind") == "authentication":
                continue
            if account.key_account in keys_read:
                continue  # another workflow of a key already read: one balance per key
            keys_read.add(account.key_account)
            provider = await self.get(name, account.name)
            if provider is None:
                continue
            try:
                balance = await provider.balance()
            except (AuthenticationFailed, Unreachable) as error:
                self.pause_for_account(name, error, account.name)
                continue
            except ProviderError as error:
                log.warning("%s: account %s: could not read the balance: %s", name, account.name, error)
                continue
            if balance is None:
                continue
            self.account_balances[(name, account.key_account)] = balance
            total = (total or 0.0) + balance
            if held is not None and held[1].get("kind") == "credits":
                required = held[1].get("required")
                if balance >= (required or 0) and balance > 0:
                    log.info("%s: account %s: balance %g covers the start", name, account.name, balance)
                    del self.account_holds[(name, account.name)]
                    self.hold_if_every_account_is()
                    self._wake()
        if total is not None:
            self.balances[name] = total
            self.balance_read_at[name] = self._clock.wall()
            self._spent_since_read.discard(name)
        return total

    def reload(self, settings: Settings) -> dict[str, dict[str, tuple[Any, Any]]]:
        """Each limiter takes its new limits now; returns what changed (limits only, never secrets)."""
        self.settings = settings
        changes: dict[str, dict[str, tuple[Any, Any]]] = {}
        for name, limiter in self.limiters.items():
            diff = limiter.reconfigure(settings.provider_limits(name))
            if diff:
                changes[name] = diff
        # A disabled account is tried again after a reload (its key may have been fixed).
        self.account_holds = {
            key: held for key, held in self.account_holds.items() if held[1].get("kind") != "authentication"
        }
        for (name, pool), limiter in self.pool_limiters.items():
            members = [a for a in settings.provider_limits(name).account_list() if a.pool == pool]
            if members:
                limiter.reconfigure(members[0].section)
        self.hold_if_every_account_is()
        return changes

    def requests_sent(self) -> int:
        limiters = [*self.limiters.values(), *self.pool_limiters.values()]
        return sum(limiter.requests_sent for limiter in limiters)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            with contextlib.suppress(Exception):
                await provider.aclose()
        self._providers.clear()


def credits_reason(provider: str, error: OutOfCredits) -> str:
    """What the pause says, shown after the provider's name: the figures when known, else the
    provider's message without saying the name or "out of credits" twice."""
    if error.required is not None and error.available is not None:
        return f"out of credits: {error.required:g} required, {error.available:g} available"
    message = error.message.removeprefix(f"{provider}: ")
    return message if message.lower().startswith("out of credit") else f"out of credits: {message}"
