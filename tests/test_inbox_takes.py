"""The inbox's take of one file, on a real HOME and SQLite store: what happens when the file was
swapped after the watcher checked it, when the take fails unexpectedly, and after a crash mid-take.

`Inbox.take` is what the watcher calls once a file has settled; calling it directly on a symlink
or a FIFO is exactly "the file was replaced between the check and the read"."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.daemon_harness import jsonl
from tests.deadlines import patience
from wfbatch.core.models import ParsedBatch, ParsedEntry, PromptEntry
from wfbatch.daemon.inbox import TAKING_FOLDER, Inbox
from wfbatch.engine.intake.control import Accepted, Control
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.settings import Settings, load_settings
from wfbatch.store import Reuse, Store

SECRET = "sk-someone-elses-key-0123456789"
TAKE_BOUND = patience(10.0)  # far above a take of a few bytes; only reached when something blocks


@pytest.fixture
def settings(home: Path) -> Settings:
    return load_settings(home, provider="local")


@pytest.fixture
async def inbox(layout: HomeLayout, store: Store, settings: Settings) -> AsyncIterator[Inbox]:
    engine = Engine(store, settings, layout)
    yield Inbox(layout, Control(engine), lambda: settings)


async def _accept_again(inbox: Inbox, raw: bytes, name: str) -> str:
    outcome = await inbox.control.accept(raw, name, skip_duplicates=False)
    assert isinstance(outcome, Accepted) and outcome.batch is not None
    return outcome.batch.id


async def _batches(store: Store) -> list[tuple[str, str]]:
    return [(b.id, b.source_name) for b in await store.batches.list_batches()]


async def test_a_symlink_swapped_in_after_the_check_is_not_read(
    inbox: Inbox, store: Store, home: Path
) -> None:
    outside = home.parent / "other-home-wfbatch.toml"
    outside.write_text(f'api_key = "{SECRET}"\n')
    link = inbox.layout.inbox / "prompts.txt"
    link.symlink_to(outside)
    await asyncio.wait_for(inbox.take(link), TAKE_BOUND)
    assert await _batches(store) == []
    assert link.is_symlink() and outside.read_text() == f'api_key = "{SECRET}"\n'
    assert not any(inbox.layout.rejected.iterdir()) and not any(inbox.layout.archive.iterdir())


async def test_a_fifo_swapped_in_after_the_check_does_not_block_the_take(inbox: Inbox, store: Store) -> None:
    fifo = inbox.layout.inbox / "prompts.txt"
    os.mkfifo(fifo)
    try:
        await asyncio.wait_for(inbox.take(fifo), TAKE_BOUND)
    finally:
        # Without the fix the take's thread sits in open() for ever: a writer end releases it.
        with contextlib.suppress(OSError):
            for candidate in [fifo, *(inbox.layout.inbox / TAKING_FOLDER).glob("*")]:
                os.close(os.open(candidate, os.O_WRONLY | os.O_NONBLOCK))
    assert fifo.exists() and await _batches(store) == []


async def test_a_folder_swapped_in_is_put_back_untouched(inbox: Inbox, store: Store) -> None:
    folder = inbox.layout.inbox / "prompts.txt"
    folder.mkdir()
    (folder / "inside.txt").write_text("a prompt\n")
    await asyncio.wait_for(inbox.take(folder), TAKE_BOUND)
    assert (folder / "inside.txt").read_text() == "a prompt\n"
    assert await _batches(store) == []


async def test_a_take_that_fails_unexpectedly_refuses_the_file_instead_of_retrying(
    inbox: Inbox, store: Store
) -> None:
    dropped = inbox.layout.inbox / "fine.jsonl"
    dropped.write_text(jsonl("a fox"))
    await store.close()  # the database is gone: accept() raises something no rule expects
    await asyncio.wait_for(inbox.take(dropped), TAKE_BOUND)
    assert not dropped.exists()
    assert (inbox.layout.rejected / "fine.jsonl").read_text() == jsonl("a fox")
    report = (inbox.layout.rejected / "fine.jsonl.error.txt").read_text()
    assert "fine.jsonl: internal error:" in report
    assert list(inbox.layout.output.iterdir()) == []
    assert list((inbox.layout.inbox / TAKING_FOLDER).iterdir()) == []


def _interrupted_take(inbox: Inbox, name: str, raw: bytes, **facts: object) -> Path:
    """What a crash mid-take leaves: the file in the claim area beside its journal."""
    taking = inbox.layout.inbox / TAKING_FOLDER
    taking.mkdir(exist_ok=True)
    (taking / "0123456789abcdef").write_bytes(raw)
    (taking / "0123456789abcdef.json").write_text(json.dumps({"name": name, **facts}))
    return taking


async def test_recovery_archives_a_file_whose_batch_was_committed_before_the_crash(
    inbox: Inbox, store: Store
) -> None:
    raw = jsonl("committed").encode()
    digest = inbox.control.identity(raw, "x.jsonl")
    earlier = await _accept_again(inbox, raw, "x.jsonl")  # a batch of the same file, long before
    new_id = await _accept_again(inbox, raw, "x.jsonl")  # the crashed take's
    taking = _interrupted_take(inbox, "x.jsonl", raw, content_hash=digest, known=[earlier])
    await inbox.recover()
    assert (inbox.layout.archive / f"{new_id}-x.jsonl").read_bytes() == raw
    assert list(taking.iterdir()) == [] and len(await _batches(store)) == 2


@pytest.mark.parametrize("journal", ["before the acceptance began", "before the commit"])
async def test_recovery_puts_back_a_file_whose_batch_was_never_committed(
    inbox: Inbox, store: Store, journal: str
) -> None:
    raw = jsonl("not committed").encode()
    known = [await _accept_again(inbox, raw, "x.jsonl")]  # accepted before: this file is a new drop
    identity = inbox.control.identity(raw, "x.jsonl")
    facts = {"content_hash": identity, "known": known} if journal == "before the commit" else {}
    taking = _interrupted_take(inbox, "x.jsonl", raw, **facts)
    await inbox.recover()
    assert (inbox.layout.inbox / "x.jsonl").read_bytes() == raw  # taken again, normally
    assert list(taking.iterdir()) == [] and not any(inbox.layout.archive.iterdir())


def test_a_read_stuck_for_ever_does_not_keep_the_process_from_exiting(tmp_path: Path) -> None:
    """The inbox's blocking steps run in daemon threads: a read on a FIFO nobody writes (what a
    hung file system looks like) is abandoned at exit instead of joined."""
    fifo = tmp_path / "stuck"
    os.mkfifo(fifo)
    script = textwrap.dedent(
        f"""
        import asyncio, contextlib
        from wfbatch.daemon.inbox_files import off_loop

        def stuck() -> bytes:
            with open({str(fifo)!r}, "rb") as handle:  # blocks: no writer, ever
                return handle.read()

        async def main() -> None:
            task = asyncio.create_task(off_loop(stuck))
            await asyncio.sleep(0.2)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(main())
        print("exited")
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=patience(20)
        )
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        raise
    assert done.returncode == 0 and done.stdout.strip() == "exited", done.stderr


async def test_a_batch_whose_insert_fails_leaves_no_output_folder(layout: HomeLayout, store: Store) -> None:
    # A value the parser would refuse, built past it: the insert itself fails (as any store error would).
    entry = PromptEntry.model_construct(prompt="a fox", width=64, height=64, priority=10**30)
    parsed = ParsedBatch("poison", "poison.jsonl", None, True, None, [ParsedEntry(1, entry)])
    with pytest.raises(OverflowError):
        await ingest(store, layout, parsed, b"poison", "local", reuse=Reuse.NEVER)
    assert list(layout.output.iterdir()) == [] and await _batches(store) == []


async def test_recovery_removes_a_half_written_journal_and_nothing_else(inbox: Inbox, store: Store) -> None:
    raw = jsonl("interrupted").encode()
    taking = _interrupted_take(inbox, "x.jsonl", raw)
    # A kill during a journal's atomic write leaves its temporary sibling, and nothing else does.
    stale = taking / ".fedcba9876543210.json.0123456789ab.tmp"
    stale.write_text('{"name": "y.js')
    # Names close to it that recovery has no business with: left as they are.
    kept = [taking / ".notes.tmp", taking / "fedcba9876543210.tmp", taking / ".fedcba9876543210.json.tmp"]
    for path in kept:
        path.write_text("someone's")
    await inbox.recover()
    assert not stale.exists()
    assert all(path.read_text() == "someone's" for path in kept)
    assert (inbox.layout.inbox / "x.jsonl").read_bytes() == raw  # the take itself recovered as before
