"""Test fakes for kube-balance and for users' own tests: part of the product, documented.

- :class:`FakeClock`: a manual monotonic clock to pass as ``clock=``.
- :class:`FakeApiServer`: a protocol-faithful Kubernetes API server on 127.0.0.1 that the real
  ``kubernetes_asyncio`` client talks to (imported on first use; needs ``aiohttp``). Its module
  docstring (``kube_balance.testing._apiserver``) is the usage guide.
- :class:`Fault`: scripted failures for it; :class:`Permissions`: per-token RBAC for it;
  :class:`RequestRecord`: one entry of its request log.
- :func:`endpoint_slice`, :func:`slice_endpoint`, :func:`service`, :func:`core_endpoints`,
  :func:`node`: API
  objects shaped as the real API returns them, to ``apply`` to the fake.
- :class:`PodFleet`: real pods on 127.0.0.1 in a child process (HTTP/1.1 or h2c), each answering
  with its name after a configurable delay; slow, failing or flapping on demand, added and removed
  for rolling updates, published as EndpointSlices to a :class:`FakeApiServer` (imported on first
  use; needs ``aiohttp``, and ``hypercorn`` for HTTP/2: ``kube-balance[demo]``). :class:`FleetPod`:
  one of its pods.
- :class:`L4Proxy`: a TCP proxy picking a pod per connection, as a Service's ClusterIP does.
- :class:`RecordingSink`: records the snapshots and errors a source pushes (to test a source).
- :class:`StaticSource`: an endpoint source serving a fixed or updatable list, to give a
  ``LoadBalancer`` or a transport local pods without any API (re-exported from
  ``kube_balance.discovery.static``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._apiauth import Permissions
from ._clock import FakeClock
from ._faults import Fault
from ._l4proxy import L4Proxy
from ._objects import core_endpoints, endpoint_slice, node, service, slice_endpoint
from ._sink import RecordingSink

if TYPE_CHECKING:
    from ..discovery.static import StaticSource
    from ._apiserver import FakeApiServer, RequestRecord
    from ._fleet import FleetPod, PodFleet

__all__ = [
    "FakeApiServer",
    "FakeClock",
    "Fault",
    "FleetPod",
    "L4Proxy",
    "Permissions",
    "PodFleet",
    "RecordingSink",
    "RequestRecord",
    "StaticSource",
    "core_endpoints",
    "endpoint_slice",
    "node",
    "service",
    "slice_endpoint",
]

_LAZY = {"FakeApiServer", "RequestRecord"}


def __getattr__(name: str) -> Any:
    # The server needs aiohttp; import it only when asked for, so `import kube_balance.testing` stays light.
    if name in _LAZY:
        from . import _apiserver

        return getattr(_apiserver, name)
    if name in ("PodFleet", "FleetPod"):
        from . import _fleet

        return getattr(_fleet, name)
    if name == "StaticSource":
        from ..discovery.static import StaticSource

        return StaticSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
