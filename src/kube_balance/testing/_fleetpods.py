"""The child process of :class:`~kube_balance.testing.PodFleet`: the pods and their control server.

Runs in its own interpreter (``python -m kube_balance.testing._fleetpods``), so the pods' work does not share a core
with the client under test. Each pod is an HTTP server on its own port of 127.0.0.1: aiohttp for
HTTP/1.1, hypercorn (h2c with prior knowledge) for HTTP/2. Each answers any path with its name,
the Host header it saw and the HTTP version, as JSON, after a delay drawn uniformly from the
fleet's latency range and multiplied by the pod's slow factor (or its flap factor while a flap is
on). The parent talks to :func:`_control` with one JSON object per line on the child's stdin and
reads one reply per line on its stdout; the child stops when the parent says so or when its stdin
closes (the parent is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ._l4proxy import L4Proxy

Stop = Callable[[], Awaitable[None]]
GRACE = 1.0  # seconds a removed pod gives its in-flight requests (a pod's terminationGracePeriod)


@dataclass
class PodState:
    """One pod's behaviour, changed by ``configure``; ``hits`` counts the requests it received."""

    name: str
    port: int = 0
    slow_factor: float = 1.0
    status: int = 200
    flap: tuple[float, float, float] | None = None  # (factor, on seconds, period seconds)
    flap_since: float = 0.0
    hits: int = 0
    stop: Stop | None = field(default=None, repr=False)

    def factor(self, now: float) -> float:
        if self.flap is not None:
            factor, on, period = self.flap
            if (now - self.flap_since) % period < on:
                return factor * self.slow_factor
        return self.slow_factor


class Pods:
    """Every pod of the fleet, by name."""

    def __init__(self, *, http2: bool, latency: tuple[float, float], seed: int) -> None:
        self.http2 = http2
        self.latency = latency
        self.rng = random.Random(seed)
        self.by_name: dict[str, PodState] = {}
        self.proxies: list[L4Proxy] = []

    def describe(self) -> list[list[object]]:
        return [[p.name, "127.0.0.1", p.port] for p in self.by_name.values()]

    async def answer(self, pod: PodState, host: str, version: str) -> tuple[int, bytes]:
        pod.hits += 1
        low, high = self.latency
        await asyncio.sleep(self.rng.uniform(low, high) * pod.factor(time.monotonic()))
        body = json.dumps({"pod": pod.name, "host": host, "http_version": version}).encode()
        return pod.status, body

    async def add(self, name: str) -> PodState:
        if name in self.by_name:
            raise ValueError(f"a pod named {name!r} exists already")
        pod = PodState(name)
        start = _start_h2 if self.http2 else _start_h1
        pod.port, pod.stop = await start(self, pod)
        self.by_name[name] = pod
        return pod

    async def remove(self, name: str) -> None:
        pod = self.by_name.pop(name, None)
        if pod is None:
            raise ValueError(f"no pod named {name!r}")
        assert pod.stop is not None
        await pod.stop()

    async def close(self) -> None:
        for proxy in self.proxies:
            await proxy.aclose()
        for name in list(self.by_name):
            await self.remove(name)


async def _start_h1(pods: Pods, pod: PodState) -> tuple[int, Stop]:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        version = f"{request.version.major}.{request.version.minor}"
        status, body = await pods.answer(pod, request.host, version)
        return web.Response(body=body, status=status, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=GRACE)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])

    return port, runner.cleanup


async def _start_h2(pods: Pods, pod: PodState) -> tuple[int, Stop]:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        host = dict(scope["headers"]).get(b"host", b"").decode()
        status, body = await pods.answer(pod, host or scope.get("server", ("", 0))[0], scope["http_version"])
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) the socket
    config.accesslog = None
    config.errorlog = None
    config.h2_max_concurrent_streams = 1000
    # hypercorn closes a connection after 1,000 requests by default (GOAWAY), failing the streams
    # in flight on it: a pod must not end an HTTP/2 client's one connection unless asked to.
    config.keep_alive_max_requests = 2**31
    config.graceful_timeout = GRACE
    stopping = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stopping.wait))  # type: ignore[arg-type]
    await _until_listening(port, task)

    async def stop() -> None:
        stopping.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, GRACE + 5)

    return port, stop


async def _until_listening(port: int, task: asyncio.Task[Any]) -> None:
    for _ in range(500):  # bounded: hypercorn listens within a few loop turns
        if task.done():
            task.result()  # raises what made it fail
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.close()
        return
    raise RuntimeError(f"pod on port {port} did not listen")


async def _command(pods: Pods, msg: dict[str, Any]) -> object:
    op = msg.get("op")
    if op == "add":
        await pods.add(msg["name"])
        return pods.describe()
    if op == "remove":
        await pods.remove(msg["name"])
        return pods.describe()
    if op == "configure":
        pod = pods.by_name.get(msg["name"])
        if pod is None:
            raise ValueError(f"no pod named {msg['name']!r}")
        for key in ("slow_factor", "status"):
            if key in msg:
                setattr(pod, key, msg[key])
        if "flap" in msg:
            pod.flap = tuple(msg["flap"]) if msg["flap"] is not None else None
            pod.flap_since = time.monotonic()
        return None
    if op == "hits":
        return {name: pod.hits for name, pod in pods.by_name.items()}
    if op == "reset_hits":
        for pod in pods.by_name.values():
            pod.hits = 0
        return None
    if op == "l4":
        targets = [("127.0.0.1", p.port) for p in pods.by_name.values()]
        proxy = await L4Proxy(targets).start()
        pods.proxies.append(proxy)
        return proxy.port
    raise ValueError(f"unknown operation {op!r}")


async def _control(pods: Pods, reader: asyncio.StreamReader) -> None:
    """Answer the parent's commands, one JSON line each, until ``stop`` or the end of stdin."""
    while line := await reader.readline():
        msg = json.loads(line)
        if msg.get("op") == "stop":
            break
        try:
            reply = {"ok": True, "result": await _command(pods, msg)}
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        _say(reply)
    await pods.close()
    _say({"ok": True, "result": None})


def _say(message: object) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _serve(count: int, http2: bool, latency: tuple[float, float], seed: int, prefix: str) -> None:
    pods = Pods(http2=http2, latency=latency, seed=seed)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        for i in range(count):
            await pods.add(f"{prefix}-{i}")
    except Exception as exc:
        _say({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        await pods.close()
        return
    _say({"ok": True, "result": pods.describe()})
    await _control(pods, reader)


def main(argv: list[str]) -> None:
    """``python -m kube_balance.testing._fleetpods CONFIG_JSON``: what :class:`PodFleet` starts."""
    config = json.loads(argv[0])
    asyncio.run(
        _serve(config["count"], config["http2"], tuple(config["latency"]), config["seed"], config["prefix"])
    )


if __name__ == "__main__":
    main(sys.argv[1:])
