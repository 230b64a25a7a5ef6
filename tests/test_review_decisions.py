"""Review decisions fired at once on the same jobs: the recorded review, the folder the image is in
and the manifest entry agree after every round. A real daemon on a temporary socket, its real API."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, jsonl, running_daemon
from wfbatch.engine.keyed_locks import KeyedLocks
from wfbatch.outputs import read_manifest
from wfbatch.protocol import ReviewRequest

JOBS = 5
ROUNDS = 30
DECISIONS = ("approve", "reject", "pending")
FOLDERS = {"pending-review": "pending", "approved": "approved", "rejected": "rejected"}
MANIFEST_WAIT = 15.0


async def _decide_at_once(daemon: DaemonProcess, job_ids: list[int], rng: random.Random) -> list[str]:
    """Every decision for every job, in a shuffled order, all in flight together; the refusals."""
    wanted = [(job_id, decision) for job_id in job_ids for decision in DECISIONS]
    rng.shuffle(wanted)
    async with daemon.client() as client:
        answers = await asyncio.gather(
            *(client.review(ReviewRequest(job_ids=[job_id], decision=d)) for job_id, d in wanted),
            return_exceptions=True,
        )
    return [
        f"{job_id} {d}: {answer}"
        for (job_id, d), answer in zip(wanted, answers, strict=True)
        if isinstance(answer, BaseException)
    ]


def _folders_holding(output: Path, file_name: str) -> list[str]:
    return sorted(review for folder, review in FOLDERS.items() if (output / folder / file_name).is_file())


def _manifest_agrees(output: Path, jobs: dict[int, dict[str, Any]]) -> bool:
    try:
        entries = {int(e.job_id): e for e in read_manifest(output).entries}
    except (OSError, ValueError):
        return False
    return all(
        job_id in entries and (entries[job_id].review, entries[job_id].file) == (job["review"], job["file"])
        for job_id, job in jobs.items()
    )


@pytest.mark.timeout(300)  # 30 rounds, each waiting for the daemon's next manifest write (~1 s)
def test_concurrent_review_decisions_leave_database_disk_and_manifest_agreeing() -> None:
    rng = random.Random(20261207)
    with running_daemon(env={"WFBATCH_LOCAL__LATENCY_MAX": "0"}) as daemon:
        daemon.drop("review-race.jsonl", jsonl(*(f"a heron, take {i}" for i in range(JOBS))))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == JOBS)
        job_ids = [int(job["id"]) for job in daemon.get("/v1/jobs", state="done")["items"]]
        output = Path(daemon.get(f"/v1/jobs/{job_ids[0]}")["output_dir"])
        for round_no in range(ROUNDS):
            refused = asyncio.run(_decide_at_once(daemon, job_ids, rng))
            jobs = {int(job["id"]): job for job in daemon.get("/v1/jobs", state="done")["items"]}
            assert sorted(jobs) == sorted(job_ids)
            for job_id, job in jobs.items():
                name = Path(job["file"]).name
                held_in = _folders_holding(output, name)
                assert held_in == [job["review"]], (
                    f"round {round_no}: job {job_id} is recorded {job['review']} ({job['file']})"
                    f" but its image is in {held_in}"
                )
                assert FOLDERS[Path(job["file"]).parent.name] == job["review"], (round_no, job_id, job)
            # Each decision, whichever came last, is one a person may make: none is refused.
            assert not refused, f"round {round_no}: {refused}"
            deadline = time.monotonic() + MANIFEST_WAIT
            while not _manifest_agrees(output, jobs):
                assert time.monotonic() < deadline, f"round {round_no}: the manifest never agreed"
                time.sleep(0.05)


async def test_review_locks_are_forgotten_once_nobody_holds_or_waits() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def decide(job_id: int, name: str) -> None:
        async with locks.hold(job_id):
            order.append(f"{name} in")
            await asyncio.sleep(0)  # a step on disk: the other decision gets the loop meanwhile
            order.append(f"{name} out")

    await asyncio.gather(decide(1, "a"), decide(1, "b"), decide(2, "c"))
    assert order.index("a out") < order.index("b in")  # same job: one after the other
    assert len(locks) == 0
