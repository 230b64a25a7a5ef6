"""The web app in a real browser: Debian's chromium, driven by Playwright's Python client, against
a real daemon. Never `playwright install`: the browser is the system's (`.ci/run` installs it).
Without /usr/bin/chromium these tests are skipped locally and fail in CI (CI=true).

Set WFBATCH_WEB_SCREENSHOTS=<folder> to also write the gallery and queue at 1280x800 there (how
docs/web-gallery.png and docs/web-queue.png are made)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest_sim import fast_options
from tests.daemon_harness import jsonl
from tests.deadlines import patience
from tests.web_harness import web_daemon
from wfbatch.outputs import read_manifest
from wfbatch.sim import RunningSimulator

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
IMAGES = 12
FAIL_MARKER = "forbidden-lighthouse"
# Read at import: the suite's autouse fixture hides WFBATCH_* variables from the tests themselves.
SCREENSHOTS = os.environ.get("WFBATCH_WEB_SCREENSHOTS")

if not CHROMIUM.exists():
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(
            f"{CHROMIUM} is missing in CI: .ci/run installs Debian's chromium (apt-get install chromium)",
            pytrace=False,
        )
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); the browser tests need it",
                allow_module_level=True)

from playwright.sync_api import Page, sync_playwright  # noqa: E402 - only once chromium is known


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.set_default_timeout(patience(30.0) * 1000)
            yield context.new_page()
        finally:
            browser.close()


def _screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / name))


def _manifest_review(output: Path) -> dict[int, tuple[str, str]]:
    try:
        return {int(e.job_id): (str(e.review), e.file) for e in read_manifest(output).entries}
    except (OSError, ValueError):
        return {}


def test_gallery_shows_the_batch_and_a_and_x_move_the_files(page: Page) -> None:
    with web_daemon() as (daemon, web):
        prompts = [f"a grey heron at dawn, take {i}" for i in range(IMAGES)]
        daemon.drop("herons.jsonl", jsonl(*prompts, size=160))
        daemon.wait_for_jobs(lambda jobs: jobs.get("done", 0) == IMAGES)
        jobs = sorted(daemon.get("/v1/jobs", state="done")["items"], key=lambda job: int(job["id"]))
        output = Path(daemon.get(f"/v1/jobs/{jobs[0]['id']}")["output_dir"])
        assert len(list((output / "pending-review").iterdir())) == IMAGES

        page.goto(web.login_url)
        assert page.url == f"{web.base}/", "the login redirects, so the token leaves the address bar"
        cards = page.locator(".card")
        cards.first.wait_for()
        assert cards.count() == IMAGES
        # Every image has arrived and decodes (naturalWidth is 0 for a broken or missing one).
        page.wait_for_function(
            "n => Array.from(document.querySelectorAll('.card img'))"
            ".filter(img => img.complete && img.naturalWidth > 0).length === n",
            arg=IMAGES,
        )
        first, second = int(jobs[0]["id"]), int(jobs[1]["id"])
        assert cards.nth(0).get_attribute("data-id") == str(first)
        assert cards.nth(1).get_attribute("data-id") == str(second)

        page.keyboard.press("a")
        page.locator(f'.card[data-id="{first}"][data-review="approved"]').wait_for()
        page.keyboard.press("ArrowRight")
        page.keyboard.press("x")
        page.locator(f'.card[data-id="{second}"][data-review="rejected"]').wait_for()

        first_name, second_name = Path(jobs[0]["file"]).name, Path(jobs[1]["file"]).name
        assert (output / "approved" / first_name).is_file()
        assert (output / "rejected" / second_name).is_file()
        assert not (output / "pending-review" / first_name).exists()
        assert not (output / "pending-review" / second_name).exists()
        assert len(list((output / "pending-review").iterdir())) == IMAGES - 2
        daemon.wait_until(
            lambda: (
                (m := _manifest_review(output)).get(first) == ("approved", f"approved/{first_name}")
                and m.get(second) == ("rejected", f"rejected/{second_name}")
            ),
            what="the manifest to record the approval and the rejection",
        )
        # `u` undoes: the second image goes back to pending-review/.
        page.keyboard.press("u")
        page.locator(f'.card[data-id="{second}"][data-review="pending"]').wait_for()
        assert (output / "pending-review" / second_name).is_file()
        page.keyboard.press("x")
        page.locator(f'.card[data-id="{second}"][data-review="rejected"]').wait_for()
        _screenshot(page, "web-gallery.png")

        # Shift+arrow selects a range; `a` then approves all of it.
        third, fourth = int(jobs[2]["id"]), int(jobs[3]["id"])
        page.keyboard.press("ArrowRight")
        page.keyboard.press("Shift+ArrowRight")
        assert page.locator(".card.selected").count() == 2
        page.keyboard.press("a")
        page.locator(f'.card[data-id="{fourth}"][data-review="approved"]').wait_for()
        page.locator(f'.card[data-id="{third}"][data-review="approved"]').wait_for()
        for job in jobs[2:4]:
            assert (output / "approved" / Path(job["file"]).name).is_file()
        assert len(list((output / "pending-review").iterdir())) == IMAGES - 4

        # Full size on Enter; the page is readable at a phone's width.
        page.keyboard.press("Enter")
        page.locator("#lightbox[open]").wait_for()
        page.keyboard.press("Escape")
        page.set_viewport_size({"width": 375, "height": 800})
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the gallery scrolls sideways at 375 px ({width} px wide)"


def _sim_env(sim: RunningSimulator) -> dict[str, str]:
    return {
        "WFBATCH_PROVIDER": "wireflow",
        "WFBATCH_WIREFLOW__BASE_URL": sim.base_url,
        "WFBATCH_WIREFLOW__API_KEY": "sk-web-browser-test",
        "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo",
        "WFBATCH_WIREFLOW__PLAN": "enterprise",
        "WFBATCH_WIREFLOW__POLL_INITIAL": "0.05",
        "WFBATCH_WIREFLOW__POLL_MAX": "0.2",
    }


def _created(sim: RunningSimulator) -> int:
    stats: dict[str, Any] = sim.state.stats()
    return int(stats["executions_created"])


def test_a_failure_shown_in_the_browser_is_retried_from_it_and_reaches_the_simulator(page: Page) -> None:
    with (
        RunningSimulator(fast_options(fail_marker=FAIL_MARKER)) as sim,
        web_daemon(_sim_env(sim)) as (daemon, web),
    ):
        prompts = [f"a {FAIL_MARKER}, take {i}" for i in range(2)] + ["a quiet harbour"]
        daemon.drop("coast.jsonl", jsonl(*prompts))
        daemon.wait_for_jobs(lambda jobs: jobs.get("failed", 0) == 2 and jobs.get("done", 0) == 1)
        failed = sorted(int(job["id"]) for job in daemon.get("/v1/jobs", state="failed")["items"])
        created = _created(sim)
        assert created == 3

        page.goto(web.login_url)
        page.goto(f"{web.base}/queue")
        page.locator("#live-dot.on").wait_for()  # the events stream is open
        job = page.locator(f'.job[data-id="{failed[0]}"]')
        # The failure as the provider said it, with every attempt's request id.
        assert "content_policy_violation" in job.locator(".error").inner_text()
        job.locator("summary").click()
        attempts = job.locator("table.attempts tbody tr")
        assert attempts.count() >= 1
        request_id = daemon.get(f"/v1/jobs/{failed[0]}")["attempts_history"][-1]["request_id"]
        assert request_id and request_id in job.inner_text()
        _screenshot(page, "web-queue.png")

        # One failed job: retried at once, and the simulator receives the new execution.
        job.get_by_role("button", name="Retry").click()
        daemon.wait_until(lambda: _created(sim) == created + 1, what="the retry at the simulator")
        daemon.wait_for_jobs(lambda jobs: jobs.get("failed", 0) == 2)  # the marker fails it again

        # Several jobs ask first: the dialog, then the simulator sees both.
        # (the list refreshes over the events stream; a refresh keeps the boxes ticked)
        page.wait_for_function("n => document.querySelectorAll('.pick').length === n", arg=2)
        for job_id in failed:
            page.locator(f'.pick[value="{job_id}"]').check()
        page.get_by_role("button", name="Retry selected").click()
        dialog = page.locator("dialog#confirm[open]")
        dialog.wait_for()
        assert "2 jobs" in dialog.inner_text()
        dialog.get_by_role("button", name="Go ahead").click()
        daemon.wait_until(lambda: _created(sim) == created + 3, what="both retries at the simulator")

        page.set_viewport_size({"width": 375, "height": 800})
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the queue scrolls sideways at 375 px ({width} px wide)"

        # A browser still following the events does not hold the daemon's stop up.
        daemon.stop()
        assert daemon.returncode == 0, daemon.log()
