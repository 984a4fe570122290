"""One watch stream: chunked JSON lines, selector transitions, bookmarks, timeout, stream faults.

The wire format is the apiserver's: ``Content-Type: application/json``, chunked transfer
encoding, one ``{"type": ..., "object": ...}`` document per line, flushed per event. A watch that
matches a selector sees ``ADDED`` when an object starts matching and ``DELETED`` carrying the
previous content (stamped with the event's RV) when it stops, as the watch cache's
``cacheWatcher.convertToWatchEvent`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._apiresources import Resource, status_body
from ._apiselectors import Selector
from ._apistore import Bookmark, ObjectStore, StoredEvent
from ._faults import Fault

__all__ = ["WatchOptions", "abort", "gone_status", "serve_watch", "stall", "to_wire"]


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """The parsed query of one watch request."""

    since: int | None  # None: start with synthetic ADDED events for the current state
    bookmarks: bool
    timeout: float | None
    bookmark_interval: float


def gone_status(rv: int | str, floor: int) -> dict[str, Any]:
    """The 410 Expired Status, worded like the watch cache's "too old resource version"."""
    return status_body(410, "Expired", f"too old resource version: {rv} ({floor})")


def to_wire(event: StoredEvent, match: Selector) -> dict[str, Any] | None:
    """The event this watcher sees for ``event`` under its selector, or ``None`` for nothing."""
    if event.type != "MODIFIED":
        return {"type": event.type, "object": event.obj} if match(event.obj) else None
    now, before = match(event.obj), event.prev is not None and match(event.prev)
    if now:
        return {"type": "MODIFIED" if before else "ADDED", "object": event.obj}
    if before and event.prev is not None:
        last = {**event.prev, "metadata": {**event.prev["metadata"], "resourceVersion": str(event.rv)}}
        return {"type": "DELETED", "object": last}
    return None


def abort(request: web.BaseRequest) -> None:
    """Drop the TCP connection without a final chunk, as a crashed server or a cut network would."""
    if request.transport is not None:
        request.transport.abort()


def _line(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


async def serve_watch(
    request: web.BaseRequest,
    *,
    store: ObjectStore,
    res: Resource,
    match: Selector,
    opts: WatchOptions,
    fault: Fault | None,
    stopping: asyncio.Event,
    on_headers: Callable[[int], None],
) -> web.StreamResponse:
    """Stream events until timeoutSeconds, a fault, the client leaving, or the server stopping."""
    gone: dict[str, Any] | None = None
    backlog: list[StoredEvent] = []
    if opts.since is None:
        snapshot = store.snapshot(res.kind) or []
        backlog = [StoredEvent("ADDED", store.rv, res.kind, o, None) for o in snapshot]
    else:
        events = store.events_after(opts.since, res.kind)
        if events is None:
            # The real apiserver answers 200 and reports a too-old RV as an in-stream ERROR event.
            gone = gone_status(opts.since, store.floor)
        else:
            backlog = events
    # Subscribing right after reading the backlog (no await between) loses and repeats nothing.
    sub = store.subscribe(res.kind)
    resp = web.StreamResponse(
        status=200, headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
    )
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
        on_headers(200)
        if fault is not None and fault.action == "stall":
            await stall(fault.seconds, stopping)
        if stopping.is_set():  # the server went down during the stall: the stream dies with it
            abort(request)
            return resp
        if gone is not None:
            await resp.write(_line({"type": "ERROR", "object": gone}))
            return resp
        return await _pump(request, resp, store, sub, res, match, opts, backlog, fault)
    except (ConnectionError, asyncio.CancelledError):
        abort(request)
        raise
    finally:
        store.unsubscribe(sub)


async def stall(seconds: float | None, stopping: asyncio.Event) -> None:
    """Wait ``seconds`` (``None``: forever), cut short when the server stops."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


async def _pump(
    request: web.BaseRequest,
    resp: web.StreamResponse,
    store: ObjectStore,
    sub: Any,
    res: Resource,
    match: Selector,
    opts: WatchOptions,
    backlog: list[StoredEvent],
    fault: Fault | None,
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    deadline = None if opts.timeout is None else loop.time() + opts.timeout
    next_bookmark = loop.time() + opts.bookmark_interval if opts.bookmarks else None
    pending = list(reversed(backlog))
    written = 0
    send: Callable[[bytes], Awaitable[None]] = resp.write
    while True:
        if fault is not None and written >= fault.after_events:
            if fault.action == "drop_mid_stream":
                abort(request)
                return resp
            if fault.action == "end_stream":
                return resp
            if fault.action == "gone_in_stream":
                await send(_line({"type": "ERROR", "object": gone_status(opts.since or store.rv, store.rv)}))
                return resp
            if fault.action == "malformed_line" and fault.body is not None:
                await send(fault.body.encode() + b"\n")
                fault = None
        item: StoredEvent | Bookmark | None
        if pending:
            item = pending.pop()
        else:
            wake = min((t for t in (deadline, next_bookmark) if t is not None), default=None)
            try:
                timeout = None if wake is None else max(0.0, wake - loop.time())
                item = await asyncio.wait_for(sub.queue.get(), timeout)
            except TimeoutError:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    return resp  # timeoutSeconds: a clean end of the stream
                if next_bookmark is not None and now >= next_bookmark:
                    store.bookmark(sub)
                    next_bookmark = now + opts.bookmark_interval
                continue
        if item is None:  # server stopping or restarting: drop like a dying process
            abort(request)
            return resp
        if isinstance(item, Bookmark):
            if not opts.bookmarks:
                continue
            wire: dict[str, Any] | None = {
                "type": "BOOKMARK",
                "object": {
                    "kind": res.kind,
                    "apiVersion": res.api_version,
                    "metadata": {"resourceVersion": str(item.rv)},
                },
            }
        else:
            wire = to_wire(item, match)
        if wire is None:
            continue
        data = _line(wire)
        if fault is not None and fault.action == "drop_mid_line" and written >= fault.after_events:
            await send(data[: len(data) // 2])
            abort(request)
            return resp
        await send(data)
        written += 1
