"""``check_options``: what a FastAPI app checks when it declares an aiohttp client (no event loop
then) refuses exactly what building ``BalancedConnector`` in a loop refuses (a hypothesis fuzz)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kube_balance import ConfigurationError, HedgePolicy, RetryPolicy
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.aiohttp import BalancedConnector, check_options

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 5),
    st.sampled_from(["round_robin", "ring_hash", "round_robbin", "service", "X-User", ""]),
    st.just(RetryPolicy()),
    st.just(HedgePolicy()),
    st.builds(random.Random),
    st.just(StaticSource(["127.0.0.1:1"])),
)
OWN = ["algorithm", "source", "fallback", "affinity", "retry", "hedge", "algorithm_options", "rng", "clock"]
# aiohttp.TCPConnector's, with values it takes together (their values are aiohttp's to check).
AIOHTTP = st.sampled_from(
    [{}, {"limit": 10}, {"limit": 10, "limit_per_host": 2}, {"force_close": True}, {"keepalive_timeout": 3.0}]
)
TYPOS = st.sampled_from(["limt", "algoritm", "retries"])


def outcome(build: Any) -> str | None:
    """The ConfigurationError's message, or None when accepted."""
    try:
        build()
    except ConfigurationError as exc:
        return str(exc)
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    own=st.dictionaries(st.sampled_from(OWN), VALUES, max_size=3),
    aio=AIOHTTP,
    typo=st.one_of(st.none(), TYPOS),
    cluster=st.booleans(),
)
def test_the_declaration_check_refuses_what_the_connector_refuses(
    own: dict[str, Any], aio: dict[str, Any], typo: str | None, cluster: bool
) -> None:
    """Any mix of the connector's options (right and wrong values), aiohttp's and a misspelt
    one: check_options() raises a ConfigurationError exactly when BalancedConnector (built in a
    running loop, for one Service or in cluster mode) does, with the same message; a typo is
    refused by name (aiohttp would say TypeError)."""
    options = {**own, **aio}
    if typo is not None:
        options[typo] = 1
    service = None if cluster else "web.shop:http"
    checked = outcome(lambda: check_options(service, options))
    if typo is not None:
        assert checked is not None and repr(typo) in checked
        return

    async def build() -> str | None:
        def construct() -> Any:
            connector = (
                BalancedConnector.cluster(**options) if cluster else BalancedConnector(service, **options)
            )
            return connector

        built: list[Any] = []
        message = outcome(lambda: built.append(construct()))
        for connector in built:
            await connector.close()
        return message

    assert checked == asyncio.run(asyncio.wait_for(build(), 10))


def test_a_typo_names_what_is_taken() -> None:
    with pytest.raises(
        ConfigurationError, match=r"no option 'limt': it takes its own \(algorithm, .*hedge\)"
    ):
        check_options("web.shop:http", {"limt": 10})


async def test_the_connector_refuses_a_misspelt_option_by_name() -> None:
    """BalancedConnector(limt=10), built in a running loop, is a ConfigurationError naming the
    option and what is taken (was aiohttp's bare TypeError about TCPConnector); in cluster mode
    the cluster options are listed too."""
    async with asyncio.timeout(10):
        with pytest.raises(ConfigurationError, match=r"BalancedConnector has no option 'limt': .*hedge\)"):
            BalancedConnector("web.shop:http", source=StaticSource(["127.0.0.1:1"]), limt=10)
        with pytest.raises(
            ConfigurationError,
            match=r"BalancedConnector.cluster\(\) has no option 'namspace': it takes its own \(namespaces, "
            r"namespace, .*hedge\) and aiohttp.TCPConnector's",
        ):
            BalancedConnector.cluster(namspace="shop")
        connector = BalancedConnector("web.shop:http", source=StaticSource(["127.0.0.1:1"]), limit=3)
        assert connector.limit == 3  # aiohttp's own options still go through
        await connector.close()


def test_a_connector_built_outside_a_running_loop_says_where_to_build_it() -> None:
    """BalancedConnector at import (no running loop): aiohttp's RuntimeError, with a message that
    says what to do (it said only "no running event loop")."""
    try:
        aiohttp.TCPConnector()
    except RuntimeError:
        pass
    else:  # pragma: no cover - aiohttp < 3.10 takes the thread's loop outside a running one
        pytest.skip("this aiohttp builds a connector without a running loop")
    with pytest.raises(RuntimeError, match=r"needs a running event loop.*inside an async function") as err:
        BalancedConnector("web.shop:http", source=StaticSource(["127.0.0.1:1"]))
    assert "no running event loop" in str(err.value.__cause__)
    with pytest.raises(RuntimeError, match=r"needs a running event loop"):
        BalancedConnector.cluster(namespace="shop")
