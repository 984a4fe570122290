"""TLS fixtures for integration tests: a trustme CA and a certificate for the Service name only."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import trustme
from helpers_pods import SERVICE_HOST


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="session")
def service_cert(ca: trustme.CA) -> trustme.LeafCert:
    """A server certificate for web.shop.svc.cluster.local only (no IP SAN)."""
    return ca.issue_cert(SERVICE_HOST)


@pytest.fixture
def server_ssl(service_cert: trustme.LeafCert) -> ssl.SSLContext:
    """The pods' TLS context, presenting the Service-name certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    service_cert.configure_cert(ctx)
    return ctx


@pytest.fixture
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts only the test CA (hostname checking on)."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def cert_files(service_cert: trustme.LeafCert) -> Iterator[tuple[str, str]]:
    """The certificate chain and key as files, for hypercorn."""
    with (
        service_cert.cert_chain_pems[0].tempfile() as certfile,
        service_cert.private_key_pem.tempfile() as keyfile,
    ):
        yield certfile, keyfile
