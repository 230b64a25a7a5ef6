"""The TUI as a newcomer meets it (issue 30): keys that do nothing in a tab say why, the Review tab
counts, the file column names the file, a budget hold shows its figures and what lifts it, the
progress counts canceled jobs, and a change reloads the rows without the loading indicator.

Against a real daemon (the local provider, or Wireflow's simulator for a budget that costs)."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Tab

from tests.test_tui_support import DaemonProcess, daemon_process, wait_until
from wfbatch.client.client import DaemonClient
from wfbatch.protocol import (
    BatchSummary,
    CancelRequest,
    Hold,
    PauseRequest,
    ReviewRequest,
    Status,
    SubmitRequest,
)
from wfbatch.sim import RunningSimulator, SimOptions
from wfbatch.tui import WfbatchApp
from wfbatch.tui.screens.main import MainScreen
from wfbatch.tui.tabs import JobTab
from wfbatch.tui.widgets.batches import BatchesPanel
from wfbatch.tui.widgets.holds import HoldsLine, holds_in_view

NARROW = (80, 24)


def _jsonl(prompts: list[str]) -> str:
    return "".join(json.dumps({"prompt": p, "width": 64, "height": 64}) + "\n" for p in prompts)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    with daemon_process(tmp_path / "home") as running:
        yield running


@pytest.fixture
async def api(daemon: DaemonProcess) -> AsyncIterator[DaemonClient]:
    async with DaemonClient(daemon.socket_path) as client:
        yield client


class _PatientToasts(WfbatchApp):
    """Toasts live 5 s; on a loaded machine the test may look later than that and find none. They
    stay as long as the test is willing to wait (Textual's public class setting)."""

    NOTIFICATION_TIMEOUT = 600
    CSS_PATH = str(Path(inspect.getfile(WfbatchApp)).with_name("styles.tcss"))  # not beside this test


def _app(api: DaemonClient) -> WfbatchApp:
    return _PatientToasts(DaemonClient(api.socket_path), retry_interval=0.2, status_interval=0.2,
                          graphics=False, close_client=True)


async def _attached(pilot: Pilot[Any]) -> MainScreen:
    app = pilot.app
    assert isinstance(app, WfbatchApp)
    await wait_until(lambda: app.current_mode == "main" and app.main_screen.is_mounted
                     and app.main_screen.status is not None and app.main_screen.jobs.loaded)
    return app.main_screen


async def _done(api: DaemonClient, count: int) -> None:
    async def finished() -> bool:
        return (await api.status()).jobs["done"] == count

    await wait_until(finished, within=20)


def _toasts(app: WfbatchApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_a_key_that_does_nothing_in_this_tab_says_where_it_works(api: DaemonClient) -> None:
    app = _app(api)
    async with app.run_test(size=NARROW) as pilot:
        screen = await _attached(pilot)
        assert screen.tab is JobTab.QUEUED
        await pilot.press("a")
        await wait_until(lambda: any("Review tab" in m for m in _toasts(app)))
        await pilot.press("e")
        await wait_until(lambda: any("Failed tab" in m for m in _toasts(app)))
        await pilot.press("4", "c")
        await wait_until(lambda: any("cancel works on the Queued" in m for m in _toasts(app)))
        # Where the key works it acts, and no such word comes.
        before = len(_toasts(app))
        await pilot.press("1", "c")
        await wait_until(lambda: any("no job selected" in m for m in _toasts(app)))
        assert not any("works on" in m for m in _toasts(app)[before:])


async def test_the_review_tab_counts_and_the_file_column_names_the_file(api: DaemonClient) -> None:
    await api.submit(SubmitRequest(name="r.jsonl", content=_jsonl(["a kettle", "a lamp", "a chair"])))
    await _done(api, 3)
    app = _app(api)
    async with app.run_test(size=NARROW) as pilot:
        screen = await _attached(pilot)
        review = screen.query_one("#review", Tab)
        await wait_until(lambda: str(review.label) == "5 Review 3")
        await pilot.press("5")
        await wait_until(lambda: screen.tab is JobTab.REVIEW and screen.jobs.row_count == 3
                         and not screen.jobs.fetching)
        for job in screen.jobs.jobs.values():
            assert job.file is not None and job.file.startswith("pending-review/")
            cell = str(screen.jobs.get_cell(str(job.id), "file"))
            assert cell == PurePosixPath(job.file).name
        first = next(iter(screen.jobs.jobs))
        await api.review(ReviewRequest(job_ids=[first], decision="approve"))
        await wait_until(lambda: str(review.label) == "5 Review 2")


async def test_progress_counts_canceled_jobs(api: DaemonClient) -> None:
    await api.pause(PauseRequest(scope="global", reason="test"))
    submitted = await api.submit(SubmitRequest(name="c.jsonl", content=_jsonl(["x", "y", "z"])))
    assert submitted.batch_id
    page = await api.jobs(batch_id=submitted.batch_id)
    await api.cancel(CancelRequest(job_ids=[j.id for j in page.items]))
    app = _app(api)
    async with app.run_test(size=NARROW) as pilot:
        screen = await _attached(pilot)
        batches = screen.batches
        await wait_until(lambda: submitted.batch_id in batches.rows)
        cells = [str(c) for c in batches.get_row(submitted.batch_id)]
        assert "0/0+3/3" in cells and "3 canceled" in cells
        bar = next(c for c in cells if "▓" in c or "░" in c)
        assert "░" not in bar  # nothing left to do: the bar is full


async def test_a_change_reloads_the_rows_without_the_loading_indicator(api: DaemonClient) -> None:
    await api.pause(PauseRequest(scope="global", reason="test"))
    submitted = await api.submit(SubmitRequest(name="l.jsonl", content=_jsonl(["p", "q", "r", "s"])))
    assert submitted.batch_id
    app = _app(api)
    async with app.run_test(size=NARROW) as pilot:
        screen = await _attached(pilot)
        table = screen.jobs
        await wait_until(lambda: table.row_count == 4 and not table.fetching)
        shown: list[bool] = []

        def seen(loading: bool) -> None:
            shown.append(loading)

        screen.watch(table, "loading", seen, init=False)
        job_id = next(iter(table.jobs))
        await api.cancel(CancelRequest(job_ids=[job_id]))  # an event: the Queued rows are re-read
        await wait_until(lambda: table.row_count == 3 and not table.fetching)
        assert True not in shown
        await pilot.press("3")  # a new query: nothing of it to show yet, the indicator may show
        await wait_until(lambda: table.row_count == 1 and not table.fetching)
        assert True in shown


def test_a_batch_hold_with_no_work_left_is_not_shown() -> None:
    def batch(batch_id: str, **counts: int) -> BatchSummary:
        return BatchSummary(id=batch_id, name=batch_id, source_name="x.txt", provider="wireflow",
                            created_at=0.0, output_dir="/o", paused=False, counts=counts,
                            total=sum(counts.values()))

    holds = [Hold(scope="batch", target=b, kind="budget", reason="budget reached", lift="`wfbatch budget`")
             for b in ("open", "over")]
    status = Status(version="0", jobs={}, paused=False, providers={}, holds=holds,
                    batches=[batch("open", queued=2, done=1), batch("over", done=2, canceled=1)])
    assert [h.target for h in holds_in_view(status, None)] == ["open"]
    assert [h.target for h in holds_in_view(status, "open")] == ["open"]
    assert holds_in_view(status, "over") == []


@pytest.fixture
def wireflow_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon whose default provider is the Wireflow simulator, one credit an image."""
    with RunningSimulator(SimOptions(provider="wireflow", latency=(0.05, 0.1), cost=1.0)) as sim:
        env = {"WFBATCH_PROVIDER": "wireflow", "WFBATCH_WIREFLOW__BASE_URL": sim.base_url,
               "WFBATCH_WIREFLOW__API_KEY": "sk-test", "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo"}
        with daemon_process(tmp_path / "home", env) as running:
            yield running


async def test_a_budget_hold_shows_its_figures_and_the_command_that_lifts_it(
    wireflow_daemon: DaemonProcess,
) -> None:
    async with DaemonClient(wireflow_daemon.socket_path) as api:
        submitted = await api.submit(SubmitRequest(name="b.jsonl", content=_jsonl(["a", "b", "c"]), budget=1))
        assert submitted.batch_id

        async def held() -> Hold | None:
            status = await api.status()
            return next((h for h in status.holds if h.kind == "budget"), None)

        hold = await wait_until(held, within=20)
        app = _app(api)
        async with app.run_test(size=(140, 45)) as pilot:
            screen = await _attached(pilot)
            line = screen.query_one(HoldsLine)
            await wait_until(lambda: line.display and "to lift" in str(line.render()))
            text = str(line.render())
            assert hold.reason in text and f"wfbatch budget {submitted.batch_id}" in text
            assert "1 of 1 credits" in text  # the figures, not just "held: budget"


async def test_brackets_in_a_prompt_or_a_batch_name_show_as_written(api: DaemonClient) -> None:
    # Seen in a rehearsal: a batch named "shoes [v2]" showed as "shoes", and "[red]" in a prompt
    # was taken for Rich markup: a DataTable reads a str cell as markup.
    spec = {"name": "shoes [v2]", "prompts": ["a cat [in the style of Monet]"]}
    spec["defaults"] = {"width": 64, "height": 64}
    accepted = await api.submit(SubmitRequest(name="br.json", content=json.dumps(spec)))
    await _done(api, 1)
    app = _app(api)
    async with app.run_test(size=NARROW) as pilot:
        screen = await _attached(pilot)
        await pilot.press("4")
        await wait_until(lambda: screen.tab is JobTab.DONE and screen.jobs.row_count == 1
                         and not screen.jobs.fetching)
        prompt = screen.jobs.get_cell(str(next(iter(screen.jobs.jobs))), "prompt")
        assert isinstance(prompt, Text) and prompt.plain == "a cat [in the style of Monet]"
        assert accepted.batch_id is not None
        name = screen.query_one("#batches", BatchesPanel).get_cell(accepted.batch_id, "name")
        assert isinstance(name, Text) and name.plain == "shoes [v2]"
