"""The inbox watcher: prompt files dropped into `inbox/` become batches.

A file is taken only once it is complete: its size and mtime must hold still for
`inbox.stable_seconds` (a file renamed into the inbox — the recommended way to drop — is
usually taken at once, since its mtime is already older than that). Dotfiles, `*.part`, `*.tmp`,
`*~`, folders and symlinks leading out of the inbox are ignored. Files present at start-up are
picked up; a periodic rescan catches anything the filesystem watcher missed.

Outcomes: accepted → `archive/<batch-id>-<name>`; same content as an accepted batch →
`archive/duplicate-<name>` (nothing enqueued); invalid → `rejected/<name>` beside
`rejected/<name>.error.txt`, which names every bad line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, awatch

from wfbatch.core.hashing import content_hash
from wfbatch.core.parsing import MAX_FILE_BYTES
from wfbatch.engine.control import Accepted, Control, Duplicate, Refused
from wfbatch.engine.events import Event, EventSink, discard
from wfbatch.home import HomeLayout
from wfbatch.outputs import atomic_write_text
from wfbatch.settings import Settings

log = logging.getLogger("wfbatch.inbox")

IGNORED_SUFFIXES = (".part", ".tmp", "~")
ERROR_SUFFIX = ".error.txt"
RESCAN_SECONDS = 5.0
MAX_CHECK_INTERVAL = 0.1


def is_ignored_name(name: str) -> bool:
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES)


def _unique(path: Path) -> Path:
    """`path`, or `stem-2.suffix`, `stem-3.suffix`... whichever does not exist yet."""
    if not path.exists():
        return path
    for n in range(2, 100_000):
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(path)


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        source.replace(target)
    except OSError:
        shutil.move(str(source), str(target))  # another filesystem (an inbox symlinked elsewhere)


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
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._take_lock = asyncio.Lock()
        self._warned: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until `stop` is set."""
        self.layout.inbox.mkdir(parents=True, exist_ok=True)
        self.scan()
        rescanner = asyncio.create_task(self._rescan_periodically(stop))
        try:
            async for changes in awatch(
                self.layout.inbox, stop_event=stop, watch_filter=None, debounce=50, step=50, recursive=False
            ):
                for change, raw_path in changes:
                    if change is not Change.deleted:
                        self.consider(Path(raw_path))
        finally:
            rescanner.cancel()
            pending = [*self._pending.values(), rescanner]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _rescan_periodically(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RESCAN_SECONDS)
            if not stop.is_set():
                self.scan()

    def scan(self) -> None:
        try:
            entries = list(os.scandir(self.layout.inbox))
        except OSError as error:
            log.error("cannot read the inbox %s: %s", self.layout.inbox, error)
            return
        for entry in sorted(entries, key=lambda e: e.name):
            self.consider(Path(entry.path))

    def consider(self, path: Path) -> None:
        """Start watching `path` until it is complete, then take it (once)."""
        if path.parent.resolve() != self._root or is_ignored_name(path.name):
            return
        key = path.name
        if key in self._pending:
            return
        self._pending[key] = asyncio.create_task(self._settle_then_take(path), name=f"inbox-{key}")

    async def _settle_then_take(self, path: Path) -> None:
        try:
            if await self._wait_until_complete(path):
                async with self._take_lock:
                    await self._take(path)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not take %s from the inbox; it stays there", path.name)
        finally:
            self._pending.pop(path.name, None)

    def _stat(self, path: Path) -> os.stat_result | None:
        """The file's stat if it is a regular file we may take (directly or by a symlink that stays
        inside the inbox); None otherwise."""
        try:
            link = path.lstat()
            if stat.S_ISLNK(link.st_mode):
                target = path.resolve()
                if not target.is_relative_to(self._root):
                    if path.name not in self._warned:
                        self._warned.add(path.name)
                        log.warning("ignoring %s: a symlink to %s, outside the inbox", path.name, target)
                    return None
            info = path.stat()
        except OSError:
            return None
        return info if stat.S_ISREG(info.st_mode) else None

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

    async def _take(self, path: Path) -> None:
        name = path.name
        try:
            raw = await asyncio.to_thread(_read_capped, path)
        except FileNotFoundError:
            return
        except OSError as error:
            await self._reject_unreadable(path, error)
            return
        started = time.monotonic()
        existing = await self.control.store.batch_with_content_exists(content_hash(raw))
        if existing is not None and existing.source_name == name:
            archived = self.layout.archive / f"{existing.id}-{name}"
            if not archived.exists():
                # Accepted before a crash that came between the commit and the move: finish the move.
                await asyncio.to_thread(_move, path, archived)
                log.info("%s was already accepted as batch %s; moved to %s", name, existing.id, archived)
                return
        outcome = await self.control.accept(raw, name)
        if isinstance(outcome, Accepted) and outcome.batch is not None:
            target = _unique(self.layout.archive / f"{outcome.batch.id}-{name}")
            await asyncio.to_thread(_move, path, target)
            log.info(
                "accepted %s: batch %s, %d jobs, queued in %.0f ms", name, outcome.batch.id, outcome.jobs,
                (time.monotonic() - started) * 1000,
            )
            self._on_outcome("accepted")
        elif isinstance(outcome, Duplicate):
            target = _unique(self.layout.archive / f"duplicate-{name}")
            await asyncio.to_thread(_move, path, target)
            log.warning(
                "%s has the same content as batch %s (%s): not enqueued again, moved to %s "
                "(set inbox.skip_duplicate_files = false to enqueue duplicates)",
                name, outcome.of.id, outcome.of.source_name, target,
            )
            self._on_outcome("duplicate")
        elif isinstance(outcome, Refused):
            await self._reject(path, outcome.report, len(outcome.errors))

    async def _reject(self, path: Path, report: str, errors: int) -> None:
        name = path.name
        rejected = self.layout.rejected
        header = f"{name} was refused: nothing was enqueued. Fix the lines below and drop it again.\n\n"
        await asyncio.to_thread(atomic_write_text, rejected / f"{name}{ERROR_SUFFIX}", header + report)
        await asyncio.to_thread(_move, path, rejected / name)
        first = report.splitlines()[0] if report else ""
        log.warning("rejected %s (%d problems; first: %s); see %s%s", name, errors, first,
                    rejected / name, ERROR_SUFFIX)
        self._emit(Event("inbox", {"event": "rejected", "file": name, "errors": errors, "first": first}))
        self._on_outcome("rejected")

    async def _reject_unreadable(self, path: Path, error: OSError) -> None:
        await self._reject(path, f"{path.name}: cannot be read: {error.strerror or error}\n", 1)


def _read_capped(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(MAX_FILE_BYTES + 1)  # one byte over the cap is enough to refuse it
