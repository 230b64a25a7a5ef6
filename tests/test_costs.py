"""`wfbatch costs`: the ledger's spend, grouped, equal to what the batches' manifests say."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path

from tests.conftest_sim import fast_options
from tests.test_run_cli import EXAMPLES, run_json, wfbatch
from tests.test_store import make_batch, make_jobs
from wfbatch.core.states import JobState
from wfbatch.engine.planning.costs import cost_report
from wfbatch.outputs import read_manifest
from wfbatch.settings import load_settings
from wfbatch.sim import RunningSimulator
from wfbatch.store import StoreApi

WIREFLOW_PRICE = 2.0


def _three_batches_on_two_providers(home: Path, tmp_path: Path) -> tuple[list[Path], dict[str, str]]:
    """A local batch (free), a Wireflow batch charged by the simulator, and the same Wireflow file
    again (all cache hits): three manifests, two providers."""
    prompts = tmp_path / "three.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ("a fox", "a hen", "a cow")))
    code, summary = run_json(home, EXAMPLES / "training-data.csv")
    assert code == 0, summary
    folders = [Path(f) for f in summary["output_dirs"]]
    with RunningSimulator(fast_options(cost=WIREFLOW_PRICE)) as sim:
        env = {
            "WFBATCH_WIREFLOW__BASE_URL": sim.base_url,
            "WFBATCH_WIREFLOW__API_KEY": "sk-costs-test",
            "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo",
            "WFBATCH_WIREFLOW__PLAN": "enterprise",
            "WFBATCH_WIREFLOW__POLL_INITIAL": "0.05",
            "WFBATCH_WIREFLOW__POLL_MAX": "0.2",
        }
        for _ in range(2):
            result = wfbatch(home, "run", str(prompts), "--provider", "wireflow", "--json", env=env)
            assert result.returncode == 0, result.stderr
            folders += map(Path, json.loads(result.stdout)["output_dirs"])
    return folders, env


def test_costs_csv_totals_equal_the_manifests_per_provider(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folders, env = _three_batches_on_two_providers(home, tmp_path)
    assert len(folders) == 3
    from_manifests: dict[str, float] = defaultdict(float)
    images: dict[str, int] = defaultdict(int)
    hits = 0
    for folder in folders:
        for entry in read_manifest(folder).entries:
            from_manifests[entry.provider] += entry.credits or 0.0
            images[entry.provider] += 0 if entry.cache_hit else 1
            hits += entry.cache_hit
    assert from_manifests == {"local": 0.0, "wireflow": 3 * WIREFLOW_PRICE}

    result = wfbatch(home, "costs", "--csv", env=env)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == [
        "batch", "name", "provider", "unit", "images", "cache_hits", "saved", "spent", "refunds",
        "possible_duplicates", "possible_duplicate_spend",
    ]
    spent: dict[str, float] = defaultdict(float)
    for row in rows:
        spent[row["provider"]] += float(row["spent"])  # plain numbers: no separators, no units
        assert row["unit"] == {"local": "free", "wireflow": "credits"}[row["provider"]]
    assert spent == from_manifests
    assert {r["batch"] for r in rows} == {read_manifest(f).batch_id for f in folders}
    assert sum(int(r["images"]) for r in rows) == sum(images.values())
    assert sum(int(r["cache_hits"]) for r in rows) == hits == 3
    cached = next(r for r in rows if int(r["cache_hits"]))
    # The cache hits are priced at what the same images were charged before.
    assert (cached["provider"], float(cached["saved"])) == ("wireflow", 3 * WIREFLOW_PRICE)

    by_day = list(csv.DictReader(io.StringIO(wfbatch(home, "costs", "--csv", "--by", "day").stdout)))
    today = by_day[0]["day"]
    assert all(r["day"] == today for r in by_day)  # ISO dates, local
    assert {r["provider"] for r in by_day} == {"local", "wireflow"}  # never one sum of both

    by_provider = wfbatch(home, "costs", "--csv", "--by", "provider").stdout
    header = by_provider.splitlines()[0].split(",")
    assert header.count("provider") == 1 and "name" not in header  # a spreadsheet's columns, once each
    as_json = json.loads(wfbatch(home, "costs", "--json", "--by", "provider").stdout)
    assert {t["provider"]: t["spent"] for t in as_json["totals"]} == spent
    assert as_json["possible_duplicates"] == []

    by_account = list(csv.DictReader(io.StringIO(wfbatch(home, "costs", "--csv", "--by", "account").stdout)))
    assert next(iter(by_account[0])) == "account"
    cells = {(r["account"], r["provider"]): r for r in by_account}
    # One key each: the account 'default'; the cache hits asked no account.
    assert float(cells[("default", "wireflow")]["spent"]) == 3 * WIREFLOW_PRICE
    assert int(cells[("(none)", "wireflow")]["cache_hits"]) == 3
    assert sum(float(r["spent"]) for r in by_account if r["provider"] == "wireflow") == spent["wireflow"]

    later = wfbatch(home, "costs", "--csv", "--since", "2999-01-01")
    assert later.stdout.splitlines()[1:] == []  # a window with nothing in it: the header alone


def test_costs_on_a_home_never_used_says_so_without_making_one(tmp_path: Path) -> None:
    home = tmp_path / "never"
    result = wfbatch(home, "costs")
    assert result.returncode == 0, result.stderr
    assert "nothing made or spent" in result.stdout
    assert not home.exists()
    bad = wfbatch(home, "costs", "--since", "yesterday")
    assert bad.returncode == 2 and "not a date" in bad.stderr


async def test_a_possible_duplicate_charge_is_listed_apart_and_counted_in_its_group(
    any_store: StoreApi, tmp_path: Path
) -> None:
    await any_store.batches.insert_batch(make_batch("b1"), make_jobs(3))
    jobs = await any_store.jobs.jobs_for_batch("b1")
    for job in jobs:
        await any_store.ledger.reserve(job.id, "b1", "local", 1.5)
        await any_store.ledger.settle_finished(job.id, None, None)  # charged the estimate
        steps = [(JobState.QUEUED, JobState.SUBMITTING), (JobState.SUBMITTING, JobState.RUNNING),
                 (JobState.RUNNING, JobState.DONE)]
        for before, after in steps:
            assert await any_store.jobs.transition(job.id, [before], after)
    await any_store.jobs.update_job(jobs[0].id, possible_duplicate_charge="start re-sent after a reset")

    report = await cost_report(any_store, load_settings(tmp_path), "provider", None, None)
    (group,) = report.groups
    assert (group.group, group.images, group.spent) == ("local", 3, 4.5)
    assert (group.possible_duplicates, group.possible_duplicate_spend) == (1, 1.5)
    (duplicate,) = report.possible_duplicates
    assert (duplicate.job_uid, duplicate.why) == (jobs[0].uid, "start re-sent after a reset")
    assert report.totals[0].spent == 4.5  # a possible duplicate is listed apart, not added again
