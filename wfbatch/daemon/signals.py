"""The daemon's signals: SIGTERM/SIGINT stop it (a second one exits at once), SIGHUP reloads the
limits from the configuration."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

from wfbatch.engine.events import EventSink
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.protocol import EngineEvent
from wfbatch.settings import Settings, SettingsError

log = logging.getLogger("wfbatch.daemon")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def handled_signals(stop: asyncio.Event, on_reload: Callable[[], None]) -> Iterator[None]:
    """Stop signals set `stop`; SIGHUP calls `on_reload`. The handlers are removed on exit."""
    loop = asyncio.get_running_loop()

    def on_stop_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting at once", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s: stopping (in-flight jobs resume on the next start)", signal.Signals(signum).name)
        stop.set()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_stop_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_reload)
    try:
        yield
    finally:
        for signum in (*STOP_SIGNALS, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def reloader(
    engine: Engine, sink: EventSink, reload_settings: Callable[[], Settings] | None
) -> Callable[[], None]:
    """What SIGHUP does: re-read the settings and hand the engine the new limits (a bad file keeps
    the previous settings)."""

    def on_reload() -> None:
        if reload_settings is None:
            return
        try:
            new = reload_settings()
        except SettingsError as error:
            log.error("SIGHUP: configuration not reloaded (the previous settings stay): %s", error)
            return
        changes = engine.reload_limits(new)
        if changes:
            log.info("SIGHUP: limits reloaded: %s", _describe_limit_changes(changes))
        else:
            log.info("SIGHUP: configuration reloaded; no limit changed")
        sink(EngineEvent(event="reloaded", changed=sorted(changes)))

    return on_reload


def _describe_limit_changes(changes: dict[str, dict[str, tuple[Any, Any]]]) -> str:
    parts = []
    for provider, diff in sorted(changes.items()):
        fields = ", ".join(f"{key} {old!r} → {new!r}" for key, (old, new) in sorted(diff.items()))
        parts.append(f"{provider}: {fields}")
    return "; ".join(parts)
