"""kube-balance: client-side L7 load balancing for Kubernetes Services, for asyncio.

Balance each request (not each connection) across a Service's pods::

    import httpx
    from kube_balance.integrations.httpx import BalancedTransport

    client = httpx.AsyncClient(transport=BalancedTransport("web.shop:http"))

The core (endpoints, algorithms, discovery) needs only ``kubernetes_asyncio`` and ``mmh3``;
integrations import their HTTP client on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._affinity import AffinityKey
from ._balancer import BalancerStatus, FallbackTarget, LoadBalancer
from ._endpoint import Endpoint, EndpointSet
from ._errors import (
    AffinityKeyRequired,
    ConfigurationError,
    DiscoveryAuthError,
    DiscoveryError,
    DiscoveryExpired,
    DiscoveryNotFound,
    DiscoveryNotServed,
    DiscoveryResponseTooLarge,
    DiscoveryUnauthorized,
    DiscoveryUnavailable,
    KubeBalanceError,
    NoEndpointsAvailable,
    TooManyServices,
    UnknownServicePort,
)
from ._health import Ejection
from ._hedge import HedgePolicy
from ._outcome import Outcome
from ._outlier import OutlierDetector, SuccessRate
from ._panic import PanicThreshold
from ._penalty import OverloadPenalty
from ._policy import EndpointPolicy
from ._retry import RetryBudget, RetryPolicy
from ._service import ServiceRef
from ._slow_start import SlowStart
from ._subset import Subset, SubsetStatus, deterministic_subset
from ._zones import ZoneAware, ZoneStatus
from .algorithms import Algorithm, available, create

__all__ = [
    "AffinityKey",
    "AffinityKeyRequired",
    "Algorithm",
    "BalancerStatus",
    "ConfigurationError",
    "DiscoveryAuthError",
    "DiscoveryError",
    "DiscoveryExpired",
    "DiscoveryNotFound",
    "DiscoveryNotServed",
    "DiscoveryResponseTooLarge",
    "DiscoveryUnauthorized",
    "DiscoveryUnavailable",
    "Ejection",
    "Endpoint",
    "EndpointPolicy",
    "EndpointSet",
    "FallbackTarget",
    "HedgePolicy",
    "KubeBalanceError",
    "LoadBalancer",
    "NoEndpointsAvailable",
    "Outcome",
    "OutlierDetector",
    "OverloadPenalty",
    "PanicThreshold",
    "RetryBudget",
    "RetryPolicy",
    "ServiceRef",
    "SlowStart",
    "Subset",
    "SubsetStatus",
    "SuccessRate",
    "TooManyServices",
    "UnknownServicePort",
    "ZoneAware",
    "ZoneStatus",
    "available",
    "create",
    "deterministic_subset",
]
__version__ = "0.1.0"

if TYPE_CHECKING:  # what the lazy names below resolve to, for mypy, pyright and IDEs
    from .integrations.httpx import BalancedTransport as BalancedTransport

_LAZY = {
    "BalancedTransport": "kube_balance.integrations.httpx",
}


def __getattr__(name: str) -> Any:
    """Integration classes load their HTTP client on first access (``pip install 'kube-balance[httpx]'``)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
