"""The balance is shown with its age and read again soon after work was charged: it used to be
read every 600 s only, so the TUI showed 1000 against 929 at the server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.conftest_sim import fast_options
from tests.engine_sim import wireflow_engine_settings
from wfbatch.engine.clock import ManualClock
from wfbatch.engine.events import discard
from wfbatch.engine.loop.pool import BALANCE_REFRESH_AFTER_SPEND, ProviderPool
from wfbatch.protocol import ProviderStatus
from wfbatch.sim import RunningSimulator
from wfbatch.store import Store
from wfbatch.tui.widgets.header import balance_text


async def test_a_spend_brings_the_next_balance_read_forward(tmp_path: Path) -> None:
    with RunningSimulator(fast_options(credits=1000)) as sim:
        settings = wireflow_engine_settings(tmp_path / "home", sim)
        store = await Store.open(tmp_path / "wfbatch.db")
        clock = ManualClock()
        pool = ProviderPool(store, settings, clock, discard, lambda: None)
        try:
            assert await pool.refresh_balance("wireflow") == 1000
            read_at = pool.balance_read_at["wireflow"]
            async with httpx.AsyncClient() as http:  # spent elsewhere: 929 left at the server
                topped = await http.post(f"{sim.root_url}/_sim/credits", json={"amount": -71})
            assert topped.json()["balance"] == 929

            clock.advance(BALANCE_REFRESH_AFTER_SPEND + 1)
            await pool.refresh_due_balances()
            assert pool.balances["wireflow"] == 1000  # nothing charged here: the slow period holds

            pool.spent_on("wireflow")
            await pool.refresh_due_balances()
            assert pool.balances["wireflow"] == 929
            assert pool.balance_read_at["wireflow"] > read_at
        finally:
            await pool.aclose()
            await store.close()


def test_the_header_shows_the_balance_with_its_age() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    fresh = ProviderStatus(name="wireflow", label="wireflow", balance=929.0, balance_at=now)
    old = fresh.model_copy(update={"balance_at": now - timedelta(minutes=9)})
    assert balance_text(fresh, now) == "929"
    assert balance_text(old, now) == "929 (9m00s ago)"
    assert balance_text(ProviderStatus(name="local", label="local"), now) == "—"
