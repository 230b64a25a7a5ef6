"""The inbox watcher: prompt files dropped into `inbox/` become batches.

A file is taken only once it is complete: its size and mtime must hold still for
`inbox.stable_seconds` (a file renamed into the inbox — the recommended way to drop — is
usually taken at once, since its mtime is already older than that). Dotfiles, `*.part`, `*.tmp`,
`*~`, folders, FIFOs, sockets, devices and all symlinks are ignored (a symlink is ignored even when
it stays inside the inbox: one rule, and no file outside the inbox can ever become prompts). Files
present at start-up are picked up; a periodic rescan catches anything the watcher missed.

Taking a file: it is first moved into `inbox/.taking/` beside a small journal, then read through a
descriptor that must be a regular file, then accepted, then moved out. After a crash the journal
says exactly whether that take's batch was committed (a batch of its content and name that did not
exist before): if so the file goes to the archive, otherwise back into the inbox.

Outcomes: accepted → `archive/<batch-id>-<name>`; same content as an accepted batch →
`archive/duplicate-<name>` (nothing enqueued); invalid, unreadable, or a take that failed
unexpectedly → `rejected/<name>` beside `rejected/<name>.error.txt`, which names every bad line.
Nothing is overwritten (`-2`, `-3`... are added) and names are cut to fit the 255-byte limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, awatch

from wfbatch.core.names import quote_name
from wfbatch.core.parsing import MAX_FILE_BYTES
from wfbatch.core.tasks import wait_event
from wfbatch.daemon.inbox_files import (
    Claim,
    Identity,
    NotRegularFile,
    claim,
    identity,
    kind_of,
    move_no_replace,
    off_loop,
    read_regular,
    remove_stale_journal_temps,
)
from wfbatch.engine.events import EventSink, discard
from wfbatch.engine.intake.control import Accepted, Control, Duplicate, Refused
from wfbatch.home import HomeLayout
from wfbatch.outputs import atomic_write_bytes
from wfbatch.protocol import InboxEvent
from wfbatch.settings import Settings

log = logging.getLogger("wfbatch.inbox")

IGNORED_SUFFIXES = (".part", ".tmp", "~")
ERROR_SUFFIX = ".error.txt"
TAKING_FOLDER = ".taking"
RESCAN_SECONDS = 5.0
WATCHER_RESTART_SECONDS = 1.0
MAX_CHECK_INTERVAL = 0.1


def is_ignored_name(name: str) -> bool:
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")  # undecodable bytes arrive as lone surrogates, which do not encode
    except UnicodeEncodeError:
        return False
    return True


class Inbox:
    def __init__(
        self,
        layout: HomeLayout,
        control: Control,
        settings: Callable[[], Settings],
        *,
        events: EventSink = discard,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self.layout = layout
        self.control = control
        self._settings = settings
        self._emit = events
        self._on_outcome = on_outcome or (lambda outcome: None)
        self._root = layout.inbox.resolve()
        self._taking = layout.inbox / TAKING_FOLDER
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._take_lock = asyncio.Lock()
        self._warned: set[tuple[str, str]] = set()
        # Files that could be neither taken nor moved out (say rejected/ is not writable): left
        # alone until they change, so one broken file is one error line, not one every rescan.
        self._given_up: dict[str, Identity] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until `stop` is set."""
        self.layout.inbox.mkdir(parents=True, exist_ok=True)
        await self.recover()
        self.scan()
        rescanner = asyncio.create_task(self._rescan_periodically(stop))
        try:
            while not stop.is_set():
                try:
                    await self._watch(stop)
                except Exception as error:  # e.g. a file name that is not UTF-8: watchfiles gives up
                    if self.layout.inbox.is_dir():
                        log.warning("the inbox watcher failed (%s); restarting it, and rescanning", error)
                    await wait_event(stop, WATCHER_RESTART_SECONDS)  # no busy loop if it fails again
                    self.scan()
        finally:
            rescanner.cancel()
            pending = [*self._pending.values(), rescanner]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _watch(self, stop: asyncio.Event) -> None:
        async for changes in awatch(
            self.layout.inbox, stop_event=stop, watch_filter=None, debounce=50, step=50, recursive=False
        ):
            for change, raw_path in changes:
                if change is not Change.deleted:
                    self.consider(Path(raw_path))

    async def _rescan_periodically(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await wait_event(stop, RESCAN_SECONDS)
            if not stop.is_set():
                self.scan()

    def scan(self) -> None:
        if not self._inbox_is_there():
            return
        try:
            entries = list(os.scandir(self.layout.inbox))
        except OSError as error:
            log.error("cannot read the inbox %s: %s", self.layout.inbox, error)
            return
        for entry in sorted(entries, key=lambda e: e.name):
            self.consider(Path(entry.path))

    def _inbox_is_there(self) -> bool:
        """A deleted inbox folder (a clean-up gone too far) is made again, said once; one that
        cannot be made is said once too, not every rescan."""
        inbox = self.layout.inbox
        if inbox.is_dir():
            self._warned.discard(("inbox", "missing"))
            return True
        try:
            inbox.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            if ("inbox", "missing") not in self._warned:
                self._warned.add(("inbox", "missing"))
                log.error("the inbox %s is gone and cannot be made again (%s): files dropped there "
                          "are not seen until it exists", inbox, error.strerror or error)
            return False
        log.warning("the inbox %s was gone; made it again (drop files there as before)", inbox)
        return True

    def consider(self, path: Path) -> None:
        """Start watching `path` until it is complete, then take it (once)."""
        if path.parent.resolve() != self._root or is_ignored_name(path.name):
            return
        key = path.name
        if key in self._pending:
            return
        self._pending[key] = asyncio.create_task(self._settle_then_take(path), name="inbox-file")

    async def _settle_then_take(self, path: Path) -> None:
        try:
            if await self._wait_until_complete(path):
                async with self._take_lock:
                    await self.take(path)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not take %s from the inbox", quote_name(path.name))
        finally:
            self._pending.pop(path.name, None)

    def _warn_once(self, name: str, problem: str) -> None:
        if (name, problem) not in self._warned:
            self._warned.add((name, problem))
            log.warning("ignoring %s: %s", quote_name(name), problem)

    def _stat(self, path: Path) -> os.stat_result | None:
        """The file's stat if it is a regular file we may take; None otherwise. Only a first
        filter: what is read is checked again on the open descriptor."""
        try:
            info = path.lstat()
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            if not stat.S_ISDIR(info.st_mode):
                self._warn_once(path.name, f"{kind_of(info.st_mode)}, not a file (drop the file itself)")
            return None
        if self._given_up.get(path.name) == identity(info):
            return None
        return info

    async def _wait_until_complete(self, path: Path) -> bool:
        """True once size and mtime have held still for `stable_seconds` (False if the file went)."""
        stable = self._settings().inbox.stable_seconds
        interval = min(MAX_CHECK_INTERVAL, stable / 4)
        info = self._stat(path)
        if info is None:
            return False
        last = (info.st_size, info.st_mtime_ns)
        since = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            info = self._stat(path)
            if info is None:
                return False
            now = time.monotonic()
            current = (info.st_size, info.st_mtime_ns)
            if current != last:
                last, since = current, now
                continue
            held = now - since
            # Unchanged since its mtime, which is already stable_seconds old: complete (a rename).
            untouched = time.time() - info.st_mtime >= stable
            if held >= stable or (untouched and held >= interval):
                return True

    async def take(self, path: Path) -> None:
        """Take `path` now (the watcher calls this once the file is complete). Whatever `path` is by
        then — swapped for a symlink, a FIFO, a folder — nothing outside the inbox is read and
        nothing blocks."""
        try:
            claimed = await off_loop(claim, path, self._taking)
        except (OSError, TimeoutError) as error:
            log.error("cannot take %s out of the inbox: %s", quote_name(path.name), error)
            self._give_up(path)
            return
        if claimed is None:
            return
        try:
            await self._take_claimed(claimed)
        except Exception as error:
            log.exception("internal error while taking %s", quote_name(claimed.name))
            batch_id = await self._committed_batch(claimed)
            if batch_id is not None:  # the batch is in: the file belongs in the archive, not rejected/
                await self._archive_recovered(claimed, batch_id)
            else:
                await self._refuse_after_internal_error(claimed, error)

    async def _take_claimed(self, claimed: Claim) -> None:
        """Read, accept and move out one claimed file."""
        name = claimed.name
        try:
            raw = await off_loop(read_regular, claimed.path, MAX_FILE_BYTES + 1)  # 1 byte over: too large
        except NotRegularFile as error:  # swapped after it was checked: put back, ignored from now on
            await off_loop(move_no_replace, claimed.path, self.layout.inbox, name)
            claimed.forget()
            self._warn_once(name, f"{error.kind}, not a file (it was replaced after it was checked)")
            return
        except FileNotFoundError:
            claimed.forget()
            return
        except OSError as error:
            await self._reject(claimed, f"{name}: cannot be read: {error.strerror or error}\n", 1)
            return
        if not _is_utf8(name):  # it could not be stored, shown or reported faithfully
            await self._reject(claimed, f"{name}: the file name is not valid UTF-8: rename it\n", 1)
            return
        started = time.monotonic()
        digest = self.control.identity(raw, name)
        known = await self.control.store.batches.batch_ids_with_content(digest, name)
        await off_loop(claimed.record, content_hash=digest, known=sorted(known))
        outcome = await self.control.accept(raw, name, identity=digest)
        if isinstance(outcome, Accepted) and outcome.batch is not None:
            target = await self._move_out(claimed, self.layout.archive, prefix=f"{outcome.batch.id}-")
            log.info(
                "accepted %s: batch %s, %d jobs, queued in %.0f ms; moved to %s", quote_name(name),
                outcome.batch.id, outcome.jobs, (time.monotonic() - started) * 1000, quote_name(str(target)),
            )
            self._on_outcome("accepted")
        elif isinstance(outcome, Duplicate):
            target = await self._move_out(claimed, self.layout.archive, prefix="duplicate-")
            log.warning(
                "%s has the same content as batch %s (%s): not enqueued again, moved to %s "
                "(set inbox.skip_duplicate_files = false to enqueue duplicates)",
                quote_name(name), outcome.of.id, quote_name(outcome.of.source_name), quote_name(str(target)),
            )
            self._on_outcome("duplicate")
        elif isinstance(outcome, Refused):
            await self._reject(claimed, outcome.report, len(outcome.errors))

    async def _move_out(self, claimed: Claim, folder: Path, *, prefix: str) -> Path:
        target = await off_loop(move_no_replace, claimed.path, folder, claimed.name, prefix=prefix)
        claimed.forget()
        return target

    async def _reject(self, claimed: Claim, report: str, errors: int) -> None:
        name = claimed.name
        header = f"{quote_name(name)} was refused: nothing was enqueued. Fix the lines below, drop it again."
        # surrogateescape: a name that is not UTF-8 is written back as the bytes it was.
        text = f"{header}\n\n{report}".encode("utf-8", "surrogateescape")

        def write_error_file(target: Path) -> None:
            atomic_write_bytes(target.with_name(target.name + ERROR_SUFFIX), text)

        target = await off_loop(
            move_no_replace, claimed.path, self.layout.rejected, name,
            companion=ERROR_SUFFIX, write_companion=write_error_file,
        )
        claimed.forget()
        first = quote_name(report.splitlines()[0]) if report else ""
        log.warning("rejected %s (%d problems; first: %s); see %s%s", quote_name(name), errors, first,
                    quote_name(str(target)), ERROR_SUFFIX)
        self._emit(InboxEvent(event="rejected", file=quote_name(name), errors=errors, first=first))
        self._on_outcome("rejected")

    async def _refuse_after_internal_error(self, claimed: Claim, error: Exception) -> None:
        """A file whose take failed unexpectedly is refused, not retried for ever; if even that
        fails, it goes back into the inbox and is left alone until it changes."""
        why = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        try:
            await self._reject(claimed, f"{claimed.name}: internal error: {why}\n", 1)
            return
        except Exception as reject_error:
            log.error("cannot move %s to %s either (%s); it goes back into the inbox, left alone "
                      "until it changes", quote_name(claimed.name), self.layout.rejected, reject_error)
        try:
            back = await off_loop(move_no_replace, claimed.path, self.layout.inbox, claimed.name)
        except Exception as back_error:
            log.error("cannot move %s back into the inbox (%s); it stays in %s until the next start",
                      quote_name(claimed.name), back_error, self._taking)
            return
        claimed.forget()
        self._give_up(back)

    def _give_up(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            self._given_up[path.name] = identity(path.lstat())

    async def recover(self) -> None:
        """Finish the takes a crash interrupted: exact, from each claim's journal."""
        try:
            stale = await off_loop(remove_stale_journal_temps, self._taking)
            journals = sorted(self._taking.glob("*.json"))
        except OSError:
            return
        if stale:
            log.info("removed %d half-written take journal(s) left in %s", len(stale), self._taking)
        for journal in journals:
            try:
                await self._recover(journal)
            except Exception:
                log.exception("cannot recover the interrupted take %s; it stays there", journal)

    async def _recover(self, journal: Path) -> None:
        claimed, _ = await off_loop(Claim.of_journal, journal)
        if not await off_loop(os.path.lexists, claimed.path):
            claimed.forget()
            return
        batch_id = await self._committed_batch(claimed)
        if batch_id is not None:
            await self._archive_recovered(claimed, batch_id)
            return
        back = await off_loop(move_no_replace, claimed.path, self.layout.inbox, claimed.name)
        claimed.forget()
        log.info("%s was being taken when the daemon stopped (nothing was enqueued); back in the inbox as %s",
                 quote_name(claimed.name), quote_name(back.name))

    async def _committed_batch(self, claimed: Claim) -> str | None:
        """The batch this take committed, if it did: one of its content and name that was not there
        before the acceptance (the journal lists those that were)."""
        _, facts = await off_loop(Claim.of_journal, claimed.journal)
        digest = facts.get("content_hash")
        if not isinstance(digest, str):
            return None  # the journal is written before the acceptance: it never started
        made = await self.control.store.batches.batch_ids_with_content(digest, claimed.name)
        new = sorted(made - set(facts.get("known", [])))
        return new[0] if new else None

    async def _archive_recovered(self, claimed: Claim, batch_id: str) -> None:
        target = await self._move_out(claimed, self.layout.archive, prefix=f"{batch_id}-")
        log.info("%s had been accepted as batch %s; moved to %s", quote_name(claimed.name), batch_id,
                 quote_name(str(target)))
