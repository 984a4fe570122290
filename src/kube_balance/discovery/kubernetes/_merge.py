"""EndpointSlices -> one EndpointSet: slice parsing and the batch merge, pure (no loop, no I/O).

``SliceMerger`` (``_incremental.py``) applies the same rules event by event.

The semantics follow kube-proxy's ``EndpointSliceCache`` and the EndpointSlice API docs:

- a Service's endpoints are the union of every slice labelled ``kubernetes.io/service-name=<svc>``;
- the same endpoint may sit in two slices while updates land: dedupe by (family, address, port),
  preferring a ready copy, else the one in the slice whose name sorts first (deterministic);
- conditions take Kubernetes' nil defaults: ready nil = true, serving nil = true, terminating nil = false;
- ports are per slice and are the pods' *target* ports, looked up by name (or number) in each slice;
  a reference without a port (``None``) takes the slice's only TCP port; a slice with several
  records them in ``ParsedSlice.choices`` (the source reports the ambiguity, listing them);
- one address family at a time by default (IPv4 when the Service has any IPv4 endpoint);
  FQDN slices (deprecated) are skipped with a warning; ``endpoints: null`` is an empty slice.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..._endpoint import Endpoint, EndpointSet
from ..._errors import ConfigurationError

logger = logging.getLogger("kube_balance.discovery")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
AddressFamily = int | Literal["auto"]
_FAMILIES = {"IPv4": 4, "IPv6": 6}


def normalize_family(value: object) -> int | None:
    """``"auto"`` -> None, 4/AF_INET -> 4, 6/AF_INET6 -> 6, 0/AF_UNSPEC -> 0 (both families)."""
    if value == "auto":
        return None
    if not isinstance(value, bool) and isinstance(value, int):
        if value in (4, socket.AF_INET):
            return 4
        if value in (6, socket.AF_INET6):
            return 6
        if value == 0:
            return 0
    raise ConfigurationError(
        f"address_family {value!r} is not 'auto', 4, 6, socket.AF_INET, socket.AF_INET6 or 0 (both)"
    )


@dataclass(frozen=True, slots=True)
class ParsedSlice:
    """One slice reduced to what the merge needs; cached under (name, resourceVersion)."""

    name: str
    resource_version: str | None
    family: int | None  # None: FQDN, unknown, or not this Service's slice -> contributes nothing
    endpoints: Mapping[str, Endpoint]
    # first address -> (raw entry, port, Endpoint): the next version of this slice reuses the
    # Endpoint of every entry that did not change, so an update costs the entries that changed.
    memo: Mapping[Any, tuple[Any, int, Endpoint]] = field(default_factory=dict)
    # for a reference without a port, a slice with several TCP ports: "name=number" of each
    choices: tuple[str, ...] = ()


def _tcp_ports(ports: Any) -> list[Mapping[str, Any]]:
    if not isinstance(ports, list):
        return []
    return [p for p in ports if isinstance(p, Mapping) and p.get("protocol", "TCP") == "TCP"]


def port_choices(ports: Any) -> tuple[str, ...]:
    """``name=number`` of each TCP port (``""`` for an unnamed one), to list in an error."""
    return tuple(f"{p.get('name') or ''}={p.get('port')}" for p in _tcp_ports(ports))


def has_port(obj: Mapping[str, Any], want: str | int) -> bool:
    """Whether slice ``obj`` carries a TCP port ``want`` (a name, or a number), as the merge matches it."""
    return _pick_port(obj.get("ports"), want) is not None


def _pick_port(ports: Any, want: str | int | None) -> int | None:
    """The slice's port number for ``want``: by name, or by number (else the slice's only port);
    ``None`` (no port in the reference): the slice's only TCP port."""
    tcp = _tcp_ports(ports)
    if want is None:
        number = tcp[0].get("port") if len(tcp) == 1 else None
        return number if isinstance(number, int) else None
    for p in tcp:
        if (isinstance(want, str) and (p.get("name") or "") == want) or (
            isinstance(want, int) and p.get("port") == want
        ):
            number = p.get("port")
            return number if isinstance(number, int) else None
    # A numeric reference is usually the Service port (80) while slices carry target ports (8080):
    # with one port on the slice there is no ambiguity, so use it.
    if isinstance(want, int) and len(tcp) == 1 and isinstance(tcp[0].get("port"), int):
        return int(tcp[0]["port"])
    return None


def _endpoint(entry: Any, port: int) -> Endpoint:
    addresses = entry["addresses"]
    cond = entry.get("conditions") or {}
    ready, serving, terminating = cond.get("ready"), cond.get("serving"), cond.get("terminating")
    target = entry.get("targetRef") or {}
    hints = entry.get("hints") or {}
    return Endpoint(
        addresses[0],  # the API says consumers use the first address (kube-proxy does)
        port,
        zone=entry.get("zone"),
        node_name=entry.get("nodeName"),
        hostname=entry.get("hostname"),
        pod_name=target.get("name") if target.get("kind") == "Pod" else None,
        ready=True if ready is None else bool(ready),
        serving=True if serving is None else bool(serving),
        terminating=False if terminating is None else bool(terminating),
        zone_hints=_hint_names(hints.get("forZones")),
        node_hints=_hint_names(hints.get("forNodes")),  # trafficDistribution: PreferSameNode
    )


def _hint_names(hints: Any) -> frozenset[str]:
    """``[{"name": "a"}, ...]`` -> ``{"a", ...}``; a missing or malformed list gives no hints."""
    return frozenset(h["name"] for h in hints or () if isinstance(h, Mapping) and "name" in h)


def parse_slice(
    obj: Mapping[str, Any],
    port: str | int | None,
    service: str | None = None,
    previous: ParsedSlice | None = None,
) -> ParsedSlice:
    """Parse one EndpointSlice dict; bad entries are logged and skipped, never raised.

    ``previous`` is this slice's last parse: entries equal to one seen there are not re-parsed.
    """
    try:
        return _parse_slice(obj, port, service, previous)
    except (AttributeError, TypeError, ValueError) as exc:  # a field of the wrong JSON type
        name = object_name_of(obj)
        logger.warning("skipping malformed EndpointSlice %s: %s", name, exc)
        return ParsedSlice(name, None, None, {})


def object_name_of(obj: object) -> str:
    """``metadata.name`` as a string, ``""`` when missing or malformed."""
    return slice_identity(obj)[0]


def slice_identity(obj: object) -> tuple[str, str | None]:
    """(``metadata.name``, ``metadata.resourceVersion``) of any value, never raising."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(meta, Mapping):
        return "", None
    name, rv = meta.get("name"), meta.get("resourceVersion")
    return (str(name) if name is not None else ""), (rv if isinstance(rv, str) else None)


def _parse_slice(
    obj: Mapping[str, Any], port: str | int | None, service: str | None, previous: ParsedSlice | None
) -> ParsedSlice:
    meta = obj.get("metadata") or {}
    name, rv = str(meta.get("name", "")), meta.get("resourceVersion")
    empty = ParsedSlice(name, rv, None, {})
    labels = meta.get("labels") or {}
    if service is not None and labels.get(SERVICE_NAME_LABEL) != service:
        return empty  # its service-name label moved away: it leaves the Service's set
    family = _FAMILIES.get(obj.get("addressType", ""))
    if family is None:
        logger.warning(
            "skipping EndpointSlice %s: addressType %r is not IPv4 or IPv6", name, obj.get("addressType")
        )
        return empty
    number = _pick_port(obj.get("ports"), port)
    entries = obj.get("endpoints") or ()  # null in an empty slice
    if number is None:
        choices = port_choices(obj.get("ports")) if port is None else ()
        if entries and len(choices) < 2:  # several ports: the source reports it, once
            logger.warning(
                "EndpointSlice %s has no TCP port matching %r; its endpoints are skipped", name, port
            )
        return ParsedSlice(name, rv, family, {}, choices=choices)
    endpoints: dict[str, Endpoint] = {}
    memo: dict[Any, tuple[Any, int, Endpoint]] = {}
    seen = previous.memo if previous is not None else {}
    for entry in entries:
        try:
            first = entry["addresses"][0]
            hit = seen.get(first)
            if hit is not None and hit[1] == number and hit[0] == entry:
                ep = hit[2]  # unchanged entry: same Endpoint object, no re-parse
            else:
                ep = _endpoint(entry, number)
            memo[first] = (entry, number, ep)
        except (ConfigurationError, KeyError, IndexError, TypeError, AttributeError) as exc:
            logger.warning("EndpointSlice %s: skipping malformed endpoint %r: %s", name, entry, exc)
            continue
        if ep.family != family:
            logger.warning(
                "EndpointSlice %s (%s): skipping address %s of the other family", name, family, ep.address
            )
            continue
        endpoints[ep.key] = prefer(endpoints.get(ep.key), ep)
    return ParsedSlice(name, rv, family, endpoints, memo)


def prefer(old: Endpoint | None, new: Endpoint) -> Endpoint:
    """Of two copies of one endpoint (same key), the one to keep: ``old`` unless only ``new`` is ready.

    The one tie rule of every merge (within a slice, across slices, and incremental), as
    kube-proxy's EndpointSliceCache prefers a ready copy; otherwise the first seen stays, which
    with slices visited in name order makes the result deterministic.
    """
    return new if old is None or (new.ready and not old.ready) else old


def effective_family(families: Iterable[int | None], family: int | None) -> int:
    """The family to serve: as configured, or for "auto" IPv4 when any IPv4 endpoint exists, else IPv6.

    ``families`` are the families of the endpoints on offer (one per endpoint, or per non-empty
    slice: see :func:`offered_families`); the DNS source applies the same rule to its answers.
    """
    if family is not None:
        return family
    return 4 if any(f == 4 for f in families) else 6


def offered_families(slices: Iterable[ParsedSlice]) -> Iterator[int | None]:
    """The family of every parsed slice that holds endpoints, for :func:`effective_family`."""
    return (p.family for p in slices if p.endpoints)


def union(slices: Mapping[str, ParsedSlice], family: int) -> dict[str, Endpoint]:
    """Merge parsed slices of ``family`` (0: both): slices in name order, a ready copy wins a tie."""
    merged: dict[str, Endpoint] = {}
    for name in sorted(slices):
        ps = slices[name]
        if not ps.endpoints or (family and ps.family != family):
            continue
        eps = ps.endpoints
        if merged.keys().isdisjoint(eps.keys()):
            merged.update(eps)
            continue
        for key, ep in eps.items():  # overlap while updates land
            merged[key] = prefer(merged.get(key), ep)
    return merged


def merge_slices(
    slices: Iterable[Mapping[str, Any]],
    port: str | int | None,
    *,
    address_family: AddressFamily = "auto",
    service: str | None = None,
    resource_version: str | None = None,
) -> EndpointSet:
    """Merge a Service's EndpointSlice dicts (as the API returns them) into one snapshot.

    ``port`` is a port name (matched against each slice's port names; ``""`` for an unnamed
    port), a number (matched against the slices' target ports, else a slice's only port), or
    None (each slice's only TCP port; a slice with several contributes nothing).
    ``address_family`` is ``"auto"`` (IPv4 if the Service has any IPv4 endpoint, else IPv6),
    4, 6 or 0 for both. With ``service``, slices not labelled for it are left out. Pure: no
    event loop, no I/O; malformed entries are logged and skipped.
    """
    want = normalize_family(address_family)
    parsed: dict[str, ParsedSlice] = {}
    for obj in slices:
        ps = parse_slice(obj, port, service)
        parsed[ps.name] = ps
    merged = union(parsed, effective_family(offered_families(parsed.values()), want))
    return EndpointSet(tuple(merged.values()), resource_version)
