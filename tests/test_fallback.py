"""The Service-DNS fallback: fallback values checked at construction; the Service port read once."""

from __future__ import annotations

import asyncio
import random

import pytest

from kube_balance import ConfigurationError, DiscoveryAuthError, NoEndpointsAvailable
from kube_balance._balancer import LoadBalancer
from kube_balance._fallback import FallbackTarget, parse_fallback
from kube_balance.discovery.static import StaticSource
from kube_balance.testing import FakeClock


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("http://fallback:80", "a URL is not a fallback"),
        ("fall back:80", "not an IP address or a DNS name"),
        ("fallback:\u0668\u0660", "ASCII digits"),  # Arabic-Indic 80
        ("fallback:0", "not a number in 1..65535"),
        ("fallback:65536", "not a number in 1..65535"),
        ("fallback", "host:port expected"),
        (":80", "host:port expected"),
        ("fd00::1:80", "needs brackets"),
        ("[zz::1]:80", "not an IPv6 address"),
        ("-bad.example:80", "not an IP address or a DNS name"),
        ("caf\u00e9.example:80", "not an IP address or a DNS name"),
        (42, "a int is not a fallback"),
    ],
)
def test_bad_fallbacks_are_refused_at_construction(spec: object, fragment: str) -> None:
    """A fallback that could only fail at the first request is a ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=fragment) as info:
        LoadBalancer("web.shop:http", source=StaticSource([]), fallback=spec)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(f"fallback={spec!r}") and "'host:port'" in message and "'none'" in message


@pytest.mark.parametrize(
    ("spec", "target"),
    [
        ("10.0.0.1:8080", FallbackTarget("10.0.0.1", 8080)),
        ("[fd00::1]:8080", FallbackTarget("fd00::1", 8080)),
        ("web.shop.svc.cluster.local.:80", FallbackTarget("web.shop.svc.cluster.local.", 80)),
        ("Legacy-Host:443", FallbackTarget("Legacy-Host", 443)),
        ("service", None),
    ],
)
def test_good_fallbacks(spec: str, target: FallbackTarget | None) -> None:
    """IPv4, bracketed IPv6 and DNS names (trailing dot allowed) are accepted."""
    assert parse_fallback(spec) == target


class CountingPortSource(StaticSource):
    """A static source whose service_port() fails, never answers, or answers, and counts calls."""

    def __init__(self) -> None:
        super().__init__([])
        self.calls = 0
        self.error: Exception | None = None
        self.answer = asyncio.Event()  # set: answer 8080

    async def service_port(self) -> int:
        self.calls += 1
        if self.error is not None:
            raise self.error
        await self.answer.wait()
        return 8080


async def test_a_failed_read_is_remembered_and_retried_after_backoff(rng: random.Random) -> None:
    """200 requests after a 403 make one read, not 200; the next read waits for the backoff."""
    clock = FakeClock(1000.0)
    source = CountingPortSource()
    source.error = DiscoveryAuthError("services is forbidden (RBAC: get services)")
    lb = LoadBalancer("web.shop:http", source=source, rng=rng, clock=clock)
    async with asyncio.timeout(5):
        for _ in range(200):
            with pytest.raises(NoEndpointsAvailable, match=r"services is forbidden.*next read in"):
                await lb.fallback_target()
        assert source.calls == 1
        # The failure is in status() at once, with its type kept.
        assert isinstance(lb.status().last_error, DiscoveryAuthError)
        assert "fallback for web.shop:http" in str(lb.status().last_error)

        clock.advance(1.7)  # past the first backoff delay (0.8 s to 1.6 s)
        source.error = None
        source.answer.set()
        assert await lb.fallback_target() == FallbackTarget("web.shop.svc.cluster.local", 8080)
        assert source.calls == 2
        for _ in range(10):
            await lb.fallback_target()
        assert source.calls == 2


async def test_concurrent_requests_share_one_read_and_wait_at_most_the_startup_wait(
    rng: random.Random,
) -> None:
    """A read that never answers: one read for all, each request gives up after startup_timeout."""
    source = CountingPortSource()
    lb = LoadBalancer("web.shop:http", source=source, rng=rng, startup_timeout=0.2)
    async with asyncio.timeout(5):
        results = await asyncio.gather(*(lb.fallback_target() for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, NoEndpointsAvailable) for r in results)
        assert "no answer within 0.2 s (still trying)" in str(results[0])
        assert source.calls == 1
        assert "no answer within 0.2 s" in str(lb.status().last_error)
        # The read goes on in the background: once it answers, the next request uses it.
        read = lb._fallback._task
        assert read is not None
        source.answer.set()
        await asyncio.wait({read})
        assert await lb.fallback_target() == ("web.shop.svc.cluster.local", 8080)
        assert source.calls == 1
        await lb.aclose()


async def test_a_request_timeout_shorter_than_the_startup_wait_bounds_the_wait(rng: random.Random) -> None:
    """fallback_target(timeout) waits at most that long, and the read is not cancelled by it."""
    source = CountingPortSource()
    lb = LoadBalancer("web.shop:http", source=source, rng=rng, startup_timeout=30)
    async with asyncio.timeout(5):
        with pytest.raises(NoEndpointsAvailable, match=r"within 0\.05 s"):
            await lb.fallback_target(0.05)
        read = lb._fallback._task
        assert read is not None and not read.done()  # still reading, for the next requests
        source.answer.set()
        await asyncio.wait({read})
        assert await lb.fallback_target(0.05) == ("web.shop.svc.cluster.local", 8080)
    assert source.calls == 1


async def test_closing_the_balancer_cancels_a_read_in_progress(rng: random.Random) -> None:
    """aclose() leaves no read of the Service running."""
    source = CountingPortSource()
    lb = LoadBalancer("web.shop:http", source=source, rng=rng, startup_timeout=0.01)
    async with asyncio.timeout(5):
        with pytest.raises(NoEndpointsAvailable):
            await lb.fallback_target()
        task = lb._fallback._task
        assert task is not None and not task.done()
        await lb.aclose()
        assert task.cancelled()
