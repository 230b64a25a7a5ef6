"""The inbox of a real daemon: drops by rename, slow writers, bad files, duplicates, ignored names."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import DaemonProcess, jsonl, running_daemon
from wfbatch.core.names import NAME_MAX
from wfbatch.daemon.inbox import ERROR_SUFFIX

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


def test_a_renamed_drop_is_queued_and_archived(daemon: DaemonProcess) -> None:
    # No stopwatch: how soon it is queued is the inbox's stable_seconds rule, and on a loaded
    # machine a wall-clock bound measured the load (a "within a second" assertion flaked).
    daemon.drop("fast.jsonl", jsonl("a red fox", "a blue fox", "a green fox"))
    batch = daemon.wait_until(lambda: _batch_from(daemon, "fast.jsonl"), 5, "the batch")
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
    # The explanation is written first, then the file moved beside it: wait for both.
    refused = daemon.home / "rejected" / "bad.jsonl"
    daemon.wait_until(lambda: error_file.exists() and refused.exists(), 5, "bad.jsonl and its error file")
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
    # A sentinel written the same way, last: once it is a batch, the inbox has seen every name
    # above and held each as long as any file must hold still (no sleep that merely gives time).
    (daemon.inbox / "sentinel.jsonl").write_text(jsonl("taken after the ignored names"))
    daemon.wait_until(lambda: _batch_from(daemon, "sentinel.jsonl"), what="the sentinel's batch")
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


def _rejected(daemon: DaemonProcess, name: str) -> tuple[str, str] | None:
    """(content, error report) of rejected/NAME once both are there."""
    folder = daemon.home / "rejected"
    if not (folder / name).exists() or not (folder / f"{name}{ERROR_SUFFIX}").exists():
        return None
    return (folder / name).read_text(), (folder / f"{name}{ERROR_SUFFIX}").read_text()


def test_a_refused_file_never_overwrites_an_earlier_refused_file_of_the_same_name(
    daemon: DaemonProcess,
) -> None:
    first = '{"prompt": "x", "width": 3}\n'
    second = jsonl("fine") + "{not json\n"
    daemon.drop("twice.jsonl", first)
    daemon.wait_until(lambda: _rejected(daemon, "twice.jsonl"), 5, "the first refusal")
    daemon.drop("twice.jsonl", second)
    content, report = daemon.wait_until(lambda: _rejected(daemon, "twice-2.jsonl"), 5, "the second refusal")
    assert content == second and "twice.jsonl:2" in report and "twice.jsonl:1" not in report
    content, report = daemon.wait_until(lambda: _rejected(daemon, "twice.jsonl"), 1, "the first refusal")
    assert content == first and "twice.jsonl:1" in report  # the first copy and its report, untouched


def test_re_dropping_a_file_whose_archive_copy_was_removed_enqueues_it_again() -> None:
    with running_daemon(env={**ENV, "WFBATCH_INBOX__SKIP_DUPLICATE_FILES": "false"}) as daemon:
        content = jsonl("again and again")
        daemon.drop("again.jsonl", content)
        first = daemon.wait_until(lambda: _batch_from(daemon, "again.jsonl"), 5, "the first batch")
        archived = daemon.home / "archive" / f"{first['id']}-again.jsonl"
        daemon.wait_until(archived.exists, 5, "the archived copy")
        archived.unlink()
        daemon.drop("again.jsonl", content)
        daemon.wait_until(
            lambda: len([b for b in _batches(daemon) if b["source_name"] == "again.jsonl"]) == 2, 5,
            "a second batch of the same file",
        )
        second = next(b for b in _batches(daemon) if b["source_name"] == "again.jsonl" and b != first)
        archived_again = daemon.home / "archive" / f"{second['id']}-again.jsonl"
        daemon.wait_until(archived_again.exists, 5, "its archive copy")


def _drop_long(daemon: DaemonProcess, name: str, content: str) -> None:
    """Like `daemon.drop`, from a staging folder: a 255-byte name leaves no room for a prefix."""
    staging = daemon.home / "staging"
    staging.mkdir(exist_ok=True)
    (staging / name).write_text(content)
    (staging / name).rename(daemon.inbox / name)


def _starting(folder: Path, prefix: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(prefix))


def test_names_at_the_255_byte_limit_are_archived_and_rejected_with_their_suffix(
    daemon: DaemonProcess,
) -> None:
    # 2-byte characters up to the limit: any added prefix forces a cut, which must fall between them.
    good, bad, dup = "é" * 124 + "x.jsonl", "é" * 124 + "y.jsonl", "ü" * 124 + "z.jsonl"
    assert len(good.encode()) == len(bad.encode()) == len(dup.encode()) == NAME_MAX
    _drop_long(daemon, good, jsonl("a long-named file"))
    _drop_long(daemon, bad, "{not json\n")
    batch = daemon.wait_until(lambda: _batch_from(daemon, good), 5, "the long-named batch")
    _drop_long(daemon, dup, jsonl("a long-named file"))
    archive, rejected = daemon.home / "archive", daemon.home / "rejected"
    duplicates = daemon.wait_until(lambda: _starting(archive, "duplicate-ü"), 5, "the duplicate")
    daemon.wait_until(lambda: len(_starting(rejected, "é")) == 2, 5, "the refused file and its report")
    refused = _starting(rejected, "é")
    archived = _starting(archive, f"{batch['id']}-é")
    assert len(archived) == 1 and len(duplicates) == 1, (archived, duplicates)
    for name in [*archived, *duplicates, *refused]:
        assert len(os.fsencode(name)) <= NAME_MAX and name.endswith((".jsonl", f".jsonl{ERROR_SUFFIX}")), name
        name.encode()  # cut between characters: still valid UTF-8
    assert refused[1] == refused[0] + ERROR_SUFFIX  # the report sits beside its file
    assert "Traceback" not in daemon.log()
    assert not _starting(daemon.inbox, "é") and not _starting(daemon.inbox, "ü")


def test_names_with_newlines_and_escapes_cannot_forge_log_lines(daemon: DaemonProcess) -> None:
    forged = "INFO wfbatch.inbox accepted everything"
    name = f"evil\n{forged}\x1b[2J.jsonl"
    accepted = f"fine\n{forged}\x1b[31m.jsonl"
    daemon.drop(name, "{not json\n")
    daemon.drop(accepted, jsonl("a harmless prompt in a hostile name"))
    report = daemon.wait_until(lambda: _rejected(daemon, name), 5, "the refusal")[1]
    assert report.splitlines()[0].startswith(repr(name))
    daemon.wait_until(lambda: f"accepted {accepted!r}" in daemon.log(), 5, "the acceptance logged")
    # The refusal's log line comes after its files are in place: wait for it, not only for them.
    daemon.wait_until(lambda: repr(name) in daemon.log(), 5, "the refusal logged")
    log = daemon.log()
    assert "\x1b" not in log and not any(line.startswith(forged) for line in log.splitlines())
    assert repr(name) in log


def test_a_symlinked_lock_file_stops_the_daemon_with_one_line_and_leaves_the_target_alone() -> None:
    with running_daemon(env=ENV, start=False) as daemon:
        target = daemon.home.parent / "precious.txt"
        target.write_text("do not truncate me\n")
        (daemon.home / "wfbatch.lock").symlink_to(target)
        process = daemon.spawn()
        assert process.wait(20) == 2
        assert target.read_text() == "do not truncate me\n"
        lines = daemon.log().strip().splitlines()
        assert len(lines) == 1 and "wfbatch.lock is a symlink" in lines[0], lines


def test_a_fifo_in_the_inbox_neither_blocks_it_nor_the_stop() -> None:
    with running_daemon(env=ENV) as daemon:
        os.mkfifo(daemon.inbox / "pipe.jsonl")
        daemon.drop("after.jsonl", jsonl("behind the pipe"))
        daemon.wait_until(lambda: _batch_from(daemon, "after.jsonl"), 5, "the file dropped after the FIFO")
        daemon.stop()
        assert daemon.returncode == 0  # exited by itself: the harness SIGKILLs a stop that hangs


def test_a_file_name_that_is_not_utf8_is_refused_and_does_not_stop_the_inbox(daemon: DaemonProcess) -> None:
    # watchfiles cannot decode such a path and its watcher died with it, taking the daemon down.
    name = os.fsdecode(b"latin1-\xe9t\xe9.jsonl")  # the bytes as Python's os functions hand them over
    staged = daemon.home / "staged-latin1"
    staged.write_text(jsonl("a prompt"))
    staged.rename(daemon.inbox / name)
    rejected = daemon.home / "rejected"
    error_file = rejected / f"{name}{ERROR_SUFFIX}"
    # The explanation is written first, then the file moved beside it: wait for both.
    daemon.wait_until(lambda: error_file.exists() and (rejected / name).exists(), 10, "the refusal")
    assert b"not valid UTF-8" in error_file.read_bytes()
    daemon.drop("after-latin1.jsonl", jsonl("still watching"))
    daemon.wait_until(lambda: _batch_from(daemon, "after-latin1.jsonl"), 10, "a later drop")
    assert daemon.returncode is None
