"""kube-balance: client-side L7 load balancing for Kubernetes Services, for asyncio.

Balance each request (not each connection) across a Service's pods::

    import httpx
    from kube_balance.integrations.httpx import BalancedTransport

    client = httpx.AsyncClient(transport=BalancedTransport("web.shop:http"))

The core (endpoints, algorithms, discovery) needs only ``kubernetes_asyncio`` and ``mmh3``;
integrations import their HTTP client on first use.
"""

from __future__ import annotations

from ._affinity import AffinityKey
from ._endpoint import Endpoint, EndpointSet
from ._errors import (
    AffinityKeyRequired,
    ConfigurationError,
    DiscoveryAuthError,
    DiscoveryError,
    DiscoveryUnavailable,
    KubeBalanceError,
    NoEndpointsAvailable,
)
from ._service import ServiceRef
from .algorithms import Algorithm, available, create

__all__ = [
    "AffinityKey",
    "AffinityKeyRequired",
    "Algorithm",
    "ConfigurationError",
    "DiscoveryAuthError",
    "DiscoveryError",
    "DiscoveryUnavailable",
    "Endpoint",
    "EndpointSet",
    "KubeBalanceError",
    "NoEndpointsAvailable",
    "ServiceRef",
    "available",
    "create",
]
__version__ = "0.1.0"
