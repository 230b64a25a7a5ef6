"""Files of a batch folder → an S3-compatible bucket (AWS S3, Cloudflare R2, GCS interop, MinIO).

boto3 signs and sends (signature v4); its calls block, so each runs in a thread. boto3's own
retries are off: the caller retries by error class, with backoff and a record of every try.
Credentials come from boto3's chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, the
shared files, instance roles) and never pass through wfbatch's settings, store or logs.
"""

from __future__ import annotations

import asyncio
import mimetypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import boto3
import botocore.exceptions
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Codes that say the request can never work as configured: retrying only costs requests.
_REFUSALS = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "NoSuchBucket",
        "SignatureDoesNotMatch",
        "AuthorizationHeaderMalformed",
        "PermanentRedirect",
        "InvalidToken",
        "ExpiredToken",
        "InvalidObjectState",
        "MethodNotAllowed",
    }
)
T = TypeVar("T")

_THROTTLING = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "TooManyRequests"}
)
_NO_CREDENTIALS = (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError)


class BucketError(Exception):
    """An upload, delete or presign did not happen; `str()` says why without any secret."""


class BucketTransient(BucketError):
    """Worth trying again later: no connection, a timeout, throttling, a 5xx."""


class BucketRefused(BucketError):
    """Will not work until the configuration changes: access denied, no such bucket, no credentials."""


@dataclass(frozen=True)
class Endpoint:
    """How to reach an S3-compatible service (the bucket is per call)."""

    endpoint_url: str | None
    region: str | None
    timeout: float


def classify(error: Exception) -> BucketError:
    """A boto3/botocore error (or an OS error reading the local file) → transient or refused."""
    if isinstance(error, BucketError):
        return error
    if isinstance(error, _NO_CREDENTIALS):
        return BucketRefused(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
        )
    if isinstance(error, botocore.exceptions.ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code") or "")
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = str(details.get("Message") or "")[:200]
        text = f"{code or 'error'} (HTTP {status or '?'})" + (f": {message}" if message else "")
        if code in _THROTTLING or status in (408, 429) or status >= 500:
            return BucketTransient(text)
        if code in _REFUSALS or status in (301, 307, 400, 401, 403, 404, 405):
            return BucketRefused(text)
        return BucketRefused(text)
    if isinstance(error, botocore.exceptions.ParamValidationError | botocore.exceptions.InvalidRegionError):
        return BucketRefused(f"invalid S3 request: {error}")
    if isinstance(error, botocore.exceptions.BotoCoreError):
        # Connection refused/reset, timeouts, a DNS failure, an answer cut short: the network.
        return BucketTransient(f"{type(error).__name__}: {error}")
    if isinstance(error, FileNotFoundError):
        return LocalFileGone(f"the local file is gone: {error.filename}")
    if isinstance(error, OSError):
        return BucketTransient(f"{type(error).__name__}: {error}")
    return BucketTransient(f"{type(error).__name__}: {error}")


class LocalFileGone(BucketRefused):
    """The file to upload is not in the batch folder any more: this object only, not the bucket."""


class Buckets:
    """One boto3 client per endpoint, made on first use (a session is not thread-safe; a client is)."""

    def __init__(self) -> None:
        self._clients: dict[Endpoint, S3Client] = {}
        self._lock = threading.Lock()

    def _client(self, endpoint: Endpoint) -> S3Client:
        with self._lock:
            client = self._clients.get(endpoint)
            if client is None:
                config = Config(
                    signature_version="s3v4",
                    connect_timeout=endpoint.timeout,
                    read_timeout=endpoint.timeout,
                    retries={"total_max_attempts": 1},
                    # Path-style for custom endpoints: `bucket.127.0.0.1` resolves nowhere, and
                    # MinIO/SeaweedFS/R2 all take path-style requests.
                    s3={"addressing_style": "path" if endpoint.endpoint_url else "auto"},
                    # Checksums only where S3 requires them: several S3-compatible servers refuse
                    # the CRC32 trailers newer boto3 adds by default.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                client = boto3.session.Session().client(
                    "s3", endpoint_url=endpoint.endpoint_url, region_name=endpoint.region, config=config
                )
                self._clients[endpoint] = client
            return client

    def forget(self) -> None:
        """Drop the clients (the configuration changed: new credentials may be in the chain)."""
        with self._lock:
            self._clients.clear()

    async def put(self, endpoint: Endpoint, bucket: str, key: str, path: Path) -> str:
        """Upload the file at `path` as `key`; returns the object's ETag. The same key written again
        (after a crash) replaces the object with the same bytes: idempotent."""

        def upload() -> str:
            data = path.read_bytes()
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            answer = self._client(endpoint).put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type
            )
            return str(answer.get("ETag", "")).strip('"')

        return await self._call(upload)

    async def delete(self, endpoint: Endpoint, bucket: str, key: str) -> None:
        """Delete `key`; deleting one that is not there is not an error (S3 answers 204)."""

        def remove() -> None:
            self._client(endpoint).delete_object(Bucket=bucket, Key=key)

        await self._call(remove)

    async def presign(self, endpoint: Endpoint, bucket: str, key: str, seconds: int) -> str:
        """A GET URL anyone can use for `seconds`; computed locally, no request is sent."""

        def sign() -> str:
            return self._client(endpoint).generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
            )

        return await self._call(sign)

    @staticmethod
    async def _call(work: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(work)
        except Exception as error:
            raise classify(error) from None
