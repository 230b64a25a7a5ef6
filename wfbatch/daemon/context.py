"""Everything a request handler may need, in one place (hung on the Starlette app's state)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from starlette.requests import Request

from wfbatch.daemon.hub import EventHub
from wfbatch.daemon.progress import CompletionTracker
from wfbatch.daemon.sidecars import Sidecars
from wfbatch.engine.intake.control import Control
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.settings import Settings
from wfbatch.store import StoreApi


@dataclass
class DaemonContext:
    engine: Engine
    control: Control
    hub: EventHub
    tracker: CompletionTracker
    started_at: float = field(default_factory=time.time)
    inbox_outcomes: Counter[str] = field(default_factory=Counter)
    sidecars: Sidecars = field(default_factory=Sidecars)

    @property
    def store(self) -> StoreApi:
        return self.engine.store

    @property
    def layout(self) -> HomeLayout:
        return self.engine.layout

    @property
    def settings(self) -> Settings:
        """The current settings (SIGHUP may have replaced them)."""
        return self.engine.settings


def context_of(request: Request) -> DaemonContext:
    ctx = request.app.state.ctx
    if not isinstance(ctx, DaemonContext):  # pragma: no cover - a wiring mistake
        raise RuntimeError("the app has no daemon context")
    return ctx
