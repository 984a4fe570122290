"""The API server misbehaves under load: the last good endpoint set serves, no request is lost.

Each fault of ``harness.API_FAULTS`` runs while 4 pods take 200 requests and a 5th pod is added:
the 4 stay eligible throughout, every request succeeds, every fault is used up, and the 5th pod
is found once the API answers again.
"""

from __future__ import annotations

import pytest
from harness import API_FAULTS, CLIENTS, api_down_at_start, run_api_fault

pytestmark = pytest.mark.parametrize("kind", CLIENTS)


@pytest.mark.parametrize("fault", API_FAULTS)
async def test_api_fault_under_load(kind: str, fault: str) -> None:
    """One scripted API fault under load: 0 failed requests, in flight back to 0, good set kept."""
    row = await run_api_fault(kind, fault)
    assert (row.failures, row.inflight_after) == (0, 0)


async def test_apiserver_down_at_start(kind: str) -> None:
    """No API at start: the Service DNS fallback serves; then the endpoints take over."""
    row = await api_down_at_start(kind)
    assert (row.failures, row.inflight_after) == (0, 0)
