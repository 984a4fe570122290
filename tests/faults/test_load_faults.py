"""Whole-Service changes under load: a rolling update, a zone going away, mass cancellation."""

from __future__ import annotations

import pytest
from harness import CLIENTS, cancelled_requests, rolling_update, zone_loss

pytestmark = pytest.mark.parametrize("kind", CLIENTS)


@pytest.mark.slow
@pytest.mark.timeout(300)  # 20,000 real requests on a shared 2-core machine
async def test_rolling_update_of_10_pods_during_10000_requests(kind: str) -> None:
    """10 pods replaced one by one while 50 tasks send 10,000 requests: 0 fail."""
    row = await rolling_update(kind)
    assert (row.requests, row.failures) == (10_000, 0)


async def test_zone_losing_all_its_endpoints(kind: str) -> None:
    """The client's zone empties mid-load: traffic moves to the other zone, 0 requests fail."""
    row = await zone_loss(kind)
    assert row.failures == 0


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_1000_cancelled_requests(kind: str) -> None:
    """1,000 requests cancelled mid-flight: in flight back to 0, counted as cancelled, next ones served."""
    row = await cancelled_requests(kind)
    assert "cancelled" in row.detail
