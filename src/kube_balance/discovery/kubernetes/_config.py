"""Where a Kubernetes client's address and credentials come from, and re-reading them after a 401.

One policy for every source: an injected ``ApiClient``; else in-cluster (service-account token,
CA and namespace files) when running in a pod; else a kubeconfig (``KUBECONFIG``, read when the
source starts, else ``~/.kube/config``) with an optional context, as kubectl resolves it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from ..._errors import ConfigurationError, DiscoveryError, DiscoveryUnavailable
from ..._validate import check_bool, check_instance, check_optional_str, invalid

SERVICE_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
SERVICE_CA_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
LOAD_TIMEOUT = 60.0
"""Seconds to load (or re-read) the credentials: an exec credential plugin that hangs (a login
prompt, a stuck cloud CLI) must surface as an error and be retried, not freeze discovery."""


def default_kubeconfig(environ: Mapping[str, str] = os.environ) -> str:
    """``$KUBECONFIG`` (possibly several paths joined by ``os.pathsep``), else ``~/.kube/config``."""
    return environ.get("KUBECONFIG") or os.path.expanduser(os.path.join("~", ".kube", "config"))


def kubeconfig_exists(paths: str) -> bool:
    """Whether any of ``paths`` (joined by ``os.pathsep``, ``~`` expanded) exists."""
    return any(os.path.exists(os.path.expanduser(p)) for p in paths.split(os.pathsep) if p)


class ClientConfig:
    """Builds (once) and refreshes the ``ApiClient`` a source talks through.

    ``in_cluster=None`` picks in-cluster when ``KUBERNETES_SERVICE_HOST`` is set and the token
    file exists, else a kubeconfig. The token and CA paths are parameters so tests (and unusual
    mounts) can point elsewhere.
    """

    def __init__(
        self,
        *,
        api_client: Any = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool | None = None,
        token_file: str = SERVICE_TOKEN_FILE,
        ca_file: str = SERVICE_CA_FILE,
        environ: Mapping[str, str] | None = None,
        load_timeout: float = LOAD_TIMEOUT,
    ) -> None:
        if api_client is not None and not hasattr(api_client, "configuration"):
            raise invalid("api_client", api_client, "expected a kubernetes_asyncio ApiClient, or None")
        check_optional_str("kubeconfig", kubeconfig, "a path (several joined by os.pathsep)")
        check_optional_str("context", context, "a context name from the kubeconfig")
        if in_cluster is not None:
            check_bool("in_cluster", in_cluster)
        check_instance("token_file", token_file, str, "expected a path")
        check_instance("ca_file", ca_file, str, "expected a path")
        if environ is not None:
            check_instance("environ", environ, Mapping, "expected a mapping like os.environ, or None")
        if (
            isinstance(load_timeout, bool)
            or not isinstance(load_timeout, (int, float))
            or not load_timeout > 0
        ):
            raise ConfigurationError(f"load_timeout must be a number of seconds > 0, not {load_timeout!r}")
        if api_client is not None and (kubeconfig or context or in_cluster):
            raise ConfigurationError("pass either api_client or kubeconfig/context/in_cluster, not both")
        if in_cluster and (kubeconfig or context):
            raise ConfigurationError("in_cluster=True does not take a kubeconfig or context")
        if kubeconfig is not None and not all(os.path.exists(p) for p in kubeconfig.split(os.pathsep) if p):
            raise ConfigurationError(f"kubeconfig {kubeconfig!r} does not exist")
        self._client = api_client
        self.owns_client = api_client is None
        self._kubeconfig, self._context, self._in_cluster = kubeconfig, context, in_cluster
        self._token_file, self._ca_file = token_file, ca_file
        self._environ = environ if environ is not None else os.environ
        self._load_timeout = float(load_timeout)
        self.mode = "injected" if api_client is not None else self._pick_mode()

    def _pick_mode(self) -> str:
        if self._in_cluster is not None:
            return "in-cluster" if self._in_cluster else "kubeconfig"
        if self._kubeconfig or self._context:
            return "kubeconfig"
        in_pod = bool(self._environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(self._token_file)
        return "in-cluster" if in_pod else "kubeconfig"

    @property
    def identity(self) -> tuple[object, ...]:
        """What tells one set of credentials from another: sources share a watch only when equal."""
        # By mode, not by whether a client exists yet: client() builds one for every config, and
        # keying on that fresh object's id made every kubeconfig or in-cluster source unique.
        if self.mode == "injected":
            return ("injected", id(self._client))  # the running watch keeps the client alive
        if self.mode == "in-cluster":
            return ("in-cluster", self._token_file, self._ca_file)
        path = self._kubeconfig or default_kubeconfig(self._environ)
        return ("kubeconfig", os.path.abspath(os.path.expanduser(path)), self._context)

    def describe(self) -> str:
        """Where the credentials come from, for log and error messages."""
        if self.mode == "kubeconfig":
            ctx = f" (context {self._context})" if self._context else ""
            return f"kubeconfig {self._kubeconfig or default_kubeconfig(self._environ)}{ctx}"
        if self.mode == "in-cluster":
            return f"in-cluster service account ({self._token_file})"
        return "the injected ApiClient"

    @property
    def host(self) -> str:
        """The API server URL (after :meth:`client` has run)."""
        return str(self._client.configuration.host) if self._client is not None else ""

    async def client(self) -> Any:
        """The ``ApiClient``, built on first use; raises :class:`DiscoveryError` naming the source."""
        if self._client is None:
            from kubernetes_asyncio.client import ApiClient, Configuration

            configuration = Configuration()
            self._check_kubeconfig_exists()
            await self._bounded_load(configuration)
            if self._client is None:  # a concurrent caller may have built it while this one loaded
                self._client = ApiClient(configuration=configuration)
        return self._client

    def _check_kubeconfig_exists(self) -> None:
        """Say plainly that there is no configuration at all, before the Kubernetes client reads a
        missing file (it logs "Config not found" and then reports an invalid kube-config)."""
        if self.mode != "kubeconfig":
            return
        paths = self._kubeconfig or default_kubeconfig(self._environ)
        if kubeconfig_exists(paths):
            return
        origin = "from $KUBECONFIG" if self._kubeconfig is None and self._environ.get("KUBECONFIG") else ""
        if self._kubeconfig is None and not origin:
            origin = "the default, $KUBECONFIG is not set"
        if self._in_cluster is False:
            cluster = "in_cluster=False rules out the in-cluster configuration"
        elif not self._environ.get("KUBERNETES_SERVICE_HOST"):
            cluster = "no in-cluster environment either (KUBERNETES_SERVICE_HOST is not set)"
        else:
            cluster = f"no in-cluster environment either (no service-account token at {self._token_file})"
        raise DiscoveryError(
            f"no Kubernetes configuration: no kubeconfig at {paths}{f' ({origin})' if origin else ''}, "
            f"and {cluster}. To fix: set KUBECONFIG or pass kubeconfig= (and context= to pick a "
            "context), run inside a pod, or pass api_client=; for local development without a "
            'cluster, use source=StaticSource(["127.0.0.1:8080"])'
        )

    async def reload(self) -> bool:
        """Re-read the credentials (a rotated token) into the client; False if there is nothing to re-read.

        Bounded by ``load_timeout``: past it, :class:`DiscoveryUnavailable` and the client keeps
        its previous credentials (the loader sets them only once all are read).
        """
        if self._client is None or self.mode == "injected":
            return False  # an injected client refreshes through its own refresh_api_key_hook
        await self._bounded_load(self._client.configuration)
        return True

    async def _bounded_load(self, configuration: Any) -> None:
        # On timeout the load is cancelled, but the plugin process it started keeps running:
        # kubernetes_asyncio's ExecProvider does not kill it, and gives us no handle to.
        try:
            await asyncio.wait_for(self._load(configuration), self._load_timeout)
        except TimeoutError:
            error = DiscoveryUnavailable(
                f"loading Kubernetes credentials from {self.describe()} did not finish within "
                f"{self._load_timeout:g} s (an exec credential plugin that hangs?); retrying with backoff"
            )
        else:
            return
        raise error

    async def _load(self, configuration: Any) -> None:
        from kubernetes_asyncio import config

        try:
            if self.mode == "in-cluster":
                # The loader class, not load_incluster_config(): that one takes the file and
                # environ keywords only since kubernetes_asyncio 31; the class has taken them,
                # by these names, across the whole supported range (>= 30).
                from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader

                InClusterConfigLoader(
                    token_filename=self._token_file,
                    cert_filename=self._ca_file,
                    environ=dict(self._environ),
                ).load_and_set(client_configuration=configuration)
            else:
                await config.load_kube_config(
                    config_file=self._kubeconfig or default_kubeconfig(self._environ),
                    context=self._context,
                    client_configuration=configuration,
                    persist_config=False,  # never write back to the user's kubeconfig
                )
        except Exception as exc:  # ConfigException, OSError, YAML errors: all mean "no usable config"
            raise DiscoveryError(
                f"cannot load Kubernetes configuration from {self.describe()}: {exc}"
            ) from exc

    async def aclose(self) -> None:
        """Close the client if this config built it (an injected client belongs to its owner)."""
        if self.owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.close()
