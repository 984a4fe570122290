"""Zone-aware routing: an :class:`EndpointPolicy` filter that keeps traffic in the client's zone.

Which endpoints are *local* (first rule that applies):

1. ``hints.forNodes`` naming this client's node, when **every** candidate carries node hints
   (``trafficDistribution: PreferSameNode``) and at least one names our node;
2. ``hints.forZones`` naming this client's zone, when **every** candidate carries zone hints:
   kube-proxy's safeguard, since the EndpointSlice controller publishes hints for all endpoints
   or none, and a partial set means they are being added or removed (KEP-2433);
3. without complete hints, the endpoints whose own ``zone`` is ours (``without_hints="same-zone"``,
   the default), or every zone (``without_hints="all-zones"``, kube-proxy's behaviour).

When the local zone has no candidate, every zone serves (kube-proxy falls back the same way).

Beyond kube-proxy, the filter *spills*: when the mean in-flight requests per local endpoint
exceed the remote endpoints' mean by ``spill_at``, every zone becomes eligible; it comes back
when the in-flight total spread over the local endpoints alone would be at most ``return_at``
(the hysteresis gap keeps it from flapping), and never changes state twice within ``hold``
seconds. Loads are read from the algorithm's in-flight counts after every request.

The client's zone: the ``zone`` option, else ``$KUBE_BALANCE_ZONE`` (set it from the Downward
API), else the ``topology.kubernetes.io/zone`` label of the Node named by ``node`` or
``$NODE_NAME``, read once with the source's credentials when RBAC allows (a 403 is logged once
and leaves the filter passing every endpoint).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ._endpoint import Endpoint, EndpointSet
from ._errors import ConfigurationError, DiscoveryAuthError
from ._health import Observing
from ._outcome import Outcome

if TYPE_CHECKING:
    from ._policy import EndpointPolicy

__all__ = ["NODE_ENV", "ZONE_ENV", "ZoneAware", "ZoneStatus"]

logger = logging.getLogger("kube_balance")

ZONE_ENV = "KUBE_BALANCE_ZONE"
"""The environment variable naming the client's zone (from the Downward API, see the README)."""
NODE_ENV = "NODE_NAME"
"""The environment variable naming the client's node (Downward API ``spec.nodeName``)."""

SPILL_AT = 8.0
"""Spill when local endpoints carry this many more requests in flight each than remote ones."""
RETURN_AT = 4.0
"""Come back when the in-flight total over the local endpoints alone would be at most this each."""
HOLD = 1.0
"""Seconds between two changes of the spill state, so a burst does not flap it."""
LOOKUP_ATTEMPTS = 3
LOOKUP_TIMEOUT = 10.0

Mode = Literal["off", "node-hints", "zone-hints", "same-zone", "all-zones"]
WithoutHints = Literal["same-zone", "all-zones"]


@dataclass(frozen=True)
class ZoneStatus:
    """What the zone filter does now, for ``LoadBalancer.status().zone``."""

    zone: str | None
    node: str | None
    zone_source: str
    """``option``, ``env KUBE_BALANCE_ZONE``, ``node <name>``, ``pending`` or ``unknown (...)``."""
    mode: Mode
    """How local endpoints were chosen: ``off`` (no zone), ``node-hints``, ``zone-hints``,
    ``same-zone``, or ``all-zones`` (the local zone has none: every zone serves)."""
    local: int
    remote: int
    spilling: bool
    spills: int
    """Times the filter spilled to other zones."""
    local_load: float
    remote_load: float
    """Mean in-flight requests per local / remote endpoint at the last check."""


class ZoneAware(Observing):
    """Prefer endpoints in the client's zone (or node); spill to others under load.

    ``zone``/``node`` default to ``$KUBE_BALANCE_ZONE``/``$NODE_NAME`` (``environ`` replaces
    ``os.environ`` in tests). ``spill_at`` (8), ``return_at`` (4, below ``spill_at``) and ``hold``
    (1 s) tune spilling; ``without_hints`` says what "local" means without complete hints;
    ``lookup_node=False`` never reads the Node object. Use it with :meth:`policy`::

        LoadBalancer("web.shop:http", policy=ZoneAware().policy())

    One filter serves one balancer (it reads that balancer's in-flight counts).
    """

    def __init__(
        self,
        zone: str | None = None,
        *,
        node: str | None = None,
        spill_at: float = SPILL_AT,
        return_at: float = RETURN_AT,
        hold: float = HOLD,
        without_hints: WithoutHints = "same-zone",
        lookup_node: bool = True,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        for name, value in (("zone", zone), ("node", node)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(f"ZoneAware {name}={value!r}: want a non-empty string or None")
        if isinstance(spill_at, bool) or not isinstance(spill_at, (int, float)) or not spill_at > 0:
            raise ConfigurationError(f"ZoneAware spill_at={spill_at!r}: want a number > 0")
        if (
            isinstance(return_at, bool)
            or not isinstance(return_at, (int, float))
            or not 0 <= return_at < spill_at
        ):
            raise ConfigurationError(
                f"ZoneAware return_at={return_at!r}: want a number >= 0 and below spill_at ({spill_at})"
            )
        if isinstance(hold, bool) or not isinstance(hold, (int, float)) or not hold >= 0:
            raise ConfigurationError(f"ZoneAware hold={hold!r}: want a number of seconds >= 0")
        if without_hints not in ("same-zone", "all-zones"):
            raise ConfigurationError(
                f"ZoneAware without_hints={without_hints!r}: want 'same-zone' or 'all-zones'"
            )
        env = os.environ if environ is None else environ
        self._zone_source = "option"
        if zone is None and env.get(ZONE_ENV):
            zone, self._zone_source = env[ZONE_ENV], f"env {ZONE_ENV}"
        self.zone = zone
        self.node = node if node is not None else (env.get(NODE_ENV) or None)
        # Read the Node only when nothing else named the zone and we know which node we are on.
        self._lookup: Literal["no", "pending", "running"] = (
            "pending" if zone is None and self.node is not None and lookup_node else "no"
        )
        if zone is None:
            self._zone_source = "pending" if self._lookup == "pending" else "unknown (no zone set)"
        self.spill_at, self.return_at, self.hold = float(spill_at), float(return_at), float(hold)
        self.without_hints = without_hints
        self._clock = clock or time.monotonic
        self._tasks: set[asyncio.Task[None]] = set()
        self._mode: Mode = "off"
        self._local: tuple[Endpoint, ...] = ()
        self._remote: tuple[Endpoint, ...] = ()
        self._spilling = False
        self._spills = 0
        self._changed_at = float("-inf")
        self._local_load = self._remote_load = 0.0

    def policy(self) -> EndpointPolicy:
        """The default policy (readiness, outlier ejection under the panic threshold, the 429
        penalty) followed by this filter: zones choose among the healthy endpoints."""
        from ._policy import EndpointPolicy, default_filters

        return EndpointPolicy([*default_filters(), self])

    # -- wiring: bind() (Observing) watches the balancer's request outcomes ---------------------
    def _observe(
        self,
        endpoint: Endpoint,
        elapsed: float | None,
        outcome: Outcome,
        status: int | None,
        retry_after: float | None,
    ) -> None:
        self.check()

    # -- the filter ----------------------------------------------------------------------------
    def __call__(self, snapshot: EndpointSet, candidates: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
        """The local endpoints of ``candidates`` (all of them while spilling or with no local one)."""
        self._start_lookup()
        local, self._mode = self._local_of(candidates)
        if not local:
            self._local = self._remote = ()
            return candidates
        keys = {ep.key for ep in local}
        self._local = local
        self._remote = tuple(ep for ep in candidates if ep.key not in keys)
        if not self._remote:
            self._spilling = False  # nowhere to spill: start local when other zones come back
        return candidates if self._spilling and self._remote else local

    def _local_of(self, candidates: tuple[Endpoint, ...]) -> tuple[tuple[Endpoint, ...], Mode]:
        node, zone = self.node, self.zone
        if not candidates:
            return (), "off" if zone is None else "all-zones"
        if node is not None and all(ep.node_hints for ep in candidates):
            local = tuple(ep for ep in candidates if node in ep.node_hints)
            if local:
                return local, "node-hints"
        if zone is None:
            return (), "off"
        mode: Mode
        if all(ep.zone_hints for ep in candidates):
            local, mode = tuple(ep for ep in candidates if zone in ep.zone_hints), "zone-hints"
        elif self.without_hints == "same-zone":
            local, mode = tuple(ep for ep in candidates if ep.zone == zone), "same-zone"
        else:
            return (), "all-zones"
        return (local, mode) if local else ((), "all-zones")

    # -- spilling ------------------------------------------------------------------------------
    def check(self) -> bool:
        """Re-evaluate the spill state from the algorithm's in-flight counts; True if it changed
        (the balancer's eligible set is then refreshed). Runs after every request."""
        host, local, remote = self._host, self._local, self._remote
        if host is None or not local or not remote:
            return False
        inflight = host.algorithm.inflight
        local_sum = sum(inflight(ep) for ep in local)
        remote_sum = sum(inflight(ep) for ep in remote)
        self._local_load, self._remote_load = local_sum / len(local), remote_sum / len(remote)
        now = self._now()
        if now - self._changed_at < self.hold:
            return False
        if not self._spilling and self._local_load - self._remote_load >= self.spill_at:
            self._spilling, self._spills = True, self._spills + 1
            logger.info(
                "zone %s: %.1f requests in flight per local endpoint vs %.1f remote: spilling to %d "
                "endpoints in other zones",
                self.zone,
                self._local_load,
                self._remote_load,
                len(remote),
            )
        elif self._spilling and (local_sum + remote_sum) / len(local) <= self.return_at:
            self._spilling = False
            logger.info(
                "zone %s: load back to %.1f per local endpoint: local zone only", self.zone, self._local_load
            )
        else:
            return False
        self._changed_at = now
        host.refresh()
        return True

    # -- the Node lookup -----------------------------------------------------------------------
    def _start_lookup(self) -> None:
        if self._lookup != "pending" or self._host is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a policy run outside the loop (a test): look up later
            return
        self._lookup = "running"
        task = loop.create_task(self._read_node(), name=f"kube-balance zone of node {self.node}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_node(self) -> None:
        """Read our Node's zone label once (bounded retries); a 403 means "no zone", said once."""
        assert self._host is not None and self.node is not None
        reader = getattr(self._host.source, "node_zone", None)
        if reader is None:
            self._zone_source = "unknown (the endpoint source cannot read Nodes)"
            return
        for attempt in range(LOOKUP_ATTEMPTS):
            try:
                zone = await asyncio.wait_for(reader(self.node), LOOKUP_TIMEOUT)
            except DiscoveryAuthError as exc:
                self._zone_source = "unknown (reading the Node is forbidden)"
                logger.warning("zone-aware routing is off: %s", exc)
                return
            except Exception as exc:
                logger.info(
                    "reading the zone of node %s failed (attempt %d): %s", self.node, attempt + 1, exc
                )
                if attempt + 1 < LOOKUP_ATTEMPTS:  # no pause after the last one
                    await asyncio.sleep(0.5 * 2**attempt)
                continue
            if zone is None:
                self._zone_source = f"unknown (node {self.node} has no topology.kubernetes.io/zone label)"
                return
            self.zone, self._zone_source = zone, f"node {self.node}"
            logger.info("zone-aware routing: zone %s (from node %s)", zone, self.node)
            self._host.refresh()
            return
        self._zone_source = f"unknown (reading node {self.node} failed)"

    # -- introspection -------------------------------------------------------------------------
    def status(self) -> ZoneStatus:
        """The zone, how local endpoints are chosen, and the spill state."""
        return ZoneStatus(
            zone=self.zone,
            node=self.node,
            zone_source=self._zone_source,
            mode=self._mode,
            local=len(self._local),
            remote=len(self._remote),
            spilling=self._spilling,
            spills=self._spills,
            local_load=self._local_load,
            remote_load=self._remote_load,
        )

    def __repr__(self) -> str:
        state = "spilling" if self._spilling else "local"
        return f"ZoneAware(zone={self.zone!r}, node={self.node!r}, mode={self._mode}, {state})"
