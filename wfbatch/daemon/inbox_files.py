"""The inbox's file-system steps, each safe against a file swapped under it between two calls.

Anyone who can write to the inbox can replace a checked file by a symlink (to another user's
secrets), a FIFO (which blocks whoever opens it) or a folder at any moment. So a file is never
judged by its path and then read by it: it is opened once with O_NOFOLLOW | O_NONBLOCK, the open
descriptor is checked (a regular file only) and read. Moves never replace an existing file: a
refused file dropped with `mv` is the user's only copy. Every step runs in a daemon thread with a
bound (`off_loop`): a read stuck on a hung file system cannot stall the inbox, nor the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from wfbatch.core.names import NAME_MAX, fit_name
from wfbatch.outputs import atomic_write_text

T = TypeVar("T")
P = ParamSpec("P")

IO_TIMEOUT = 30.0
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
MAX_NUMBERED = 10_000
# A hard link is an exclusive create; these say the file system cannot link, so copy instead.
_CANNOT_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}

Identity = tuple[int, int, int]

# A claim's token (`secrets.token_hex(8)`); and what `atomic_write_text` leaves of its journal when
# the process is killed mid-write: `.<token>.json.<12 hex>.tmp`. Nothing else is ever named so.
_TOKEN_BYTES = 8
_STALE_JOURNAL_TEMP = re.compile(r"\.[0-9a-f]{16}\.json\.[0-9a-f]{12}\.tmp")


class NotRegularFile(Exception):
    """What was opened (or is about to be moved) is a symlink, FIFO, folder, socket or device."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def kind_of(mode: int) -> str:
    kinds = ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def identity(info: os.stat_result) -> Identity:
    """What tells one version of a file from the next: a new drop or an edit changes it."""
    return (info.st_ino, info.st_size, info.st_mtime_ns)


async def off_loop(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`function(...)` in a daemon thread, given up after IO_TIMEOUT seconds (TimeoutError). Not
    `asyncio.to_thread`: the default executor is joined at exit, so one read stuck for ever would
    keep a stopped daemon from exiting."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, failure: BaseException | None) -> None:
        if future.done():  # given up on (timeout, cancellation)
            return
        if failure is not None:
            future.set_exception(failure)
        else:
            future.set_result(result)  # type: ignore[arg-type]  # None only with a failure

    def work() -> None:
        result: T | None = None
        failure: BaseException | None = None
        try:
            result = function(*args, **kwargs)
        except BaseException as error:  # handed to the awaiting coroutine, which decides
            failure = error
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
            loop.call_soon_threadsafe(deliver, result, failure)

    threading.Thread(target=work, name=f"inbox-{function.__name__}", daemon=True).start()
    return await asyncio.wait_for(future, IO_TIMEOUT)


def read_regular(path: Path, limit: int) -> bytes:
    """Up to `limit` bytes of `path`, which must be a regular file itself (not through a link)."""
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotRegularFile("a symlink") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(kind_of(mode))
        chunks: list[bytes] = []
        remaining = limit
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Claim:
    """A file being taken: moved out of the inbox to `.taking/<token>`, beside a journal that says
    what it was called and (once known) which batches had its content before the acceptance."""

    path: Path
    journal: Path
    name: str

    @classmethod
    def of_journal(cls, journal: Path) -> tuple[Claim, dict[str, Any]]:
        data: dict[str, Any] = json.loads(journal.read_text(encoding="utf-8"))
        return cls(journal.with_suffix(""), journal, str(data["name"])), data

    def record(self, **facts: Any) -> None:
        atomic_write_text(self.journal, json.dumps({"name": self.name, **facts}))

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.journal.unlink()


def claim(path: Path, taking: Path) -> Claim | None:
    """Move `path` into the claim area (None if it went meanwhile). A drop of the same name while it
    is taken lands in the inbox as a new file instead of being archived with this one."""
    taking.mkdir(exist_ok=True)
    token = secrets.token_hex(_TOKEN_BYTES)
    claimed = Claim(taking / token, taking / f"{token}.json", path.name)
    claimed.record()  # first: a claimed file is never without its name
    try:
        path.rename(claimed.path)
    except BaseException as error:
        claimed.forget()
        if isinstance(error, FileNotFoundError):
            return None
        raise
    return claimed


def remove_stale_journal_temps(taking: Path) -> list[str]:
    """Remove the half-written journals a kill left in the claim area (only those: a claimed file
    is named by its bare token, a journal `<token>.json`); returns their names."""
    removed = []
    for entry in taking.iterdir():
        if not _STALE_JOURNAL_TEMP.fullmatch(entry.name):
            continue
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISREG(entry.lstat().st_mode):
                entry.unlink()
                removed.append(entry.name)
    return removed


def move_no_replace(
    source: Path,
    folder: Path,
    name: str,
    *,
    prefix: str = "",
    companion: str = "",
    write_companion: Callable[[Path], None] | None = None,
) -> Path:
    """Move `source` to `folder/<prefix><name>` or, if taken, `<prefix><name>-2`, `-3`...: never over
    an existing file. Names are cut to fit NAME_MAX with room for `<name><companion>`, which
    `write_companion` (given the chosen path) writes before the file arrives."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(1, MAX_NUMBERED):
        fitted = fit_name(name, prefix=prefix, number=number, max_bytes=NAME_MAX - len(companion.encode()))
        target = folder / fitted
        companion_path = folder / f"{fitted}{companion}"
        if os.path.lexists(target) or (companion and os.path.lexists(companion_path)):
            continue
        if write_companion is not None:
            write_companion(target)
        try:
            _place(source, target)
        except FileExistsError:  # created meanwhile by someone else: the next number
            if companion:
                companion_path.unlink(missing_ok=True)
            continue
        except BaseException:
            if companion:
                companion_path.unlink(missing_ok=True)
            raise
        return target
    raise FileExistsError(f"no free name for {name!r} in {folder}")


def _place(source: Path, target: Path) -> None:
    """Move one file to a path that must not exist yet."""
    if not stat.S_ISREG(os.lstat(source).st_mode):  # put back after it was swapped: no link
        if os.path.lexists(target):
            raise FileExistsError(target)
        source.rename(target)
        return
    try:
        os.link(source, target, follow_symlinks=False)  # fails with EEXIST: an exclusive create
    except OSError as error:
        if error.errno not in _CANNOT_LINK:
            raise
        _copy_exclusive(source, target)
    source.unlink()


def _copy_exclusive(source: Path, target: Path) -> None:
    fd = os.open(source, READ_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(kind_of(mode))
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        try:
            with open(fd, "rb", closefd=False) as reader, open(out, "wb", closefd=False) as writer:
                shutil.copyfileobj(reader, writer)
                writer.flush()
                os.fsync(out)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        finally:
            os.close(out)
    finally:
        os.close(fd)
