"""The simulator's knobs, shared by `wfbatch sim` and the tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from wfbatch.sim.wireflow.plans import PLAN_LIMITS as WIREFLOW_PLAN_LIMITS
from wfbatch.sim.wireflow.plans import WireflowPlan

FAULT_GROUPS: tuple[str, ...] = ("5xx", "slow", "reset", "malformed", "lost")
"""Fault families drawn at `error_rate`. `lost` applies to execution starts only: the execution is
created, then the answer is replaced by a 5xx or a dropped connection."""

FAULT_KINDS: tuple[str, ...] = (
    "500",
    "502",
    "503",
    "slow",
    "reset",
    "malformed",
    "lost_5xx",
    "lost_reset",
    "endless",
    "trickle",
    "echo_key",
    "credits_negative",
    "credits_nan",
)
"""Concrete faults, as counted in `/_sim/stats` and accepted by `/_sim/faults`. The last five are
hostile-server faults, only ever queued (never drawn at `error_rate`): `endless` streams a body that
never ends, `trickle` sends the answer one byte every `trickle_seconds`, `echo_key` echoes the
caller's API key in the request id, ids and URLs, `credits_*` report a charge of "-50" / "NaN".
`endless` and `trickle` also apply to `/files/*` (route "files")."""

ErrorStyle = Literal["string", "object"]
QuotaError = Literal["insufficient_quota", "billing_hard_limit"]

PROVIDERS: tuple[str, ...] = ("wireflow", "openai", "fal", "replicate", "stability", "comfyui")
"""Contracts the simulator can speak (one route set each, see `wfbatch.sim.registry`)."""


@dataclass(frozen=True)
class SimOptions:
    """Everything that shapes one simulator run. Times are in seconds."""

    provider: str = "wireflow"
    host: str = "127.0.0.1"
    port: int = 0
    plan: WireflowPlan = WireflowPlan.FREE
    latency: tuple[float, float] = (1.0, 5.0)
    """Execution run time, drawn uniformly from [min, max] with the seeded RNG."""
    fail_rate: float = 0.0
    """Share of executions that end FAILED (a moderation-style node error)."""
    fail_marker: str | None = None
    """Prompts containing this text always fail: a deterministic FAILED for rehearsals and tests."""
    error_rate: float = 0.0
    """Share of API requests answered with an injected fault (see FAULT_GROUPS)."""
    faults: tuple[str, ...] = FAULT_GROUPS
    slow_seconds: float = 90.0
    """How long a `slow` fault stalls before answering: longer than a typical client timeout."""
    trickle_seconds: float = 2.0
    """Pause between the bytes of a `trickle` fault's answer."""
    cdn_error_rate: float = 0.0
    """Share of image downloads answered with a 503, an empty body or an HTML page."""
    error_style: ErrorStyle = "string"
    """`{"error": "msg"}` or the newer `{"error": {"type", "code", "message"}}` envelope."""
    credits: float | None = None
    """Starting balance; None = unlimited."""
    cost: float = 1.0
    """Credits per execution (charged on success only)."""
    estimate_incomplete: bool = False
    """Wireflow: `/estimate` answers estimateComplete false (a graph whose cost it cannot predict)."""
    seed: int = 0
    window: float = 60.0
    """Length of the per-minute windows; the daily window scales with it (window × 1440)."""
    rpm: int | None = None
    epm: int | None = None
    daily: int | None = None
    api_key: str | None = None
    """If set, the only key accepted; otherwise any key starting with `sk-` or `wf_`."""
    workflow_ids: tuple[str, ...] = field(default=("wf_demo",))
    # -- OpenAI Images only (providers.md §5); `rpm` is its requests/min there, None = unlimited.
    images_per_minute: int | None = None
    quota: float | None = None
    """Images the account may still generate; None = unlimited. `/_sim/credits` raises it."""
    quota_error: QuotaError = "insufficient_quota"
    """How a spent quota answers: 429 `insufficient_quota` or 400 `billing_hard_limit_reached`."""
    moderation_marker: str | None = None
    """Prompts containing this text are refused by the "safety system" (as is `fail_marker`)."""
    no_retry_share: float = 0.0
    """Share of injected 5xx answers that carry `x-should-retry: false`."""
    url_ttl: float = 3600.0
    """How long a dall-e `url` answer stays downloadable (the docs say 60 minutes)."""
    # -- fal and Replicate: `quota` is the images the account can still pay for (None = unlimited),
    # `moderation_marker` / `fail_marker` refuse prompts, `rpm` limits submits / creates.
    concurrency: int = 2
    """fal: requests IN_PROGRESS at once; more wait IN_QUEUE (a new account's 2, up to 40)."""
    retention: float = 3600.0
    """Replicate: seconds after a prediction ends before its input and outputs are removed
    (`data_removed`); an hour at Replicate, shorter to rehearse an output that expired."""
    page_size: int = 100
    """Replicate: predictions per page of `GET /predictions`."""
    # -- Stability only (providers.md §4); `rpm` is its requests per `stability_window` (default 150),
    # `credits` its balance, `moderation_marker` its 403 content_moderation.
    stability_window: float = 10.0
    lockout: float = 60.0
    """Seconds a 429 locks the account out (Stability: about 60 s, no Retry-After)."""
    filter_marker: str | None = None
    """Prompts containing this text come back blurred with `finish-reason: CONTENT_FILTERED` (charged)."""
    # -- ComfyUI only (providers.md §7): `latency` is each run, `fail_marker` an execution_error.
    checkpoints: tuple[str, ...] = ("sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors")
    legacy_comfyui: bool = False
    """Behave like an old ComfyUI: ignore a client's prompt_id, send `error` as a string."""
    comfyui_ws: bool = True
    """Serve `/ws` (progress events). False: like an old server or a proxy without WebSockets."""
    # -- OpenAI Batch API (providers.md §6).
    batch_step: float = 60.0
    """Seconds a remote batch spends in each of validating, in_progress and finalizing."""
    batch_expire_after: int | None = None
    """A remote batch expires once this many of its lines are done; the rest never run."""
    batch_fail_input: bool = False
    """Every input file fails validation (the batch ends `failed` with `errors`)."""
    batch_not_image_marker: str | None = None
    """Batch lines whose prompt contains this text are made (and paid: a `200`) but come back with a
    `b64_json` that is not an image: a hostile answer, for rehearsing what a paid bad line costs."""
    batch_no_image_marker: str | None = None
    """Batch lines whose prompt contains this text are answered `200` (paid) with an empty `data`."""
    batch_broken_image_marker: str | None = None
    """Batch lines whose prompt contains this text are answered `200` (paid) with a PNG signature
    over junk: bytes that look like an image until they are decoded."""
    batch_server_error_marker: str | None = None
    """Batch lines whose prompt contains this text fail on the server's side: answered `500`
    (`server_error`) in the error file; nothing made, nothing charged."""
    batch_cut_line_marker: str | None = None
    """The output line of a prompt containing this text is cut short (not JSON): made and paid, but
    unreadable, custom_id and all; `request_counts` still count it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan", WireflowPlan(self.plan))
        if self.provider not in PROVIDERS:
            raise ValueError(f"unknown provider {self.provider!r}; known: {', '.join(PROVIDERS)}")
        lo, hi = self.latency
        if lo < 0 or hi < lo:
            raise ValueError(f"latency must be 0 <= MIN <= MAX, got {lo},{hi}")
        for name in ("fail_rate", "error_rate", "cdn_error_rate", "no_retry_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.window <= 0:
            raise ValueError("window must be > 0")
        if self.cost < 0 or (self.credits is not None and self.credits < 0):
            raise ValueError("credits and cost must be >= 0")
        if self.batch_step < 0 or (self.batch_expire_after is not None and self.batch_expire_after < 0):
            raise ValueError("batch_step and batch_expire_after must be >= 0")
        if self.quota is not None and self.quota < 0:
            raise ValueError("quota must be >= 0")
        if self.quota_error not in ("insufficient_quota", "billing_hard_limit"):
            raise ValueError("quota_error must be 'insufficient_quota' or 'billing_hard_limit'")
        if self.concurrency < 1 or self.page_size < 1:
            raise ValueError("concurrency and page_size must be >= 1")
        if self.retention <= 0:
            raise ValueError("retention must be > 0")
        for name in ("rpm", "epm", "daily", "images_per_minute"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1")
        unknown = set(self.faults) - set(FAULT_GROUPS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULT_GROUPS)}")
        if self.error_style not in ("string", "object"):
            raise ValueError("error_style must be 'string' or 'object'")

    @property
    def requests_per_window(self) -> int:
        return self.rpm if self.rpm is not None else WIREFLOW_PLAN_LIMITS[self.plan][0]

    @property
    def executions_per_window(self) -> int:
        return self.epm if self.epm is not None else WIREFLOW_PLAN_LIMITS[self.plan][1]

    @property
    def executions_per_day(self) -> int | None:
        return self.daily if self.daily is not None else WIREFLOW_PLAN_LIMITS[self.plan][2]

    @property
    def day_seconds(self) -> float:
        """A "day" in simulator time: 1440 windows, so a scaled-down window scales the day too."""
        return self.window * 1440
