"""Files of a batch folder → an S3-compatible bucket (AWS S3, Cloudflare R2, GCS interop, MinIO).

boto3 signs and sends (signature v4); its calls block, so each runs in a thread, under a deadline
for the whole call: botocore's read timeout is per read, and an endpoint that trickles its answer
would hold a call for ever. The threads are daemon threads, not the default executor's, which
`asyncio.run` and the interpreter join at exit: a stuck call never keeps the process from stopping
(the upload is still pending in the store, and the next start does it). boto3's own retries are
off: the caller retries by error class, with backoff and a record of every try.
Credentials come from boto3's chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, the
shared files, instance roles) and never pass through wfbatch's settings, store or logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
MAX_CALL_THREADS = 32
"""Calls running at once, those past their deadline included: an endpoint that trickles every
answer costs this many threads at most."""


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
    """Seconds per connect / read."""
    deadline: float
    """Seconds a whole call (an upload with its answer) may take."""


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
        self._threads = threading.BoundedSemaphore(MAX_CALL_THREADS)

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

        return await self._call(upload, endpoint.deadline)

    async def delete(self, endpoint: Endpoint, bucket: str, key: str) -> None:
        """Delete `key`; deleting one that is not there is not an error (S3 answers 204)."""

        def remove() -> None:
            self._client(endpoint).delete_object(Bucket=bucket, Key=key)

        await self._call(remove, endpoint.deadline)

    async def presign(self, endpoint: Endpoint, bucket: str, key: str, seconds: int) -> str:
        """A GET URL anyone can use for `seconds`; computed locally, no request is sent."""

        def sign() -> str:
            return self._client(endpoint).generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
            )

        return await self._call(sign, endpoint.deadline)

    async def _call(self, work: Callable[[], T], deadline: float) -> T:
        if not self._threads.acquire(blocking=False):
            raise BucketTransient(f"{MAX_CALL_THREADS} calls to S3 are still waiting for an answer")
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()

        def run() -> None:
            try:
                _run_for(loop, answer, work)
            finally:
                self._threads.release()

        try:
            threading.Thread(target=run, name="s3-call", daemon=True).start()
        except RuntimeError as error:  # the system's thread limit: like any overload, try later
            self._threads.release()
            raise BucketTransient(f"cannot start a thread: {error}") from None
        try:
            async with asyncio.timeout(deadline):
                return await answer
        except TimeoutError:
            # The thread is left to finish (or not) on its own: it holds no lock and no state.
            raise BucketTransient(f"no complete answer within {deadline:g} s") from None
        except Exception as error:
            raise classify(error) from None


def _run_for(loop: asyncio.AbstractEventLoop, answer: asyncio.Future[T], work: Callable[[], T]) -> None:
    """Run `work` in this thread and hand its outcome to `answer` on `loop`."""
    outcome: Callable[[], None]
    try:
        result = work()
    except BaseException as error:  # whatever it is, the caller classifies it
        outcome = functools.partial(_fail, answer, error)
    else:
        outcome = functools.partial(_succeed, answer, result)
    # The loop may be gone: the process stopped while this call was stuck.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(outcome)


def _succeed(answer: asyncio.Future[T], result: T) -> None:
    if not answer.done():  # not when the caller gave up (deadline, cancel)
        answer.set_result(result)


def _fail(answer: asyncio.Future[T], error: BaseException) -> None:
    if not answer.done():
        answer.set_exception(error)
