"""Kubernetes discovery: EndpointSlice list+watch, the pure slice merge and the client config."""

from __future__ import annotations

from ..._backoff import Backoff
from ._config import ClientConfig
from ._incremental import SliceMerger
from ._legacy import endpoints_to_slices
from ._merge import merge_slices, parse_slice
from ._source import KubernetesSource

__all__ = [
    "Backoff",
    "ClientConfig",
    "KubernetesSource",
    "SliceMerger",
    "endpoints_to_slices",
    "merge_slices",
    "parse_slice",
]
