"""What the installed aiohttp does with a connection closed before the response headers.

aiohttp 3.10 and later retry an idempotent request once after such a drop (RFC 9112 section
9.3.1.1); 3.9, which pyproject.toml still allows, does not. Tests that count drops use this, so
they hold on both (``make test`` and ``make test-min``).
"""

from __future__ import annotations

import aiohttp
from packaging.version import Version

RETRIES_AFTER_DROP = 1 if Version(aiohttp.__version__) >= Version("3.10") else 0
"""Extra attempts aiohttp (so kubernetes_asyncio) makes on its own for a GET dropped before headers."""

DROPS_TO_FAIL = 1 + RETRIES_AFTER_DROP
"""``Fault.drop_before_headers(count=...)`` that makes a GET fail for the caller."""
