"""One watch per (API server, namespace, Service, credentials, watch options) per event loop,
however many balancers use it.

The first subscriber's client config starts the watch task; later subscribers join it and get the
current slices at once; the task is cancelled and its client closed when the last one leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ._watcher import Listener, SliceWatch

Key = tuple[object, ...]  # (API server URL, namespace, Service name, credentials, watch options)


@dataclass(eq=False)
class _Entry:
    watch: SliceWatch
    task: asyncio.Task[None]
    listeners: list[Listener] = field(default_factory=list)


_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Key, _Entry]] = (
    weakref.WeakKeyDictionary()
)


def running_watches() -> dict[Key, SliceWatch]:
    """The watches running in this event loop (for status and tests)."""
    entries = _registries.get(asyncio.get_running_loop(), {})
    return {key: entry.watch for key, entry in entries.items()}


@contextlib.asynccontextmanager
async def subscribe(
    key: Key, listener: Listener, factory: Callable[[], SliceWatch]
) -> AsyncIterator[SliceWatch]:
    """Join the watch for ``key`` (starting it with ``factory()`` if none runs) for the block's duration."""
    loop = asyncio.get_running_loop()
    entries = _registries.setdefault(loop, {})
    entry = entries.get(key)
    if entry is None:
        watch = factory()
        entry = _Entry(watch, loop.create_task(watch.run(), name=f"kube-balance watch {key[1]}/{key[2]}"))
        entries[key] = entry
    entry.listeners.append(listener)
    entry.watch.listeners.append(listener)
    if entry.watch.synced:  # a late joiner starts from what the watch already knows
        listener.on_change(entry.watch, None)
    elif entry.watch.last_error is not None:
        listener.on_error(entry.watch.last_error)
    try:
        yield entry.watch
    finally:
        entry.listeners.remove(listener)
        entry.watch.listeners.remove(listener)
        if not entry.listeners:
            if entries.get(key) is entry:
                del entries[key]
            entry.task.cancel()
            # Finish the stop even if our own caller is being cancelled again meanwhile.
            await asyncio.shield(_stop(entry))


async def _stop(entry: _Entry) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await entry.task
    await entry.watch.config.aclose()
