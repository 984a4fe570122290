"""The API server misbehaves under load: the last good endpoint set serves, no request is lost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from harness import CLIENTS, Cluster, api_down_at_start, api_fault

from kube_balance.testing import Fault, Permissions, endpoint_slice

pytestmark = pytest.mark.parametrize("kind", CLIENTS)

WATCH_FAULTS = {
    "watch dropped mid-stream": [Fault.drop_mid_stream(after_events=0)],
    "watch dropped mid-line": [Fault.drop_mid_line(after_events=0)],
    "watch dropped before headers": [Fault.drop_before_headers(on="watch", count=2)],
    "watch stalled": [Fault.stall(None, on="watch")],
    "410 in stream": [Fault.gone_in_stream(after_events=0)],
    "410 as HTTP": [Fault.gone(on="watch")],
    "500 from the apiserver": [Fault.http_error(500, count=3)],
    "503 from the apiserver": [Fault.http_error(503, count=3)],
    "504 from the apiserver": [Fault.http_error(504, count=3)],
    "429 with Retry-After": [Fault.too_many_requests(retry_after=1, count=2)],
    "apiserver hangs": [Fault.stall(None, on="api", count=2)],
    "malformed events": [
        Fault.malformed_line("this is not json", after_events=0),
        Fault.malformed_line('{"object": {}}', after_events=0),
    ],
}


@pytest.mark.parametrize("fault", WATCH_FAULTS)
async def test_watch_and_server_faults(kind: str, fault: str) -> None:
    """Each scripted API fault, under load: the 4 pods serve throughout, the 5th is found after."""
    await api_fault(kind, fault, WATCH_FAULTS[fault])


async def test_expired_continue_token(kind: str) -> None:
    """A relist paged 2 slices at a time whose continue token expires: restarted, nothing lost."""
    faults = [
        Fault.gone_in_stream(after_events=0),  # relist ...
        Fault.stall(0.05, on="list"),  # ... page one answers late ...
        Fault.gone(on="list"),  # ... and page two's continue token has expired
    ]
    await api_fault(kind, "expired continue token", faults, page_size=2)


async def test_401_with_a_rotated_token(kind: str) -> None:
    """The token is rotated: the old one gets 401, the source re-reads the token file, goes on."""

    def rotate(c: Cluster) -> None:
        c.token_file.write_text("rotated-token")
        c.api.set_tokens({"rotated-token": None})

    row = await api_fault(kind, "401 with a rotated token", [], before=rotate)
    assert row.failures == 0


async def test_403(kind: str) -> None:
    """RBAC is taken away for a while (403 on every list and watch), then given back."""

    def forbid(c: Cluster) -> None:
        c.api.set_tokens({c.api.token: Permissions.allow("services:get")})

    async def restore(c: Cluster) -> None:
        await asyncio.sleep(0.5)
        assert any(r.status == 403 for r in c.api.requests)
        c.api.set_tokens({c.api.token: None})

    await api_fault(kind, "403", [], before=forbid, during=restore)


async def test_garbage_slices(kind: str) -> None:
    """Slices with garbage fields (wrong types, bad addresses, no ports) are skipped, not fatal."""
    garbage: list[dict[str, Any]] = [
        {**endpoint_slice("web", "shop", name="junk-1"), "endpoints": "not a list", "ports": 7},
        endpoint_slice("web", "shop", name="junk-2", endpoints=["999.1.1.1", "not-an-ip"]),
        {**endpoint_slice("web", "shop", name="junk-3"), "addressType": "FQDN"},
        {**endpoint_slice("web", "shop", name="junk-4"), "endpoints": [{"addresses": []}, {"conditions": 5}]},
    ]

    def apply_garbage(c: Cluster) -> None:
        for obj in garbage:
            c.api.apply(obj)

    await api_fault(kind, "garbage slices", [], before=apply_garbage)


async def test_apiserver_down_at_start(kind: str) -> None:
    """No API at start: the Service DNS fallback serves; then the endpoints take over."""
    row = await api_down_at_start(kind)
    assert row.failures == 0
