"""The kube-balance exception tree.

Every error the library raises on purpose derives from :class:`KubeBalanceError`::

    KubeBalanceError
    ├── ConfigurationError (also ValueError)   bad service reference, option or algorithm parameter
    │   ├── AffinityKeyRequired                 a hash algorithm's get() called without a key
    │   └── UnknownServicePort                  cluster mode: the URL's port is not a port of the Service
    ├── DiscoveryError                          the endpoint source failed (API, auth, RBAC, DNS)
    │   ├── DiscoveryAuthError                  403: RBAC does not allow it (the message names the rule)
    │   │   └── DiscoveryUnauthorized           401 that re-reading the credentials did not fix
    │   ├── DiscoveryUnavailable                unreachable, 429 or 5xx (retried with backoff; retry_after)
    │   ├── DiscoveryExpired                    410 Gone again right after a relist
    │   ├── DiscoveryNotServed                  the cluster serves neither EndpointSlices nor Endpoints
    │   ├── DiscoveryNotFound                   404 on a named object (a Service that does not exist)
    │   └── DiscoveryResponseTooLarge           a list page over the byte cap (lower page_size)
    ├── NoEndpointsAvailable                    no usable endpoint and no fallback
    └── TooManyServices                         cluster mode: max_services watched, every one busy

Integrations translate these at their boundary into the HTTP client's own tree (for example
``NoEndpointsAvailable`` surfaces from httpx as a subclass of ``httpx.ConnectError``), raised
``from`` the original so the cause is never lost.
"""

from __future__ import annotations


class KubeBalanceError(Exception):
    """Base class of every error kube-balance raises on purpose."""


class ConfigurationError(KubeBalanceError, ValueError):
    """A value given to kube-balance is invalid; the message names the input and the problem."""


class AffinityKeyRequired(ConfigurationError):
    """An affinity (hash) algorithm was asked for an endpoint without a key."""


class DiscoveryError(KubeBalanceError):
    """The endpoint source failed; the last good endpoint set keeps serving."""


class DiscoveryAuthError(DiscoveryError):
    """The API refused our credentials (401 after a re-read) or our permissions (403)."""


class DiscoveryUnauthorized(DiscoveryAuthError):
    """401: the API server rejected our credentials, and re-reading them (a rotated token) did not help."""


class DiscoveryUnavailable(DiscoveryError):
    """The endpoint source could not be reached or answered with a server error.

    ``retry_after`` is the server's ``Retry-After`` in seconds (429, 503) when it sent one.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DiscoveryExpired(DiscoveryError):
    """410 Gone: the resourceVersion or list continue token is too old. The watch relists at once;
    this reaches ``last_error`` only when the relist expires again before any event."""


class DiscoveryNotServed(DiscoveryError):
    """404 on the collection: the cluster serves neither ``discovery.k8s.io/v1`` EndpointSlices nor
    (the fallback) core/v1 Endpoints at that path."""


class DiscoveryNotFound(DiscoveryError):
    """404 on a named object: the Service read (for the DNS fallback's port, or by cluster mode)
    does not exist."""


class DiscoveryResponseTooLarge(DiscoveryError):
    """A list page was larger than the byte cap: not read further (the last good set keeps
    serving); a smaller ``page_size`` keeps pages under it."""


class NoEndpointsAvailable(KubeBalanceError):
    """No usable endpoint for the Service and no fallback configured.

    The message names the Service and, when there was one, the last discovery error.
    """


class UnknownServicePort(ConfigurationError):
    """Cluster mode: the URL's port is not a port of the Service (the message lists its ports)."""


class TooManyServices(KubeBalanceError):
    """Cluster mode: a request names one Service more than ``max_services``, and every Service
    watched has requests in flight (none is idle to make room)."""
