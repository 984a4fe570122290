"""``PodFleet``: real pods on 127.0.0.1 in a child process, to balance real traffic across.

::

    async with FakeApiServer() as api, PodFleet(10, latency=(0.015, 0.025)) as fleet:
        fleet.publish(api, "web", "shop")              # a Service and one EndpointSlice per pod
        await fleet.configure("pod-3", slow_factor=10)  # pod-3 answers 10x slower
        ...                                             # traffic through BalancedTransport("web.shop:http")
        print(await fleet.hits())                       # {"pod-0": 101, "pod-1": 99, ...}

Every pod is an HTTP server on its own port of 127.0.0.1 (aiohttp for HTTP/1.1; with
``http2=True`` hypercorn, HTTP/2 with prior knowledge, "h2c"). Any path answers, as JSON, the
pod's name, the Host header it saw and the HTTP version (``{"pod", "host", "http_version"}``),
after a delay drawn uniformly from ``latency`` (seconds; ``seed`` seeds the draws) times the
pod's slow factor. All pods live in ONE child process (``python -m
kube_balance.testing._fleetpods``), so their work does not compete with the client for its core;
the fleet talks to it over its stdin and stdout, and it exits when the fleet closes or its
parent goes away.

Changes, each applied before the call returns: :meth:`configure` (a slow factor, an HTTP status
to answer with such as 503, a flap: ``(factor, on_seconds, period_seconds)``), :meth:`add` and
:meth:`remove` (a rolling update; a removed pod gives in-flight requests 1 s to finish),
:meth:`hits` (requests received per pod), :meth:`l4_proxy` (an :class:`L4Proxy` in the child in
front of the current pods, standing in for the Service's ClusterIP). :meth:`endpoint_slice` and
:meth:`publish` give the pods to a :class:`~kube_balance.testing.FakeApiServer`.

Needs ``aiohttp`` (``kube-balance[aiohttp]``) and, for HTTP/2, ``hypercorn`` (``kube-balance[demo]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from .._errors import ConfigurationError
from .._validate import check_bool, check_int, check_number, invalid
from ._objects import endpoint_slice, service, slice_endpoint

if TYPE_CHECKING:
    from ._apiserver import FakeApiServer

__all__ = ["FleetPod", "PodFleet"]

START_TIMEOUT = 30.0  # seconds for the child to import its servers and listen (a loaded machine)
CALL_TIMEOUT = 15.0
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a DNS label, as pod names are


class FleetPod(NamedTuple):
    """One pod of a :class:`PodFleet`: its name and where it listens."""

    name: str
    host: str
    port: int

    @property
    def key(self) -> str:
        """``"host:port"``, the :attr:`~kube_balance.Endpoint.key` of its endpoint."""
        return f"{self.host}:{self.port}"


class PodFleet:
    """``count`` pods named ``{prefix}-0`` ... in a child process; an async context manager.

    See the module docstring. Options are checked at construction
    (:class:`~kube_balance.ConfigurationError`): ``count`` 1 to 200, ``latency`` a
    ``(low, high)`` pair with ``0 <= low <= high <= 60``, ``seed`` an int, ``prefix`` a DNS label.
    """

    def __init__(
        self,
        count: int,
        *,
        http2: bool = False,
        latency: tuple[float, float] = (0.015, 0.025),
        seed: int = 0,
        prefix: str = "pod",
    ) -> None:
        self.count = check_int("PodFleet count", count, low=1, high=200)
        self.http2 = check_bool("PodFleet http2", http2)
        self.latency = _check_latency(latency)
        self.seed = check_int("PodFleet seed", seed)
        self.prefix = _check_name("PodFleet prefix", prefix)
        self._pods: list[FleetPod] = []
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    @property
    def pods(self) -> list[FleetPod]:
        """The running pods, in the order they were started."""
        return list(self._pods)

    def pod(self, name: str) -> FleetPod:
        """The running pod called ``name`` (KeyError if there is none)."""
        for pod in self._pods:
            if pod.name == name:
                return pod
        raise KeyError(name)

    async def start(self) -> PodFleet:
        """Start the child process and wait until every pod listens."""
        if self._process is not None:
            raise RuntimeError("PodFleet is already started")
        config = {"count": self.count, "http2": self.http2, "latency": self.latency, "seed": self.seed,
                  "prefix": self.prefix}  # fmt: skip
        # A fresh interpreter (not multiprocessing): no re-import of the caller's __main__ module.
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kube_balance.testing._fleetpods", json.dumps(config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=_child_env(),
        )  # fmt: skip
        try:
            self._set_pods(await self._reply("start", START_TIMEOUT))
        except BaseException:
            await self._kill()
            raise
        return self

    async def aclose(self) -> None:
        """Stop every pod and the child process (idempotent)."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(Exception):
                await self._send({"op": "stop"})
                await self._reply("stop", 10)
        await self._kill()
        self._pods = []

    async def __aenter__(self) -> PodFleet:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def configure(
        self,
        name: str,
        *,
        slow_factor: float | None = None,
        status: int | None = None,
        flap: tuple[float, float, float] | bool | None = False,
    ) -> None:
        """Change how pod ``name`` answers: ``slow_factor`` multiplies its delay (1: normal),
        ``status`` is the HTTP status it answers with (200: healthy, 503: failing), ``flap``
        ``(factor, on_seconds, period_seconds)`` makes it ``factor`` x slower for the first
        ``on_seconds`` of every ``period_seconds`` from now on (``None``: stop flapping).
        """
        msg: dict[str, Any] = {"op": "configure", "name": name}
        if slow_factor is not None:
            msg["slow_factor"] = check_number("PodFleet slow_factor", slow_factor, low=0, high=1000)
        if status is not None:
            msg["status"] = check_int("PodFleet status", status, low=100, high=599)
        if flap is not False:
            msg["flap"] = None if flap is None else _check_flap(flap)
        await self._call(msg)

    async def add(self, name: str) -> FleetPod:
        """Start one more pod called ``name``; returns it."""
        self._set_pods(await self._call({"op": "add", "name": _check_name("PodFleet pod name", name)}))
        return self.pod(name)

    async def remove(self, name: str) -> None:
        """Stop pod ``name``: it stops listening, its in-flight requests get 1 s to finish."""
        self._set_pods(await self._call({"op": "remove", "name": name}))

    async def hits(self) -> dict[str, int]:
        """Requests received per running pod since it started (or since :meth:`reset_hits`)."""
        result = await self._call({"op": "hits"})
        return {str(k): int(v) for k, v in result.items()}

    async def reset_hits(self) -> None:
        """Set every pod's count of requests back to 0."""
        await self._call({"op": "reset_hits"})

    async def l4_proxy(self) -> int:
        """Start an :class:`L4Proxy` in the child in front of the current pods; returns its port.

        It picks a pod round robin per TCP connection, as a ClusterIP does; it closes with the fleet.
        """
        return int(await self._call({"op": "l4"}))

    def endpoint_slice(
        self, name: str, service_name: str, namespace: str, *, port_name: str = "http", **conditions: bool
    ) -> dict[str, Any]:
        """An EndpointSlice of Service ``service_name`` named after pod ``name``, holding that pod.

        ``conditions`` are :func:`slice_endpoint`'s (``ready``, ``serving``, ``terminating``).
        """
        pod = self.pod(name)
        return endpoint_slice(
            service_name,
            namespace,
            name=pod.name,
            endpoints=[slice_endpoint(pod.host, pod_name=pod.name, **conditions)],  # type: ignore[arg-type]
            ports=[{"name": port_name, "port": pod.port}],
        )

    def publish(
        self, api: FakeApiServer, service_name: str, namespace: str, *, port_name: str = "http"
    ) -> None:
        """Apply Service ``service_name`` (port 80 named ``port_name``) and one ready slice per pod."""
        ports = [{"name": port_name, "port": 80, "targetPort": port_name}]
        api.apply(service(service_name, namespace, ports=ports))
        for pod in self._pods:
            api.apply(self.endpoint_slice(pod.name, service_name, namespace, port_name=port_name))

    def __repr__(self) -> str:
        protocol = "h2c" if self.http2 else "http/1.1"
        return f"<PodFleet {len(self._pods)} pods, {protocol}, latency {self.latency[0]}-{self.latency[1]} s>"

    async def _call(self, msg: dict[str, Any]) -> Any:
        if self._process is None:
            raise RuntimeError("PodFleet is not started")
        async with self._lock:
            await self._send(msg)
            return await self._reply(str(msg["op"]), CALL_TIMEOUT)

    async def _send(self, msg: dict[str, Any]) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(json.dumps(msg).encode() + b"\n")
        await self._process.stdin.drain()

    async def _reply(self, op: str, timeout: float) -> Any:
        assert self._process is not None and self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), timeout)
        except TimeoutError:
            raise RuntimeError(
                f"PodFleet {op}: the pods' process did not answer within {timeout:.0f} s"
            ) from None
        if not line:
            raise RuntimeError(f"PodFleet {op}: the pods' process exited (see its stderr above)")
        reply = json.loads(line)
        if not reply["ok"]:
            raise ConfigurationError(f"PodFleet {op}: {reply['error']}")
        return reply["result"]

    def _set_pods(self, described: list[list[Any]]) -> None:
        self._pods = [FleetPod(str(n), str(h), int(p)) for n, h, p in described]

    async def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()  # the child stops at the end of its stdin
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await asyncio.wait_for(process.wait(), 5)


def _child_env() -> dict[str, str]:
    # The child imports this very package, wherever it was imported from (an unusual sys.path too).
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _check_name(option: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise invalid(option, name, "expected a DNS label: lowercase letters, digits and '-', at most 63")
    return name


def _check_latency(latency: object) -> tuple[float, float]:
    allowed = "expected (low, high) seconds with 0 <= low <= high <= 60"
    if not isinstance(latency, tuple) or len(latency) != 2:
        raise invalid("PodFleet latency", latency, allowed)
    try:
        low, high = (check_number("PodFleet latency", v, low=0, high=60) for v in latency)
    except ConfigurationError:
        raise invalid("PodFleet latency", latency, allowed) from None
    if low > high:
        raise invalid("PodFleet latency", latency, allowed)
    return low, high


def _check_flap(flap: object) -> tuple[float, float, float]:
    allowed = (
        "expected (factor, on_seconds, period_seconds) with factor >= 0 and 0 < on_seconds <= period_seconds"
    )
    if not isinstance(flap, tuple) or len(flap) != 3:
        raise invalid("PodFleet flap", flap, allowed)
    try:
        factor, on, period = (check_number("PodFleet flap", v, low=0, high=3600) for v in flap)
    except ConfigurationError:
        raise invalid("PodFleet flap", flap, allowed) from None
    if not 0 < on <= period:
        raise invalid("PodFleet flap", flap, allowed)
    return factor, on, period
