"""The kube-balance exception tree.

Every error the library raises on purpose derives from :class:`KubeBalanceError`::

    KubeBalanceError
    ├── ConfigurationError (also ValueError)   bad service reference, option or algorithm parameter
    │   └── AffinityKeyRequired                 a hash algorithm's get() called without a key
    ├── DiscoveryError                          the endpoint source failed (API, auth, RBAC, DNS)
    │   ├── DiscoveryAuthError                  401 that re-reading credentials did not fix, or 403
    │   └── DiscoveryUnavailable                the source cannot be reached (retried with backoff)
    └── NoEndpointsAvailable                    no usable endpoint and no fallback

Integrations translate these at their boundary into the HTTP client's own tree (for example
``NoEndpointsAvailable`` surfaces from httpx as a subclass of ``httpx.ConnectError``), raised
``from`` the original so the cause is never lost.
"""

from __future__ import annotations


class KubeBalanceError(Exception):
    """Base class of every error kube-balance raises on purpose."""


class ConfigurationError(KubeBalanceError, ValueError):
    """A value given to kube-balance is invalid; the message names the input and the problem."""


class AffinityKeyRequired(ConfigurationError):
    """An affinity (hash) algorithm was asked for an endpoint without a key."""


class DiscoveryError(KubeBalanceError):
    """The endpoint source failed; the last good endpoint set keeps serving."""


class DiscoveryAuthError(DiscoveryError):
    """The API refused our credentials (401 after a re-read) or our permissions (403)."""


class DiscoveryUnavailable(DiscoveryError):
    """The endpoint source could not be reached or answered with a server error."""


class NoEndpointsAvailable(KubeBalanceError):
    """No usable endpoint for the Service and no fallback configured.

    The message names the Service and, when there was one, the last discovery error.
    """
