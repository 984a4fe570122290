"""Bearer-token authentication and a small RBAC model, with the apiserver's 401/403 bodies."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigurationError
from ._apiresources import Resource, status_body

__all__ = ["DEFAULT_USER", "Permissions", "forbidden", "unauthorized"]

DEFAULT_USER = "system:serviceaccount:default:kube-balance"
_VERBS = frozenset({"get", "list", "watch", "*"})


@dataclass(frozen=True, slots=True)
class Permissions:
    """What one token may do: allowed ``(resource, verb)`` pairs, as a Role's rules would grant.

    ``resource`` is the plural (``"endpointslices"``, ``"services"``, ``"endpoints"``) or ``"*"``;
    ``verb`` is ``get``, ``list``, ``watch`` or ``"*"``. ``namespaces=None`` grants every namespace
    (a ClusterRoleBinding); a set grants only those (RoleBindings). ``user`` appears in 403 messages.

    >>> reader = Permissions.allow("endpointslices:list", namespaces={"shop"})
    >>> reader.allows("endpointslices", "list", "shop"), reader.allows("endpointslices", "watch", "shop")
    (True, False)
    """

    rules: frozenset[tuple[str, str]] = frozenset()
    namespaces: frozenset[str] | None = None
    user: str = DEFAULT_USER

    @classmethod
    def allow(
        cls,
        *rules: str | tuple[str, str],
        namespaces: Iterable[str] | None = None,
        user: str = DEFAULT_USER,
    ) -> Permissions:
        """Build from ``"resource:verb"`` strings or ``(resource, verb)`` pairs."""
        pairs: set[tuple[str, str]] = set()
        for rule in rules:
            resource, _, verb = rule.partition(":") if isinstance(rule, str) else (rule[0], ":", rule[1])
            if not resource or verb not in _VERBS:
                raise ConfigurationError(
                    f"Permissions rule {rule!r}: want 'resource:verb' with verb in {sorted(_VERBS)}"
                )
            pairs.add((resource, verb))
        ns = None if namespaces is None else frozenset(namespaces)
        return cls(frozenset(pairs), ns, user)

    @classmethod
    def endpoint_slice_reader(
        cls, *, namespaces: Iterable[str] | None = None, user: str = DEFAULT_USER
    ) -> Permissions:
        """The Role kube-balance documents: get, list, watch on endpointslices."""
        return cls.allow(
            "endpointslices:get",
            "endpointslices:list",
            "endpointslices:watch",
            namespaces=namespaces,
            user=user,
        )

    def allows(self, resource: str, verb: str, namespace: str | None) -> bool:
        """``namespace=None`` is a cluster-scope request (all namespaces)."""
        if self.namespaces is not None and (namespace is None or namespace not in self.namespaces):
            return False
        return any(r in (resource, "*") and v in (verb, "*") for r, v in self.rules)


def unauthorized() -> dict[str, Any]:
    """The 401 body for a missing or unknown bearer token."""
    return status_body(401, "Unauthorized", "Unauthorized")


def forbidden(user: str, verb: str, res: Resource, namespace: str | None, name: str | None) -> dict[str, Any]:
    """The 403 body, worded as the apiserver's RBAC authorizer words it."""
    subject = f'{res.qualified} "{name}"' if name else res.qualified
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    message = (
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{res.plural}" '
        f'in API group "{res.group}" {scope}'
    )
    details: dict[str, Any] = {"group": res.group, "kind": res.plural}
    if name:
        details = {"name": name, **details}
    return status_body(403, "Forbidden", message, details)
