"""Where a prompt file may point the daemon's HTTP clients.

A dropped file is data, yet a batch spec's `notify.webhook_url` and `delivery.endpoint_url` steer
requests that carry the HOME's webhook signature or AWS credentials. So a per-batch target is taken
only when the HOME's configuration allows it: it is the HOME's own target, or it matches an entry of
the HOME's allow-list. An entry is a host (`hooks.example.com`, `10.0.0.5`, `[fd00::1]:9000`), which
allows any path on it over http or https, or a URL prefix (`https://hooks.example.com/wfbatch/`),
which allows that scheme, host, port and paths under it.

Addresses that reach the machine itself or its networks (loopback, private, link-local — the cloud
metadata service —, unspecified, multicast, reserved) are refused for a batch unless the HOME allows
them explicitly: an entry naming the address itself, or `allow_private_addresses`. A hostname is
checked again at send time, against the addresses it resolves to then (a name may resolve to
127.0.0.1). Messages name the host, never the whole URL: a webhook's path often holds a token.

Two more targets carry the HOME's AWS signature. A bucket (`delivery.url`): the HOME's own bucket, or
one its `allowed_buckets` names (`bucket`: any key in it; `bucket/prefix/`: keys under that prefix),
at whichever endpoint the batch uses. And AWS's own endpoint (`delivery.endpoint_url: null`): a
batch may use it when the HOME does (no endpoint of its own) or lists `"aws"` in `allowed_endpoints`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import SplitResult, unquote, urlsplit

from pydantic import AfterValidator

from wfbatch.core.delivery import parse_s3_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AWS_ENTRY = "aws"
"""In `[delivery] allowed_endpoints`: a batch may set `endpoint_url: null`, AWS's own S3 endpoint (as
boto3 picks it for the region). It matches no URL: `https://s3.amazonaws.com` is an entry of its own."""
_DEFAULT_PORTS = {"http": 80, "https": 443}


def ip_of(host: str) -> IPAddress | None:
    """The address a URL's host names literally (IPv4-mapped IPv6 unwrapped), else None."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def special_kind(address: IPAddress) -> str | None:
    """What kind of non-public address this is ("a loopback address", ...), or None if public."""
    kinds = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    return next((kind for matches, kind in kinds if matches), None)


@dataclass(frozen=True)
class _Place:
    """A URL's scheme, host (lower case, no trailing dot) and port (the scheme's default if none)."""

    scheme: str
    host: str
    port: int
    path: str


def _place(parts: SplitResult) -> _Place:
    """ValueError if the URL cannot be a target (no host, a bad port, user:password@, ...)."""
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError("expected an http:// or https:// URL")
    if "@" in parts.netloc:
        raise ValueError("a user:password@ part is not allowed")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError("no host")
    port = parts.port  # ValueError for a port out of range
    return _Place(parts.scheme, host, port or _DEFAULT_PORTS[parts.scheme], parts.path or "/")


def check_allow_entry(entry: str) -> str:
    """An allow-list entry as written in the HOME's configuration; ValueError saying what is wrong."""
    entry = entry.strip()
    if not entry:
        raise ValueError("an empty entry")
    if "*" in entry or "\\" in entry:
        raise ValueError(f"{entry!r}: wildcards and backslashes are not supported (name each host)")
    if "://" in entry:
        parts = urlsplit(entry)
        if parts.query or parts.fragment:
            raise ValueError(f"{entry!r}: a URL prefix takes no ?query or #fragment")
    else:
        parts = urlsplit("http://" + entry)
        if parts.path or parts.query or parts.fragment:
            raise ValueError(f"{entry!r}: a host entry is host or host:port (write a URL for a path prefix)")
    try:
        _place(parts)
    except ValueError as error:
        raise ValueError(f"{entry!r}: {error}") from None
    return entry


def _check_allow_entries(entries: list[str]) -> list[str]:
    return [check_allow_entry(entry) for entry in entries]


AllowList = Annotated[list[str], AfterValidator(_check_allow_entries)]
"""The HOME's allow-list of per-batch targets: hosts and URL prefixes (see the module)."""


def _path_under(path: str, prefix: str) -> bool:
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + "/")


def _matches(entry: str, place: _Place) -> bool:
    if "://" in entry:
        allowed = _place(urlsplit(entry))
        return (allowed.scheme, allowed.host, allowed.port) == (place.scheme, place.host, place.port) and (
            _path_under(place.path, allowed.path)
        )
    parts = urlsplit("http://" + entry)
    host = (parts.hostname or "").rstrip(".")
    return host == place.host and (parts.port is None or parts.port == place.port)


@dataclass(frozen=True)
class TargetRule:
    """The HOME's word on one kind of per-batch target (webhooks, or bucket endpoints)."""

    section: str
    """The HOME's configuration section, for messages: "notify"."""
    list_name: str
    """The allow-list's name in it: "allowed_webhooks"."""
    home_url: str | None = None
    """The HOME's own target: always allowed, trusted as configured."""
    allowed: tuple[str, ...] = ()
    allow_private: bool = False
    default_entry: str | None = None
    """The entry that allows the client's default target (no URL at all: "aws" for a bucket
    endpoint); None when no URL means nothing is sent (a webhook)."""

    @property
    def setting(self) -> str:
        return f"[{self.section}] {self.list_name}"

    def is_home(self, url: str) -> bool:
        if self.home_url is None:
            return False
        try:
            return _same_url(url, self.home_url)
        except ValueError:
            return False

    def refusal(self, url: str) -> str | None:
        """Why a batch may not name `url` (malformed, or neither the HOME's own nor on its allow-list;
        an address is on it only where an entry names that address), or None."""
        if self.is_home(url):
            return None
        parts = urlsplit(url)
        try:
            if "\\" in url:
                raise ValueError("a backslash is not allowed")
            place = _place(parts)
        except ValueError as error:
            return f"refused: {error}"
        if any(segment in (".", "..") for segment in unquote(place.path).split("/")):
            return "refused: a path with '.' or '..' segments is not allowed"
        shown = f"{place.host}:{place.port}"
        address = ip_of(place.host)
        kind = None if address is None else special_kind(address)
        if not any(_matches(entry, place) for entry in self.allowed if not self._is_default(entry)):
            what = f"{shown} ({kind})" if kind else shown
            now = "; it is empty now" if not self.allowed else ""
            return (
                f"refused: {what} is not allowed: a batch's target must be the HOME's own or listed"
                f" in {self.setting} (wfbatch.toml{now})"
            )
        return None

    def default_refusal(self) -> str | None:
        """Why a batch may not use the client's default target (`null`: AWS itself), or None: it may
        when the HOME uses it too (no target of its own) or lists `default_entry`."""
        if self.default_entry is None or self.home_url is None:
            return None
        if any(self._is_default(entry) for entry in self.allowed):
            return None
        return (
            f"refused: null (AWS's own endpoint) is not allowed: this HOME sends to an endpoint of its"
            f" own; list \"{self.default_entry}\" in {self.setting} (wfbatch.toml) to let a batch use AWS"
        )

    def _is_default(self, entry: str) -> bool:
        return self.default_entry is not None and entry.lower() == self.default_entry

    def address_refusal(self, host: str, addresses: list[str]) -> str | None:
        """Send time: why `host`, resolved to `addresses`, may not be reached by a batch, or None."""
        if self.allow_private:
            return None
        for text in addresses:
            address = ip_of(text)
            kind = special_kind(address) if address is not None else "not an IP address"
            if kind is not None:
                return (
                    f"refused: {host} resolves to {text}, {kind} (name the address itself in"
                    f" {self.setting}, or set [{self.section}] allow_private_addresses = true)"
                )
        return None


def _same_url(first: str, second: str) -> bool:
    a, b = urlsplit(first), urlsplit(second)
    return (_place(a), a.query) == (_place(b), b.query)


_BUCKET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _bucket_entry(entry: str) -> tuple[str, str]:
    """An allowed_buckets entry → (bucket, prefix: "" or ending with "/"); ValueError if malformed."""
    text = entry.strip()
    if not text:
        raise ValueError("an empty entry")
    if "*" in text or "{" in text or "}" in text or "\\" in text:
        raise ValueError("wildcards, placeholders and backslashes are not supported (name each bucket)")
    location = parse_s3_url(text if text.startswith("s3://") else "s3://" + text)
    if not _BUCKET_NAME.fullmatch(location.bucket):
        raise ValueError("expected bucket or bucket/prefix/")
    if _dot_segments(location.prefix):
        raise ValueError("a prefix with '.' or '..' segments")
    return location.bucket, location.prefix


def _dot_segments(prefix: str) -> bool:
    return any(segment in (".", "..") for segment in prefix.split("/"))


def check_bucket_entry(entry: str) -> str:
    """An allowed_buckets entry as written in the HOME's configuration; ValueError saying what is wrong."""
    try:
        _bucket_entry(entry)
    except ValueError as error:
        raise ValueError(f"{entry!r}: {error}") from None
    return entry.strip()


def _check_bucket_entries(entries: list[str]) -> list[str]:
    return [check_bucket_entry(entry) for entry in entries]


BucketAllowList = Annotated[list[str], AfterValidator(_check_bucket_entries)]
"""The HOME's allow-list of per-batch buckets: `bucket` or `bucket/prefix/` (see the module)."""


@dataclass(frozen=True)
class BucketRule:
    """The HOME's word on the bucket (and key prefix) a batch's images go to."""

    home_url: str | None = None
    """The HOME's own `delivery.url`: any key in its bucket is allowed."""
    allowed: tuple[str, ...] = ()

    def refusal(self, url: str) -> str | None:
        """Why a batch's images may not go to `url` (`s3://bucket/prefix/`), or None. A prefix's
        placeholders expand to one path segment each, so only the whole segments before the first
        one must lie under an entry's prefix."""
        if url == self.home_url:
            return None  # the HOME's own, trusted as configured
        try:
            location = parse_s3_url(url)
        except ValueError as error:
            return f"refused: {error}"
        # Before the HOME's bucket: a server that normalises "/home/../other/key" reaches another.
        if _dot_segments(location.prefix):
            return "refused: a prefix with '.' or '..' segments is not allowed"
        if self.home_url is not None and location.bucket == parse_s3_url(self.home_url).bucket:
            return None
        head = location.prefix.split("{", 1)[0]
        fixed = head[: head.rfind("/") + 1]  # whole segments only: "team-a{name}/" is not under "team-a/"
        for entry in self.allowed:
            bucket, prefix = _bucket_entry(entry)
            if bucket == location.bucket and fixed.startswith(prefix):
                return None
        shown = f"s3://{location.bucket}/{fixed}"
        shown = shown if len(shown) <= 80 else shown[:79] + "…"
        now = "; it is empty now" if not self.allowed else ""
        return (
            f"refused: {shown} is not allowed: a batch's bucket must be the HOME's own or listed in"
            f" [delivery] allowed_buckets (wfbatch.toml{now})"
        )


@dataclass(frozen=True)
class TargetPolicy:
    """What the HOME allows a batch spec to name; the default allows no per-batch target at all."""

    webhooks: TargetRule = TargetRule("notify", "allowed_webhooks")
    endpoints: TargetRule = TargetRule("delivery", "allowed_endpoints", default_entry=AWS_ENTRY)
    buckets: BucketRule = BucketRule()
