"""The TUI attaches over the API only: importing it must not load the daemon, engine or store."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("wfbatch.daemon", "wfbatch.store", "wfbatch.engine", "wfbatch.providers", "wfbatch.outputs")


def test_tui_modules_import_neither_daemon_nor_store_nor_engine() -> None:
    code = (
        "import json, sys\n"
        "import wfbatch.tui, wfbatch.tui.app, wfbatch.cli.tui_cmd\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('wfbatch'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "wfbatch.tui.app" in loaded
    leaked = [m for m in loaded if m.startswith(FORBIDDEN)]
    assert leaked == []
