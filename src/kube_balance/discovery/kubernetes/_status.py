"""HTTP statuses and watch ERROR events -> what the watch loop does next, as typed errors.

410 means relist, 401 means re-read credentials, 404 on the EndpointSlice list means the API group
is not served (old cluster), 429/5xx are retried after backoff (honouring Retry-After), 403 names
the missing RBAC rule. Every error the sink sees is a :class:`DiscoveryError`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from ..._errors import (
    DiscoveryAuthError,
    DiscoveryError,
    DiscoveryExpired,
    DiscoveryNotFound,
    DiscoveryNotServed,
    DiscoveryResponseTooLarge,
    DiscoveryUnauthorized,
    DiscoveryUnavailable,
)


@dataclass(frozen=True, slots=True)
class Resource:
    """What is being watched, for URLs, messages and RBAC hints."""

    kind: str  # "endpointslices" or "endpoints"
    group: str  # "discovery.k8s.io" or "" (core)

    def rbac_rule(self, verbs: str) -> str:
        """The Role rule that grants ``verbs`` on this resource."""
        return f'apiGroups ["{self.group}"], resources ["{self.kind}"], verbs [{verbs}]'


ENDPOINT_SLICES = Resource("endpointslices", "discovery.k8s.io")
ENDPOINTS = Resource("endpoints", "")
SERVICES = Resource("services", "")


# The watch loop's names for the public errors it raises and catches (see kube_balance._errors):
# what reaches status().last_error is always a documented class.
Expired = DiscoveryExpired
"""410 Gone: the resourceVersion or continue token is too old; relist."""
Unauthorized = DiscoveryUnauthorized
"""401: re-read the credentials and retry."""
NotServed = DiscoveryNotServed
"""404 on the collection: the API group/version is not served by this cluster."""
Retryable = DiscoveryUnavailable
"""429 or 5xx: retry after backoff, or after the server's Retry-After when it says so."""


NotFound = DiscoveryNotFound
"""404 on a named get: no such object (cluster mode passes a host that names no Service through)."""

PageTooLarge = DiscoveryResponseTooLarge
"""A list page larger than the byte cap: not read further; the last good slices keep serving."""


def status_message(body: bytes) -> str:
    """The ``message`` of a Kubernetes Status body, else the first bytes of the body."""
    try:
        status = json.loads(body)
        if isinstance(status, dict) and isinstance(status.get("message"), str):
            return str(status["message"])
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace").strip() or "(empty body)"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only, as the apiserver sends it)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def http_error(
    status: int, body: bytes, *, verb: str, resource: Resource, namespace: str, retry_after: str | None = None
) -> DiscoveryError:
    """The typed error for a non-2xx answer to ``verb`` (list, watch, get) on ``resource``."""
    what = f"{verb} {resource.kind} in namespace {namespace!r}"
    detail = status_message(body)
    if status == 410:
        return Expired(f"{what}: 410 Gone ({detail})")
    if status == 401:
        return Unauthorized(f"{what}: 401 Unauthorized, the API server rejected our credentials ({detail})")
    if status == 403:
        verbs = '"get"' if verb == "get" else '"list", "watch"'
        return DiscoveryAuthError(
            f"{what}: 403 Forbidden, RBAC does not allow it; grant a Role with "
            f"{resource.rbac_rule(verbs)} in namespace {namespace!r} ({detail})"
        )
    if status == 404 and verb in ("list", "watch"):
        return NotServed(f"{what}: 404, {resource.group or 'core'} {resource.kind} not served ({detail})")
    if status == 404 and verb == "get":
        return NotFound(f"{what}: 404, no such object ({detail})")
    if status == 429 or status >= 500:
        return Retryable(f"{what}: HTTP {status} ({detail})", parse_retry_after(retry_after))
    return DiscoveryError(f"{what}: HTTP {status} ({detail})")


def client_secrets(client: Any) -> tuple[str, ...]:
    """The credential values a kubernetes_asyncio ``ApiClient`` sends, to redact from messages.

    Bearer tokens and API keys (with and without their prefix), a basic-auth password, the
    proxy URL's password and ``Proxy-Authorization`` (as aiohttp derives it from that URL), and
    any configured proxy header value.
    """
    conf = getattr(client, "configuration", None)
    if conf is None:
        return ()
    found: list[str] = []
    keys = getattr(conf, "api_key", None)
    for value in keys.values() if isinstance(keys, Mapping) else ():
        if isinstance(value, str):
            found += [value, value.split(" ", 1)[-1]]
    found.append(getattr(conf, "password", None) or "")
    proxy = getattr(conf, "proxy", None)
    if isinstance(proxy, str) and proxy:
        parts = urlsplit(proxy)
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        if password:
            found += [
                password,
                parts.password or "",
                base64.b64encode(f"{user}:{password}".encode()).decode(),
            ]
    headers = getattr(conf, "proxy_headers", None)
    for value in headers.values() if isinstance(headers, Mapping) else ():
        if isinstance(value, str):
            found += [value, value.split(" ", 1)[-1]]
    return tuple(s for s in found if s)


def watch_error(obj: object, *, resource: Resource, namespace: str) -> DiscoveryError:
    """The typed error for an in-stream ``ERROR`` event (its object is a Status)."""
    code = obj.get("code") if isinstance(obj, dict) else None
    message = obj.get("message") if isinstance(obj, dict) else None
    what = f"watch {resource.kind} in namespace {namespace!r}"
    if code == 410:
        return Expired(f"{what}: ERROR 410 in stream ({message})")
    return Retryable(f"{what}: ERROR {code} in stream ({message})")
