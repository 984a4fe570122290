"""``ServiceRef``: which Kubernetes Service, in which namespace, on which port."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import ConfigurationError

DEFAULT_CLUSTER_DOMAIN = "cluster.local"
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

_DNS1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?\Z")  # Service names
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")  # namespaces, domain labels
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?\Z")  # IANA_SVC_NAME, at most 15
_SCHEMES = ("http", "https")


def _default_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace for ``name:port``: in-cluster namespace file, kubeconfig context, ``default``.

    With an explicit ``kubeconfig`` (path, or paths joined by ``os.pathsep``: the first is read)
    or ``context``, that kubeconfig's context decides and the in-cluster file is not read: the
    client was pointed at that configuration."""
    if kubeconfig is None and context is None:
        try:
            with open(NAMESPACE_FILE, encoding="utf-8") as f:
                ns = f.read().strip()
            if ns:
                return ns
        except OSError:
            pass
    try:
        paths = kubeconfig or os.environ.get("KUBECONFIG", "")
        path = os.path.expanduser(paths.split(os.pathsep)[0] or "~/.kube/config")
        if not os.path.exists(path):
            return "default"
        context_ns = _context_namespace(path, context)
        if context_ns:
            return context_ns
    except Exception:  # an unreadable kubeconfig: fall through to "default"
        pass
    return "default"


def _context_namespace(path: str, context: str | None = None) -> str | None:
    """The namespace of the kubeconfig's ``context`` (default: its current context), read with
    PyYAML alone: building a transport must not load the Kubernetes client (and aiohttp with it)
    before its first request."""
    import yaml

    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    current = context or (config.get("current-context") if isinstance(config, dict) else None)
    for entry in (config or {}).get("contexts") or ():
        if isinstance(entry, dict) and entry.get("name") == current:
            ns = (entry.get("context") or {}).get("namespace")
            return ns if isinstance(ns, str) and ns else None
    return None


@dataclass(frozen=True, slots=True)
class ServiceRef:
    """A Service reference such as ``svc.ns:http``; build it with :meth:`parse`.

    ``port`` is a port name (``"http"``), a number, or ``None``: the Service's only port. A name
    is resolved against the EndpointSlice ports (and the Service object for the DNS fallback);
    ``None`` takes the single port the slices carry (and the Service's single port for the
    fallback), and a Service with several ports is a discovery error listing them.
    """

    name: str
    namespace: str
    port: str | int | None
    scheme: str | None = None
    cluster_domain: str | None = None

    @classmethod
    def parse(cls, text: str, *, default_namespace: str | None = None) -> ServiceRef:
        """Parse ``[http[s]://]name[.ns[.svc[.cluster.domain[.]]]][:port]``.

        Without a namespace, it is taken from ``default_namespace``, else the in-cluster
        namespace file, else the kubeconfig context, else ``default``. Without a port, a scheme
        means its port (80 for http, 443 for https); with neither, the reference means the
        Service's only port. A trailing dot (an absolute DNS name) is allowed on the full
        ``name.ns.svc.<cluster domain>.`` form. Raises :class:`ConfigurationError` naming the
        input and the problem.
        """
        if not isinstance(text, str):
            raise ConfigurationError(f"service reference must be a str, not {type(text).__name__}: {text!r}")

        def bad(problem: str) -> ConfigurationError:
            return ConfigurationError(
                f"invalid service reference {text!r}: {problem} "
                "(expected [http[s]://]name.namespace[:port], e.g. 'web.shop:http' or 'web.shop')"
            )

        rest, scheme = text, None
        if "://" in rest:
            scheme, _, rest = rest.partition("://")
            scheme = scheme.lower()
            if scheme not in _SCHEMES:
                raise bad(f"scheme {scheme!r} is not http or https")
        rest = rest.rstrip("/")
        if "/" in rest or "?" in rest or "#" in rest or "@" in rest:
            raise bad("a path, query or user part is not allowed")
        _refuse_ip_address(rest, bad)
        host, sep, port_text = rest.partition(":")
        if ":" in port_text:
            raise bad(
                f"a second ':' after the port {port_text.partition(':')[0]!r} (one ':' separates name and port)"
            )
        port: str | int | None = None
        if sep:
            port = cls._parse_port(port_text, bad)
        elif scheme is not None:
            port = 443 if scheme == "https" else 80
        labels = host.split(".")
        absolute = len(labels) > 1 and labels[-1] == ""
        if absolute:
            labels.pop()
            if len(labels) < 4:
                raise bad(
                    "a trailing dot (an absolute DNS name) needs the full form name.namespace.svc.<cluster domain>."
                )
        if "" in labels:
            raise bad(
                "an empty label (two dots in a row, or a leading or trailing dot)"
                if host
                else "the name is missing"
            )
        name, namespace, domain = labels[0], None, None
        if len(labels) >= 2:
            namespace = labels[1]
        if len(labels) >= 3:
            if labels[2] != "svc":
                raise bad(f"expected 'svc' after the namespace, found {labels[2]!r}")
            if len(labels) > 3:
                domain = ".".join(labels[3:])
                if not all(_DNS1123_LABEL.match(lab) for lab in labels[3:]):
                    raise bad(f"cluster domain {domain!r} is not a valid DNS name")
        if not _DNS1035.match(name):
            raise bad(f"service name {name!r} is not a DNS-1035 label (lowercase letters, digits, '-')")
        if namespace is None:
            namespace = default_namespace or _default_namespace()
        if not _DNS1123_LABEL.match(namespace):
            raise bad(f"namespace {namespace!r} is not a DNS-1123 label")
        if domain == DEFAULT_CLUSTER_DOMAIN:
            domain = None
        return cls(name, namespace, port, scheme, domain)

    @staticmethod
    def _parse_port(text: str, bad: Callable[[str], ConfigurationError]) -> str | int:
        if text.isdecimal() and text.isascii():
            number = int(text)
            if not 0 < number < 65536:
                raise bad(f"port {number} is not in 1..65535")
            return number
        if not _PORT_NAME.match(text) or "--" in text or not any(c.isalpha() for c in text):
            raise bad(f"port {text!r} is neither a number nor a port name (IANA_SVC_NAME, <= 15 chars)")
        return text

    @property
    def host(self) -> str:
        """The Service's cluster DNS name, ``name.ns.svc.cluster.local``."""
        return f"{self.name}.{self.namespace}.svc.{self.cluster_domain or DEFAULT_CLUSTER_DOMAIN}"

    @property
    def hosts(self) -> frozenset[str]:
        """Every host name that names this Service in a request (for matching requests).

        ``name.ns``, ``name.ns.svc`` and ``name.ns.svc.<cluster domain>``, each also with a
        trailing dot; the bare ``name`` (and ``name.``) only when ``ns`` is the client's own
        namespace (see :func:`client_namespace`), because a pod's DNS search path resolves a
        bare name in the pod's namespace: from another namespace ``web`` is a different Service.
        """
        short = f"{self.name}.{self.namespace}"
        names = [short, f"{short}.svc", self.host]
        if self.namespace == client_namespace():
            names.append(self.name)
        return frozenset(names + [f"{n}." for n in names])

    def __str__(self) -> str:
        host = f"{self.name}.{self.namespace}"
        if self.cluster_domain:
            host = f"{host}.svc.{self.cluster_domain}"
        prefix = f"{self.scheme}://" if self.scheme else ""
        return f"{prefix}{host}" if self.port is None else f"{prefix}{host}:{self.port}"


def client_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace this client runs in, as a bare Service name is resolved: the in-cluster
    namespace file, else the kubeconfig context's namespace, else ``default`` (the namespace a
    ``name:port`` reference gets). With ``kubeconfig`` or ``context`` (a client given its
    configuration), that kubeconfig's context."""
    return _default_namespace(kubeconfig, context)


def _refuse_ip_address(text: str, bad: Callable[[str], ConfigurationError]) -> None:
    """An IP address (with or without a port) is not a Service: say so, and what to use instead."""
    host = text
    if text.startswith("["):
        host = text[1:].partition("]")[0]
    elif text.count(":") > 1:
        host = text  # an IPv6 address without brackets
    else:
        host = text.partition(":")[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return
    raise bad(
        f"{host} is an IP address, not a Service; to send to fixed addresses use "
        "source=StaticSource(['ip:port', ...]) (or fallback='ip:port'), and name the Service here"
    )
