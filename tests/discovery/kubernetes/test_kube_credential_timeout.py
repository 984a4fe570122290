"""A credential reload that hangs (an exec plugin stuck after a 401) is bounded, reported and retried."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from pathlib import Path

import pytest
from helpers_kube_discovery import TIMEOUT, Sleeper, requests, until

from kube_balance import ConfigurationError, DiscoveryError, DiscoveryUnavailable
from kube_balance._backoff import Backoff
from kube_balance.discovery import ClientConfig
from kube_balance.discovery.kubernetes._watcher import SliceWatch
from kube_balance.testing import FakeApiServer, FakeClock, endpoint_slice

PLUGIN = """
import json, os, pathlib, sys, time
state = pathlib.Path(sys.argv[1])
with open(state / "pids", "a") as f:
    f.write(f"{os.getpid()}\\n")
token = (state / "token").read_text()
if token == "hang":
    time.sleep(3600)
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                  "status": {"token": token}}))
"""


def exec_kubeconfig(api: FakeApiServer, state: Path) -> str:
    """A kubeconfig whose user runs a real exec credential plugin printing the token in state/token."""
    (state / "plugin.py").write_text(PLUGIN)
    doc = api.kubeconfig_dict()
    doc["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": sys.executable,
            "args": [str(state / "plugin.py"), str(state)],
        }
    }
    path = state / "kubeconfig"
    path.write_text(json.dumps(doc))
    return str(path)


async def kill_plugins(state: Path) -> None:
    """Kill the plugins still running and wait until they are reaped (their transports close)."""
    pids = plugin_pids(state)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    await until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids))


class Recorder:
    """A SliceWatch listener that records errors and how many changes it saw."""

    def __init__(self) -> None:
        self.errors: list[DiscoveryError] = []
        self.changes = 0

    def on_change(self, watch: SliceWatch, changed: set[str] | None) -> None:
        self.changes += 1

    def on_error(self, error: DiscoveryError) -> None:
        self.errors.append(error)


def plugin_pids(state: Path) -> list[int]:
    """The process ids of every plugin run so far."""
    pids = state / "pids"
    return [int(p) for p in pids.read_text().split()] if pids.exists() else []


async def test_hung_exec_plugin_after_401_is_reported_and_retried(sleeper: Sleeper, tmp_path: Path) -> None:
    """After a 401 the exec plugin hangs: a timeout error is reported, API requests go on with
    backoff, the hung plugins are killed, and a plugin that answers again restores discovery."""
    (tmp_path / "token").write_text("token-1")
    async with FakeApiServer(tokens={"token-1": None}, bookmark_interval=3600.0) as api:
        api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
        config = ClientConfig(kubeconfig=exec_kubeconfig(api, tmp_path), load_timeout=0.5)
        rng, clock = random.Random(4), FakeClock(1000.0)
        watch = SliceWatch(
            config, "shop", "web", rng=rng, clock=clock, backoff=Backoff(rng=rng, clock=clock, sleep=sleeper)
        )
        recorder = Recorder()
        watch.listeners.append(recorder)
        task = asyncio.create_task(watch.run())
        try:
            await until(lambda: watch.synced)
            (tmp_path / "token").write_text("hang")
            api.set_tokens({"token-2": None})  # rotated: our token-1 now gets 401
            await api.restart()  # ends the open watch, so the next request meets the 401

            def timed_out() -> list[DiscoveryError]:
                return [e for e in recorder.errors if "did not finish within 0.5 s" in str(e)]

            await until(timed_out, timeout=TIMEOUT * 2)
            assert isinstance(timed_out()[0], DiscoveryUnavailable)
            assert "exec credential plugin" in str(timed_out()[0])
            seen = len(requests(api))
            await until(lambda: len(timed_out()) >= 2 and len(requests(api)) > seen, timeout=TIMEOUT * 2)
            assert not task.done()
            assert sleeper.delays, "the retries back off"

            assert len(plugin_pids(tmp_path)) >= 3  # the first load, then one per reload

            (tmp_path / "token").write_text("token-2")  # the plugin answers again
            await until(lambda: watch.last_error is None and watch.synced, timeout=TIMEOUT * 2)
            changes = recorder.changes
            api.apply(endpoint_slice("web", "shop", name="web-b", endpoints=["10.0.0.2"]))
            await until(lambda: recorder.changes > changes and "web-b" in watch.slices)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, TIMEOUT)
            await config.aclose()
            await kill_plugins(tmp_path)  # kubernetes_asyncio leaves a timed-out plugin running


async def test_first_load_with_a_hung_exec_plugin_times_out(tmp_path: Path) -> None:
    """The first credential load is bounded too: a typed error naming the kubeconfig, not a hang."""
    (tmp_path / "token").write_text("hang")
    async with FakeApiServer() as api:
        config = ClientConfig(kubeconfig=exec_kubeconfig(api, tmp_path), load_timeout=0.3)
        try:
            with pytest.raises(DiscoveryUnavailable, match=r"kubeconfig .* did not finish within 0\.3 s"):
                await asyncio.wait_for(config.client(), TIMEOUT)
        finally:
            await kill_plugins(tmp_path)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), True, "5"])
def test_load_timeout_must_be_positive_seconds(bad: object) -> None:
    """A load_timeout that is not a positive number is refused at construction, naming the option."""
    with pytest.raises(ConfigurationError, match="load_timeout"):
        ClientConfig(api_client=None, load_timeout=bad)  # type: ignore[arg-type]
