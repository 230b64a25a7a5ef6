"""What several daemons on one PostgreSQL database need of their files, checked at start.

The queue, the ledger and the caps are shared through the database; files are not. Each daemon
keeps its own inbox (a file dropped on two machines is still one batch: acceptance is unique by
content in the database). Outputs and a batch's manifest are written on the machine whose daemon
ran the jobs, and the cache's bytes stay where they were made: a cache entry recorded by another
machine's daemon is, without its bytes here, made (and paid) again. What shares them today is one
folder mounted as every daemon's `cache/` and `output/` (NFS), or the delivery bucket for the
outputs. The check says so once, at start, when neither is evident.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from wfbatch.home import HomeLayout
from wfbatch.settings import Settings

log = logging.getLogger("wfbatch.daemon")


def shared_folder(path: os.PathLike[str] | str) -> bool:
    """Whether the folder sits on a network file system (by its mount's type), as far as this
    machine tells: an NFS, CIFS or FUSE mount counts; a local disk does not."""
    real = os.path.realpath(path)
    best, kind = "", ""
    try:
        lines = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) < 3 or len(fields[1]) <= len(best):
            continue
        if real == fields[1] or real.startswith(fields[1].rstrip("/") + "/"):
            best, kind = fields[1], fields[2]
    return kind.startswith(("nfs", "cifs", "smb", "fuse", "ceph", "glusterfs", "9p"))


def check_fleet_files(settings: Settings, layout: HomeLayout) -> list[str]:
    """The warnings (also logged) for a daemon on a shared database whose files are not shared."""
    if settings.store.url() is None:
        return []
    problems = []
    if not shared_folder(layout.cache):
        problems.append(
            f"several daemons share this queue, but {layout.cache} is on this machine's disk: a cache hit"
            " recorded by another machine's daemon is made (and paid) again here; mount one shared"
            " folder (NFS) as every daemon's cache/ to reuse images across machines"
        )
    if settings.delivery.url is None and not shared_folder(layout.output):
        problems.append(
            f"several daemons share this queue, but outputs and manifests stay in {layout.output} on the"
            " machine whose daemon ran each job: set [delivery] url (one bucket for every daemon) or"
            " mount one shared folder as every daemon's output/"
        )
    for problem in problems:
        log.warning("%s", problem)
    return problems
