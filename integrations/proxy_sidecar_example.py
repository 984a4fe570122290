"""`kube-balance proxy` as a sidecar, end to end on one machine: a fake cluster, three local pods.

    python integrations/proxy_sidecar_example.py

It starts the sidecar container's command from ``kubernetes/deployment-proxy-sidecar.yaml`` as a
subprocess, with two changes for one machine: ports 0 (any free port) instead of 8081 and 9090,
and ``--kubeconfig`` pointing at the fake apiserver instead of the in-cluster config. Then the
"application" sends plain HTTP requests to the sidecar, with no kube-balance in its own process,
and the replies show every pod serving. A scrape of ``/metrics`` and a SIGTERM (as the kubelet
sends it) end the run: the proxy exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import yaml

from local_cluster import local_cluster

MANIFEST = Path(__file__).resolve().parent / "kubernetes" / "deployment-proxy-sidecar.yaml"


def sidecar_command(manifest: Path = MANIFEST) -> list[str]:
    """The kube-balance sidecar's command and args, as the manifest gives them."""
    (deployment,) = (d for d in yaml.safe_load_all(manifest.read_text()) if d["kind"] == "Deployment")
    (sidecar,) = (
        c for c in deployment["spec"]["template"]["spec"]["initContainers"] if c["name"] == "kube-balance"
    )
    return [*sidecar["command"], *sidecar["args"]]


def on_one_machine(command: list[str], kubeconfig: Path) -> list[str]:
    """``kube-balance ARGS`` as ``python -m kube_balance ARGS``, on free ports, with a kubeconfig."""
    args = command[1:]
    for option in ("--listen", "--metrics-listen"):
        if option in args:
            args[args.index(option) + 1] = "127.0.0.1:0"
    return [sys.executable, "-m", "kube_balance", *args, "--kubeconfig", str(kubeconfig)]


async def read_line(stream: asyncio.StreamReader, prefix: str) -> str:
    while line := (await stream.readline()).decode():
        if line.startswith(prefix):
            return line.strip()
    raise RuntimeError(f"the proxy exited before printing {prefix!r}")


async def endpoints_known(client: httpx.AsyncClient, metrics_url: str, count: int) -> None:
    """Wait until the proxy's metrics show ``count`` endpoints (before its first watch event,
    requests go to the fallback: the Service's DNS name, which resolves only in a cluster)."""
    async with asyncio.timeout(10):
        while True:
            for line in (await client.get(metrics_url)).text.splitlines():
                if line.startswith("kube_balance_lb_endpoints{") and float(line.split()[-1]) == count:
                    return
            await asyncio.sleep(0.05)


async def main() -> None:
    async with AsyncExitStack() as stack, asyncio.timeout(60):
        cluster = await local_cluster(stack, pods=3)
        command = on_one_machine(sidecar_command(), cluster.kubeconfig)
        print("sidecar:", " ".join(sidecar_command()))
        proxy = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        assert proxy.stdout is not None
        try:
            listening = await read_line(proxy.stdout, "kube-balance proxy: web.shop")
            metrics = await read_line(proxy.stdout, "kube-balance proxy: metrics on")
            url, metrics_url = listening.rsplit(" ", 1)[1], metrics.rsplit(" ", 1)[1]

            # The application: any HTTP client, pointed at the sidecar (WEB_URL in the manifest).
            pods: Counter[str] = Counter()
            async with httpx.AsyncClient(base_url=url) as app:
                await endpoints_known(app, metrics_url, 3)
                for _ in range(300):
                    reply = await app.get("/items")
                    reply.raise_for_status()
                    pods[reply.json()["pod"]] += 1
                    assert reply.json()["host"] == "web.shop.svc.cluster.local"
                scrape = (await app.get(metrics_url)).text
            print(
                "300 requests through the sidecar  " + "  ".join(f"{p}: {pods[p]:>3}" for p in sorted(pods))
            )
            served = [
                line for line in scrape.splitlines() if line.startswith("kube_balance_lb_requests_total")
            ]
            print("metrics:", *served, sep="\n  ")
        finally:
            if proxy.returncode is None:
                proxy.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proxy.wait(), 30)
        print(f"SIGTERM: the proxy exited {code}")
        assert code == 0


if __name__ == "__main__":
    asyncio.run(main())
