"""The affinity key is the X-Affinity header's bytes as sent, whatever the other headers hold."""

from __future__ import annotations

import asyncio
import random

import httpx
from helpers_pods import SERVICE_HOST, running_pods

from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.httpx import BalancedTransport

URL = f"http://{SERVICE_HOST}"


async def test_non_ascii_keys_keep_their_pod_when_another_header_is_not_utf8(rng: random.Random) -> None:
    """200 UTF-8 user keys reach the same pod with and without a header holding a non-UTF-8 byte."""
    users = [f"usér-{i}-ключ".encode() for i in range(200)]
    async with running_pods(4) as pods:
        transport = BalancedTransport(
            "web.shop:http", source=StaticSource([p.key for p in pods]), algorithm="ring_hash", rng=rng
        )
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(60):
            moved = []
            spread = set()
            for user in users:
                plain = (await client.get(f"{URL}/", headers={"X-Affinity": user})).json()["pod"]
                noisy = await client.get(f"{URL}/", headers={"X-Affinity": user, "X-Trace": b"caf\xe9"})
                assert noisy.request.headers.encoding == "iso-8859-1"  # what used to change the key
                if noisy.json()["pod"] != plain:
                    moved.append(user)
                spread.add(plain)
    assert moved == []
    assert len(spread) == 4  # the keys do reach every pod: the check is not vacuous
