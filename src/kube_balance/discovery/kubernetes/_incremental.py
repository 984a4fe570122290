"""``SliceMerger``: the slice merge kept up to date event by event, so cost follows the slice.

It holds each slice's parse (re-parsed only when its resourceVersion changes, reusing unchanged
entries) and an index from endpoint key to the slices that hold it. A slice update touches only
its own keys: each is re-resolved among its holders with the rule of :func:`union` (slices in
name order, a ready copy wins: :func:`prefer`). A change of the served family ("auto" switching between IPv4
and IPv6) or a relist rebuilds from scratch. The property tests check that any sequence of
updates gives exactly what the batch merge gives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..._endpoint import Endpoint
from ._merge import (
    AddressFamily,
    ParsedSlice,
    effective_family,
    normalize_family,
    offered_families,
    parse_slice,
    prefer,
    slice_identity,
    union,
)


class SliceMerger:
    """One Service's parsed slices and their merged endpoints, updated in place."""

    def __init__(
        self, port: str | int | None, *, address_family: AddressFamily = "auto", service: str | None = None
    ) -> None:
        self.port = port
        self.service = service
        self.family = normalize_family(address_family)
        self._slices: dict[str, ParsedSlice] = {}
        self._holders: dict[str, list[str]] = {}  # endpoint key -> names of the slices holding it
        self._merged: dict[str, Endpoint] = {}
        self._serving = effective_family((), self.family)
        self._changed = False

    def _parse(self, obj: Mapping[str, Any]) -> ParsedSlice:
        name, rv = slice_identity(obj)
        cached = self._slices.get(name)
        if cached is not None and rv is not None and cached.resource_version == rv:
            return cached
        return parse_slice(obj, self.port, self.service, cached)

    def _counts(self, ps: ParsedSlice) -> bool:
        return bool(ps.endpoints) and (self._serving == 0 or ps.family == self._serving)

    def upsert(self, obj: Mapping[str, Any]) -> None:
        """An ADDED or MODIFIED slice."""
        parsed = self._parse(obj)
        self._replace(parsed.name, parsed)

    def remove(self, name: str) -> None:
        """A DELETED slice (the event carries its last state; only the name matters)."""
        self._replace(name, None)

    def reset(self, objs: Iterable[Mapping[str, Any]]) -> None:
        """Replace every slice (after a list); unchanged slices keep their parsed endpoints."""
        parsed = [self._parse(obj) for obj in objs]
        self._slices = {p.name: p for p in parsed}
        self._rebuild()

    def _rebuild(self) -> None:
        self._serving = effective_family(offered_families(self._slices.values()), self.family)
        merged = union(self._slices, self._serving)
        self._holders = {}
        for name in sorted(self._slices):
            ps = self._slices[name]
            if self._counts(ps):
                for key in ps.endpoints:
                    self._holders.setdefault(key, []).append(name)
        if merged != self._merged:  # identity first: unchanged cached endpoints compare at C speed
            self._changed = True
        self._merged = merged

    def _replace(self, name: str, new: ParsedSlice | None) -> None:
        old = self._slices.pop(name, None)
        if new is not None:
            self._slices[name] = new
        if effective_family(offered_families(self._slices.values()), self.family) != self._serving:
            self._rebuild()
            return
        touched: set[str] = set()
        if old is not None and self._counts(old):
            touched.update(old.endpoints)
            for key in old.endpoints:
                self._holders[key].remove(name)
        if new is not None and self._counts(new):
            touched.update(new.endpoints)
            for key in new.endpoints:
                self._holders.setdefault(key, []).append(name)
        for key in touched:
            self._resolve(key)

    def _resolve(self, key: str) -> None:
        holders = self._holders.get(key)
        current = self._merged.get(key)
        if not holders:
            self._holders.pop(key, None)
            if current is not None:
                del self._merged[key]
                self._changed = True
            return
        best: Endpoint | None = None
        for name in sorted(holders) if len(holders) > 1 else holders:
            best = prefer(best, self._slices[name].endpoints[key])
        assert best is not None
        if current is None or current != best:
            self._merged[key] = best
            self._changed = True

    def merged(self) -> dict[str, Endpoint]:
        """The deduplicated endpoints of the served family, keyed by ``Endpoint.key`` (a copy)."""
        return dict(self._merged)

    def endpoints(self) -> tuple[Endpoint, ...]:
        """The merged endpoints, for a snapshot."""
        return tuple(self._merged.values())

    def port_choices(self) -> tuple[str, ...]:
        """For a reference without a port: the ports (``name=number``) of slices that have several."""
        seen: dict[str, None] = {}
        for ps in self._slices.values():
            seen.update(dict.fromkeys(ps.choices))
        return tuple(seen)

    def take_changed(self) -> bool:
        """Has the merged set changed since the last call? (Clears the flag.)"""
        changed, self._changed = self._changed, False
        return changed
