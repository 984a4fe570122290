"""HTTP client integrations, one public module each, each needing its extra.

- :mod:`kube_balance.integrations.httpx`: ``BalancedTransport`` (``pip install 'kube-balance[httpx]'``,
  ``[http2]`` for HTTP/2).

They share the transport-independent core in ``kube_balance._dispatch``: pick, retry on another
pod, put exactly once, per-endpoint pool lifecycle.
"""
