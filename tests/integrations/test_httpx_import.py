"""Importing the httpx integration (and building a transport) loads neither aiohttp nor the Kubernetes client."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("aiohttp", "kubernetes_asyncio")


def loaded_after(code: str) -> list[str]:
    """The heavy modules in sys.modules after running ``code`` in a fresh interpreter."""
    check = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=True
    )
    return [m for m in proc.stdout.strip().split(",") if m]


def test_importing_the_httpx_integration_loads_no_kubernetes_client() -> None:
    """`import kube_balance.integrations.httpx` (and `kube_balance.BalancedTransport`) stays light."""
    assert loaded_after("import kube_balance.integrations.httpx") == []
    assert loaded_after("import kube_balance\nkube_balance.BalancedTransport") == []


def test_building_a_transport_defers_the_kubernetes_client_to_its_start() -> None:
    """A transport built at module level with the default source loads the client only when it starts."""
    build = "from kube_balance.integrations.httpx import BalancedTransport\nt = BalancedTransport('web.shop:http')"
    assert loaded_after(build) == []
    # Started (outside a cluster, without a kubeconfig: it fails, but only after loading the client).
    start = (
        f"{build}\nimport asyncio, os\nos.environ['KUBECONFIG'] = os.devnull + '-missing'\n"
        "os.environ.pop('KUBERNETES_SERVICE_HOST', None)\n"
        "async def main():\n    t.balancer.startup_timeout = 0.5\n    await t.balancer.ensure_started()\n"
        "    await t.aclose()\nasyncio.run(main())"
    )
    assert loaded_after(start) == ["aiohttp", "kubernetes_asyncio"]
