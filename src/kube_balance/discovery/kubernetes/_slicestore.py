"""What a watch knows: the Service's slices by name and the resourceVersion, changed by list and events.

Pure state transitions, no I/O: the watch loop feeds it list results and raw watch lines. A
malformed line is logged and skipped (the resourceVersion does not move); an ``ERROR`` event
raises its typed error (410 -> relist). For core/v1 Endpoints (old clusters) each object becomes
the synthetic slices of :func:`endpoints_to_slices`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from ._legacy import endpoints_to_slices
from ._merge import SERVICE_NAME_LABEL
from ._status import Resource, watch_error

logger = logging.getLogger("kube_balance.discovery")

_CHANGES = ("ADDED", "MODIFIED", "DELETED")


def object_name(obj: Any) -> str | None:
    """``metadata.name`` if it is a non-empty string, else None."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) and name else None


class SliceStore:
    """The slices of one Service (``legacy``: derived from its Endpoints object) and the RV reached."""

    def __init__(self, namespace: str, service: str, resource: Resource, *, legacy: bool = False) -> None:
        self.namespace, self.service, self.resource, self.legacy = namespace, service, resource, legacy
        self.slices: dict[str, Mapping[str, Any]] = {}
        self._derived: dict[str, list[str]] = {}  # object name -> its slice names (legacy: several)
        self.resource_version: str | None = None

    def replace(self, items: list[Any], resource_version: str | None) -> None:
        """Take a full list result."""
        self.slices, self._derived = {}, {}
        for obj in items:
            name = object_name(obj)
            if name is None:
                logger.warning("skipping a listed %s without metadata.name: %.200r", self.resource.kind, obj)
                continue
            self._store(name, obj)
        self.resource_version = resource_version

    def _store(self, name: str, obj: Mapping[str, Any] | None) -> set[str]:
        """Replace object ``name``'s slices (None deletes); returns the slice names touched."""
        old = self._derived.pop(name, [])
        for slice_name in old:
            self.slices.pop(slice_name, None)
        if obj is None:
            return set(old)
        new = endpoints_to_slices(obj, self.service) if self.legacy else [obj]
        names = [object_name(s) or name for s in new]
        self._derived[name] = names
        self.slices.update(zip(names, new, strict=True))
        return set(old) | set(names)

    def apply_line(self, line: bytes) -> set[str] | None:
        """Apply one watch line; returns the slice names touched (None: nothing to push)."""
        try:
            event = json.loads(line)
            kind, obj = event["type"], event["object"]
            meta = obj.get("metadata") or {}
            if not isinstance(meta, Mapping):
                raise TypeError("metadata is not an object")
            rv = meta.get("resourceVersion")
            if kind != "ERROR" and not isinstance(rv, str):
                raise TypeError("resourceVersion is not a string")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("skipping malformed watch event (%s): %.200r", exc, line)
            return None
        if kind == "ERROR":
            raise watch_error(obj, resource=self.resource, namespace=self.namespace)
        if kind == "BOOKMARK":
            self.resource_version = rv  # bookmarks only move the resourceVersion
            return None
        name = object_name(obj)
        if kind not in _CHANGES or name is None:
            logger.warning("skipping watch event of type %r for %r", kind, name)
            return None
        # A label selector watch sends DELETED when the label moves away; checking it here too
        # keeps a relabelled slice out even if a server sends it as MODIFIED.
        labels = meta.get("labels")
        label = labels.get(SERVICE_NAME_LABEL) if isinstance(labels, Mapping) else None
        gone = kind == "DELETED" or (not self.legacy and label != self.service)
        changed = self._store(name, None if gone else obj)
        self.resource_version = rv
        return changed
