"""Endpoint sources: Kubernetes EndpointSlices, a static list, DNS.

Every source implements :class:`EndpointSource` (``async run(sink)``) and pushes full
:class:`~kube_balance.EndpointSet` snapshots to its :class:`SourceSink`.
"""

from __future__ import annotations

from ._source import EndpointSource, SourceSink
from .dns import DnsSource
from .kubernetes import ClientConfig, KubernetesSource, merge_slices
from .static import StaticSource

__all__ = [
    "ClientConfig",
    "DnsSource",
    "EndpointSource",
    "KubernetesSource",
    "SourceSink",
    "StaticSource",
    "merge_slices",
]
