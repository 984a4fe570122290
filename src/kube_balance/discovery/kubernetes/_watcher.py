"""One list+watch loop over a Service's EndpointSlices, fanned out to any number of listeners.

We drive list and watch ourselves through kubernetes_asyncio (``_preload_content=False``, reading
the stream line by line) because its ``watch.Watch`` retries a 410 with the stale resourceVersion
and gives up on a stream dropped mid-body. The loop, as client-go's reflector:

- list by label ``kubernetes.io/service-name`` with ``limit``/``continue`` pages, without a
  resourceVersion (a consistent read, so a relist never goes back in time);
- watch from the list's resourceVersion with bookmarks and a random ``timeoutSeconds`` (300-600 s,
  client-go uses 5-10 min); the request has a total timeout a little longer, so a stall is noticed;
- a clean end re-watches from the last resourceVersion (bookmarks advance it), no relist;
- 410 relists at once and listeners apply the difference; other failures back off (0.8 s..30 s);
- 401 re-reads credentials and retries at once; a second 401 in a row is surfaced and backed off.
Nothing raises out of :meth:`SliceWatch.run` except cancellation.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..._backoff import Backoff
from ..._errors import DiscoveryError, DiscoveryUnavailable
from ..._redact import describe_error, format_exception, redact
from ._config import ClientConfig
from ._requests import collection, json_object, read_limited
from ._slicestore import SliceStore
from ._status import (
    ENDPOINT_SLICES,
    ENDPOINTS,
    Expired,
    NotServed,
    PageTooLarge,
    Resource,
    Retryable,
    Unauthorized,
    client_secrets,
)

logger = logging.getLogger("kube_balance.discovery")

WATCH_TIMEOUT = (300, 600)  # seconds; client-go's reflector picks minWatchTimeout(5 min) * [1, 2)
STALL_GRACE = 30.0  # seconds past timeoutSeconds before a silent stream counts as stalled
LIST_TIMEOUT = 60.0  # seconds for one list page
PAGE_SIZE = 500  # objects per list page, as client-go's pager
MAX_PAGE_BYTES = 64 * 1024 * 1024  # a list page read past this fails: 500 full slices are ~15 MB
SHORT_WATCH = 1.0  # client-go: a watch that ends within 1 s with no event is an error ("very short watch")
MAX_PAGES = 10_000


class Listener(Protocol):
    """Told when slices change: ``changed`` names the slices touched, ``None`` means all of them."""

    def on_change(self, watch: SliceWatch, changed: set[str] | None) -> None: ...

    def on_error(self, error: DiscoveryError) -> None: ...


class WatchStats:
    """Counts read by metrics at scrape time (plain increments: one event loop, no lock)."""

    __slots__ = ("lists", "watches", "events", "errors", "last_event", "clock")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lists = 0  # completed lists (the first one, then every relist)
        self.watches = 0  # watch requests answered (the first one, then every re-watch)
        self.events = 0  # watch events and bookmarks
        self.errors: dict[str, int] = {}  # failures by kind: expired, unauthorized, unavailable...
        self.last_event: float | None = None  # clock() at the last list, event or bookmark

    def since_last_event(self) -> float | None:
        """Seconds since the last list, event or bookmark (None before the first list)."""
        return None if self.last_event is None else max(0.0, self.clock() - self.last_event)

    def error(self, exc: BaseException) -> None:
        kind = _error_kind(exc)
        self.errors[kind] = self.errors.get(kind, 0) + 1


def _error_kind(exc: BaseException) -> str:
    """``Expired`` -> ``expired``, ``DiscoveryUnavailable`` -> ``unavailable``, a surprise -> ``other``."""
    import aiohttp  # loaded already: only a running watch has errors to count

    name = type(exc).__name__
    if isinstance(exc, (aiohttp.ClientError, OSError, TimeoutError)):
        return "unavailable"
    if not isinstance(exc, DiscoveryError):
        return "other"
    name = name.removeprefix("Discovery") or "error"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class SliceWatch:
    """One Service's list+watch loop and what it knows: slices, resourceVersion, last error."""

    def __init__(
        self,
        config: ClientConfig,
        namespace: str,
        service: str,
        *,
        rng: random.Random,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff,
        watch_timeout: tuple[int, int] = WATCH_TIMEOUT,
        request_timeout: float | None = None,
        page_size: int = PAGE_SIZE,
        max_page_bytes: int = MAX_PAGE_BYTES,
    ) -> None:
        self.config, self.namespace, self.service = config, namespace, service
        self._rng, self._clock, self.backoff = rng, clock, backoff
        self._watch_timeout, self._request_timeout, self._page_size = (
            watch_timeout,
            request_timeout,
            page_size,
        )
        self._max_page_bytes = max_page_bytes
        self.store = SliceStore(namespace, service, ENDPOINT_SLICES)
        self.last_error: DiscoveryError | None = None
        self.synced = False
        self.listeners: list[Listener] = []
        self._401_in_row = self._410_in_row = 0
        self._client: Any = None  # the ApiClient in use, for the credentials to redact from errors
        self.stats = WatchStats(clock)

    @property
    def slices(self) -> Mapping[str, Mapping[str, Any]]:
        """The Service's current slices by name."""
        return self.store.slices

    @property
    def resource_version(self) -> str | None:
        """The resourceVersion reached (list, events and bookmarks)."""
        return self.store.resource_version

    @property
    def legacy(self) -> bool:
        """True when watching core/v1 Endpoints because EndpointSlices are not served."""
        return self.store.legacy

    @property
    def resource(self) -> Resource:
        return self.store.resource

    async def run(self) -> None:
        """List, then watch, forever; every failure is reported to listeners and retried."""
        import aiohttp  # here, not at module level: importing kube_balance must not load the HTTP stack

        need_list = True
        while True:
            try:
                client = self._client = await self.config.client()
                if need_list:
                    await self._list(client)
                    need_list = False
                await self._watch(client)
            except Expired as exc:
                self.stats.error(exc)
                logger.info("%s; relisting", exc)
                need_list, self._410_in_row = True, self._410_in_row + 1
                if self._410_in_row > 1:  # expired again before any event: do not spin list+watch
                    await self._fail(exc)
            except Unauthorized as exc:
                self.stats.error(exc)
                self._401_in_row += 1
                if self._401_in_row > 1:  # re-reading did not help: surface it and back off
                    await self._fail(exc)
                await self._reload_credentials()
            except NotServed as exc:
                self.stats.error(exc)
                if self.legacy:
                    await self._fail(exc)
                else:
                    self._fall_back(exc)
                    need_list = True
            except DiscoveryError as exc:
                self.stats.error(exc)
                await self._fail(exc)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                # Never repr(exc): an aiohttp error's repr carries our Authorization header.
                self.stats.error(exc)
                if not isinstance(exc, TimeoutError):
                    what = "failed"
                elif need_list:  # the list itself got no (whole) answer: nothing was watched yet
                    limit = self._request_timeout or LIST_TIMEOUT
                    what = f"timed out: no answer to the list within {limit:g} s"
                else:
                    what = "stalled (no end of stream in time)"
                detail = describe_error(exc, self._secrets())
                await self._fail(DiscoveryUnavailable(f"{self._what()} {what}: {detail}"))
            except Exception as exc:  # a bug or a surprise must not end discovery: log, back off, retry
                self.stats.error(exc)
                logger.error(
                    "unexpected error in %s:\n%s", self._what(), format_exception(exc, self._secrets())
                )
                await self._fail(
                    DiscoveryError(f"{self._what()}: unexpected {describe_error(exc, self._secrets())}")
                )

    def _secrets(self) -> tuple[str, ...]:
        return client_secrets(self._client)

    def _what(self) -> str:
        host = redact(self.config.host)  # a server URL may carry user:password@
        return f"list/watch {self.resource.kind} {self.namespace}/{self.service} at {host}"

    def _fall_back(self, exc: DiscoveryError) -> None:
        logger.warning(
            "discovery.k8s.io/v1 EndpointSlices are not served (%s); falling back to core/v1 "
            "Endpoints %s/%s (deprecated since Kubernetes 1.33)",
            exc,
            self.namespace,
            self.service,
        )
        self.store = SliceStore(self.namespace, self.service, ENDPOINTS, legacy=True)

    async def _reload_credentials(self) -> None:
        try:
            if await self.config.reload():
                logger.info(
                    "401 from %s: re-read credentials from %s", self.config.host, self.config.describe()
                )
        except DiscoveryError as exc:
            await self._fail(exc)

    async def _fail(self, error: DiscoveryError) -> None:
        """Record and report ``error``, then back off (keeping the last good slices)."""
        self.last_error = error
        logger.warning("%s", error)
        for listener in list(self.listeners):
            try:
                listener.on_error(error)
            except Exception:
                logger.exception("discovery listener failed on error %s", error)
        await self.backoff.wait(error.retry_after if isinstance(error, Retryable) else None)

    def _notify(self, changed: set[str] | None) -> None:
        for listener in list(self.listeners):
            try:
                listener.on_change(self, changed)
            except Exception:  # a broken sink must not stop the watch for the others
                logger.exception("discovery listener failed on change")

    def _healthy(self) -> None:
        """A 2xx answer: the credentials and resourceVersion work again."""
        self.last_error, self._401_in_row = None, 0

    def _request(self, client: Any, verb: str, **params: Any) -> Any:
        return collection(
            client,
            self.namespace,
            self.service,
            legacy=self.legacy,
            verb=verb,
            resource=self.resource,
            **params,
        )

    async def _list(self, client: Any) -> None:
        """Read every page, then replace the slices and tell listeners once."""
        items: list[Any] = []
        cont: str | None = None
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self._request_timeout or LIST_TIMEOUT)
        meta: Mapping[str, Any] = {}
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"limit": self._page_size, "_request_timeout": timeout}
            if cont:
                params["_continue"] = cont
            try:
                async with self._request(client, "list", **params) as resp:
                    body = json_object(await self._read_page(resp), f"{self._what()}: list")
            except Expired:
                if cont is None:
                    raise
                logger.info("list continue token expired; restarting the list from the first page")
                items, cont = [], None
                continue
            self._healthy()
            items.extend(body.get("items") or ())
            meta = body.get("metadata") or {}
            cont = meta.get("continue")
            if not cont:
                break
        self.store.replace(items, str(meta.get("resourceVersion") or "") or None)
        self.synced = True
        self.stats.lists += 1
        self.stats.last_event = self._clock()
        logger.debug(
            "listed %d %s at resourceVersion %s", len(items), self.resource.kind, self.resource_version
        )
        self._notify(None)

    async def _read_page(self, resp: Any) -> bytes:
        """A list page, read up to the byte cap: a huge answer must not take the process's memory."""
        try:
            return await read_limited(resp, self._max_page_bytes, f"{self._what()}: list page")
        except PageTooLarge as exc:
            raise PageTooLarge(
                f"{exc}; the last good endpoints keep serving. Ask for smaller pages: pass a lower "
                f"page_size (now {self._page_size}) to KubernetesSource, so that each page fits"
            ) from None

    async def _watch(self, client: Any) -> None:
        """One watch request; returns on a clean end of stream, raises otherwise."""
        seconds = self._rng.randint(*self._watch_timeout)
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self._request_timeout or seconds + STALL_GRACE)
        started, events = self._clock(), 0
        params = {"resource_version": self.resource_version, "allow_watch_bookmarks": True}
        async with self._request(
            client, "watch", watch=True, timeout_seconds=seconds, _request_timeout=timeout, **params
        ) as resp:
            self._healthy()
            self.stats.watches += 1
            while line := await resp.content.readline():
                if not line.endswith(b"\n"):
                    raise DiscoveryUnavailable(f"{self._what()}: stream ended in the middle of an event")
                if line.strip():
                    events += 1
                    self.stats.events += 1
                    self.stats.last_event = self._clock()
                    changed = self.store.apply_line(line)
                    self._410_in_row = 0  # an event went through: a later 410 relists at once again
                    if changed:
                        self._notify(changed)
        if events == 0 and self._clock() - started < SHORT_WATCH:
            raise DiscoveryUnavailable(f"{self._what()}: very short watch, closed at once without an event")
