"""Fixtures for the Kubernetes source tests: a fake apiserver, a client for it, a recording sleep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers_kube_discovery import Sleeper

from kube_balance.testing import FakeApiServer


@pytest.fixture
async def api() -> AsyncIterator[Any]:
    """A fake apiserver; bookmarks only when a test sends one, so stream line counts are exact."""
    async with FakeApiServer(bookmark_interval=3600.0) as server:
        yield server


@pytest.fixture
async def client(api: Any) -> AsyncIterator[Any]:
    """A real kubernetes_asyncio ApiClient for the fake apiserver."""
    c = await api.new_api_client()
    yield c
    await c.close()


@pytest.fixture
def sleeper() -> Sleeper:
    """The backoff sleep the sources under test use."""
    return Sleeper()
