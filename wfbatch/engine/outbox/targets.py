"""Per-batch targets at send time: the HOME's allow-list applied again (it may have changed since the
file was accepted, and batches accepted before it existed are in the store), and the addresses a
hostname resolves to now checked (a name that resolves to 127.0.0.1, or changes to it after the
check: the request goes to the very address that was checked). See wfbatch.core.targets.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from wfbatch.core.targets import AWS_ENTRY, BucketRule, TargetPolicy, TargetRule, ip_of
from wfbatch.settings import Settings

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""host, port → the addresses to connect to, in order (the seam tests resolve names through)."""


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def target_policy(settings: Settings) -> TargetPolicy:
    """What this HOME lets a batch spec name: its own targets and its allow-lists."""
    notify, delivery = settings.notify, settings.delivery
    return TargetPolicy(
        webhooks=TargetRule(
            "notify",
            "allowed_webhooks",
            notify.webhook_url,
            tuple(notify.allowed_webhooks),
            notify.allow_private_addresses,
        ),
        endpoints=TargetRule(
            "delivery",
            "allowed_endpoints",
            delivery.endpoint_url,
            tuple(delivery.allowed_endpoints),
            delivery.allow_private_addresses,
            default_entry=AWS_ENTRY,
        ),
        buckets=BucketRule(delivery.url, tuple(delivery.allowed_buckets)),
    )


@dataclass(frozen=True)
class Pinned:
    """A request's URL with its host replaced by the address that was checked; the name still goes
    in the Host header and, for https, in the TLS server name (so the certificate is checked for it)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


async def pin(url: str, rule: TargetRule, resolve: Resolver) -> Pinned | str:
    """Where to send a request for `url`, or why not: "refused: ..." when the HOME does not allow it
    (final), anything else when the name could not be resolved (worth another try)."""
    if rule.is_home(url):
        return Pinned(url)  # the HOME's own target: sent as configured
    refusal = rule.refusal(url)
    if refusal is not None:
        return refusal
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if ip_of(host) is not None:
        return Pinned(url)  # an address the allow-list names itself: explicitly allowed
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await resolve(host, port)
    except OSError as error:
        return f"cannot resolve {host}: {error.strerror or error}"
    if not addresses:
        return f"cannot resolve {host}: no address"
    refusal = rule.address_refusal(host, addresses)
    if refusal is not None:
        return refusal
    original = httpx.URL(url)
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return Pinned(
        str(original.copy_with(host=addresses[0])),
        {"host": original.netloc.decode("ascii")},
        extensions,
    )


async def delivery_problem(
    url: str, endpoint_url: str | None, settings: Settings, resolve: Resolver
) -> str | None:
    """Why a batch's bucket (`url`) at its endpoint (None: AWS itself) may not get requests signed
    with the HOME's credentials now ("refused: ..." or a resolver failure), or None. boto3 resolves
    the endpoint's name again when it connects: the window between the two is what this check
    cannot close."""
    policy = target_policy(settings)
    refused = policy.buckets.refusal(url)
    if refused is not None:
        return refused
    if endpoint_url is None:
        return policy.endpoints.default_refusal()
    checked = await pin(endpoint_url, policy.endpoints, resolve)
    return checked if isinstance(checked, str) else None
