"""The API's paths, as Starlette templates: the daemon mounts them, the client fills them in
(`JOB.format(job_id=7)`), so neither side can spell one differently."""

from __future__ import annotations

HEALTH = "/v1/health"
STATUS = "/v1/status"
METRICS = "/v1/metrics"
EVENTS = "/v1/events"
BATCHES = "/v1/batches"
BATCH = "/v1/batches/{batch_id}"
BATCH_BUDGET = "/v1/batches/{batch_id}/budget"
JOBS = "/v1/jobs"
JOB = "/v1/jobs/{job_id}"
JOB_EDIT = "/v1/jobs/{job_id}/edit"
JOBS_RETRY = "/v1/jobs/retry"
JOBS_CANCEL = "/v1/jobs/cancel"
PAUSE = "/v1/pause"
RESUME = "/v1/resume"
REVIEW = "/v1/review"
SUBMIT = "/v1/submit"
SIDECAR = "/v1/sidecars/{name}"
"""POST: start what else the daemon serves (`web`) unless it runs; answers once it serves."""
