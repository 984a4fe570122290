"""LoadBalancer lifecycle: close, cancellation, lazy start, broken sources and refused updates."""

from __future__ import annotations

import asyncio

import pytest

from kube_balance import Endpoint, EndpointPolicy, EndpointSet, LoadBalancer, NoEndpointsAvailable
from kube_balance.algorithms._maglev import Maglev
from kube_balance.discovery import SourceSink
from kube_balance.testing import StaticSource


class StubbornSource:
    """Delivers one snapshot, then on cancellation takes until ``release`` is set to stop."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.stopping = asyncio.Event()

    async def run(self, sink: SourceSink) -> None:
        sink.on_endpoints(EndpointSet.of(["10.0.0.1:80"]))
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.stopping.set()
            await asyncio.shield(self.release.wait())
            raise


class SilentSource:
    """Never delivers anything (an API server that accepts the list and never answers)."""

    runs = 0

    async def run(self, sink: SourceSink) -> None:
        self.runs += 1
        await asyncio.Event().wait()


class QuittingSource:
    """Breaks the contract: run() returns at once, every time."""

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, sink: SourceSink) -> None:
        self.runs += 1


async def test_cancelling_aclose_is_not_swallowed() -> None:
    """A caller cancelled while aclose() waits for the watcher sees CancelledError (timeouts work)."""
    source = StubbornSource()
    lb = LoadBalancer("web.shop:80", source=source, fallback="none")
    async with asyncio.timeout(5):
        lb.start()
        await lb.wait_ready(5)
        closer = asyncio.create_task(lb.aclose())
        await source.stopping.wait()
        closer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closer
        assert closer.cancelled()
        source.release.set()


async def test_startup_wait_happens_once_per_run() -> None:
    """With a silent API, the first request waits startup_timeout; later ones go straight to the fallback."""
    source = SilentSource()
    lb = LoadBalancer("web.shop:80", source=source, startup_timeout=0.05)
    async with asyncio.timeout(5):
        assert not lb.started
        await lb.ensure_started()
        assert lb.started  # so the dispatcher never waits again for this run
        await lb.ensure_started()
        assert source.runs == 1
        await lb.aclose()


async def test_a_source_that_stops_is_restarted_with_backoff_not_per_request() -> None:
    """A source whose run() returns is reported and restarted after a backoff, not on every request."""
    source = QuittingSource()
    lb = LoadBalancer("web.shop:80", source=source, startup_timeout=1)
    async with asyncio.timeout(5):
        for _ in range(20):
            await lb.ensure_started()
            lb.get()
            await asyncio.sleep(0)
        assert source.runs == 1
        assert lb.running  # the watcher waits in its backoff, alive
        assert lb.last_error is not None
        assert "stopped" in str(lb.last_error)
        await lb.aclose()


async def test_get_after_aclose_serves_the_last_snapshot_without_restarting() -> None:
    """After aclose(), get() keeps serving and no watcher is started that nobody would close."""
    lb = LoadBalancer("web.shop:80", source=StaticSource(["10.0.0.1:80"]))
    async with asyncio.timeout(5):
        async with lb:
            await lb.wait_ready(5)
        ep = lb.get()
        assert ep == Endpoint("10.0.0.1", 80)
        lb.put(ep)
        await lb.ensure_started()
        assert not lb.running
        async with lb:  # an explicit start still works
            assert lb.running


async def test_refused_update_keeps_the_previous_set_serving() -> None:
    """A fixed Maglev table too small for a new set: the old set serves, the error is recorded, later sets apply."""
    source = StaticSource([f"10.0.0.{i}:80" for i in range(1, 6)])
    lb = LoadBalancer("web.shop:80", source=source, algorithm=Maglev(table_size=1009))
    async with asyncio.timeout(5), lb:
        await lb.wait_ready(5)
        source.set([f"10.0.0.{i}:80" for i in range(1, 12)])  # 11 x 100 > 1009
        assert len(lb.eligible) == 5
        assert len(lb.algorithm.endpoints) == 5
        assert "refused" in str(lb.last_error)
        assert lb.get(b"user-1") is not None
        source.set([f"10.0.0.{i}:80" for i in range(1, 4)])
        assert len(lb.eligible) == len(lb.algorithm.endpoints) == 3


async def test_wait_ready_survives_a_restart() -> None:
    """A wait_ready() begun before aclose()+start() returns when endpoints arrive after the restart."""
    source = StaticSource([])
    lb = LoadBalancer("web.shop:80", source=source)
    async with asyncio.timeout(5):
        lb.start()
        waiter = asyncio.create_task(lb.wait_ready(5))
        await asyncio.sleep(0)
        await lb.aclose()
        lb.start()
        await asyncio.sleep(0)
        source.set(["10.0.0.1:80"])
        await waiter
        assert lb.eligible == (Endpoint("10.0.0.1", 80),)
        await lb.aclose()


async def test_started_follows_every_change_of_the_run() -> None:
    """``started`` is a plain attribute (read on every request's path), kept equal to what it
    means at each change: not before the startup wait, set by it, cleared when the watcher task
    ends behind the balancer's back (a request then restarts it), set again by the next startup
    wait, set by aclose() (the last snapshot serves without waiting) and cleared by a restart."""
    lb = LoadBalancer("web.shop:80", source=StaticSource(["10.0.0.1:80"]))
    async with asyncio.timeout(5):
        assert lb.started is False
        lb.start()
        assert lb.started is False  # running, but the startup wait is not over
        await lb.ensure_started()
        assert lb.started is True
        task = lb._task
        assert task is not None
        task.cancel()  # the watcher ends without aclose()
        await asyncio.wait({task})
        await asyncio.sleep(0)  # its done callbacks run
        assert lb.started is False and not lb.running
        await lb.ensure_started()  # what the dispatcher does when started is False
        assert lb.started is True and lb.running
        await lb.aclose()
        assert lb.started is True  # closed: serves the last snapshot, never waits
        await asyncio.sleep(0)
        assert lb.started is True  # the old task's end changes nothing once closed
        lb.start()
        assert lb.started is False
        await lb.ensure_started()
        assert lb.started is True
        await lb.aclose()
    never_run = LoadBalancer("web.shop:80", source=StaticSource(["10.0.0.1:80"]))
    await never_run.aclose()
    assert never_run.started is True  # closed before any start: serves (nothing), never waits


class GatedSource(StaticSource):
    """A static source whose every run delivers only once its gate opens (run 1's is open)."""

    def __init__(self, addresses: list[str]) -> None:
        super().__init__(addresses)
        self.runs = 0
        self.gates = [asyncio.Event(), asyncio.Event()]
        self.gates[0].set()

    async def run(self, sink: SourceSink) -> None:
        gate = self.gates[self.runs]
        self.runs += 1
        await gate.wait()
        await super().run(sink)


async def test_start_while_the_watcher_runs_changes_nothing() -> None:
    source = SilentSource()
    lb = LoadBalancer("web.shop:80", source=source, fallback="none")
    async with asyncio.timeout(5):
        lb.start()
        task = lb._task
        await asyncio.sleep(0)
        lb.start()
        await asyncio.sleep(0)
        assert lb._task is task and source.runs == 1
        await lb.aclose()


async def test_a_restart_waits_for_its_own_first_answer() -> None:
    """After aclose() and start(), the startup wait is for the new run's first snapshot, not the
    old run's: a request waits (bounded) until the restarted source answers."""
    source = GatedSource(["10.0.0.1:80"])
    lb = LoadBalancer("web.shop:80", source=source, fallback="none", startup_timeout=30)
    async with asyncio.timeout(5):
        await lb.ensure_started()
        await lb.aclose()
        lb.start()
        waiter = asyncio.create_task(lb.ensure_started())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done() and source.runs == 2  # the new run has not answered yet
        source.gates[1].set()
        await waiter
        assert lb.started
        await lb.aclose()


async def test_an_unanswered_start_is_named_with_how_long_it_waited() -> None:
    lb = LoadBalancer("web.shop:80", source=SilentSource(), fallback="none")
    async with asyncio.timeout(5):
        lb.start()
        await asyncio.sleep(0.01)
        assert "the endpoint source has sent nothing in" in str(lb.no_endpoints())
        await lb.aclose()


async def test_a_fresh_balancer_counts_no_hedges() -> None:
    status = LoadBalancer("web.shop:80", source=StaticSource([]), fallback="none").status()
    assert (status.hedges, status.hedge_budget_exhausted) == (0, 0)


async def test_aclose_stops_the_policy_steps_and_a_fallback_read_in_progress() -> None:
    """aclose() cancels the fallback's Service read still running and stops the policy's
    background steps (the subset filter's watch of its peers)."""

    class PortSource(StaticSource):
        async def service_port(self) -> int:
            await asyncio.Event().wait()  # never answers
            return 80

    closed: list[str] = []

    class Step:
        def __call__(self, endpoints: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
            return endpoints

        async def aclose(self) -> None:
            closed.append("step")

    lb = LoadBalancer(
        "web.shop:http", source=PortSource([]), policy=EndpointPolicy([Step()]), startup_timeout=30
    )
    async with asyncio.timeout(5):
        with pytest.raises(NoEndpointsAvailable, match=r"no answer within 0\.01 s"):
            await lb.fallback_target(0.01)
        read = lb._fallback._task
        assert read is not None and not read.done()
        await lb.aclose()
        assert read.cancelled() and closed == ["step"]


async def test_a_timed_out_wait_ready_ends_the_startup_wait() -> None:
    """A FastAPI app waits ``startup_timeout`` for endpoints (``wait_ready``), then starts without
    them: its first request waited the balancer's own 5 s again (8 s with a 3 s timeout, in a
    user's trial). After a wait_ready that timed out, requests go on at once."""
    lb = LoadBalancer("web.shop:http", source=SilentSource(), fallback=None, startup_timeout=30)
    try:
        with pytest.raises(NoEndpointsAvailable, match=r"no eligible endpoint after 0\.05 s"):
            await lb.wait_ready(0.05)
        assert lb.started
        await asyncio.wait_for(lb.ensure_started(), 1)  # no second startup wait (30 s)
        assert lb.get() is None
    finally:
        await asyncio.wait_for(lb.aclose(), 5)


async def test_a_wait_ready_that_succeeds_or_is_unbounded_changes_no_startup() -> None:
    """Only a wait that timed out counts as the startup's: a balancer with endpoints is started
    by its first answer as before, and a closed one stays closed."""
    lb = LoadBalancer("web.shop:http", source=StaticSource(["127.0.0.1:1"]), fallback=None)
    try:
        await asyncio.wait_for(lb.wait_ready(5), 5)
        assert lb.get() is not None
    finally:
        await asyncio.wait_for(lb.aclose(), 5)
    closed = LoadBalancer("web.shop:http", source=SilentSource(), fallback=None)
    await closed.aclose()
    with pytest.raises(NoEndpointsAvailable):
        await closed.wait_ready(0.01)
    assert closed.started and not closed.running
