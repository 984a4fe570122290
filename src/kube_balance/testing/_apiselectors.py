"""Label and field selectors with the apiserver's grammar and matching rules.

Grammar as in ``k8s.io/apimachinery/pkg/labels/selector.go``: comma-separated requirements,
each ``key``, ``!key``, ``key=v``, ``key==v``, ``key!=v``, ``key in (a,b)``, ``key notin (a,b)``.
As there, ``!=`` and ``notin`` also match objects that lack the key. Field selectors accept only
``metadata.name`` and ``metadata.namespace`` (``DefaultMetaV1FieldSelectorConversion``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SelectorError", "Selector", "parse_field_selector", "parse_label_selector"]

Selector = Callable[[Mapping[str, Any]], bool]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^)]*)\)\s*$")
_EQ_RE = re.compile(rf"^\s*({_KEY})\s*(==|!=|=)\s*({_VALUE})\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")
_FIELDS = ("metadata.name", "metadata.namespace")


class SelectorError(ValueError):
    """A selector the apiserver would reject with 400 BadRequest."""


def _split_requirements(text: str) -> list[str]:
    """Split on commas outside parentheses (``a in (x,y),b`` is two requirements)."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _requirement(text: str) -> Callable[[Mapping[str, str]], bool]:
    if m := _SET_RE.match(text):
        key, op = m.group(1), m.group(3)
        values = {v.strip() for v in m.group(4).split(",")}
        if not all(_VALUE_RE.match(v) for v in values):
            raise SelectorError(f"unable to parse requirement: invalid label value in {text!r}")
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _EQ_RE.match(text):
        key, op, value = m.group(1), m.group(3), m.group(4)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS_RE.match(text):
        negate, key = m.group(1) == "!", m.group(2)
        return lambda labels: (key in labels) != negate
    raise SelectorError(f"unable to parse requirement: found {text.strip()!r}, expected a requirement")


def parse_label_selector(text: str | None) -> Selector:
    """Compile a ``labelSelector`` query value into a predicate over an object dict."""
    if text is None or not text.strip():
        return lambda obj: True
    requirements = [_requirement(part) for part in _split_requirements(text)]

    def matches(obj: Mapping[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(req(labels) for req in requirements)

    return matches


def parse_field_selector(text: str | None) -> Selector:
    """Compile a ``fieldSelector`` (``metadata.name`` / ``metadata.namespace``; ``=``, ``==``, ``!=``)."""
    if text is None or not text.strip():
        return lambda obj: True
    checks: list[tuple[str, bool, str]] = []
    for part in text.split(","):
        m = re.match(r"^\s*([A-Za-z.]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if m is None:
            raise SelectorError(f"invalid selector: {part!r}; can't understand {part.strip()!r}")
        field, op, value = m.groups()
        if field not in _FIELDS:
            raise SelectorError(
                f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"'
            )
        checks.append((field.split(".", 1)[1], op == "!=", value))

    def matches(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        return all((meta.get(attr, "") == value) != negate for attr, negate, value in checks)

    return matches
