"""`manifest.json`: what is in a batch folder, one entry per image (or per job that has none yet).

The file is UTF-8 JSON, indented, non-ASCII text kept as-is, rewritten atomically after every
change, so it can be read at any time. Its schema is the `Manifest` model below; times are
ISO 8601 with a UTC offset. Example:

```json
{
  "schema_version": 1,
  "batch_id": "b_01J...",
  "name": "castles",
  "created_at": "2025-05-01T09:30:00Z",
  "updated_at": "2025-05-01T09:41:12Z",
  "counts": {"done": 1, "queued": 3},
  "entries": [
    {
      "job_id": "j_01J...", "index": 1, "user_id": null,
      "prompt": "a castle at dawn", "negative_prompt": null,
      "provider": "local", "provider_label": "local (offline placeholder renderer)",
      "account": "default",
      "model": null, "seed": 42, "width": 1024, "height": 1024, "variant": 0,
      "params": {}, "tags": [], "format": "png",
      "file": "pending-review/00001-a-castle-at-dawn.png",
      "status": "done", "review": "pending",
      "cache_hit": false, "cache_key": "3f2a...", "attempts": 1,
      "credits": null, "remote_id": null, "request_id": null, "error": null,
      "stage": null, "final_job_id": null, "draft_job_id": null, "final_mode": null, "inputs": [],
      "created_at": "2025-05-01T09:30:00Z", "finished_at": "2025-05-01T09:30:02Z"
    }
  ]
}
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from wfbatch.outputs.atomic import atomic_write_text

MANIFEST_FILE_NAME = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1


class _ManifestModel(BaseModel):
    # Unknown fields are ignored, so an older wfbatch can still read a newer manifest.
    model_config = ConfigDict(extra="ignore")


class ManifestInput(_ManifestModel):
    """One picture a job sent: what the prompt file named and the bytes' sha256."""

    role: str
    """`image`, `mask` or `images` (a reference picture)."""
    source: str
    """As the prompt file wrote it (a path or an https:// URL), or `draft:<job id>` for a final."""
    path: str | None = None
    """Where it was read from on this machine (resolved); null for a URL."""
    url: str | None = None
    sha256: str
    width: int | None = None
    height: int | None = None


class ManifestError(_ManifestModel):
    """Why a job failed (its last error), as the provider reported it."""

    http_status: int | None
    """HTTP status of the failing response; null for errors with none (timeouts, resets)."""
    message: str
    """The provider's message, or ours when the provider gave none."""
    request_id: str | None
    """The provider's request id (`X-Request-Id`), to quote to its support."""


class ManifestDelivery(_ManifestModel):
    """Where the image is in the delivery bucket (see `[delivery]`)."""

    url: str | None
    """`s3://bucket/key` of the uploaded object; null while none is (pending, or held)."""
    etag: str | None
    """The object's ETag as the bucket answered (the MD5 of the bytes for a single upload)."""
    at: AwareDatetime | None
    presigned_url: str | None = None
    """A GET URL anyone can use until `presigned_until` (only with `presign_seconds`)."""
    presigned_until: AwareDatetime | None = None
    state: str = "done"
    """`done`; `pending` while a newer version (a review's move) is on its way; `held` when it is
    stuck (see `error`)."""
    error: str | None = None


class ManifestEntry(_ManifestModel):
    """One job of the batch: the image it produced, or where it stands."""

    job_id: str
    """wfbatch's id for the job."""
    index: int
    """1-based position in the batch; the `00001` that starts the file name."""
    user_id: str | None
    """The prompt entry's own `id` from the prompt file, if it had one."""
    prompt: str
    negative_prompt: str | None
    provider: str
    """Provider name, e.g. `local`, `wireflow`."""
    provider_label: str
    """How the provider is shown to people (the `local` one says it renders placeholders)."""
    account: str | None = None
    """The provider account its start went to, as the config names it (`default` for a section's
    single key); null for a job never started (a cache hit, one still queued). Never the key."""
    model: str | None
    seed: int
    width: int
    height: int
    variant: int
    """0-based variant number, for entries with `variants: N`."""
    params: dict[str, Any]
    """Provider-specific parameters, as given in the prompt file."""
    tags: list[str]
    format: str
    """Output format: `png`, `webp` or `jpeg`."""
    file: str | None
    """The image, relative to the batch folder (`pending-review/00001-x.png`); null until written."""
    status: str
    """Job state: queued, submitting, running, retrying, done, failed, canceled."""
    review: str
    """Review status: pending, approved, rejected."""
    cache_hit: bool
    """True when the image came from the local cache and cost no API request."""
    cache_key: str
    """sha256 of everything that determines the image (see the design's cache section)."""
    attempts: int
    credits: float | None
    """Credits the provider charged, when it says."""
    remote_id: str | None
    """The provider's id for the execution, when it has one."""
    request_id: str | None
    """The provider's request id of the last response."""
    error: ManifestError | None
    """The last error, for failed (and retrying) jobs."""
    possible_duplicate_charge: bool = False
    """True when a start was re-sent after its answer was lost, to a provider that cannot tell a
    re-send from a new request: this image may have been paid for twice."""
    possible_duplicate_charge_why: str | None = None
    stage: Literal["draft", "final"] | None = None
    """In a draft → final batch: `draft` (made at the draft settings, for review) or `final` (what
    approving its draft queued); null in a batch without stages."""
    final_job_id: str | None = None
    """A draft's final, once the draft was approved (its own entry has the file and the charge)."""
    draft_job_id: str | None = None
    """A final's draft: same prompt, seed and variant, at the draft settings."""
    final_mode: Literal["upscale", "refine", "regenerate", "regenerated", "from_draft"] | None = None
    """How a final was made from its approved draft: `upscale` (the draft's picture through the
    provider's upscaler), `refine` (the draft through image-to-image at the final settings) or
    `regenerate` (from the prompt and seed at the final settings). Manifests written before
    these said `regenerated` (and never `from_draft`): still read."""
    inputs: list[ManifestInput] = []
    """The pictures sent with the prompt (a final's draft too), by role, with their sha256."""
    delivered: ManifestDelivery | None = None
    """The uploaded object, when the batch has a delivery bucket and this image is in it."""
    created_at: AwareDatetime
    finished_at: AwareDatetime | None


class Manifest(_ManifestModel):
    """The whole `manifest.json` of one batch folder."""

    schema_version: int = MANIFEST_SCHEMA_VERSION
    """Raised on incompatible changes to this schema; fields may be added without raising it."""
    batch_id: str
    name: str
    """The batch's name (the prompt file's name unless the file sets one)."""
    created_at: AwareDatetime
    updated_at: AwareDatetime
    counts: dict[str, int]
    """Number of jobs per job state, e.g. `{"done": 10, "failed": 1}`."""
    entries: list[ManifestEntry]
    """In batch order (by `index`)."""


def write_manifest(batch_dir: Path, manifest: Manifest) -> Path:
    """Write `manifest` atomically as `batch_dir/manifest.json`; returns that path."""
    path = batch_dir / MANIFEST_FILE_NAME
    # pydantic's JSON keeps non-ASCII text as UTF-8 rather than \\u escapes: readable prompts.
    atomic_write_text(path, manifest.model_dump_json(indent=2) + "\n")
    return path


def read_manifest(batch_dir: Path) -> Manifest:
    """Read `batch_dir/manifest.json`.

    Raises `FileNotFoundError` when there is none, `ValueError` when it was written by a newer
    wfbatch with an incompatible schema, and `pydantic.ValidationError` (also a `ValueError`)
    when it is not a valid manifest.
    """
    path = batch_dir / MANIFEST_FILE_NAME
    raw = path.read_bytes()
    version = _schema_version(raw)
    if version is not None and version > MANIFEST_SCHEMA_VERSION:
        raise ValueError(
            f"{path} has schema version {version}; this wfbatch reads up to {MANIFEST_SCHEMA_VERSION}"
        )
    return Manifest.model_validate_json(raw)


def _schema_version(raw: bytes) -> int | None:
    # Checked before validation: a newer schema may fail it for reasons that would only mislead.
    try:
        document: object = json.loads(raw)
    except ValueError:
        return None  # validation reports it properly
    version = document.get("schema_version") if isinstance(document, dict) else None
    return version if isinstance(version, int) else None
