"""Where the daemon's socket is, for a given configuration."""

from __future__ import annotations

from pathlib import Path

from wfbatch.home import HomeLayout
from wfbatch.settings import Settings


def socket_path_for(settings: Settings) -> Path:
    return settings.socket_path or HomeLayout(settings.home).default_socket_path()
