"""The cyclic garbage collector paused while a prompt file becomes objects.

Parsing, expanding and hashing a 100,000-line file allocates a few hundred thousand objects that
all stay alive (entries, specs, rows). CPython's collector runs every 700 net allocations and its
older generations rescan everything alive so far, so it walked those objects again and again for
nothing: ~1 s of a 5 s ingest (docs/benchmarks.md, "Ingest"). Nothing built there forms a cycle
that reference counting cannot free, and the pause ends with the work, so no garbage is kept.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector for a bounded, synchronous bulk build (never across an await).
    Nests: only the outermost pause that found the collector on turns it back on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
