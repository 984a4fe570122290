"""No credential in logs, errors, reprs or status() when the API address or the proxy misbehaves.

Raw TCP servers on 127.0.0.1 play an API address that does not speak HTTP (an SSH banner, a bad
header line, a duplicate Content-Length) and a kubeconfig ``proxy-url`` (with a password) that
refuses CONNECT or answers garbage; aiohttp's errors for these carry our request headers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import traceback
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from helpers_kube_discovery import TIMEOUT, Sleeper, make_source, until

from kube_balance import LoadBalancer, NoEndpointsAvailable
from kube_balance.testing import FakeApiServer

TOKEN = "tok-5ecret-7f3a9c41"
PROXY_USER, PROXY_PASSWORD = "alice", "pr0xy-pa55w0rd-q8"
SECRETS = (TOKEN, PROXY_PASSWORD, base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode())

SSH_BANNER = b"SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n"
BAD_HEADER = b"HTTP/1.1 200 OK\r\nthis is not a header\r\n\r\n"
DUPLICATE_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
REFUSE_CONNECT = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@contextlib.asynccontextmanager
async def raw_server(reply: bytes) -> AsyncIterator[str]:
    """A TCP server that reads a request head, answers ``reply`` and hangs up; yields host:port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            writer.write(reply)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def kubeconfig(case: str, tmp_path: Any) -> AsyncIterator[str]:
    """A kubeconfig with TOKEN whose API address (or proxy) misbehaves as ``case`` says."""
    via_proxy = case.startswith("proxy")
    reply = {
        "ssh-banner": SSH_BANNER,
        "bad-header": BAD_HEADER,
        "duplicate-content-length": DUPLICATE_LENGTH,
        "proxy-refuses-connect": REFUSE_CONNECT,
        "proxy-answers-ssh-banner": SSH_BANNER,
        "password-in-server-url": SSH_BANNER,
    }[case]
    async with (
        FakeApiServer(token=TOKEN, tls=case == "proxy-refuses-connect") as api,
        raw_server(reply) as address,
    ):
        doc = api.kubeconfig_dict()
        cluster = doc["clusters"][0]["cluster"]
        if via_proxy:  # https goes through CONNECT, http is sent to the proxy as is
            cluster["proxy-url"] = f"http://{PROXY_USER}:{PROXY_PASSWORD}@{address}"
        elif case == "password-in-server-url":
            cluster["server"] = f"http://{PROXY_USER}:{PROXY_PASSWORD}@{address}"
        else:
            cluster["server"] = f"http://{address}"
        path = tmp_path / "kubeconfig"
        path.write_text(json.dumps(doc))
        yield str(path)


def chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and every exception reachable through ``__cause__`` and ``__context__``."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is not None and all(e is not s for s in seen):
            seen.append(e)
            todo += [e.__cause__, e.__context__]
    return seen


async def no_endpoints(lb: LoadBalancer, port: str) -> None:
    """Raise what a caller gets: a named port makes the fallback read the Service (and fail)."""
    if port == "http":
        await lb.fallback_target()
    raise lb.no_endpoints()


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a credential leaked into {where}: {text!r}"


CASES = [
    "ssh-banner",
    "bad-header",
    "duplicate-content-length",
    "proxy-refuses-connect",
    "proxy-answers-ssh-banner",
    "password-in-server-url",
]


def _reads_proxy_url() -> bool:
    """Whether this kubernetes_asyncio reads a kubeconfig cluster's ``proxy-url`` (not 30.x)."""
    import inspect

    from kubernetes_asyncio.config import kube_config

    return "proxy-url" in inspect.getsource(kube_config)


@pytest.mark.parametrize("port", ["http", "80"])
@pytest.mark.parametrize("case", CASES)
async def test_no_credential_reaches_logs_status_or_errors(
    case: str, port: str, sleeper: Sleeper, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Watch, port lookup and fallback fail on a non-HTTP answer; no token or proxy password is shown."""
    if case.startswith("proxy-") and not _reads_proxy_url():
        pytest.skip("this kubernetes_asyncio ignores a kubeconfig proxy-url")
    caplog.set_level(logging.DEBUG)
    async with kubeconfig(case, tmp_path) as path:
        source = make_source(f"web.default:{port}", sleeper, kubeconfig=path)
        lb = LoadBalancer(f"web.default:{port}", source=source, fallback="service")
        async with lb:
            await until(lambda: lb.last_error is not None and len(sleeper.delays) >= 2)  # failed twice
            status = lb.status()
            assert "list/watch endpointslices default/web" in str(status.last_error)
            with pytest.raises(NoEndpointsAvailable) as info:
                await asyncio.wait_for(no_endpoints(lb, port), TIMEOUT)
            shown = {
                "status().last_error": f"{status.last_error!s} {status.last_error!r}",
                "status()": repr(status),
                "repr(balancer)": repr(lb),
                "source.last_error": repr(source.last_error),
                "NoEndpointsAvailable": "".join(traceback.format_exception(info.value)),
            }
            for i, e in enumerate(chain(info.value) + chain(status.last_error)):
                shown[f"chained error {i}"] = f"{e!s} {e!r}"
            shown["logs"] = caplog.text + "".join(r.getMessage() for r in caplog.records)
    for where, text in shown.items():
        assert_no_secret(where, text)
    assert caplog.records, "the failures were logged"


async def test_source_that_raises_an_aiohttp_error_is_reported_without_credentials(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A source whose run() lets an aiohttp error (headers in its repr) escape: the balancer's
    log and last_error hold no credential."""
    caplog.set_level(logging.DEBUG)

    class LeakySource:
        async def run(self, sink: Any) -> None:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://{address}/", headers={"Authorization": f"Bearer {TOKEN}"}) as resp,
            ):
                await resp.read()

    async with raw_server(SSH_BANNER) as address:
        lb = LoadBalancer("web.default:80", source=LeakySource(), fallback="none")  # type: ignore[arg-type]
        async with lb:
            await until(lambda: lb.last_error is not None)
    # aiohttp 3.10 reports a response it could not parse with status 0, later versions with 400
    assert re.search(r"ClientResponseError: HTTP (400|0)\b", str(lb.last_error)), lb.last_error
    for where, text in {
        "last_error": f"{lb.last_error!s} {lb.last_error!r}",
        "chain": " ".join(f"{e!s} {e!r}" for e in chain(lb.last_error)),
        "logs": caplog.text,
    }.items():
        assert_no_secret(where, text)
