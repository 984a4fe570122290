"""Deterministic subsetting: each client balances over a small, fixed share of the endpoints.

One client over 1,000 pods keeps about one connection per pod; 1,000 such clients hold a million.
With a subset of ``size`` endpoints per client, each client holds at most ``size`` connections and,
because every client computes its subset with the same function from the same inputs (the ready
endpoints, its rank and the number of clients), the subsets tile the endpoints evenly.

The function is Finagle's *deterministic aperture* with whole-endpoint windows: the endpoints sit
on a ring ordered by a hash of their key (the same order in every client, whatever order the
slices arrive in); client ``id`` of ``count`` takes the ``size`` consecutive endpoints starting at
``id * n / count`` (rounded). The windows start evenly spaced, so every endpoint is in
``count * size / n`` subsets, exactly when ``count`` is a multiple of ``n / size``, and otherwise
in the floor or the ceiling of it. When one endpoint leaves or joins, every window keeps its place
on the ring: a client's subset loses at most two of the endpoints it had, and about a quarter of
the windows move (at most about half). Google's deterministic subsetting (SRE book, chapter 20)
balances as well, but reshuffles everything: its shuffle of the list is seeded per round, so a
list one endpoint shorter shuffles differently, and its subset count ``n // size`` maps every
client to another subset when it changes (``benchmarks/bench_subsetting.py`` compares them).

The client's identity comes from ``client_id``/``client_count``, or from ``peers``: the
EndpointSlices of the client's own Service, where its rank is its pod name's place among the
ready peer pods' names, sorted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from ._endpoint import Endpoint, EndpointSet
from ._errors import DiscoveryError
from ._health import Bound
from ._service import ServiceRef
from ._validate import check_int, check_number, check_optional_str, invalid

if TYPE_CHECKING:
    from ._policy import EndpointFilter, EndpointPolicy
    from .discovery._source import EndpointSource

__all__ = ["DEFAULT_SETTLE", "POD_NAME_ENV", "Subset", "SubsetStatus", "deterministic_subset"]

logger = logging.getLogger("kube_balance")

POD_NAME_ENV = "POD_NAME"
"""The environment variable naming the client's pod (Downward API ``metadata.name``)."""
DEFAULT_SETTLE = 5.0
"""Seconds a new identity read from the peers must hold before the subset follows it. A rollout
of the client's own Deployment changes the peers every few seconds, and each change moves the
windows (new connections, each a TLS handshake and a cold pool): one move per burst, not one per
pod. Long enough for a surge's pods to turn ready together, short against a rollout."""
_PENDING_COUNT = 1 << 32
"""Before the peers are known, the client sits at a point of the ring its pod name hashes to."""


def _position(key: str) -> bytes:
    # A stable hash (Python's hash() is salted per process): every client orders the ring alike.
    return hashlib.blake2b(key.encode(), digest_size=8).digest()


def ring_order(keys: Iterable[str]) -> list[str]:
    """The endpoint keys in ring order: by a stable hash of the key, then by the key."""
    return sorted(set(keys), key=lambda k: (_position(k), k))


def _check_identity(owner: str, size: object, client_id: object, client_count: object) -> None:
    check_int(f"{owner} size", size, low=1)
    count = check_int(f"{owner} client_count", client_count, low=1)
    if isinstance(client_id, bool) or not isinstance(client_id, int) or not 0 <= client_id < count:
        raise invalid(
            f"{owner} client_id", client_id, f"expected an int in [0, {count - 1}] (client_count={count})"
        )


def deterministic_subset(
    keys: Iterable[str], size: int, client_id: int, client_count: int
) -> tuple[str, ...]:
    """The endpoint keys client ``client_id`` of ``client_count`` balances over, in ring order.

    ``min(size, len(set(keys)))`` keys; the same inputs give the same subset in every process.
    """
    allowed = "expected an iterable of endpoint keys (str)"
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        raise invalid("deterministic_subset keys", keys, allowed)
    keys = list(keys)
    if not all(isinstance(k, str) for k in keys):
        raise invalid("deterministic_subset keys", keys, allowed)
    _check_identity("deterministic_subset", size, client_id, client_count)
    ring = ring_order(keys)
    return _window(ring, size, client_id, client_count)


def _window(ring: list[str], size: int, client_id: int, client_count: int) -> tuple[str, ...]:
    n = len(ring)
    if size >= n:
        return tuple(ring)
    # Rounded to the nearest: when n changes by one, the windows of the first half of the clients
    # keep their start and the second half's move by one, so whichever side of the ring the
    # change is on, at most about half of the windows move (a quarter on average; flooring
    # would move every window on one side of the change, half on average).
    start = (2 * client_id * n + client_count) // (2 * client_count)
    return tuple(ring[(start + j) % n] for j in range(size))


@dataclass(frozen=True)
class SubsetStatus:
    """What the subset filter does now, for logs and health pages."""

    size: int
    client_id: int | None
    """The client's rank (None while the peers are not known yet)."""
    client_count: int | None
    source: str
    """``option``, ``peers <service>`` or ``pending (...)``: where the identity came from."""
    candidates: int
    """Endpoints offered to the filter at the last run."""
    selected: int
    """Endpoints in the subset at the last run."""
    changes: int
    """Times the identity (rank or count) changed."""
    last_error: str | None = None
    """The peers' watch's error since its last snapshot, if any (the last identity, or the
    pending window, keeps serving meanwhile)."""
    settling: tuple[int, int] | None = None
    """A new identity (rank, count) read from the peers, applied once it has held ``settle`` s."""


class Subset(Bound):
    """Balance over a deterministic subset of ``size`` endpoints (see the module docs).

    The identity is either explicit, ``client_id`` (0-based) of ``client_count`` clients, or
    read from ``peers``: the client's own Service (``"name.ns"``, a :class:`ServiceRef`, or any
    endpoint source, such as a :class:`~kube_balance.discovery.KubernetesSource` with its own
    ``api_client``), whose ready pods are the clients; a new rank or count read from them is
    followed once it has held for ``settle`` seconds (default 5; 0: at once; the first one at
    once). The client's pod name is ``pod_name``,
    else ``$POD_NAME``, else the hostname (Kubernetes sets it to the pod name); it counts as a
    peer even before it is ready. Until the peers are first known, the client takes the window
    at the point of the ring its pod name hashes to, so it never opens more than ``size``
    connections. Use it with :meth:`policy`::

        LoadBalancer("web.shop:http", policy=Subset(20, peers="client.shop").policy())

    One filter serves one balancer; the balancer's ``aclose()`` stops the peers' watch.
    """

    def __init__(
        self,
        size: int,
        *,
        client_id: int | None = None,
        client_count: int | None = None,
        peers: str | ServiceRef | EndpointSource | None = None,
        pod_name: str | None = None,
        environ: Mapping[str, str] | None = None,
        settle: float = DEFAULT_SETTLE,
    ) -> None:
        self.size = check_int("Subset size", size, low=1)
        self.settle = check_number("Subset settle", settle, low=0, unit="seconds")
        check_optional_str("Subset pod_name", pod_name, "a pod name")
        explicit = client_id is not None or client_count is not None
        if explicit and peers is not None:
            raise invalid("Subset peers", peers, "expected None when client_id and client_count are given")
        if explicit:
            if client_count is None or client_id is None:
                missing = "client_count" if client_count is None else "client_id"
                raise invalid(
                    f"Subset {missing}", None, "expected an int: give client_id and client_count together"
                )
            _check_identity("Subset", size, client_id, client_count)
        elif peers is None:
            raise invalid(
                "Subset peers",
                None,
                "expected the client's own Service (name.ns), a ServiceRef or an endpoint source, "
                "or give client_id and client_count",
            )
        self._peers: EndpointSource | None = None
        self._peers_name = ""
        if peers is not None:
            self._peers, self._peers_name = _peer_source(peers)
        env = os.environ if environ is None else environ
        self.pod_name = pod_name or env.get(POD_NAME_ENV) or socket.gethostname()
        if explicit:
            self._identity: tuple[int, int] | None = (client_id, client_count)  # type: ignore[assignment]
            self._source = "option"
        else:
            self._identity, self._source = None, f"pending (pod {self.pod_name} at its hash on the ring)"
        self._pending_id = int.from_bytes(_position(self.pod_name), "big") % _PENDING_COUNT
        self._task: asyncio.Task[None] | None = None
        self._ring: list[str] = []
        self._ring_keys: frozenset[str] = frozenset()
        self._candidates = self._selected = self._changes = 0
        self._last_error: str | None = None
        self._settling: tuple[int, int] | None = None  # read from the peers, not applied yet
        self._timer: asyncio.TimerHandle | None = None

    def policy(self, *then: EndpointFilter) -> EndpointPolicy:
        """kube-proxy's readiness rule, this filter, then the default health steps (outlier
        ejection under the panic threshold, the 429 penalty) within the subset, then ``then``
        (say, a :class:`~kube_balance.ZoneAware` filter).

        The subset is taken from the ready endpoints, which every client sees alike; health is
        each client's own view, so it applies inside the subset and never moves it.
        """
        from ._policy import EndpointPolicy, default_filters

        first, *health = default_filters()
        return EndpointPolicy([first, self, *health, *then])

    # -- wiring: bind() (Bound) keeps the balancer, refreshed when the identity changes ---------
    async def aclose(self) -> None:
        """Stop the peers' watch (the balancer's ``aclose()`` calls this); the last identity stays."""
        self._settle_on(None)
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})

    def _start_watch(self) -> None:
        if self._peers is None or (self._task is not None and not self._task.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a policy run outside the loop (a test): watch later
            return
        self._task = loop.create_task(
            self._peers.run(_PeerSink(self)), name=f"kube-balance peers {self._peers_name}"
        )

    def _on_peers(self, snapshot: EndpointSet) -> None:
        """The peers changed: our rank is our name's place among the ready pods' names."""
        names = {ep.pod_name for ep in snapshot.endpoints if ep.ready and ep.pod_name}
        names.add(self.pod_name)
        ranked = sorted(names)
        identity = (ranked.index(self.pod_name), len(ranked))
        self._source, self._last_error = f"peers {self._peers_name}", None
        if identity == self._identity:
            self._settle_on(None)  # back where it was: nothing to move
        elif self._identity is None or not self.settle:
            self._apply(identity)  # the first identity (or no settling): at once
        elif identity != self._settling:  # a new one: it must hold for `settle` seconds
            self._settle_on(identity)

    def _settle_on(self, identity: tuple[int, int] | None) -> None:
        """Wait ``settle`` seconds for ``identity`` (None: wait for nothing), then apply it."""
        if self._timer is not None:
            self._timer.cancel()
        self._settling, self._timer = identity, None
        if identity is not None:
            self._timer = asyncio.get_running_loop().call_later(self.settle, self._settled)

    def _settled(self) -> None:
        identity, self._settling, self._timer = self._settling, None, None
        if identity is not None:
            self._apply(identity)

    def _apply(self, identity: tuple[int, int]) -> None:
        logger.info(
            "subset: client %s is %d of %d peers (%s)",
            self.pod_name,
            identity[0],
            identity[1],
            self._peers_name,
        )
        self._identity, self._changes = identity, self._changes + 1
        self._refresh()

    # -- the filter ----------------------------------------------------------------------------
    def __call__(self, snapshot: EndpointSet, candidates: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
        """The endpoints of ``candidates`` in this client's subset, in their order."""
        self._start_watch()
        keys = frozenset(ep.key for ep in candidates)
        if keys != self._ring_keys:  # hashing only when the set changed, not on every refresh
            self._ring, self._ring_keys = ring_order(keys), keys
        client_id, count = self._identity or (self._pending_id, _PENDING_COUNT)
        chosen = set(_window(self._ring, self.size, client_id, count))
        selected = tuple(ep for ep in candidates if ep.key in chosen)
        self._candidates, self._selected = len(keys), len(selected)
        return selected

    # -- introspection -------------------------------------------------------------------------
    def status(self) -> SubsetStatus:
        """The identity, where it came from, and the subset's size at the last run."""
        client_id, count = self._identity or (None, None)
        return SubsetStatus(
            size=self.size,
            client_id=client_id,
            client_count=count,
            source=self._source,
            candidates=self._candidates,
            selected=self._selected,
            changes=self._changes,
            last_error=self._last_error,
            settling=self._settling,
        )

    def __repr__(self) -> str:
        s = self.status()
        who = "pending" if s.client_id is None else f"{s.client_id} of {s.client_count}"
        return (
            f"Subset(size={s.size}, client={who}, source={s.source!r}, selected={s.selected}/{s.candidates})"
        )


class _PeerSink:
    """The peers' source pushes here; a failure keeps the last identity (the source retries)."""

    def __init__(self, subset: Subset) -> None:
        self._subset = subset

    def on_endpoints(self, snapshot: EndpointSet) -> None:
        self._subset._on_peers(snapshot)

    def on_error(self, error: DiscoveryError) -> None:
        # The source logged it once; keep it for status() (a 403 here is the missing RBAC rule).
        self._subset._last_error = str(error)


def _peer_source(peers: object) -> tuple[EndpointSource, str]:
    if isinstance(peers, (str, ServiceRef)):
        ref = peers if isinstance(peers, ServiceRef) else ServiceRef.parse(peers)
        from .discovery import KubernetesSource

        return KubernetesSource(ref), str(ref)
    if not callable(getattr(peers, "run", None)):
        raise invalid(
            "Subset peers",
            peers,
            "expected the client's own Service (name.ns), a ServiceRef or an endpoint source with async run(sink)",
        )
    service = getattr(peers, "service", None)
    return cast("EndpointSource", peers), str(service) if service is not None else type(peers).__name__
