"""Kubernetes discovery: the EndpointSlice source, its client configuration and the pure slice merge.

The list+watch loop, the incremental merger and the backoff behind them are internals
(``_watcher``, ``_incremental``, ``_backoff``): use :class:`KubernetesSource`.
"""

from __future__ import annotations

from ._config import ClientConfig
from ._merge import merge_slices
from ._source import KubernetesSource

__all__ = [
    "ClientConfig",
    "KubernetesSource",
    "merge_slices",
]
