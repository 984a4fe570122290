"""Real "pods" on 127.0.0.1 for integration tests: aiohttp (HTTP/1.1, TLS) and hypercorn (HTTP/2).

Each pod answers with its name, the Host header it saw and the HTTP version, so tests can see
where a request landed. Shared by the httpx transport tests and, later, the aiohttp connector.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import itertools
import json
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

SERVICE_HOST = "web.shop.svc.cluster.local"

_REFUSING: list[socket.socket] = []  # bound, never listening: closed when the session ends
atexit.register(lambda: [s.close() for s in _REFUSING])


def refusing_port() -> int:
    """A loopback port whose connections are refused, different on every call.

    The socket stays bound (never listening) until the test session ends: a port found free and
    released at once could be handed out again, to the next call or to a pod started later.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _REFUSING.append(sock)
    return int(sock.getsockname()[1])


def _example_pod_slice() -> Callable[..., dict[str, Any]]:
    # The runnable examples' helper, loaded from its file (integrations/ is not a package), so
    # the tests and the examples build their EndpointSlices one way.
    path = Path(__file__).resolve().parents[2] / "integrations" / "local_cluster.py"
    spec = importlib.util.spec_from_file_location("kube_balance_local_cluster", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module.pod_slice  # type: ignore[no-any-return]


pod_slice = _example_pod_slice()
"""``pod_slice(name, port, **conditions)``: one EndpointSlice of web.shop for one pod on 127.0.0.1."""


class Pod:
    """One aiohttp server on its own ephemeral port; ``gate`` holds /stream until the test allows."""

    def __init__(self, name: str, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host  # "::1" for an IPv6 pod
        self.ssl_context = ssl_context
        self.hits = 0
        self.status = 200  # what / answers; 503 makes this pod fail, 0 drops the connection
        self.delay = 0.0  # seconds /, /stream and /echo wait before answering (a slow pod)
        self.arrived = 0  # requests to /, /stream and /echo received (counted before the delay)
        self.hosts: list[str] = []
        self.gate = asyncio.Event()
        self.stream_started = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def key(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/", self._hello)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/stream", self._stream)
        app.router.add_get("/big", self._big)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_post("/echo", self._echo)
        app.router.add_put("/echo", self._echo)
        app.router.add_get("/reset", self._reset)
        app.router.add_get("/busy/{seconds}", self._busy)
        return app

    def _seen(self, request: web.Request) -> dict[str, Any]:
        self.hits += 1
        self.hosts.append(request.host)
        return {"pod": self.name, "host": request.host, "cookie": request.cookies.get("session")}

    async def _wait(self) -> None:
        self.arrived += 1
        if self.delay:
            await asyncio.sleep(self.delay)

    async def _hello(self, request: web.Request) -> web.Response:
        await self._wait()
        if self.status == 0:
            return await self._reset(request)
        return web.json_response(self._seen(request), status=self.status)

    async def _slow(self, request: web.Request) -> web.Response:
        self._seen(request)
        await asyncio.sleep(float(request.query.get("delay", "1")))
        return web.json_response({"pod": self.name})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        await self._wait()
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"first;")
        self.stream_started.set()
        await self.gate.wait()
        await resp.write(b"last")
        await resp.write_eof()
        return resp

    async def _big(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(body=b"x" * 1_000_000)

    async def _redirect(self, request: web.Request) -> web.Response:
        self._seen(request)
        resp = web.Response(status=302, headers={"Location": "/"})
        resp.set_cookie("session", f"from-{self.name}")
        return resp

    async def _status(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.json_response({"pod": self.name}, status=int(request.match_info["code"]))

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        await self._wait()
        return web.json_response({**self._seen(request), "length": len(body)})

    async def _reset(self, request: web.Request) -> web.Response:
        """Drop the connection without answering (a pod crashing mid-request)."""
        self._seen(request)
        assert request.transport is not None
        request.transport.abort()
        raise asyncio.CancelledError

    async def _busy(self, request: web.Request) -> web.Response:
        """429 Too Many Requests with ``Retry-After: <seconds>``."""
        self._seen(request)
        return web.json_response(
            {"pod": self.name}, status=429, headers={"Retry-After": request.match_info["seconds"]}
        )

    async def start(self) -> Pod:
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.25)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def kill(self) -> None:
        """Stop listening and close connections (in-flight handlers get ``shutdown_timeout``)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


@contextlib.asynccontextmanager
async def running_pods(count: int, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[list[Pod]]:
    """Start ``count`` pods named pod-0.. on distinct ports; stop them on exit."""
    pods = [Pod(f"pod-{i}", ssl_context) for i in range(count)]
    try:
        for pod in pods:
            await pod.start()
        yield pods
    finally:
        for pod in pods:
            pod.gate.set()
            await pod.kill()


# -- HTTP/2 pods (hypercorn) ------------------------------------------------------------------
def _asgi_pod(name: str, hits: list[str]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        hits.append(name)
        body = json.dumps(
            {"pod": name, "host": headers.get(b"host", b"").decode(), "http_version": scope["http_version"]}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


@contextlib.asynccontextmanager
async def running_h2_pods(
    count: int, certfile: str | None = None, keyfile: str | None = None
) -> AsyncIterator[tuple[list[int], list[str]]]:
    """``count`` hypercorn servers (h2c prior knowledge, or TLS+ALPN h2 with a cert); yields ports, hits."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    hits: list[str] = []
    ports: list[int] = []
    stop = asyncio.Event()
    tasks = []
    for i in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        ports.append(sock.getsockname()[1])
        config = Config()
        config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) the socket
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.5
        if certfile:
            config.certfile, config.keyfile = certfile, keyfile
        tasks.append(
            asyncio.create_task(serve(_asgi_pod(f"pod-{i}", hits), config, shutdown_trigger=stop.wait))
        )
    try:
        await _until_listening(ports)
        yield ports, hits
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)


async def _until_listening(ports: list[int]) -> None:
    for port in ports:
        for _ in range(200):  # bounded: hypercorn listens within a few loop turns
            try:
                _, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            w.close()
            break


# -- an L4 "Service": one pod per TCP connection, as kube-proxy routes it ----------------------
@contextlib.asynccontextmanager
async def l4_proxy(ports: list[int]) -> AsyncIterator[int]:
    """A TCP proxy on 127.0.0.1 that picks the next pod once per connection; yields its port."""
    pick = itertools.cycle(ports)
    pipes: set[asyncio.Task[None]] = set()

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", next(pick))
        for t in (asyncio.create_task(pipe(cr, uw)), asyncio.create_task(pipe(ur, cw))):
            pipes.add(t)
            t.add_done_callback(pipes.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for t in list(pipes):
            t.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)


# -- scripted pods: the n-th request, whichever pod it reaches, does what the script says ----------
Step = tuple[str, float]
"""``("answer", delay)``: answer after ``delay`` seconds; ``("drop", delay)``: close the connection
without an answer after ``delay`` seconds."""


@contextlib.asynccontextmanager
async def scripted_pods(count: int, script: list[Step]) -> AsyncIterator[tuple[list[str], list[str]]]:
    """``count`` pods on 127.0.0.1; the n-th request to any of them follows ``script[n]`` (an answer
    at once past its end). Yields the pods' keys (``host:port``) and the list of keys the requests
    arrived at, in arrival order: a test sees exactly where every attempt went."""
    arrivals: list[str] = []
    runners: list[web.AppRunner] = []
    keys: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        host, port = request.transport.get_extra_info("sockname")[:2]
        n = len(arrivals)
        arrivals.append(f"{host}:{port}")
        action, delay = script[n] if n < len(script) else ("answer", 0.0)
        await asyncio.sleep(delay)
        if action == "drop":
            request.transport.abort()
            raise asyncio.CancelledError
        return web.json_response({"pod": f"{host}:{port}", "arrival": n})

    try:
        for _ in range(count):
            app = web.Application()
            app.router.add_get("/", handler)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
            runners.append(runner)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            assert site._server is not None
            keys.append(f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}")  # type: ignore[union-attr]
        yield keys, arrivals
    finally:
        for runner in runners:
            await runner.cleanup()
