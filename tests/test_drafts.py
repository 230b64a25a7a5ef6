"""Draft → final: drafts at the cheap settings, finals at the premium ones for approved drafts only.

The engine runs against the Replicate simulator over loopback (its per-model prices differ: flux
schnell at 0.003, flux 1.1 pro at 0.04 per image); the review → final path also through a real
daemon and the CLI against the same simulator.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from tests.conftest_sim import TEST_KEY
from tests.daemon_harness import running_daemon
from wfbatch.core.parsing import PromptFileError, parse_prompt_bytes
from wfbatch.core.states import JobState, ReviewStatus
from wfbatch.engine.intake.control import Control
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.engine.planning.plan import make_plan
from wfbatch.home import HomeLayout
from wfbatch.outputs import read_manifest
from wfbatch.settings import Settings, load_settings
from wfbatch.sim import RunningSimulator, SimOptions
from wfbatch.store import Reuse, Store, StoreApi

CHEAP = "black-forest-labs/flux-schnell"
PREMIUM = "black-forest-labs/flux-1.1-pro"
CHEAP_PRICE, PREMIUM_PRICE = 0.003, 0.04


def pipeline_spec(count: int, subject: str = "a red shoe", **extra: Any) -> bytes:
    return json.dumps(
        {
            "name": "shoes",
            "prompts": [f"{subject}, take {i}" for i in range(count)],
            "draft": {"model": CHEAP, "width": 512, "height": 512},
            "final": {"model": PREMIUM, "width": 1024, "height": 1024},
            **extra,
        },
        indent=1,
    ).encode()


def replicate_config(home: Path, sim: RunningSimulator, **section: Any) -> Settings:
    values: dict[str, Any] = {
        "api_key": TEST_KEY,
        "base_url": sim.base_url,
        "max_in_flight": 8,
        "poll_initial": 0.02,
        "poll_max": 0.05,
        "backoff_initial": 0.02,
        "backoff_max": 0.05,
    }
    values.update(section)
    return load_settings(home, provider="replicate", replicate=values)


def replicate_sim() -> RunningSimulator:
    return RunningSimulator(
        SimOptions(provider="replicate", latency=(0.0, 0.01), seed=7, api_key=TEST_KEY)
    )


async def enqueue(store: StoreApi, layout: HomeLayout, raw: bytes) -> str:
    parsed = parse_prompt_bytes(raw, "shoes.json")
    return (await ingest(store, layout, parsed, raw, "replicate", reuse=Reuse.NEVER)).batch.id


async def spent(store: StoreApi, batch_id: str) -> float:
    return round(await store.ledger.batch_exposure(batch_id), 6)


def image_size(path: Path) -> tuple[int, int]:
    with PILImage.open(io.BytesIO(path.read_bytes())) as image:
        return image.size


# -- parsing ------------------------------------------------------------------------------------


def test_stages_set_their_fields_on_top_of_each_entry() -> None:
    raw = json.dumps(
        {
            "prompts": [{"prompt": "a cat", "seed": 5, "params": {"style": "ink"}}],
            "draft": {"model": "fast", "width": 512, "height": 512, "params": {"steps": 4}},
            "final": {"model": "pro", "quality": 90},
        }
    ).encode()
    stages = parse_prompt_bytes(raw, "x.json").stages
    assert stages is not None and stages.draft["model"] == "fast" and stages.final["quality"] == 90
    from wfbatch.core.expand import expand_batch

    [job] = expand_batch(parse_prompt_bytes(raw, "x.json"), "local")
    assert (job.spec.model, job.spec.width, job.spec.seed, job.spec.params) == (
        "fast", 512, 5, {"style": "ink", "steps": 4},
    )
    assert job.final is not None
    assert (job.final.model, job.final.width, job.final.seed, job.final.quality) == ("pro", 1024, 5, 90)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"draft": {"seed": 3}}, "draft: 'seed' cannot be set per stage"),
        ({"final": {"width": 4}}, "final: width: Input should be greater than or equal to 16"),
        ({"draft": [1]}, "draft: expected an object, got an array"),
        ({"auto_approve": "all"}, "auto_approve: there is no 'draft' or 'final' to approve"),
        ({"final": {}, "auto_approve": "some"}, "auto_approve: expected one of 'none', 'all'"),
    ],
)
def test_a_bad_stage_is_one_line_naming_it(extra: dict[str, Any], message: str) -> None:
    raw = json.dumps({"prompts": ["a cat"], **extra}, indent=1).encode()
    with pytest.raises(PromptFileError) as caught:
        parse_prompt_bytes(raw, "x.json")
    assert message in caught.value.report()
    assert "x.json:" in caught.value.report()


# -- the engine against the Replicate simulator -------------------------------------------------


async def test_approving_five_of_twenty_drafts_pays_for_five_finals_once(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    raw = pipeline_spec(20)
    with replicate_sim() as sim:
        settings = replicate_config(home, sim)
        parsed = [parse_prompt_bytes(raw, "shoes.json")]
        plan = await make_plan(any_store, settings, parsed, approve_rate=0.25)
        batch_id = await enqueue(any_store, layout, raw)
        engine = Engine(any_store, settings, layout, batch_ids=[batch_id])
        await engine.run_until_idle()
        drafts = await any_store.jobs.jobs_for_batch(batch_id)
        assert [job.state for job in drafts] == [JobState.DONE] * 20
        assert {job.stage for job in drafts} == {"draft"}
        assert all(job.file and job.file.startswith("pending-review/") for job in drafts)
        assert {(job.spec.model, job.spec.width, job.spec.height) for job in drafts} == {(CHEAP, 512, 512)}
        assert await spent(any_store, batch_id) == round(20 * CHEAP_PRICE, 6)

        chosen = [job.id for job in drafts[:5]]
        result = await Control(engine).review(chosen, ReviewStatus.APPROVED)
        assert "5 finals queued" in result.message
        await Engine(any_store, settings, layout, batch_ids=[batch_id]).run_until_idle()

        again = await Control(engine).review(chosen[:1], ReviewStatus.APPROVED)
        assert "final" not in again.message
        await Engine(any_store, settings, layout, batch_ids=[batch_id]).run_until_idle()
        created = sim.state.stats()["replicate"]["executions"]

    jobs = await any_store.jobs.jobs_for_batch(batch_id)
    finals = [job for job in jobs if job.stage == "final"]
    assert len(jobs) == 25 and len(finals) == 5 and created == 25
    by_id = {job.id: job for job in jobs}
    output = Path((await any_store.batches.get_batch(batch_id)).output_dir)  # type: ignore[union-attr]
    for final in finals:
        assert final.draft_of in chosen and final.state is JobState.DONE
        draft = by_id[final.draft_of]
        assert (final.spec.model, final.spec.seed) == (PREMIUM, draft.spec.seed)
        assert final.spec.prompt == draft.spec.prompt
        assert final.file is not None and final.file.startswith("approved/")
        assert final.file.endswith("-final.png")
        assert image_size(output / final.file) == (1024, 1024)
        assert draft.file is not None and draft.file.startswith("approved/")
        assert image_size(output / draft.file) == (512, 512)
        assert final.credits == PREMIUM_PRICE
    total = await spent(any_store, batch_id)
    assert total == round(20 * CHEAP_PRICE + 5 * PREMIUM_PRICE, 6)
    assert plan.pipeline is not None and plan.pipeline.approve_rate == 0.25
    assert plan.estimated_credits == pytest.approx(total)
    assert plan.pipeline.straight_to_finals == pytest.approx(20 * PREMIUM_PRICE)
    assert plan.pipeline.saving == pytest.approx(20 * PREMIUM_PRICE - total)

    await engine.writer.write_batch_files(batch_id)
    manifest = read_manifest(output)
    linked = {e.job_id: e for e in manifest.entries}
    for final in finals:
        entry = linked[str(final.id)]
        assert entry.stage == "final" and entry.final_mode == "regenerate"
        assert entry.draft_job_id == str(final.draft_of)
        assert linked[str(final.draft_of)].final_job_id == str(final.id)
        assert (entry.width, entry.model) == (1024, PREMIUM)


async def test_auto_approve_all_queues_every_final_and_a_rejection_costs_nothing(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    with replicate_sim() as sim:
        settings = replicate_config(home, sim)
        batch_id = await enqueue(any_store, layout, pipeline_spec(3, auto_approve="all"))
        await Engine(any_store, settings, layout, batch_ids=[batch_id]).run_until_idle()
        jobs = await any_store.jobs.jobs_for_batch(batch_id)
        assert sorted(job.stage or "" for job in jobs) == ["draft"] * 3 + ["final"] * 3
        assert all(job.state is JobState.DONE and job.review is ReviewStatus.APPROVED for job in jobs)
        assert await spent(any_store, batch_id) == round(3 * (CHEAP_PRICE + PREMIUM_PRICE), 6)

        # Another batch, reviewed by hand: a draft approved then rejected before its final ran.
        other = await enqueue(any_store, layout, pipeline_spec(2, "a boot", name="boots"))
        engine = Engine(any_store, settings, layout, batch_ids=[other])
        await engine.run_until_idle()
        first, second = await any_store.jobs.jobs_for_batch(other)
        control = Control(engine)
        await control.review([first.id], ReviewStatus.APPROVED)
        taken_back = await control.review([first.id], ReviewStatus.REJECTED)
        assert "1 final canceled before it started" in taken_back.message
        await control.review([second.id], ReviewStatus.REJECTED)
        await Engine(any_store, settings, layout, batch_ids=[other]).run_until_idle()
        final = await any_store.drafts.final_of(first.id)
        assert final is not None and final.state is JobState.CANCELED and final.attempts == 0
        assert await any_store.drafts.final_of(second.id) is None
        assert await spent(any_store, other) == round(2 * CHEAP_PRICE, 6)


async def test_a_draft_can_be_removed_once_its_final_is_written(layout: HomeLayout, home: Path) -> None:
    store = await Store.open(layout.db)
    try:
        with replicate_sim() as sim:
            settings = replicate_config(home, sim)
            settings = settings.model_copy(
                update={"drafts": settings.drafts.model_copy(update={"keep_approved_drafts": False})}
            )
            batch_id = await enqueue(store, layout, pipeline_spec(1, auto_approve="all"))
            await Engine(store, settings, layout, batch_ids=[batch_id]).run_until_idle()
        draft, final = await store.jobs.jobs_for_batch(batch_id)
        output = Path((await store.batches.get_batch(batch_id)).output_dir)  # type: ignore[union-attr]
        assert draft.file is None and final.file is not None and (output / final.file).is_file()
        assert [p.name for p in (output / "approved").iterdir()] == [Path(final.file).name]
    finally:
        await store.close()


# -- the review → final path through a real daemon ----------------------------------------------


def test_daemon_review_queues_finals_and_status_and_show_say_so() -> None:
    with replicate_sim() as sim:
        env = {
            "WFBATCH_PROVIDER": "replicate",
            "WFBATCH_REPLICATE__API_KEY": TEST_KEY,
            "WFBATCH_REPLICATE__BASE_URL": sim.base_url,
            "WFBATCH_REPLICATE__POLL_INITIAL": "0.02",
            "WFBATCH_REPLICATE__POLL_MAX": "0.05",
        }
        with running_daemon(env=env) as daemon:
            daemon.drop("pets.json", pipeline_spec(3, "a fox").decode())
            daemon.wait_until(lambda: daemon.status()["jobs"]["done"] == 3)
            ids = [str(job["id"]) for job in daemon.get("/v1/jobs")["items"]]
            approved = daemon.cli("review", ids[0], ids[1], "--approve")
            assert approved.exit_code == 0 and "2 finals queued" in approved.output, approved.output
            daemon.wait_until(lambda: daemon.status()["jobs"]["done"] == 5)
            again = daemon.cli("review", ids[0], "--approve")
            assert again.exit_code == 0 and "final" not in again.output
            status = daemon.status()
            shown = daemon.cli("show", ids[0])
            listed = daemon.cli("jobs")
            detail = daemon.get(f"/v1/jobs/{ids[0]}")
            final = daemon.get(f"/v1/jobs/{detail['final_id']}")
            items = daemon.get("/v1/jobs")["items"]
        created = sim.state.stats()["replicate"]["executions"]
    assert status["pipeline"] == {
        "drafts": 3, "drafts_done": 3, "approved": 2, "rejected": 0, "finals": 2, "finals_done": 2,
    }
    assert status["jobs"]["done"] == 5 and created == 5
    assert re.search(r"final\s+job \d+", shown.output), shown.output
    assert f"draft → {detail['final_id']}" in listed.output, listed.output
    assert detail["stage"] == "draft"
    assert (final["stage"], final["draft_of"], final["credits"]) == ("final", int(ids[0]), PREMIUM_PRICE)
    assert (final["width"], final["model"], final["seed"]) == (1024, PREMIUM, detail["seed"])
    assert sum(job["credits"] for job in items) == pytest.approx(3 * CHEAP_PRICE + 2 * PREMIUM_PRICE)


def test_the_review_tab_marks_drafts_and_finals() -> None:
    from wfbatch.protocol import JobSummary
    from wfbatch.tui.formatting import final_marker

    base = {
        "batch_id": "b1", "index": 1, "line": 1, "state": "done", "review": "pending", "prompt": "a fox",
        "provider": "replicate", "attempts": 1, "updated_at": 0.0,
    }
    assert final_marker(JobSummary(id=3, stage="draft", **base)).plain == "draft"
    assert final_marker(JobSummary(id=3, stage="draft", final_id=12, **base)).plain == "→ 12"
    assert final_marker(JobSummary(id=12, stage="final", draft_of=3, **base)).plain == "final of 3"
    assert final_marker(JobSummary(id=4, **base)).plain == ""


def test_plan_prints_the_pipeline_beside_straight_to_finals(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from wfbatch.cli.main import main as cli_main

    spec = tmp_path / "shoes.json"
    spec.write_bytes(pipeline_spec(20))
    env = {
        "WFBATCH_HOME": str(tmp_path / "home"),
        "WFBATCH_PROVIDER": "replicate",
        "WFBATCH_REPLICATE__API_KEY": TEST_KEY,
        "WFBATCH_REPLICATE__BASE_URL": "http://127.0.0.1:9",  # prices come from the table: never asked
    }
    shown = CliRunner().invoke(cli_main, ["plan", str(spec), "--approve-rate", "0.25"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "20 drafts, ~5 finals at an approval rate of 25% (--approve-rate)" in shown.output
    # In Replicate's unit, as the estimated cost above them says (they read "credits").
    assert "drafts 0.06 + finals 0.2 = 0.26 USD" in shown.output
    assert "straight to finals: 0.8 USD; saving 0.54 (68%)" in shown.output
    default = CliRunner().invoke(cli_main, ["plan", str(spec), "--json"], env=env)
    pipeline = json.loads(default.output)["pipeline"]
    assert (pipeline["approve_rate"], pipeline["pipeline_credits"]) == (0.3, 0.3)
    assert "default_approve_rate" in pipeline["approve_rate_source"]
