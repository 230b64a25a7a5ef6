"""The terminal UI: attaches to the daemon over its socket and shows only what the API gives."""

from __future__ import annotations

from wfbatch.tui.app import WfbatchApp

__all__ = ["WfbatchApp"]
