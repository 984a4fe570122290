"""``kube-balance watch SERVICE``: the Service's endpoints as the library sees them, live.

A :class:`~kube_balance.LoadBalancer` on a :class:`~kube_balance.discovery.KubernetesSource`
(the same path a client takes), with a tap on its source: every snapshot redraws the table (on a
terminal) or prints one line (``plain``) or JSON object (``jsonl``) per endpoint that was added,
changed or removed, and an ``empty`` one with the source's reason when there is none (a typo'd
Service or port). Which endpoints get traffic is the balancer's own eligible set; the reason an
endpoint gets none is read from its conditions. Ctrl-C (or SIGTERM) exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from .._balancer import LoadBalancer
from .._endpoint import Endpoint, EndpointSet
from .._errors import ConfigurationError, DiscoveryError
from ..discovery._source import SourceSink
from ._common import service_ref, setup_logging

COLUMNS = (
    "ENDPOINT",
    "POD",
    "NODE",
    "ZONE",
    "READY",
    "SERVING",
    "TERMINATING",
    "TRAFFIC",
    "SLICE",
    "RV",
    "CHANGED",
)
CLEAR = "\x1b[H\x1b[2J"


class _Tap:
    """A source that runs another and tells ``changed`` after each snapshot or error it pushes."""

    def __init__(self, source: Any, changed: Callable[[DiscoveryError | None], None]) -> None:
        self.source, self._changed = source, changed

    async def run(self, sink: SourceSink) -> None:
        await self.source.run(_TapSink(sink, self._changed))

    def __getattr__(self, name: str) -> Any:  # resource_version, last_error, service_port...
        return getattr(self.source, name)


class _TapSink:
    def __init__(self, sink: SourceSink, changed: Callable[[DiscoveryError | None], None]) -> None:
        self.sink, self.changed = sink, changed

    def on_endpoints(self, snapshot: EndpointSet) -> None:
        self.sink.on_endpoints(snapshot)
        self.changed(None)

    def on_error(self, error: DiscoveryError) -> None:
        self.sink.on_error(error)
        self.changed(error)


def why_not(ep: Endpoint, eligible: frozenset[str]) -> str | None:
    """None if ``ep`` gets traffic, else why not (from its conditions)."""
    if ep.key in eligible:
        return None
    if ep.ready:
        return "excluded by the endpoint policy"
    if ep.serving and ep.terminating:
        return "terminating: serves only while no endpoint is ready"
    if ep.terminating:
        return "terminating, not serving"
    return "not ready"


def _slices(source: Any) -> dict[str, tuple[str, str]]:
    """Endpoint key (``address:port``) -> (slice name, slice resourceVersion), from the watch."""
    watch = getattr(source, "watch", None)
    out: dict[str, tuple[str, str]] = {}
    if watch is None:
        return out
    for name, obj in watch.slices.items():
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        ports = [p.get("port") for p in obj.get("ports") or () if p.get("port")]
        for item in obj.get("endpoints") or ():
            for address in item.get("addresses") or ():
                host = f"[{address}]" if ":" in str(address) else str(address)
                for port in ports:
                    out[f"{host}:{port}"] = (name, rv)
    return out


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class View:
    """The rows as last shown, and what changed since."""

    def __init__(self, balancer: LoadBalancer, source: Any, out: TextIO, mode: str) -> None:
        self.balancer, self.source, self.out, self.mode = balancer, source, out, mode
        self.rows: dict[str, dict[str, Any]] = {}
        self.changed_at: dict[str, str] = {}
        self.error: DiscoveryError | None = None
        self.empty: str | None = None  # why the Service has no endpoint, once said (None: it has some)
        self.heard = False  # the source has answered (endpoints, none, or an error)

    def not_answered(self, waited: float) -> None:
        """Nothing from the API server yet after ``waited`` seconds: say so rather than stay silent
        until the list's own timeout (a minute) reports it."""
        explain = getattr(self.source, "explain_empty", None)
        why = explain(waited) if callable(explain) else None
        if why:
            self.empty = str(why)
            if self.mode == "table":
                self._table()
            else:
                self._event({"time": _now(), "event": "empty", "why": self.empty})

    def _rows(self) -> dict[str, dict[str, Any]]:
        eligible = frozenset(ep.key for ep in self.balancer.eligible)
        slices = _slices(self.source)
        rows = {}
        for ep in sorted(self.balancer.snapshot.endpoints, key=lambda e: e.key):
            slice_name, slice_rv = slices.get(ep.key, ("", ""))
            reason = why_not(ep, eligible)
            rows[ep.key] = {
                "endpoint": ep.key,
                "pod": ep.pod_name,
                "node": ep.node_name,
                "zone": ep.zone,
                "ready": ep.ready,
                "serving": ep.serving,
                "terminating": ep.terminating,
                "traffic": reason is None,
                "why_not": reason,
                "slice": slice_name,
                "resource_version": slice_rv,
            }
        return rows

    def update(self, error: DiscoveryError | None) -> None:
        """Take the balancer's current view and show what changed."""
        now = _now()
        self.heard = True
        if error is not None:
            self.error = error
            self._event({"time": now, "event": "error", "error": str(error)})
        rows = self._rows()
        events = []
        for key, row in rows.items():
            old = self.rows.get(key)
            if old != row:
                self.changed_at[key] = now
                events.append({"time": now, "event": "added" if old is None else "changed", **row})
        for key in self.rows.keys() - rows.keys():
            self.changed_at.pop(key, None)
            events.append({"time": now, "event": "removed", **self.rows[key]})
        self.rows = rows
        empty = self._why_empty() if not rows else None
        if empty is not None and empty != self.empty:  # else a typo'd Service showed nothing at all
            events.append({"time": now, "event": "empty", "why": empty})
        self.empty = empty
        if self.mode == "table":
            self._table()
        else:
            for event in events:
                self._event(event)

    def _why_empty(self) -> str | None:
        """Why no endpoint shows: the source's explanation (no such Service, no such port); None
        when a discovery error (already shown) is all there is."""
        explain = getattr(self.source, "explain_empty", None)
        why = explain(None) if callable(explain) else None
        if why:
            return str(why)
        return None if self.error is not None else "the Service has no endpoints"

    def _event(self, event: Mapping[str, Any]) -> None:
        if self.mode == "jsonl":
            print(json.dumps(event), file=self.out, flush=True)
        elif self.mode == "plain":
            fields = " ".join(f"{k}={_text(v)}" for k, v in event.items() if k not in ("time", "event"))
            print(f"{event['time']} {event['event']} {fields}", file=self.out, flush=True)

    def _table(self) -> None:
        b = self.balancer
        lines = [
            f"kube-balance watch {b.service}   {_now()}   resourceVersion {b.snapshot.resource_version}   "
            f"{len(b.snapshot)} endpoints, {len(b.eligible)} get traffic",
        ]
        if self.error is not None:
            lines.append(f"last error: {self.error}")
        if self.empty is not None:
            lines.append(f"no endpoints: {self.empty}")
        table = [COLUMNS]
        for key, r in self.rows.items():
            traffic = "yes" if r["traffic"] else f"no: {r['why_not']}"
            table.append(
                (
                    r["endpoint"],
                    r["pod"] or "-",
                    r["node"] or "-",
                    r["zone"] or "-",
                    _yes(r["ready"]),
                    _yes(r["serving"]),
                    _yes(r["terminating"]),
                    traffic,
                    r["slice"] or "-",
                    r["resource_version"] or "-",
                    self.changed_at.get(key, "")[11:19],
                )
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
        lines.append("")
        lines.extend(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table
        )
        self.out.write(CLEAR + "\n".join(lines) + "\n")
        self.out.flush()


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


NOT_ANSWERED_NOTICE = 5.0
"""Seconds without any answer from the API server before ``watch`` says so (an ``empty`` event)."""


class _ShownErrors(logging.Filter):
    """Drops the discovery's log record of an error it also reports to the balancer (logged as
    ``logger.warning("%s", error)``): ``watch`` shows that one as its ``error`` event."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            record.msg == "%s"
            and isinstance(args, tuple)
            and len(args) == 1
            and isinstance(args[0], DiscoveryError)
        )


async def watch(args: argparse.Namespace, out: TextIO) -> int:
    """Show the Service's endpoints until SIGINT or SIGTERM; returns the exit status."""
    from ..discovery import KubernetesSource

    setup_logging(args.log_level)
    mode = args.output or ("table" if out.isatty() else "plain")
    ref = service_ref(args)
    source = KubernetesSource(ref, kubeconfig=args.kubeconfig, context=args.context)
    pending: list[DiscoveryError | None] = []
    wake = asyncio.Event()

    def changed(error: DiscoveryError | None) -> None:
        pending.append(error)
        wake.set()

    balancer = LoadBalancer(ref, source=_Tap(source, changed), fallback=None)
    view = View(balancer, source, out, mode)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if mode != "jsonl":
        print(f"kube-balance watch: {ref} (Ctrl-C to stop)", file=out, flush=True)
    discovery_log = logging.getLogger("kube_balance.discovery")
    shown = _ShownErrors()
    discovery_log.addFilter(shown)  # an error is an event of ours: not logged a second time
    try:
        async with balancer:
            stopping = asyncio.ensure_future(stop.wait())
            started = loop.time()
            notice: float | None = NOT_ANSWERED_NOTICE
            try:
                while not stop.is_set():
                    waking = asyncio.ensure_future(wake.wait())
                    done, _ = await asyncio.wait(
                        {waking, stopping}, timeout=notice, return_when=asyncio.FIRST_COMPLETED
                    )
                    if not done and not view.heard:
                        view.not_answered(loop.time() - started)
                    notice = None  # said once; the answer (or the list's timeout) follows
                    waking.cancel()
                    wake.clear()
                    batch, pending[:] = list(pending), []
                    errors = [e for e in batch if e is not None]
                    if batch:
                        view.update(errors[-1] if errors else None)
            finally:
                stopping.cancel()
    finally:
        discovery_log.removeFilter(shown)
    if mode == "table":
        out.write("\n")
        out.flush()
    return 0


def run(args: argparse.Namespace) -> int:
    """The ``watch`` subcommand."""
    try:
        return asyncio.run(watch(args, sys.stdout))
    except ConfigurationError as exc:
        print(f"kube-balance watch: {exc}", file=sys.stderr)
        return 2
