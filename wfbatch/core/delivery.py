"""Where a batch's results go and who is told: the `delivery` and `notify` values a batch spec may
set (overriding the HOME's configuration field by field), and the `s3://bucket/prefix/` rules.

Both sides use these: the settings (the HOME's values) and the spec parser (a batch's own). No secret
is ever part of them: S3 credentials come from the AWS chain, the webhook secret from the HOME's
configuration only, so nothing here can reach the database or a manifest with one in it.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

PREFIX_PLACEHOLDERS = ("batch", "date", "name")
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
"""S3 signature v4 refuses presigned URLs valid for longer than a week."""

UploadMode = Literal["all", "approved"]


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str
    """Ends with `/` unless empty; may hold `{batch}`, `{date}`, `{name}`."""

    def key(self, relative: str, *, batch: str, date: str, name: str) -> str:
        """The object key of a file at `relative` (a path inside the batch folder)."""
        return self.expand(batch=batch, date=date, name=name) + relative

    def expand(self, *, batch: str, date: str, name: str) -> str:
        return self.prefix.format(batch=batch, date=date, name=name)


def parse_s3_url(url: str) -> S3Location:
    """`s3://bucket/some/prefix/` → its bucket and prefix; ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ValueError(f"expected s3://bucket/prefix/, got a {parts.scheme or 'schemeless'} URL")
    if not parts.netloc:
        raise ValueError("s3:// URL without a bucket name")
    if parts.query or parts.fragment:
        raise ValueError("an s3:// URL takes no ?query or #fragment")
    prefix = parts.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(prefix) if field is not None]
    except ValueError as error:
        raise ValueError(f"prefix: {error} (write '{{{{' and '}}}}' for literal braces)") from None
    unknown = sorted(set(fields) - set(PREFIX_PLACEHOLDERS))
    if unknown:
        allowed = ", ".join("{" + name + "}" for name in PREFIX_PLACEHOLDERS)
        raise ValueError(f"prefix: unknown placeholder {{{unknown[0]}}} (use {allowed})")
    return S3Location(bucket=parts.netloc, prefix=prefix)


def check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    return url


def _s3_url_or_none(value: str | None) -> str | None:
    if value is not None:
        parse_s3_url(value)
    return value


def _http_url_or_none(value: str | None) -> str | None:
    return None if value is None else check_http_url(value)


OptionalS3Url = Annotated[str | None, AfterValidator(_s3_url_or_none)]
"""A field that, when set, is an s3://bucket/prefix/ URL (checked by `parse_s3_url`)."""
OptionalHttpUrl = Annotated[str | None, AfterValidator(_http_url_or_none)]
"""A field that, when set, is an http:// or https:// URL."""


class _Override(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def given(self) -> dict[str, Any]:
        """Only the fields the spec set: they override the HOME's, the rest is left to it."""
        return self.model_dump(exclude_unset=True)


class DeliveryOverride(_Override):
    """A batch spec's `"delivery": {...}`: the fields of `[delivery]` it changes for this batch."""

    url: OptionalS3Url = None
    endpoint_url: OptionalHttpUrl = None
    region: str | None = None
    upload: UploadMode | None = None
    presign_seconds: int | None = Field(default=None, ge=0, le=MAX_PRESIGN_SECONDS)


class NotifyOverride(_Override):
    """A batch spec's `"notify": {...}`. No `command` (a prompt file is data: dropping one must not
    run a program) and no secret (it would be stored with the batch): those are the HOME's."""

    webhook_url: OptionalHttpUrl = None
    job_failed: bool | None = None
    budget_alert: float | None = Field(default=None, ge=0, le=1)
