"""BalancedTransport's TLS options mean what they mean for httpx, on every supported httpx.

httpx 0.27 and 0.28 order ``create_ssl_context``'s parameters differently; a positional call
silently turned verification off on 0.27. Each test runs on whatever httpx is installed:
``make test`` (latest) and ``make test-min`` (the lowest pyproject.toml allows).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from helpers_pods import SERVICE_HOST, running_pods

from kube_balance import ConfigurationError
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.httpx import BalancedTransport

# 0.28 deprecates verify=<path> and cert=...; they still work, and users on 0.27 need them.
pytestmark = pytest.mark.filterwarnings("ignore:`(verify=<str>|cert=...)` is deprecated:DeprecationWarning")


@pytest.fixture
def ca_file(ca: trustme.CA) -> Iterator[str]:
    """The test CA's certificate as a PEM file."""
    with ca.cert_pem.tempfile() as path:
        yield path


def pool_context(transport: BalancedTransport) -> ssl.SSLContext:
    """The SSL context a pod's pool hands to httpcore (httpcore 1.x keeps it in ``_ssl_context``)."""
    pool = transport._open_pool()
    ctx: ssl.SSLContext = pool._pool._ssl_context  # type: ignore[attr-defined]
    return ctx


async def get(transport: BalancedTransport, host: str) -> httpx.Response:
    """One HTTPS request to ``host`` through ``transport``."""
    async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
        return await client.get(f"https://{host}/")


def make_transport(service: str, port_key: Any, rng: random.Random, **tls: Any) -> BalancedTransport:
    """A transport for ``service`` whose one endpoint is ``port_key``, with the TLS options ``tls``."""
    return BalancedTransport(service, source=StaticSource([port_key]), rng=rng, **tls)


@pytest.mark.parametrize("how", ["verify=True + SSL_CERT_FILE", "verify=<CA path>", "verify=<SSLContext>"])
async def test_every_verify_form_checks_the_chain_and_the_name(
    how: str,
    rng: random.Random,
    monkeypatch: pytest.MonkeyPatch,
    ca_file: str,
    client_ssl: ssl.SSLContext,
    server_ssl: ssl.SSLContext,
) -> None:
    """Each verify form gives CERT_REQUIRED + check_hostname; the right name passes, another fails."""
    if how.startswith("verify=True"):
        monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # trust_env: httpx reads it in both versions
        tls: dict[str, Any] = {}
    elif how == "verify=<CA path>":
        tls = {"verify": ca_file}
    else:
        tls = {"verify": client_ssl}
    async with running_pods(1, ssl_context=server_ssl) as pods:
        good = make_transport("web.shop:https", pods[0].key, rng, **tls)
        ctx = pool_context(good)
        assert (ctx.verify_mode, ctx.check_hostname) == (ssl.CERT_REQUIRED, True)
        assert (await get(good, SERVICE_HOST)).json()["pod"] == "pod-0"
        await good.aclose()

        other = make_transport("api.shop:https", pods[0].key, rng, **tls)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await get(other, "api.shop.svc.cluster.local")
        await other.aclose()


async def test_default_verify_refuses_an_unknown_ca(rng: random.Random, server_ssl: ssl.SSLContext) -> None:
    """With no options, a certificate from a CA outside the default bundle fails the handshake."""
    async with running_pods(1, ssl_context=server_ssl) as pods:
        transport = make_transport("web.shop:https", pods[0].key, rng, trust_env=False)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await get(transport, SERVICE_HOST)
        await transport.aclose()


async def test_verify_false_turns_checking_off(rng: random.Random, server_ssl: ssl.SSLContext) -> None:
    """verify=False reaches the pool: CERT_NONE, and a certificate for another name is accepted."""
    async with running_pods(1, ssl_context=server_ssl) as pods:
        transport = make_transport("api.shop:https", pods[0].key, rng, verify=False)
        ctx = pool_context(transport)
        assert (ctx.verify_mode, ctx.check_hostname) == (ssl.CERT_NONE, False)
        assert (await get(transport, "api.shop.svc.cluster.local")).status_code == 200
        await transport.aclose()


async def test_client_certificate_is_presented(
    rng: random.Random, ca: trustme.CA, service_cert: trustme.LeafCert, ca_file: str
) -> None:
    """cert=(certfile, keyfile) reaches the handshake: a pod requiring a client certificate answers."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    service_cert.configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED
    client_cert = ca.issue_cert("client.shop")
    with (
        client_cert.cert_chain_pems[0].tempfile() as certfile,
        client_cert.private_key_pem.tempfile() as keyfile,
    ):
        async with running_pods(1, ssl_context=server) as pods:
            transport = make_transport(
                "web.shop:https", pods[0].key, rng, verify=ca_file, cert=(certfile, keyfile)
            )
            assert (await get(transport, SERVICE_HOST)).json()["pod"] == "pod-0"
            await transport.aclose()

            anonymous = make_transport("web.shop:https", pods[0].key, rng, verify=ca_file)
            with pytest.raises(httpx.TransportError):
                await get(anonymous, SERVICE_HOST)
            await anonymous.aclose()


@pytest.mark.parametrize("cert", [123, ("only-one-file",), ["cert.pem", "key.pem"], ("a", "b", "c", "d")])
def test_a_malformed_cert_is_a_configuration_error(cert: Any) -> None:
    """cert that is not a path or a (certfile, keyfile[, password]) tuple fails at construction, named."""
    with pytest.raises(ConfigurationError, match=r"cert=.* is invalid: expected a certificate file path"):
        BalancedTransport("web.shop:https", source=StaticSource([]), cert=cert)


async def test_a_ca_bundle_that_does_not_load_is_named_and_charges_no_pod(
    rng: random.Random, tmp_path: Path
) -> None:
    """verify=<a file that is no PEM>: the request raises ConfigurationError naming verify and the
    file (it used to be a bare ssl.SSLError), and no pod is charged for it."""
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    async with running_pods(1) as pods:
        transport = make_transport("web.shop:http", pods[0].key, rng, verify=str(bad))
        with pytest.raises(
            ConfigurationError, match=r"verify='.*ca\.pem' is invalid: cannot load it as a CA bundle"
        ):
            await get(transport, SERVICE_HOST)
        assert transport.balancer.status().outcomes == {}
        await transport.aclose()


def test_http2_without_h2_names_the_extra_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    """http2=True without the h2 package fails at construction naming the extra, not at a pod's first request."""
    monkeypatch.setitem(sys.modules, "h2", None)  # import h2 now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'kube-balance\[http2\]'"):
        BalancedTransport("web.shop:http", source=StaticSource([]), http2=True)
