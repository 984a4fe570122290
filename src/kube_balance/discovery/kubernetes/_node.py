"""The client's own zone, read from its Node object (``topology.kubernetes.io/zone``).

Nodes are cluster-scoped, so reading one needs a ClusterRole (``get`` on ``nodes``), which many
clusters do not grant to application pods: the zone-aware filter treats a 403 as "no zone" and
says how to set the zone instead (``KUBE_BALANCE_ZONE``).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from ..._errors import DiscoveryAuthError, DiscoveryError, DiscoveryUnavailable
from ._status import status_message

__all__ = ["ZONE_LABEL", "node_zone"]

ZONE_LABEL = "topology.kubernetes.io/zone"
"""The well-known label the cloud provider (or the admin) puts on every Node."""


async def node_zone(client: Any, node_name: str, request_timeout: float | None = None) -> str | None:
    """The ``topology.kubernetes.io/zone`` label of Node ``node_name``, ``None`` when unlabelled.

    A 403 raises :class:`DiscoveryAuthError` naming the ClusterRole rule; other failures raise
    :class:`DiscoveryError` (:class:`DiscoveryUnavailable` for transport errors).
    """
    from kubernetes_asyncio.client import CoreV1Api

    timeout = aiohttp.ClientTimeout(total=request_timeout or 30.0)
    what = f"get Node {node_name!r}"
    try:
        resp: Any = await CoreV1Api(client).read_node(
            node_name, _preload_content=False, _request_timeout=timeout
        )
        try:
            body = await resp.read()
            status = resp.status
        finally:
            resp.release()
        if status == 403:
            raise DiscoveryAuthError(
                f"{what}: 403 Forbidden; to read the zone from the Node grant a ClusterRole with "
                f'apiGroups [""], resources ["nodes"], verbs ["get"], or set the zone with the '
                f"KUBE_BALANCE_ZONE environment variable ({status_message(body)})"
            )
        if not 200 <= status < 300:
            raise DiscoveryError(f"{what}: HTTP {status} ({status_message(body)})")
        obj = json.loads(body)
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        raise DiscoveryUnavailable(f"{what} failed: {exc!r}") from exc
    labels = (obj.get("metadata") or {}).get("labels") if isinstance(obj, dict) else None
    zone = labels.get(ZONE_LABEL) if isinstance(labels, dict) else None
    return zone if isinstance(zone, str) and zone else None
