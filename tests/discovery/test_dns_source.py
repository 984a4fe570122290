"""DnsSource: periodic A/AAAA resolution, change-only pushes, last answer kept on failure."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable

import pytest

from kube_balance import ConfigurationError, DiscoveryUnavailable, ServiceRef
from kube_balance.discovery import DnsSource, EndpointSource
from kube_balance.testing import RecordingSink

Sink = RecordingSink


class Script:
    """A resolver answering from a script, and a sleep that stops the source when the script ends."""

    def __init__(self, answers: list[list[str] | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []
        self.slept: list[float] = []
        self.done = asyncio.Event()

    async def resolve(self, host: str, port: int) -> Iterable[str]:
        self.calls.append((host, port))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if not self.answers:
            self.done.set()
            await asyncio.Event().wait()


async def drive(source: DnsSource, script: Script) -> Sink:
    sink = Sink()
    task = asyncio.create_task(source.run(sink))
    try:
        await asyncio.wait_for(script.done.wait(), 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
    return sink


async def test_pushes_only_on_change_and_keeps_last_on_failure() -> None:
    """Same answer twice pushes once; a failed lookup reports an error and pushes nothing."""
    script = Script(
        [
            ["10.0.0.2", "10.0.0.1"],
            ["10.0.0.1", "10.0.0.2"],
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            ["10.0.0.1", "10.0.0.3"],
        ]
    )
    source = DnsSource(
        "web.shop.svc.cluster.local", 8080, interval=2.5, resolver=script.resolve, sleep=script.sleep
    )
    sink = await drive(source, script)
    assert [sorted(s.keys) for s in sink.snapshots] == [
        ["10.0.0.1:8080", "10.0.0.2:8080"],
        ["10.0.0.1:8080", "10.0.0.3:8080"],
    ]
    assert len(sink.errors) == 1 and isinstance(sink.errors[0], DiscoveryUnavailable)
    assert "web.shop.svc.cluster.local" in str(sink.errors[0])
    assert script.slept == [2.5] * 4
    assert source.last_error is None


async def test_service_ref_host_and_port_and_family() -> None:
    """A ServiceRef resolves its cluster DNS name with its port; auto family keeps IPv4 only."""
    script = Script([["fd00::1", "10.0.0.1"], ["fd00::1"]])
    source = DnsSource(ServiceRef.parse("web.shop:80"), resolver=script.resolve, sleep=script.sleep)
    sink = await drive(source, script)
    assert script.calls[0] == ("web.shop.svc.cluster.local", 80)
    assert [sorted(s.keys) for s in sink.snapshots] == [["10.0.0.1:80"], ["[fd00::1]:80"]]


async def test_empty_answer_and_resolver_bug_are_errors() -> None:
    """No address, or a resolver raising anything, is a DiscoveryUnavailable, never a crash."""
    script = Script([[], RuntimeError("boom"), ["bad-address", "10.0.0.9"]])
    source = DnsSource("web", 80, resolver=script.resolve, sleep=script.sleep)
    sink = await drive(source, script)
    assert len(sink.errors) == 2
    assert [list(s.keys) for s in sink.snapshots] == [["10.0.0.9:80"]]


async def test_default_resolver_on_loopback() -> None:
    """The default resolver (loop.getaddrinfo) resolves a literal loopback address without network."""
    source = DnsSource("127.0.0.1", 8080)
    snap = await asyncio.wait_for(source.resolve_once(), 5)
    assert list(snap.keys) == ["127.0.0.1:8080"]
    assert isinstance(source, EndpointSource)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("web",), {}, "needs a port"),
        ((ServiceRef.parse("web.shop:http"),), {}, "port name"),
        (("web", 0), {}, "1..65535"),
        (("web", 80), {"interval": 0}, "interval"),
        (("web", 80), {"address_family": "v4"}, "address_family"),
    ],
)
def test_bad_arguments_are_configuration_errors(args: tuple, kwargs: dict, match: str) -> None:
    """Missing port, a named port, a bad port, interval or family raise ConfigurationError."""
    with pytest.raises(ConfigurationError, match=match):
        DnsSource(*args, **kwargs)
