"""The fake's storage: objects, one global resourceVersion with gaps, bounded event history.

This mirrors what a client can observe of etcd plus the watch cache:

- every write takes the next value of a single counter shared by all kinds, advanced by a random
  1..7 from a seeded rng so clients cannot get away with ``rv + 1`` arithmetic;
- the last ``history_limit`` events are kept; a watch or a continue token from before them is
  "too old" (the caller answers 410 Gone), exactly as after an etcd compaction;
- a list snapshot at an older RV is rebuilt by rolling the history back, which is what lets
  continue tokens page through a consistent snapshot while writes go on.

All methods are synchronous: they run on the event loop thread and never await, so a watch that
reads the backlog and subscribes in one step can never miss or duplicate an event.
"""

from __future__ import annotations

import asyncio
import copy
import random
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .._errors import ConfigurationError
from ._apiresources import KINDS

__all__ = ["Bookmark", "ObjectStore", "StoredEvent", "Subscription", "storage_key"]

Key = tuple[str, str, str]  # kind, namespace, name


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One write: ``obj`` is the state after it (a DELETED carries the last state at the delete's RV)."""

    type: Literal["ADDED", "MODIFIED", "DELETED"]
    rv: int
    kind: str
    obj: dict[str, Any]
    prev: dict[str, Any] | None  # state before the write; selector transitions need it


@dataclass(frozen=True, slots=True)
class Bookmark:
    """Queued to a watch: send a BOOKMARK at ``rv`` (every event up to ``rv`` is already queued)."""

    rv: int


@dataclass(eq=False)
class Subscription:
    """A live watch's inbox; ``None`` in the queue means "drop the connection now"."""

    kind: str
    queue: asyncio.Queue[StoredEvent | Bookmark | None] = field(default_factory=asyncio.Queue)


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def storage_key(obj: dict[str, Any]) -> str:
    """``namespace/name``: lists come back in etcd key order, which this string order matches."""
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def _same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal but for server-managed metadata: the apiserver turns such an update into a no-op."""

    def strip(o: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in o["metadata"].items() if k not in _SERVER_FIELDS}
        return {**o, "metadata": meta}

    return strip(a) == strip(b)


_SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation")


class ObjectStore:
    """Objects by (kind, namespace, name) with the global RV counter and event history."""

    def __init__(self, *, history_limit: int, rng: random.Random) -> None:
        if history_limit < 1:
            raise ConfigurationError(f"history_limit must be >= 1, got {history_limit}")
        self._rng = rng
        self._limit = history_limit
        self._objects: dict[Key, dict[str, Any]] = {}
        self._history: deque[StoredEvent] = deque()
        # A realistic-looking start; a watch from before it is too old, like one from before a compaction.
        self.rv = rng.randint(100_000, 999_999)
        self.floor = self.rv  # the oldest RV a watch or a continue token may resume from
        self.subscriptions: set[Subscription] = set()

    def _next_rv(self) -> int:
        self.rv += self._rng.randint(1, 7)
        return self.rv

    def _record(self, event: StoredEvent) -> None:
        self._history.append(event)
        while len(self._history) > self._limit:
            self.floor = self._history.popleft().rv
        for sub in self.subscriptions:
            if sub.kind == event.kind:
                sub.queue.put_nowait(event)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace; returns the stored copy (see :meth:`FakeApiServer.apply`)."""
        kind = obj.get("kind")
        if kind not in KINDS:
            raise ConfigurationError(f"apply: kind must be one of {sorted(KINDS)}, got {kind!r}")
        if not (obj.get("metadata") or {}).get("name"):
            raise ConfigurationError("apply: metadata.name is required")
        new = copy.deepcopy(obj)
        new["apiVersion"] = KINDS[kind].api_version
        meta = new["metadata"]
        if KINDS[kind].namespaced:
            meta.setdefault("namespace", "default")
        else:  # a cluster-scoped object (Node) has no namespace
            meta.pop("namespace", None)
        key = _key(new)
        old = self._objects.get(key)
        if old is not None and _same_content(old, new):
            return copy.deepcopy(old)  # a no-op update: no new RV, no event
        if old is None:
            meta["uid"] = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            meta["generation"] = 1
        else:
            for name in ("uid", "creationTimestamp"):
                meta[name] = old["metadata"][name]
            meta["generation"] = old["metadata"].get("generation", 1) + 1
        meta["resourceVersion"] = str(self._next_rv())
        self._objects[key] = new
        self._record(StoredEvent("ADDED" if old is None else "MODIFIED", self.rv, kind, new, old))
        return copy.deepcopy(new)

    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """Remove; returns the last state stamped with the delete's RV (what the DELETED event carries)."""
        old = self._objects.pop((kind, namespace, name), None)
        if old is None:
            raise KeyError(f"{kind} {namespace}/{name} not found")
        last = copy.deepcopy(old)
        last["metadata"]["resourceVersion"] = str(self._next_rv())
        self._record(StoredEvent("DELETED", self.rv, kind, last, old))
        return copy.deepcopy(last)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self._objects.get((kind, namespace, name))
        return None if obj is None else copy.deepcopy(obj)

    def compact(self) -> None:
        """Forget the history: every older RV is now too old."""
        self._history.clear()
        self.floor = self.rv

    def events_after(self, rv: int, kind: str) -> list[StoredEvent] | None:
        """Events of ``kind`` with RV > ``rv``, or ``None`` if some were forgotten (410)."""
        if rv < self.floor:
            return None
        return [e for e in self._history if e.rv > rv and e.kind == kind]

    def snapshot(self, kind: str, rv: int | None = None) -> list[dict[str, Any]] | None:
        """Objects of ``kind`` as of ``rv`` (default now) sorted by namespace/name, or ``None`` if too old."""
        objects = dict(self._objects)
        if rv is not None and rv < self.rv:
            if rv < self.floor:
                return None
            for event in reversed(self._history):
                if event.rv <= rv:
                    break
                key = _key(event.obj)
                if event.type == "ADDED":
                    objects.pop(key, None)
                elif event.prev is not None:
                    objects[key] = event.prev
        items = [o for k, o in objects.items() if k[0] == kind]
        return sorted(items, key=storage_key)

    def subscribe(self, kind: str) -> Subscription:
        sub = Subscription(kind)
        self.subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscriptions.discard(sub)

    def bookmark(self, sub: Subscription | None = None) -> None:
        """Queue a bookmark at the current RV to one watch, or to all of them."""
        for target in [sub] if sub is not None else list(self.subscriptions):
            target.queue.put_nowait(Bookmark(self.rv))

    def drop_all(self) -> None:
        """Tell every live watch to abort its connection (server stop or restart)."""
        for sub in list(self.subscriptions):
            sub.queue.put_nowait(None)
