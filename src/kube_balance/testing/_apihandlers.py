"""Request handling for :class:`FakeApiServer`: faults, auth, RBAC, then list / get / watch / discovery."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._apiauth import Permissions, forbidden
from ._apirequest import (
    BadRequest,
    Target,
    decode_continue,
    encode_continue,
    parse_bool,
    parse_int,
    parse_target,
)
from ._apiresources import ENDPOINT_SLICES, api_group, api_group_list, api_resource_list, status_body
from ._apiselectors import Selector, SelectorError, parse_field_selector, parse_label_selector
from ._apistore import storage_key
from ._apiwatch import WatchOptions, abort, gone_status, serve_watch, stall
from ._faults import Fault

if TYPE_CHECKING:
    from ._apiserver import FakeApiServer

__all__ = ["Handlers"]

_EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list."
)
_HTTP_ERRORS = {  # status -> (reason, message) as the apiserver words them
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: (
        "InternalError",
        'Internal error occurred: an error on the server ("") has prevented the request from succeeding',
    ),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: (
        "Timeout",
        "the server was unable to return a response in the time allotted, but may still be processing the request",
    ),
}
_VERSION = {  # every field the real /version has; kubernetes_asyncio's VersionInfo requires them
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T07:28:49Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


class _Reply(Exception):
    """Raised inside a handler to answer ``status`` with ``body`` at once."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


def _not_found() -> _Reply:
    return _Reply(404, status_body(404, "NotFound", "the server could not find the requested resource", {}))


class Handlers:
    """The single aiohttp route of the fake: one ``handle`` for every method and path."""

    def __init__(self, server: FakeApiServer) -> None:
        self._server = server
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        server = self._server
        query = {k: request.query[k] for k in request.query}
        target = parse_target(request.method, request.path, query)
        fault = server.take_fault(target.kind, request.path)
        token, auth = server.authenticate(request.headers.get("Authorization"))
        if fault is not None and fault.action in ("drop_before_headers", "restart"):
            server.log(request, 0, token, target.kind, fault)
            if fault.action == "restart":
                task = asyncio.get_running_loop().create_task(server.restart())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            abort(request)
            return web.Response(status=500)
        if fault is not None and fault.action == "raw_response":  # a proxy answered, not the apiserver
            server.log(request, fault.status, token, target.kind, fault)
            return await _deliver(request, fault.status, b"", {}, fault, server.stopping)
        headers: dict[str, str] = {}
        try:
            if fault is not None:
                self._reply_fault(fault, target, query)
            if isinstance(auth, dict):
                raise _Reply(401, auth)
            if target.kind == "watch":
                return await self._watch(request, target, query, auth, token, fault)
            status, body = 200, self._dispatch(target, query, auth, request.path)
        except _Reply as reply:
            status, body, headers = reply.status, reply.body, reply.headers
        server.log(request, status, token, target.kind, fault)
        return await _deliver(request, status, json.dumps(body).encode(), headers, fault, server.stopping)

    def _reply_fault(self, fault: Fault, target: Target, query: dict[str, str]) -> None:
        """Answer an injected HTTP error (and a 410 meant for a stream, when this is no watch)."""
        gone_here = fault.action == "gone_in_stream" and target.kind != "watch"
        if fault.action != "http_error" and not gone_here:
            return
        store = self._server.store
        if fault.status == 410 or gone_here:
            raise _Reply(410, gone_status(query.get("resourceVersion") or str(store.rv), store.floor))
        reason, message = _HTTP_ERRORS.get(
            fault.status, ("InternalError", f"fault injected: HTTP {fault.status}")
        )
        details: dict[str, Any] | None = None
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            details = {"retryAfterSeconds": fault.retry_after}
            headers["Retry-After"] = str(fault.retry_after)
        raise _Reply(fault.status, status_body(fault.status, reason, message, details), headers)

    def _authorize(self, target: Target, perms: Permissions | None) -> None:
        res = target.resource
        if perms is None or res is None or perms.allows(res.plural, target.kind, target.namespace):
            return
        raise _Reply(403, forbidden(perms.user, target.kind, res, target.namespace, target.name))

    def _dispatch(
        self, target: Target, query: dict[str, str], perms: Permissions | None, path: str
    ) -> dict[str, Any]:
        if target.kind == "unknown":
            raise _not_found()
        if target.group == ENDPOINT_SLICES.group and not self._server.serve_discovery_v1:
            raise _not_found()  # an old cluster: the whole group is absent
        if target.kind == "discovery":
            return self._discovery(target, path)
        self._authorize(target, perms)
        if target.kind == "get":
            return self._get(target)
        return self._list(target, query)

    def _discovery(self, target: Target, path: str) -> dict[str, Any]:
        path = path.rstrip("/")
        if path == "/version":
            return dict(_VERSION)
        if path == "/api":
            cidr = {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self._server.host}:{self._server.port}"}
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [cidr]}
        if path == "/apis":
            return api_group_list(self._server.serve_discovery_v1)
        if target.group and not path.endswith("/v1"):
            return api_group(target.group)
        return api_resource_list(target.group or "")

    def _get(self, target: Target) -> dict[str, Any]:
        assert target.resource is not None
        assert target.name is not None
        res = target.resource
        obj = self._server.store.get(res.kind, target.namespace or "", target.name)
        if obj is None:
            message = f'{res.qualified} "{target.name}" not found'
            raise _Reply(
                404,
                status_body(
                    404, "NotFound", message, {"name": target.name, "group": res.group, "kind": res.plural}
                ),
            )
        return obj

    def _list(self, target: Target, query: dict[str, str]) -> dict[str, Any]:
        assert target.resource is not None
        res, store = target.resource, self._server.store
        match = _matcher(target, query)
        limit = _checked_int(query, "limit") or 0
        start = ""
        if query.get("continue"):
            rv, start = _checked(decode_continue, query["continue"])
        else:
            rv = _requested_rv(query, store.rv) or store.rv
            if query.get("resourceVersionMatch") != "Exact":
                rv = store.rv  # NotOlderThan / unset: the newest state is always acceptable
        items = store.snapshot(res.kind, rv)
        if items is None:
            fresh = {"continue": encode_continue(store.rv, start)} if start else {}
            message = _EXPIRED_CONTINUE if start else f"too old resource version: {rv} ({store.floor})"
            raise _Reply(410, status_body(410, "Expired", message, metadata=fresh))
        selected = [o for o in items if match(o) and storage_key(o) > start]
        page = selected[:limit] if limit > 0 else selected
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if len(page) < len(selected):
            meta["continue"] = encode_continue(rv, storage_key(page[-1]))
            if not query.get("labelSelector") and not query.get("fieldSelector"):
                meta["remainingItemCount"] = len(selected) - len(page)
        stripped = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in page]
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": meta, "items": stripped}

    async def _watch(
        self,
        request: web.Request,
        target: Target,
        query: dict[str, str],
        perms: Permissions | None,
        token: str | None,
        fault: Fault | None,
    ) -> web.StreamResponse:
        if target.group == ENDPOINT_SLICES.group and not self._server.serve_discovery_v1:
            raise _not_found()
        self._authorize(target, perms)
        assert target.resource is not None
        match = _matcher(target, query)
        timeout = _checked_int(query, "timeoutSeconds") or None  # 0 means "the server's default", as upstream
        since = _requested_rv(query, self._server.store.rv)
        opts = WatchOptions(
            since, parse_bool(query, "allowWatchBookmarks"), timeout, self._server.bookmark_interval
        )
        return await serve_watch(
            request,
            store=self._server.store,
            res=target.resource,
            match=match,
            opts=opts,
            fault=fault,
            stopping=self._server.stopping,
            on_headers=lambda status: self._server.log(request, status, token, "watch", fault),
        )


def _checked(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except (BadRequest, SelectorError) as exc:
        raise _Reply(400, status_body(400, "BadRequest", str(exc))) from None


def _checked_int(query: dict[str, str], name: str) -> int | None:
    value: int | None = _checked(parse_int, query, name)
    return value


def _requested_rv(query: dict[str, str], current: int) -> int | None:
    """The ``resourceVersion`` asked for; ``None`` for absent or "0" (any / most recent)."""
    rv = _checked_int(query, "resourceVersion")
    if rv is None or rv == 0:
        return None
    if rv > current:
        message = f"Too large resource version: {rv}, current: {current}"
        details = {
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        }
        raise _Reply(504, status_body(504, "Timeout", message, details))
    return rv


def _matcher(target: Target, query: dict[str, str]) -> Selector:
    labels: Selector = _checked(parse_label_selector, query.get("labelSelector"))
    fields: Selector = _checked(parse_field_selector, query.get("fieldSelector"))
    namespace, name = target.namespace, target.name

    def match(obj: Mapping[str, Any]) -> bool:
        meta = obj["metadata"]
        if namespace is not None and meta.get("namespace") != namespace:
            return False
        if name is not None and meta.get("name") != name:
            return False
        return labels(obj) and fields(obj)

    return match


async def _deliver(
    request: web.Request,
    status: int,
    body: bytes,
    headers: dict[str, str],
    fault: Fault | None,
    stopping: asyncio.Event,
) -> web.StreamResponse:
    """Send a complete (non-watch) response, applying stall and cut faults to it."""
    content_type = "application/json"
    if fault is not None and fault.action == "raw_response":
        status, body, content_type = fault.status, (fault.body or "").encode(), fault.content_type
    elif fault is not None and fault.action == "malformed_line" and status == 200:
        body = (fault.body or "").encode()
    action = fault.action if fault is not None else None
    if action not in ("stall", "drop_mid_stream", "drop_mid_line", "end_stream"):
        return web.Response(status=status, body=body, headers={**headers, "Content-Type": content_type})
    resp = web.StreamResponse(status=status, headers={**headers, "Content-Type": content_type})
    if action == "end_stream":
        resp.enable_chunked_encoding()  # a clean end after half the body: the client gets bad JSON
    else:
        resp.content_length = len(body)
    await resp.prepare(request)
    if fault is not None and action == "stall":
        await stall(fault.seconds, stopping)
        if stopping.is_set():  # the server went down during the stall
            abort(request)
        else:
            await resp.write(body)
        return resp
    await resp.write(body[: len(body) // 2])
    if action != "end_stream":
        abort(request)
    return resp
