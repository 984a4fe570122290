"""Small parts of the aiohttp integration that whole requests do not reach: the connector's
repr, the copy a hedge is sent with, the adapter's answers for a connection, and an unrelated
error from aiohttp's constructor."""

from __future__ import annotations

import asyncio
import types
from typing import Any, cast

import aiohttp
import pytest
from aiohttp.client_reqrep import ClientRequest
from yarl import URL

import kube_balance.integrations.aiohttp as kb_aiohttp
from kube_balance import LoadBalancer, Outcome
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.aiohttp import BalancedConnector


async def test_the_repr_names_every_balancer_in_order() -> None:
    """A connector over two Services shows both balancers (what a log line of it says)."""
    web = LoadBalancer("web.shop:80", source=StaticSource(["127.0.0.1:1"]))
    cart = LoadBalancer("cart.shop:80", source=StaticSource(["127.0.0.1:2"]))
    connector = BalancedConnector([web, cart])
    try:
        assert repr(connector) == f"<BalancedConnector {web!r} {cart!r}>"
        assert "web.shop" in repr(web) and "cart.shop" in repr(cart)
    finally:
        await asyncio.wait_for(connector.close(), 5)
        await asyncio.wait_for(web.aclose(), 5)
        await asyncio.wait_for(cart.aclose(), 5)


async def test_a_hedge_is_sent_with_its_own_headers_and_no_upload_tracker() -> None:
    """aiohttp completes a request's headers while sending it: a hedge sent at the same time needs
    headers of its own. Upload progress follows the first attempt only; the bytes body is shared."""
    req = ClientRequest(
        "POST", URL("http://web.shop/x"), data=b"body", headers={"X-A": "1"}, loop=asyncio.get_running_loop()
    )
    tracker = object()
    cast(Any, req)._upload_tracker = tracker  # aiohttp 3.10 has no such attribute
    hedge = kb_aiohttp._hedge_copy(req)
    assert hedge is not req and type(hedge) is type(req)
    hedge.headers["X-A"] = "2"
    hedge.headers["X-B"] = "3"
    assert req.headers["X-A"] == "1" and "X-B" not in req.headers
    assert cast(Any, hedge)._upload_tracker is None
    assert cast(Any, req)._upload_tracker is tracker
    assert hedge.body is req.body and hedge.url == req.url and hedge.method == "POST"


def test_a_connection_has_no_status_for_the_dispatcher() -> None:
    """The dispatcher reads status 0 as "no response yet": a connection is not a response (its
    status reaches the lease from the response hook), so there is nothing to retry on either."""
    adapter = kb_aiohttp._Adapter(None)
    assert adapter.status(object()) == 0  # type: ignore[arg-type]
    assert adapter.retry_after(object()) is None  # type: ignore[arg-type]


async def test_another_runtime_error_from_aiohttp_is_raised_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only aiohttp's "no running event loop" gets the where-to-build-it message: any other
    RuntimeError from its constructor is raised unchanged."""

    def refuse(self: aiohttp.TCPConnector, **options: object) -> None:
        self._closed = True  # what aiohttp's __del__ reads of a connector it never built
        raise RuntimeError("something else went wrong")

    monkeypatch.setattr(aiohttp.TCPConnector, "__init__", refuse)
    with pytest.raises(RuntimeError) as err:
        BalancedConnector("web.shop:80", source=StaticSource(["127.0.0.1:1"]))
    assert str(err.value) == "something else went wrong" and err.value.__cause__ is None


class _Response:
    """What ``_drop_response`` reads of a response: its connection and ``close()``."""

    def __init__(self, connection: object) -> None:
        self.connection = connection
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


async def test_a_losing_hedges_response_is_closed_and_put_as_cancelled() -> None:
    """A hedge that lost the race but whose response arrived anyway: closed at once, its lease
    marked CANCELLED (the release then puts that, not the status); a response whose connection
    is already gone is only closed."""
    lease = types.SimpleNamespace(answer=Outcome.OK)
    held = _Response(types.SimpleNamespace(_kube_balance_lease=lease))
    await asyncio.wait_for(kb_aiohttp._drop_response(held), 5)  # type: ignore[arg-type]
    assert lease.answer is Outcome.CANCELLED and held.closed == 1
    gone = _Response(None)
    await asyncio.wait_for(kb_aiohttp._drop_response(gone), 5)  # type: ignore[arg-type]
    assert gone.closed == 1
