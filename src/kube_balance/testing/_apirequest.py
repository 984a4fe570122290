"""Parsing one request as the apiserver does: path to resource, query flags, continue tokens."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._apiresources import Resource, resource_for

__all__ = [
    "BadRequest",
    "Target",
    "decode_continue",
    "encode_continue",
    "parse_bool",
    "parse_int",
    "parse_target",
]


class BadRequest(ValueError):
    """A query the apiserver would answer with 400 BadRequest."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a path addresses: a discovery document, or a resource collection/object."""

    kind: str  # "list", "watch", "get", "discovery" or "unknown"
    resource: Resource | None = None
    namespace: str | None = None  # None: all namespaces
    name: str | None = None
    group: str | None = None  # for discovery documents: "" (core), a group, or None (/apis, /version)


def parse_bool(query: Mapping[str, str], name: str) -> bool:
    """As apimachinery's ``Convert_Slice_string_To_bool``: absent, "false" or "0" (any case) is false.

    Everything else, the empty string included, is true; so ``watch=1``, ``watch=true`` and
    ``watch=True`` (what kubernetes_asyncio sends) all start a watch.
    """
    if name not in query:
        return False
    return query[name].lower() not in ("false", "0")


def parse_int(query: Mapping[str, str], name: str) -> int | None:
    """An integer query parameter, or ``None`` if absent; garbage is a 400 as in the apiserver."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(
            f'{name}: Invalid value: "{raw}": strconv.ParseInt: parsing "{raw}": invalid syntax'
        ) from None


def parse_target(method: str, path: str, query: Mapping[str, str]) -> Target:
    """Map ``/api/v1/namespaces/ns/services/web`` and friends to a :class:`Target`."""
    parts = [p for p in path.split("/") if p]
    if parts in (["version"], ["api"], ["apis"]):
        return Target("discovery")
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
        if parts[1] != "v1":
            return Target("unknown")
    elif parts[:1] == ["apis"] and len(parts) >= 2:
        group, rest = parts[1], parts[3:]
        if len(parts) == 2:
            return Target("discovery", group=group)
        if parts[2] != "v1":
            return Target("unknown")
    else:
        return Target("unknown")
    if not rest:
        return Target("discovery", group=group)
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    res = resource_for(group, rest[0])
    if res is None or len(rest) > 2 or method != "GET":
        return Target("unknown", group=group)
    name = rest[1] if len(rest) == 2 else None
    kind = "watch" if parse_bool(query, "watch") else ("get" if name else "list")
    return Target(kind, res, namespace, name, group)


def encode_continue(rv: int, start: str) -> str:
    """The apiserver's token: base64 JSON of the snapshot RV and the key to resume after."""
    doc = {"v": "meta.k8s.io/v1", "rv": rv, "start": start + "\x00"}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    """``(rv, start key)`` from a continue token; a malformed token is a 400."""
    try:
        padded = token + "=" * (-len(token) % 4)
        doc: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
        rv, start = int(doc["rv"]), str(doc["start"]).rstrip("\x00")
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise BadRequest(f"continue key is not valid: {token!r}") from None
    return rv, start
