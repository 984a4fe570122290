"""A protocol-faithful fake Kubernetes API server for tests: real HTTP, real kubeconfig, real client.

Usage::

    from kube_balance.testing import FakeApiServer, Fault, endpoint_slice, slice_endpoint

    async with FakeApiServer() as api:  # aiohttp on 127.0.0.1:<ephemeral port>
        api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1", slice_endpoint("10.0.0.2", ready=False)]))
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")  # or: await api.new_api_client()
        ...  # point the code under test at kubeconfig; it lists and watches as against a cluster
        api.apply(...); api.delete("EndpointSlice", "shop", "web-ipv4")  # watch events flow
        api.inject(Fault.drop_mid_stream(after_events=1))  # script the next watch's failure
        api.compact()  # every older resourceVersion now gets 410 Gone
        assert [r.query.get("resourceVersion") for r in api.requests if r.verb == "watch"] == [...]

What it serves (GET only): EndpointSlices (``/apis/discovery.k8s.io/v1``), Services and core/v1
Endpoints (``/api/v1``) -- namespaced and all-namespace lists, named gets, and watches
(``?watch=1``) -- cluster-scoped Nodes (``GET /api/v1/nodes/<name>``, for the zone lookup),
plus the discovery documents ``/version``, ``/api``, ``/api/v1``, ``/apis``,
``/apis/discovery.k8s.io[/v1]`` (404 when ``serve_discovery_v1=False``, an old cluster).

Behaviour a client must cope with, as the real apiserver has it:

- one global resourceVersion for all kinds, with random gaps (seeded), always a string;
- lists: ``<Kind>List`` with ``metadata.resourceVersion``, items without kind/apiVersion,
  ``limit``/``continue`` paging over a consistent snapshot; a continue token older than the
  history gives 410 Expired; ``labelSelector`` and ``fieldSelector`` (metadata.name/namespace);
- watches: chunked JSON lines; no/``"0"`` resourceVersion starts with ADDED for every object;
  an RV older than the kept history (``history_limit`` events, or :meth:`compact`) gets an
  in-stream ``ERROR`` 410 with HTTP 200 (``Fault.gone()`` for the HTTP 410 variant); selector
  transitions give ADDED/DELETED; ``allowWatchBookmarks`` gives a BOOKMARK every
  ``bookmark_interval`` seconds (real: about a minute) and on :meth:`send_bookmark`;
  ``timeoutSeconds`` ends the stream cleanly; an RV in the future gets 504 "Too large resource version";
- auth: ``Authorization: Bearer <token>``; unknown or missing: 401; per-token
  :class:`Permissions` give 403 with RBAC's message; :meth:`set_tokens` rotates tokens;
- every error body is a ``Status`` JSON object, unless a :class:`Fault` says otherwise.

Every request is logged in :attr:`requests` when its status is decided (a watch when its headers
go out, so a live watch is visible); a dropped request has status 0.

Call the object and fault methods from the event loop's thread (they are synchronous and never
await, so a test can change state between two awaits and know no watch missed it). Watches
without ``timeoutSeconds`` last until the server stops (the real one picks 30-60 min).
Not modelled: writes over HTTP (only GET is served), ``sendInitialEvents`` streaming lists,
``resourceVersionMatch`` other than ``Exact`` (anything else lists the newest state, which the
real apiserver also may).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from .._errors import ConfigurationError
from ._apiauth import Permissions, unauthorized
from ._apihandlers import Handlers
from ._apistore import ObjectStore
from ._faults import Fault, FaultQueue

__all__ = ["FakeApiServer", "RequestRecord"]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the server saw it; ``status`` 0 means the connection was dropped."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    token: str | None
    time: float  # time.monotonic()
    verb: str  # list, watch, get, discovery or unknown
    fault: str | None = None  # the Fault.action applied, if any


class FakeApiServer:
    """An in-process Kubernetes API server on loopback; see the module docstring for a guide.

    - ``tls``: serve HTTPS with a fresh trustme CA (``ca_pem_path``, written into kubeconfigs).
    - ``token`` / ``tokens``: ``tokens`` maps each accepted bearer token to its
      :class:`Permissions` (``None``: allowed everything); when omitted only ``token`` is
      accepted, with every permission. ``token`` is what :meth:`write_kubeconfig` and
      :meth:`new_api_client` use by default.
    - ``history_limit`` (1000 events): how far back a watch or continue token may resume; the
      real limit is the watch cache window plus etcd compaction (every 5 min by default).
    - ``serve_discovery_v1``: ``False`` plays a cluster without ``discovery.k8s.io/v1`` (< 1.21).
    - ``bookmark_interval`` (1 s): BOOKMARK period on watches that allow them; real: about 1 min
      (the watch cache's bookmark frequency).
    - ``seed``: seeds the resourceVersion gaps and uids, so runs are reproducible.
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        token: str = "test-token",
        tokens: Mapping[str, Permissions | None] | None = None,
        history_limit: int = 1000,
        serve_discovery_v1: bool = True,
        host: str = "127.0.0.1",
        bookmark_interval: float = 1.0,
        seed: int = 0,
    ) -> None:
        if bookmark_interval <= 0:
            raise ConfigurationError(f"bookmark_interval must be > 0, got {bookmark_interval}")
        self.tls = tls
        self.token = token
        self.host = host
        self.serve_discovery_v1 = serve_discovery_v1
        self.bookmark_interval = bookmark_interval
        self.tokens: dict[str, Permissions | None] = dict(tokens) if tokens is not None else {token: None}
        self.requests: list[RequestRecord] = []
        self.ca_pem_path: str | None = None
        self.port = 0
        self._store = ObjectStore(history_limit=history_limit, rng=random.Random(seed))
        self._faults = FaultQueue()
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._ssl: ssl.SSLContext | None = None
        self._tmpdir: str | None = None
        self._handlers = Handlers(self)

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http(s)://host:port`` of the running server."""
        if not self.port:
            raise RuntimeError("FakeApiServer is not started")
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen on an ephemeral port (or the previous one, after :meth:`restart`)."""
        if self.tls and self._ssl is None:
            self._setup_tls()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handlers.handle)
        # handler_cancellation: a client that goes away ends its watch handler at once.
        runner = web.AppRunner(
            app, handle_signals=False, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self._ssl, reuse_address=True)
        await site.start()
        self._runner = runner
        self._stopping = asyncio.Event()
        if not self.port:
            self.port = int(runner.addresses[0][1])

    async def _shutdown(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping.set()
        self._store.drop_all()  # live watches abort their connections, as a dying process's would
        await runner.cleanup()

    async def stop(self) -> None:
        """Stop serving and remove the TLS files; the objects stay."""
        await self._shutdown()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir, self._ssl, self.ca_pem_path = None, None, None

    async def restart(self) -> None:
        """Drop every connection and come back on the same port with the same data and CA."""
        await self._shutdown()
        await self.start()

    async def __aenter__(self) -> FakeApiServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _setup_tls(self) -> None:
        try:
            import trustme
        except ImportError as exc:  # pragma: no cover - trustme is in the test dependency group
            raise ConfigurationError("FakeApiServer(tls=True) needs trustme: pip install trustme") from exc
        ca = trustme.CA()
        cert = ca.issue_cert(self.host, "localhost")
        self._tmpdir = tempfile.mkdtemp(prefix="kube-balance-fake-apiserver-")
        self.ca_pem_path = os.path.join(self._tmpdir, "ca.pem")
        ca.cert_pem.write_to_path(self.ca_pem_path)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        self._ssl = ctx

    # -- client configuration --------------------------------------------------------------------
    def kubeconfig_dict(
        self,
        *,
        token: str | None = None,
        token_file: str | None = None,
        namespace: str = "default",
        context: str = "fake",
    ) -> dict[str, Any]:
        """The kubeconfig as a dict; ``token_file`` writes ``tokenFile`` (re-read on rotation)."""
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca_pem_path is not None:
            cluster["certificate-authority"] = self.ca_pem_path
        user: dict[str, Any] = {"tokenFile": token_file} if token_file else {"token": token or self.token}
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": context, "user": user}],
            "contexts": [
                {"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}
            ],
            "current-context": context,
            "preferences": {},
        }

    def write_kubeconfig(
        self,
        path: str | os.PathLike[str],
        *,
        token: str | None = None,
        namespace: str = "default",
        context: str = "fake",
        token_file: str | None = None,
    ) -> str:
        """Write a real kubeconfig (JSON, which is YAML) for this server; returns its path."""
        doc = self.kubeconfig_dict(token=token, token_file=token_file, namespace=namespace, context=context)
        Path(path).write_text(json.dumps(doc, indent=2))
        return os.fspath(path)

    async def new_api_client(self, *, token: str | None = None) -> Any:
        """A ``kubernetes_asyncio.client.ApiClient`` configured for this server (close it after use)."""
        from kubernetes_asyncio import client, config

        cfg = client.Configuration()
        await config.load_kube_config_from_dict(self.kubeconfig_dict(token=token), client_configuration=cfg)
        return client.ApiClient(configuration=cfg)

    # -- objects --------------------------------------------------------------------------------
    @property
    def resource_version(self) -> str:
        """The current global resourceVersion (a string, as on the wire)."""
        return str(self._store.rv)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace ``obj`` by kind/namespace/name and emit ADDED or MODIFIED.

        Assigns ``resourceVersion`` (and on create ``uid``, ``creationTimestamp``); returns the
        stored copy. Like the apiserver, an update that changes nothing is a no-op: no new RV,
        no event.
        """
        return self._store.apply(obj)

    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """Delete and emit DELETED with the last state at the delete's RV (returned). KeyError if absent."""
        return self._store.delete(kind, namespace, name)

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object (a copy, with kind/apiVersion), or ``None``."""
        return self._store.get(kind, namespace, name)

    def compact(self) -> None:
        """Forget the event history: a watch or continue token from any older RV now gets 410."""
        self._store.compact()

    def send_bookmark(self) -> None:
        """Send a BOOKMARK at the current RV now, on every watch that asked for bookmarks."""
        self._store.bookmark()

    # -- faults and auth ------------------------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        """Queue ``fault`` for the next ``fault.count`` matching requests (see :class:`Fault`)."""
        self._faults.add(fault)

    def clear_faults(self) -> None:
        """Drop every queued fault not yet used."""
        self._faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        """The faults still queued, in order."""
        return self._faults.pending()

    def set_tokens(self, tokens: Mapping[str, Permissions | None]) -> None:
        """Replace the accepted tokens (simulates service-account token rotation)."""
        self.tokens = dict(tokens)

    def take_fault(self, verb: str, path: str) -> Fault | None:
        """The first queued fault matching this request, used up by one (internal to the handlers)."""
        return self._faults.take(verb, path)

    def authenticate(self, header: str | None) -> tuple[str | None, dict[str, Any] | Permissions | None]:
        """``(token, 401 body | permissions | None)`` for an Authorization header (internal)."""
        token = header[7:].strip() if header and header[:7].lower() == "bearer " else None
        if token is None or token not in self.tokens:
            return token, unauthorized()
        return token, self.tokens[token]

    def log(
        self, request: web.BaseRequest, status: int, token: str | None, verb: str, fault: Fault | None
    ) -> None:
        """Append a :class:`RequestRecord` (internal to the handlers)."""
        query = {k: request.query[k] for k in request.query}
        action = fault.action if fault is not None else None
        self.requests.append(
            RequestRecord(request.method, request.path, query, status, token, time.monotonic(), verb, action)
        )

    @property
    def stopping(self) -> asyncio.Event:
        """Set while the server shuts down (stalls and watches end on it)."""
        return self._stopping

    @property
    def store(self) -> ObjectStore:
        """The object store (internal to the handlers)."""
        return self._store
