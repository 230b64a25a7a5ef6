"""The Batch API's side of the simulator's world: uploaded files and remote batches, with the
counters tests read (uploads, batches created, cancels). No I/O; thread-safe like `SimState`."""

from __future__ import annotations

import random
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from wfbatch.sim.options import SimOptions


@dataclass
class SimFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int


@dataclass
class SimBatch:
    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, str]
    created_at: float
    lines: list[dict[str, Any]]
    status: str = "validating"
    cancelled_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    finished_at: float | None = None
    finishing: bool = False


class BatchBook:
    """Files and batches; thread-safe like `SimState`."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self._lock = threading.RLock()
        self._shuffle = random.Random(f"openai-batch:{options.seed}")
        self.files: dict[str, SimFile] = {}
        self.batches: dict[str, SimBatch] = {}
        self.uploads = 0
        self.batches_created = 0
        self.cancels = 0

    def add_file(self, filename: str, purpose: str, content: bytes, now: float) -> SimFile:
        with self._lock:
            stored = SimFile(f"file-{uuid.uuid4().hex[:24]}", filename, purpose, content, int(now))
            self.files[stored.id] = stored
            if purpose == "batch":
                self.uploads += 1
            return stored

    def add_batch(self, batch: SimBatch) -> None:
        with self._lock:
            self.batches[batch.id] = batch
            self.batches_created += 1

    def count_cancel(self) -> None:
        with self._lock:
            self.cancels += 1

    def shuffle(self, lines: list[dict[str, Any]]) -> None:
        with self._lock:
            self._shuffle.shuffle(lines)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "uploads": self.uploads,
                "batches_created": self.batches_created,
                "cancels": self.cancels,
                "input_file_ids": [f.id for f in self.files.values() if f.purpose == "batch"],
                "batches": {b.id: b.status for b in self.batches.values()},
            }
