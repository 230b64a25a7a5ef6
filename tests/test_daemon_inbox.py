"""The inbox of a real daemon: drops by rename, slow writers, bad files, duplicates, ignored names."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import DaemonProcess, jsonl, running_daemon

ENV = {"WFBATCH_INBOX__STABLE_SECONDS": "0.5", "WFBATCH_LOCAL__LATENCY_MAX": "0.05"}


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with running_daemon(env=ENV) as running:
        yield running


def _batches(daemon: DaemonProcess) -> list[dict[str, object]]:
    items: list[dict[str, object]] = daemon.get("/v1/batches", limit=500)["items"]
    return items


def _batch_from(daemon: DaemonProcess, source_name: str) -> dict[str, object] | None:
    return next((b for b in _batches(daemon) if b["source_name"] == source_name), None)


def test_a_renamed_drop_is_queued_within_a_second_and_archived(daemon: DaemonProcess) -> None:
    dropped = time.monotonic()
    daemon.drop("fast.jsonl", jsonl("a red fox", "a blue fox", "a green fox"))
    batch = daemon.wait_until(lambda: _batch_from(daemon, "fast.jsonl"), 5, "the batch")
    latency = time.monotonic() - dropped
    assert latency < 1.0, f"queued after {latency:.2f} s"
    assert batch["total"] == 3
    archived = daemon.home / "archive" / f"{batch['id']}-fast.jsonl"
    daemon.wait_until(archived.exists, 5, "the archived file")
    assert not (daemon.inbox / "fast.jsonl").exists()
    daemon.wait_until(lambda: daemon.get(f"/v1/batches/{batch['id']}")["counts"]["done"] == 3, 15, "3 done")


def test_a_slow_writer_is_not_read_half_written(daemon: DaemonProcess) -> None:
    # Each line is written in two halves with pauses: read early, the file would be invalid JSON.
    target = daemon.inbox / "slow.jsonl"
    lines = jsonl(*(f"slow prompt {i}" for i in range(4))).splitlines(keepends=True)
    started = time.monotonic()
    with target.open("w") as handle:
        for line in lines:
            half = len(line) // 2
            handle.write(line[:half])
            handle.flush()
            time.sleep(0.2)
            handle.write(line[half:])
            handle.flush()
            time.sleep(0.2)
    assert time.monotonic() - started > 1.0  # longer than stable_seconds (0.5)
    batch = daemon.wait_until(lambda: _batch_from(daemon, "slow.jsonl"), 5, "the slow file's batch")
    assert batch["total"] == 4
    assert not (daemon.home / "rejected" / "slow.jsonl").exists()


def test_a_bad_file_is_rejected_with_an_error_file_naming_every_bad_line(daemon: DaemonProcess) -> None:
    content = jsonl("fine") + '{"prompt": "x", "width": 3}\n' + jsonl("fine too") + "{not json\n"
    daemon.drop("bad.jsonl", content)
    error_file = daemon.home / "rejected" / "bad.jsonl.error.txt"
    daemon.wait_until(error_file.exists, 5, "bad.jsonl.error.txt")
    report = error_file.read_text()
    assert "bad.jsonl:2" in report and "bad.jsonl:4" in report
    assert (daemon.home / "rejected" / "bad.jsonl").read_text() == content
    assert _batch_from(daemon, "bad.jsonl") is None


def test_an_unsupported_suffix_is_rejected_with_a_clear_error(daemon: DaemonProcess) -> None:
    daemon.drop("notes.md", "a prompt\n")
    error_file = daemon.home / "rejected" / "notes.md.error.txt"
    daemon.wait_until(error_file.exists, 5, "notes.md.error.txt")
    assert "unsupported file type" in error_file.read_text()


def test_a_duplicate_is_reported_and_archived_without_enqueuing(daemon: DaemonProcess) -> None:
    content = jsonl("duplicate me", "twice")
    daemon.drop("original.jsonl", content)
    first = daemon.wait_until(lambda: _batch_from(daemon, "original.jsonl"), 5, "the original batch")
    total_before = sum(daemon.status()["jobs"].values())
    daemon.drop("copy.jsonl", content)
    archived = daemon.home / "archive" / "duplicate-copy.jsonl"
    daemon.wait_until(archived.exists, 5, "archive/duplicate-copy.jsonl")
    assert _batch_from(daemon, "copy.jsonl") is None
    assert sum(daemon.status()["jobs"].values()) == total_before
    assert first["id"] in daemon.log() and "copy.jsonl" in daemon.log()


def test_temporary_hidden_and_backup_files_are_left_alone(daemon: DaemonProcess) -> None:
    names = [".hidden.jsonl", "upload.jsonl.part", "editor.tmp", "prompts.jsonl~"]
    for name in names:
        (daemon.inbox / name).write_text(jsonl("ignored"))
    (daemon.inbox / "folder.jsonl").mkdir()
    outside = daemon.home / "elsewhere.jsonl"
    outside.write_text(jsonl("outside"))
    (daemon.inbox / "link.jsonl").symlink_to(outside)
    time.sleep(1.5)
    for name in [*names, "folder.jsonl", "link.jsonl"]:
        assert (daemon.inbox / name).exists() or (daemon.inbox / name).is_symlink(), name
    sources = {b["source_name"] for b in _batches(daemon)}
    assert not sources & {*names, "folder.jsonl", "link.jsonl"}


def test_files_present_at_start_up_are_picked_up() -> None:
    with running_daemon(env=ENV, start=False) as daemon:
        daemon.inbox.mkdir(parents=True)
        (daemon.inbox / "early.jsonl").write_text(jsonl("waiting before the daemon"))
        Path(daemon.inbox / "early.jsonl").touch()
        daemon.start()
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 1)
        assert not (daemon.inbox / "early.jsonl").exists()
