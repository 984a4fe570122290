"""How the command ends when it cannot go on: no Kubernetes configuration at all, or a reader of
its output that went away (``| head``)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from helpers_cli import SRC, cluster
from helpers_pods import pod_slice

from kube_balance.cli import main
from kube_balance.testing import FakeApiServer


async def _run(*args: str, env: dict[str, str], lines: int | None = None) -> tuple[int, str, list[str]]:
    """``python -m kube_balance *args``: its exit status, stderr and the stdout lines read; with
    ``lines``, stdout is closed after that many (the reader went away)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kube_balance", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": SRC, **env},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    read: list[str] = []
    try:
        async with asyncio.timeout(30):
            while lines is None or len(read) < lines:
                line = await proc.stdout.readline()
                if not line:
                    break
                read.append(line.decode())
            if lines is not None:
                proc.stdout.feed_eof()
                proc._transport.get_pipe_transport(1).close()  # type: ignore[union-attr]
            err = await proc.stderr.read()
            return await proc.wait(), err.decode(), read
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 10)


async def test_watch_without_any_configuration_exits_2_at_once(tmp_path: Path) -> None:
    """$KUBECONFIG naming a missing file, not in a pod: one message and exit 2 (it used to log the
    same error every few seconds, twice each time, until killed)."""
    env = {"KUBECONFIG": str(tmp_path / "missing"), "KUBERNETES_SERVICE_HOST": ""}
    status, err, out = await _run("watch", "web.shop:http", env=env)
    assert status == 2 and out == []
    assert err == (
        f"kube-balance watch: no Kubernetes configuration: no kubeconfig at {tmp_path / 'missing'} "
        "(from $KUBECONFIG), and not running in a pod. To fix: pass --kubeconfig FILE (and "
        "--context NAME), or set KUBECONFIG\n"
    )


async def test_watch_into_a_reader_that_went_away_stops_quietly(tmp_path: Path) -> None:
    """``kube-balance watch ... | head -1``: no BrokenPipeError traceback; the status a command
    killed by SIGPIPE has (128 + 13)."""
    async with asyncio.timeout(60), FakeApiServer() as api:
        kubeconfig = cluster(api, tmp_path)
        for i in range(3):
            api.apply(pod_slice(f"web-{i}", 8000 + i))
        args = ("watch", "web.shop:http", "--kubeconfig", kubeconfig, "--output", "jsonl")
        proc_task = asyncio.ensure_future(_run(*args, env={}, lines=1))
        await asyncio.sleep(0.5)
        for i in range(3, 40):  # more events after the reader left: the next write fails
            api.apply(pod_slice(f"web-{i}", 8000 + i))
            await asyncio.sleep(0.01)
            if proc_task.done():
                break
        status, err, out = await asyncio.wait_for(proc_task, 30)
    assert len(out) == 1 and '"event": "added"' in out[0]
    assert status == 128 + signal.SIGPIPE
    assert "Traceback" not in err and "BrokenPipeError" not in err


async def test_a_discovery_error_is_shown_once_as_an_error_event(tmp_path: Path) -> None:
    """A 403 on the EndpointSlice list: one ``error`` line on stdout per failure, and no copy of
    it logged on stderr (it was printed twice: a WARNING log line and the event)."""
    from kube_balance.testing import Permissions

    async with asyncio.timeout(60), FakeApiServer() as api:
        kubeconfig = cluster(api, tmp_path)
        api.set_tokens({api.token: Permissions.allow("services:get")})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kube_balance", "watch", "web.shop:http", "--kubeconfig", kubeconfig,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": SRC},
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        try:
            while b" error error=" not in (line := await asyncio.wait_for(proc.stdout.readline(), 30)):
                assert line, "watch exited without an error event"
            assert b"403" in line and b"forbidden" in line
            proc.send_signal(signal.SIGINT)
            err = (await asyncio.wait_for(proc.stderr.read(), 30)).decode()
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await asyncio.wait_for(proc.wait(), 10)
    assert "forbidden" not in err and "WARNING" not in err, err


async def test_an_api_server_that_does_not_answer_is_said_within_seconds(tmp_path: Path) -> None:
    """The list gets its headers and then nothing: after NOT_ANSWERED_NOTICE seconds an ``empty``
    line says the API has not answered (it printed nothing for a minute, then a watch's words)."""
    from kube_balance.cli._watch import NOT_ANSWERED_NOTICE
    from kube_balance.testing import Fault

    async with asyncio.timeout(60), FakeApiServer() as api:
        kubeconfig = cluster(api, tmp_path)
        api.inject(Fault.stall(None, on="list"))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kube_balance", "watch", "web.shop:http", "--kubeconfig", kubeconfig,
            stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": SRC},
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            while b" empty why=" not in (line := await asyncio.wait_for(proc.stdout.readline(), 30)):
                assert line, "watch exited without saying the API has not answered"
            why = line.decode()
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await asyncio.wait_for(proc.wait(), 10)
    assert f"the API at {api.url} has not answered for " in why
    waited = float(why.split("has not answered for ")[1].split(" s")[0])
    assert NOT_ANSWERED_NOTICE <= waited < NOT_ANSWERED_NOTICE + 5
    assert "listing EndpointSlices kubernetes.io/service-name=web in namespace shop" in why


@pytest.mark.parametrize("command", ["watch", "proxy", "simulate", "demo"])
def test_an_unknown_option_shows_the_commands_own_usage(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kube-balance watch web.shop:http --bogus`` showed the top level's usage line, which says
    nothing of watch's options: the subcommand's usage and its name, exit 2."""
    args = {"watch": ["web.shop:http"], "proxy": ["web.shop:http", "--listen", "127.0.0.1:0"]}
    with pytest.raises(SystemExit) as exit_:
        main([command, *args.get(command, []), "--bogus", "x"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: kube-balance {command} ")
    assert err.endswith(f"kube-balance {command}: error: unrecognized arguments: --bogus x\n")
