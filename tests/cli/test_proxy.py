"""`kube-balance proxy` as a real subprocess: fake apiserver, real pods, real HTTP clients."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers_cli import BigPod, Command, cluster, command
from helpers_pods import pod_slice, running_pods

from kube_balance.testing import FakeApiServer


@contextlib.asynccontextmanager
async def proxy(kubeconfig: str, *args: str) -> AsyncIterator[tuple[Command, str]]:
    """The proxy on a free port; yields it and its base URL once it is listening."""
    async with command(
        "proxy", "web.shop:http", "--listen", "127.0.0.1:0", "--kubeconfig", kubeconfig, *args
    ) as cmd:
        line = await cmd.line("kube-balance proxy: web.shop:http on ")
        yield cmd, line.rsplit(" on ", 1)[1]


async def get_until(
    client: httpx.AsyncClient, url: str, done: Callable[[httpx.Response], bool], **kwargs: Any
) -> httpx.Response:
    """GET ``url`` until ``done(response)`` (the proxy follows the watch); bounded by the caller."""
    while not done(r := await client.get(url, **kwargs)):  # noqa: ASYNC110 - state in another process
        await asyncio.sleep(0.05)
    return r


def ok(r: httpx.Response) -> bool:
    return r.status_code == 200


async def until_ok(client: httpx.AsyncClient, url: str, **kwargs: Any) -> None:
    """Wait (bounded by the caller) until the proxy has endpoints and answers 200."""
    await get_until(client, url, ok, **kwargs)


async def test_balances_and_rewrites_headers(tmp_path: Path) -> None:
    """Round robin over 3 pods; Host is the Service; hop-by-hop headers go, X-Forwarded-* come."""
    async with asyncio.timeout(40), FakeApiServer() as api, running_pods(3) as pods:
        kubeconfig = cluster(api, tmp_path)
        for i, pod in enumerate(pods):
            api.apply(pod_slice(f"web-{i}", pod.port))
        big = await BigPod().start()
        try:
            async with (
                proxy(kubeconfig, "--algorithm", "round_robin") as (_, url),
                httpx.AsyncClient() as client,
            ):
                await until_ok(client, f"{url}/")
                await get_until(client, f"{url}/", lambda r: all(p.hits for p in pods))  # all 3 seen
                before = [p.hits for p in pods]
                for _ in range(9):
                    r = await client.get(f"{url}/")
                    assert r.json()["host"] == "web.shop.svc.cluster.local"
                assert [p.hits - b for p, b in zip(pods, before, strict=True)] == [3, 3, 3]

                api.apply(pod_slice("big", big.port))
                for i in range(3):
                    api.delete("EndpointSlice", "shop", f"web-{i}")
                await until_ok(client, f"{url}/headers")
                r = await client.get(
                    f"{url}/headers?q=1",
                    headers={
                        "Connection": "keep-alive, X-Private",
                        "X-Private": "hop",
                        "Keep-Alive": "timeout=5",
                        "X-Forwarded-For": "203.0.113.7",
                        "X-End": "kept",
                    },
                )
                hop = await client.get(f"{url}/hop")
                assert hop.headers["X-End"] == "kept" and "X-Hop" not in hop.headers

                # Expect: 100-continue is answered by the proxy, before the body is sent.
                host, port = url.removeprefix("http://").rsplit(":", 1)
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(
                    b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
                )
                assert await asyncio.wait_for(reader.readline(), 0.9) == b"HTTP/1.1 100 Continue\r\n"
                assert await asyncio.wait_for(reader.readline(), 0.9) == b"\r\n"
                writer.write(b"hello")
                assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 200")
                writer.close()
        finally:
            await big.stop()
    seen = {k.lower(): v for k, v in r.json()["headers"]}
    assert r.json()["path"] == "/headers?q=1"
    assert seen["host"] == "web.shop.svc.cluster.local"
    assert seen["x-end"] == "kept"
    assert "x-private" not in seen and "keep-alive" not in seen
    assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == url.removeprefix("http://")


async def test_error_statuses_say_why(tmp_path: Path) -> None:
    """400 without an affinity key, 504 on a slow pod, 502 on a dead pod, 503 with no endpoint."""
    async with asyncio.timeout(60), FakeApiServer() as api, running_pods(1) as pods:
        kubeconfig = cluster(api, tmp_path)
        api.apply(pod_slice("web-0", pods[0].port))
        async with (
            proxy(kubeconfig, "--algorithm", "ring_hash", "--timeout", "0.5") as (_, url),
            httpx.AsyncClient(timeout=10) as client,
        ):
            await until_ok(client, f"{url}/", headers={"X-Affinity": "a"})
            r = await client.get(f"{url}/")
            assert r.status_code == 400 and "X-Affinity" in r.text and r.text.count("\n") == 1
            r = await client.get(f"{url}/slow?delay=3", headers={"X-Affinity": "a"})
            assert r.status_code == 504 and "within 0.5 s" in r.text and pods[0].key in r.text

            api.apply(pod_slice("web-0", 1))  # nothing listens on port 1: connection refused
            r = await get_until(
                client, f"{url}/", lambda r: r.status_code != 200, headers={"X-Affinity": "a"}
            )
            assert r.status_code == 502 and "web.shop:http" in r.text

            api.delete("EndpointSlice", "shop", "web-0")
            r = await get_until(
                client, f"{url}/", lambda r: r.status_code != 502, headers={"X-Affinity": "a"}
            )
            assert r.status_code == 503 and "no endpoint available" in r.text


async def test_sigterm_drains_in_flight_requests_then_exits_0(tmp_path: Path) -> None:
    """SIGTERM: new connections are refused, the in-flight request still gets its 200, exit 0."""
    async with asyncio.timeout(40), FakeApiServer() as api:
        kubeconfig = cluster(api, tmp_path)
        big = await BigPod().start()
        try:
            api.apply(pod_slice("big", big.port))
            async with proxy(kubeconfig, "--grace", "10") as (cmd, url):
                async with httpx.AsyncClient(timeout=10) as client:
                    await until_ok(client, f"{url}/headers")
                    slow = asyncio.ensure_future(client.get(f"{url}/slow?delay=1"))
                    await asyncio.sleep(0.3)
                    cmd.signal(signal.SIGTERM)
                    await cmd.line("stopped after")  # printed once drained...
                    r = await slow
                    assert r.status_code == 200 and r.text == "slow done"
                async with httpx.AsyncClient(timeout=2) as fresh:
                    with pytest.raises(httpx.ConnectError):
                        await fresh.get(f"{url}/headers")
                assert await cmd.wait() == 0
                assert "0 requests cut" in await cmd.line("stopped after")
        finally:
            await big.stop()


async def _status(cmd: Command) -> str:
    """A fresh SIGUSR1 report's status line (not one printed before)."""
    seen = len(cmd.lines)
    cmd.signal(signal.SIGUSR1)
    while not (fresh := [line for line in cmd.lines[seen:] if line.startswith("status: ")]):  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    return fresh[0]


async def test_a_client_that_hangs_up_cancels_its_request_to_the_pod(tmp_path: Path) -> None:
    """A client gives up on a slow pod: the proxy's request to the pod is cancelled at once (it ran
    on to --timeout, holding the pod's in-flight count and SIGTERM's drain), and counted as sent
    without a response; the drain that follows has nothing to wait for."""
    async with asyncio.timeout(40), FakeApiServer() as api:
        kubeconfig = cluster(api, tmp_path)
        big = await BigPod().start()
        try:
            api.apply(pod_slice("big", big.port))
            async with proxy(kubeconfig, "--timeout", "30", "--grace", "20") as (cmd, url):
                async with httpx.AsyncClient(timeout=10) as client:
                    await until_ok(client, f"{url}/headers")
                    with pytest.raises(httpx.ReadTimeout):
                        await client.get(f"{url}/slow?delay=25", timeout=0.5)
                while '"inflight": 0' not in (status := await _status(cmd)):
                    assert '"inflight": 1' in status, status
                    await asyncio.sleep(0.05)
                endpoint = f"127.0.0.1:{big.port}"
                assert f"  (none) -> {endpoint}: 2 (1 without a response)" in cmd.lines
                cmd.signal(signal.SIGTERM)
                assert await cmd.wait() == 0
                stopped = await cmd.line("stopped after")
                assert "0 requests cut" in stopped
                assert float(stopped.split("stopped after ")[1].split(" s")[0]) < 5
        finally:
            await big.stop()


async def test_sigusr1_prints_key_counts_and_status(tmp_path: Path) -> None:
    """SIGUSR1 prints how many requests each X-Affinity key sent to which endpoint, and the status."""
    async with asyncio.timeout(40), FakeApiServer() as api, running_pods(2) as pods:
        kubeconfig = cluster(api, tmp_path)
        for i, pod in enumerate(pods):
            api.apply(pod_slice(f"web-{i}", pod.port))
        async with proxy(kubeconfig, "--algorithm", "maglev") as (cmd, url), httpx.AsyncClient() as client:
            await until_ok(client, f"{url}/", headers={"X-Affinity": "warmup"})
            served: Counter[tuple[str, str]] = Counter()
            for key in ["alice"] * 3 + ["bob"] * 2:
                pod = (await client.get(f"{url}/", headers={"X-Affinity": key})).json()["pod"]
                served[(key, pods[int(pod[-1])].key)] += 1
            cmd.signal(signal.SIGUSR1)
            status = await cmd.line("status: ")
        for (key, endpoint), n in served.items():
            assert f"  {key} -> {endpoint}: {n}" in cmd.lines
        assert '"algorithm": "maglev"' in status and '"eligible": 2' in status


async def test_metrics_listen_serves_the_balancer_series(tmp_path: Path) -> None:
    """--metrics-listen serves /metrics with the proxy balancer's request count."""
    async with asyncio.timeout(40), FakeApiServer() as api, running_pods(1) as pods:
        kubeconfig = cluster(api, tmp_path)
        api.apply(pod_slice("web-0", pods[0].port))
        async with (
            proxy(kubeconfig, "--metrics-listen", "127.0.0.1:0") as (cmd, url),
            httpx.AsyncClient() as client,
        ):
            metrics_url = (await cmd.line("metrics on ")).rsplit(" on ", 1)[1]
            await until_ok(client, f"{url}/")
            for _ in range(4):
                await client.get(f"{url}/")
            text = (await client.get(metrics_url)).text
    m = re.search(r'^kube_balance_lb_requests_total\{name="web.shop:http"\} (\S+)$', text, re.M)
    assert m is not None and float(m.group(1)) == pods[0].hits


@pytest.mark.slow
async def test_256_mb_both_ways_in_bounded_memory(tmp_path: Path) -> None:
    """A 256 MB upload and a 256 MB download through the proxy grow its peak RSS by < 64 MB."""
    async with asyncio.timeout(120), FakeApiServer() as api:
        kubeconfig = cluster(api, tmp_path)
        big = await BigPod().start()
        try:
            api.apply(pod_slice("big", big.port))
            async with proxy(kubeconfig) as (cmd, url), httpx.AsyncClient(timeout=60) as client:
                await until_ok(client, f"{url}/headers")
                r = await client.get(f"{url}/download?mb=4")  # warm every code path first
                assert len(r.content) == 4 << 20
                baseline = cmd.status("VmHWM")

                async def body() -> AsyncIterator[bytes]:
                    chunk = b"u" * (1 << 20)
                    for _ in range(256):
                        yield chunk

                r = await client.post(f"{url}/upload", content=body())
                assert r.json() == {"received": 256 << 20}
                got = 0
                async with client.stream("GET", f"{url}/download?mb=256") as resp:
                    async for chunk in resp.aiter_raw():
                        got += len(chunk)
                assert got == 256 << 20
                growth_mb = (cmd.status("VmHWM") - baseline) / 1024
        finally:
            await big.stop()
    print(f"proxy peak RSS growth over 2 x 256 MB: {growth_mb:.1f} MB")
    assert growth_mb < 64
