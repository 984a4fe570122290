"""Run ``python -m kube_balance ...`` as a real subprocess against the fake apiserver and real pods.

Imported before helpers_pods by the CLI tests: it puts tests/integrations on sys.path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from kube_balance.testing import FakeApiServer, service

SRC = str(Path(__file__).resolve().parents[2] / "src")
INTEGRATIONS = str(Path(__file__).resolve().parents[1] / "integrations")
if INTEGRATIONS not in sys.path:  # tests/integrations/helpers_pods.py: the real pods
    sys.path.insert(0, INTEGRATIONS)


def cluster(api: FakeApiServer, tmp_path: Path) -> str:
    """The web.shop Service (named port http) on ``api``; returns a kubeconfig path for it."""
    api.apply(service("web", "shop", ports=[{"name": "http", "port": 80, "targetPort": "http"}]))
    return str(api.write_kubeconfig(tmp_path / "kubeconfig", namespace="shop"))


class Command:
    """A running ``kube_balance`` subprocess; stdout lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._more = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode().rstrip("\n"))
            self._more.set()

    async def line(self, contains: str, timeout: float = 20) -> str:
        """The first stdout line containing ``contains`` (waiting for it, bounded)."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if contains in line:
                        return line
                if self._reader.done():
                    raise AssertionError(
                        f"exited ({self.proc.returncode}) without {contains!r}: {self.lines}"
                    )
                self._more.clear()
                await self._more.wait()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 20) -> int:
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            await self._reader
        return code

    def status(self, field: str) -> int:
        """A field of /proc/<pid>/status in kB (VmRSS, VmHWM)."""
        for row in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if row.startswith(field + ":"):
                return int(row.split()[1])
        raise KeyError(field)


@contextlib.asynccontextmanager
async def command(*args: str, stdout: int | None = asyncio.subprocess.PIPE) -> AsyncIterator[Command]:
    """``python -m kube_balance *args``; stopped (SIGKILL) if still running on exit."""
    env = {**os.environ, "PYTHONPATH": SRC, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kube_balance", *args, stdout=stdout, stderr=None, env=env
    )
    cmd = Command(proc)
    try:
        yield cmd
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), 10)
        cmd._reader.cancel()
        await asyncio.gather(cmd._reader, return_exceptions=True)


# -- a pod for the proxy tests: headers, big bodies both ways, slow answers -----------------------
CHUNK = b"\0" * (1 << 20)


class BigPod:
    """An aiohttp server on 127.0.0.1 answering /headers, /upload, /download?mb=, /slow?delay=."""

    def __init__(self) -> None:
        self.port = 0
        self.received = 0
        self._runner: web.AppRunner | None = None

    async def _headers(self, request: web.Request) -> web.Response:
        return web.json_response({"headers": list(request.headers.items()), "path": request.path_qs})

    async def _hop(self, request: web.Request) -> web.Response:
        """A response naming a header of its own as hop-by-hop (Connection: X-Hop)."""
        return web.Response(text="hop", headers={"Connection": "X-Hop", "X-Hop": "1", "X-End": "kept"})

    async def _upload(self, request: web.Request) -> web.Response:
        n = 0
        async for chunk in request.content.iter_chunked(1 << 16):
            n += len(chunk)
        self.received = n
        return web.json_response({"received": n})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        mb = int(request.query["mb"])
        resp = web.StreamResponse(headers={"Content-Length": str(mb << 20)})
        await resp.prepare(request)
        for _ in range(mb):
            await resp.write(CHUNK)
        await resp.write_eof()
        return resp

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay", "1")))
        return web.Response(text="slow done")

    async def start(self) -> BigPod:
        app = web.Application()
        app.router.add_route("*", "/headers", self._headers)
        app.router.add_post("/upload", self._upload)
        app.router.add_get("/hop", self._hop)
        app.router.add_get("/download", self._download)
        app.router.add_get("/slow", self._slow)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
