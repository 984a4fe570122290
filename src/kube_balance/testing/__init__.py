"""Test fakes for kube-balance and for users' own tests: part of the product, documented.

- :class:`FakeClock`: a manual monotonic clock to pass as ``clock=``.
- :class:`FakeApiServer`: a protocol-faithful Kubernetes API server on 127.0.0.1 that the real
  ``kubernetes_asyncio`` client talks to (imported on first use; needs ``aiohttp``).
"""

from __future__ import annotations

from typing import Any

from ._clock import FakeClock

__all__ = ["FakeApiServer", "FakeClock"]


def __getattr__(name: str) -> Any:
    if name == "FakeApiServer":
        from ._apiserver import FakeApiServer

        return FakeApiServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
