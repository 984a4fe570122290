"""Details of the aiohttp integration that whole requests do not pin down: how errors are
classified and explained, the bound of the pod key cache, attempt counting in the middleware,
the unhedged warning, and what closing the connector releases."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import ssl

import aiohttp
import pytest
from aiohttp.client_reqrep import ClientRequest
from helpers_pods import SERVICE_HOST, running_pods
from yarl import URL as YURL

import kube_balance.integrations.aiohttp as kb_aiohttp
from kube_balance import HedgePolicy, LoadBalancer, Outcome, RetryPolicy
from kube_balance._dispatch import Attempts, Verdict
from kube_balance._retry import Failure
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.aiohttp import BalancedConnector, BalancedMiddleware

URL = f"http://{SERVICE_HOST}"
MIDDLEWARES = "middlewares" in inspect.signature(aiohttp.ClientSession.__init__).parameters
needs_middlewares = pytest.mark.skipif(not MIDDLEWARES, reason="client middlewares need aiohttp >= 3.12")


def _key(url: str) -> object:
    return ClientRequest("GET", YURL(url), loop=asyncio.get_running_loop()).connection_key


async def test_connection_errors_are_classified_for_retries() -> None:
    """Refused or reset while connecting: nothing sent, retried elsewhere; a TLS failure is the
    same on every pod (not retried); anything else is an error, not retried."""
    key = _key("https://web.shop/")
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))  # type: ignore[arg-type]
    tls = aiohttp.ClientConnectorSSLError(key, ssl.SSLError(1, "bad handshake"))  # type: ignore[arg-type]
    assert kb_aiohttp._classify(refused) == Verdict(Failure.NOT_SENT, Outcome.CONNECT_FAILED)
    assert kb_aiohttp._classify(TimeoutError()) == Verdict(Failure.NOT_SENT, Outcome.CONNECT_FAILED)
    assert kb_aiohttp._classify(tls) == Verdict(None, Outcome.ERROR)
    assert kb_aiohttp._classify(ssl.SSLError(1, "x")) == Verdict(None, Outcome.ERROR)
    assert kb_aiohttp._classify(ValueError("bad")) == Verdict(None, Outcome.ERROR)


async def test_only_connection_errors_are_explained() -> None:
    """A connection that could not be made is renamed after the attempts; other errors keep
    their own message (None: raise them as they are)."""
    attempts = Attempts("web.shop:http", ("10.0.0.1:80", "10.0.0.2:80"), None)
    refused = aiohttp.ClientConnectorError(_key("http://web.shop/"), ConnectionRefusedError(111, "refused"))  # type: ignore[arg-type]
    named = kb_aiohttp._explain(refused, attempts)
    assert isinstance(named, aiohttp.ClientConnectorError)
    assert str(named).startswith("service web.shop:http: 2 attempts failed, on 10.0.0.1:80, 10.0.0.2:80")
    assert kb_aiohttp._explain(ValueError("x"), attempts) is None


async def test_the_pod_key_cache_starts_again_past_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """One cached pod key per (caller's connection key, endpoint); past MAX_POD_KEYS caller keys
    the cache is emptied, so a long life of changing keys cannot grow it without bound."""
    monkeypatch.setattr(kb_aiohttp, "MAX_POD_KEYS", 2)
    adapter = kb_aiohttp._Adapter(lambda *args: None)
    lb = LoadBalancer("web.shop:80", source=StaticSource(["10.0.0.1:80"]), fallback=None)
    await lb.wait_ready(5)
    dispatcher = kb_aiohttp.Dispatcher(lb, adapter)
    lease = await dispatcher.acquire()
    timeout = aiohttp.ClientTimeout()
    hosts = ["web.shop", "web.shop.svc", "web.shop.svc.cluster.local"]
    sizes = []
    for host in hosts:
        req = ClientRequest("GET", YURL(f"http://{host}/"), loop=asyncio.get_running_loop())
        adapter.attempt(lease, (req, [], timeout))
        sizes.append(len(adapter._keys))
    assert sizes == [1, 2, 1]  # the third caller key found the cache full: emptied, then added
    req = ClientRequest("GET", YURL("http://web.shop.svc.cluster.local/"), loop=asyncio.get_running_loop())
    adapter.attempt(lease, (req, [], timeout))
    assert len(adapter._keys) == 1  # a key seen again is found, not added
    lease.release()
    await dispatcher.aclose()
    await lb.aclose()


@needs_middlewares
async def test_the_middleware_counts_attempts_against_max_attempts(rng: random.Random) -> None:
    """4 pods answering 503, RetryPolicy(max_attempts=3): exactly 3 attempts on 3 distinct pods (a
    pod is left over), the responses of the retried attempts released (none left for the safety
    net). (A pod dropping the connection is not counted here: aiohttp then runs the whole
    middleware chain again on its own, test_aiohttp_middleware.py.)"""
    async with running_pods(4) as pods, asyncio.timeout(10):
        for pod in pods:
            pod.status = 503
        policy = RetryPolicy(retry_statuses=True, max_attempts=3)
        connector = BalancedConnector(
            "web.shop:http", source=StaticSource([p.key for p in pods]), retry=policy, rng=rng
        )
        async with aiohttp.ClientSession(
            connector=connector, middlewares=(BalancedMiddleware(connector),)
        ) as session:
            async with session.get(f"{URL}/") as r:
                assert r.status == 503
            balancer = connector.balancers[0]
        assert sorted(p.hits for p in pods) == [0, 1, 1, 1]
        assert balancer.status().retries == 2
        assert balancer.status().unclosed_responses == 0


async def test_the_unhedged_warning_comes_once_and_only_for_a_request_it_would_hedge(
    rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    """A connector with hedge= and no middleware: POSTs (never hedged) say nothing; the first GET
    says it once; later GETs say nothing more."""
    caplog.set_level(logging.WARNING, logger="kube_balance")
    async with running_pods(2) as pods, asyncio.timeout(10):
        connector = BalancedConnector(
            "web.shop:http", source=StaticSource([p.key for p in pods]), hedge=HedgePolicy(delay=1.0), rng=rng
        )
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(3):
                async with session.post(f"{URL}/echo", data=b"x") as r:
                    assert r.status == 200

            def warnings() -> int:
                return len([r for r in caplog.records if "BalancedMiddleware" in r.getMessage()])

            assert warnings() == 0
            for _ in range(3):
                async with session.get(f"{URL}/") as r:
                    assert r.status == 200
            assert warnings() == 1


async def test_closing_the_connector_lets_go_of_a_balancer_it_was_given() -> None:
    """A LoadBalancer given to the connector outlives it: closing the connector closes its
    dispatcher, which stops listening to the balancer (no listener left behind per connector)."""
    lb = LoadBalancer("web.shop:80", source=StaticSource(["10.0.0.1:80"]), fallback=None)
    before = len(lb._listeners)
    connector = BalancedConnector(lb)
    assert len(lb._listeners) == before + 1
    await connector.close()
    assert len(lb._listeners) == before
    assert connector._routes.routes[0].dispatcher._closed
    await lb.aclose()
