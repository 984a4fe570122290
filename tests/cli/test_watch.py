"""`kube-balance watch` as a real subprocess: on a pseudo-terminal, in plain lines and in JSON lines."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import sys
from pathlib import Path

from helpers_cli import SRC, cluster, command
from helpers_pods import pod_slice

from kube_balance.testing import FakeApiServer

CLEAR = "\x1b[H\x1b[2J"


async def test_rolling_update_shows_on_a_terminal(tmp_path: Path) -> None:
    """Through a real pty: the table shows both pods, then web-0 terminating without traffic, then web-2."""
    async with asyncio.timeout(40), FakeApiServer() as api:
        kubeconfig = cluster(api, tmp_path)
        api.apply(pod_slice("web-0", 8000))
        api.apply(pod_slice("web-1", 8001))
        master, slave = pty.openpty()
        env = {**os.environ, "PYTHONPATH": SRC}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kube_balance", "watch", "web.shop:http", "--kubeconfig", kubeconfig,
            stdin=slave, stdout=slave, stderr=slave, env=env,
        )  # fmt: skip
        os.close(slave)
        screen = bytearray()
        got = asyncio.Event()

        def readable() -> None:
            try:
                screen.extend(os.read(master, 65536))
            except OSError:  # the child closed the terminal
                asyncio.get_running_loop().remove_reader(master)
            got.set()

        asyncio.get_running_loop().add_reader(master, readable)

        async def shows(*texts: str) -> str:
            """The last full screen once it shows every text (bounded by the test's timeout)."""
            while True:
                last = screen.decode(errors="replace").rsplit(CLEAR, 1)[-1]
                if CLEAR.encode() in screen and all(t in last for t in texts):
                    return last
                got.clear()
                await got.wait()

        try:
            first = await shows("127.0.0.1:8000", "127.0.0.1:8001", "2 get traffic")
            assert "ENDPOINT" in first and "TRAFFIC" in first and "web-0" in first
            # Rolling update: web-2 comes up, web-0 terminates (still serving), then goes.
            api.apply(pod_slice("web-2", 8002))
            api.apply(pod_slice("web-0", 8000, ready=False, serving=True, terminating=True))
            during = await shows("127.0.0.1:8002", "no: terminating")
            row = next(line for line in during.splitlines() if "127.0.0.1:8000" in line)
            assert "no: terminating" in row and "web-0" in row
            api.delete("EndpointSlice", "shop", "web-0")
            after = await shows("127.0.0.1:8002", "2 endpoints")
            assert "127.0.0.1:8000" not in after
            proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
            assert await proc.wait() == 0
        finally:
            asyncio.get_running_loop().remove_reader(master)
            os.close(master)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert b"Traceback" not in screen


async def test_plain_lines_when_not_on_a_terminal(tmp_path: Path) -> None:
    """Piped: one plain line per endpoint added, changed or removed; SIGINT exits 0."""
    async with asyncio.timeout(40), FakeApiServer() as api:
        kubeconfig = cluster(api, tmp_path)
        api.apply(pod_slice("web-0", 8000))
        async with command("watch", "web.shop:http", "--kubeconfig", kubeconfig) as cmd:
            added = await cmd.line(" added endpoint=127.0.0.1:8000")
            assert "ready=true" in added and "traffic=true" in added and "slice=web-0" in added
            api.apply(pod_slice("web-0", 8000, ready=False, serving=False))
            changed = await cmd.line(" changed endpoint=127.0.0.1:8000")
            assert "ready=false" in changed and 'why_not="not ready"' in changed
            api.delete("EndpointSlice", "shop", "web-0")
            await cmd.line(" removed endpoint=127.0.0.1:8000")
            cmd.signal(signal.SIGINT)
            assert await cmd.wait() == 0
        assert not any("\x1b" in line for line in cmd.lines)


async def test_jsonl_for_scripts(tmp_path: Path) -> None:
    """--output jsonl: one JSON object per change, with conditions, traffic, slice and resourceVersion."""
    async with asyncio.timeout(40), FakeApiServer() as api:
        kubeconfig = cluster(api, tmp_path)
        api.apply(pod_slice("web-0", 8000))
        api.apply(pod_slice("web-1", 8001, ready=False, serving=True, terminating=True))
        async with command("watch", "web.shop:http", "--kubeconfig", kubeconfig, "--output", "jsonl") as cmd:
            await cmd.line('"endpoint": "127.0.0.1:8001"')
            cmd.signal(signal.SIGTERM)
            assert await cmd.wait() == 0
        events = {e["endpoint"]: e for e in map(json.loads, cmd.lines)}
        ready, terminating = events["127.0.0.1:8000"], events["127.0.0.1:8001"]
        assert ready["event"] == "added" and ready["traffic"] is True and ready["why_not"] is None
        assert ready["slice"] == "web-0" and ready["resource_version"]
        assert terminating["terminating"] is True and terminating["traffic"] is False
        assert terminating["why_not"] == "terminating: serves only while no endpoint is ready"


async def test_a_service_without_endpoints_says_why(tmp_path: Path) -> None:
    """A typo'd Service or port printed nothing at all: now one ``empty`` line says why."""
    async with asyncio.timeout(40), FakeApiServer() as api:
        kubeconfig = cluster(api, tmp_path)
        api.apply(pod_slice("web-0", 8000))
        async with command("watch", "nosvc.shop:http", "--kubeconfig", kubeconfig) as cmd:
            line = await cmd.line(" empty why=")
            assert "no EndpointSlice labelled kubernetes.io/service-name=nosvc in namespace shop" in line
            assert "does the Service exist?" in line
            cmd.signal(signal.SIGINT)
            assert await cmd.wait() == 0
        args = ("watch", "web.shop:grpc", "--kubeconfig", kubeconfig, "--output", "jsonl")
        async with command(*args) as cmd:
            await cmd.line('"event": "empty"')
            cmd.signal(signal.SIGINT)
            assert await cmd.wait() == 0
        (event,) = [e for e in map(json.loads, cmd.lines) if e["event"] == "empty"]
        assert "have no TCP port 'grpc' (their ports, name=number: http=8000)" in event["why"]
