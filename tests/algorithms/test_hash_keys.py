"""Affinity keys of ring hash and Maglev: every str has a defined key (UTF-8, surrogatepass), never a crash."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import mmh3
import pytest
from helpers_algorithms import eps

from kube_balance import create
from kube_balance.algorithms._bounded import encode_key, hash_key
from kube_balance.algorithms._ring_hash import RingHash

LONE_SURROGATE = json.loads('"\\udcff"')

CRAFTED_KEYS = textwrap.dedent(
    """
    import json
    from kube_balance import Endpoint, create

    keys = [json.loads('"\\\\udcff"'), json.loads('"user-\\\\ud800"'), "a\\udcff\\ud83d" + "é"]
    pool = [Endpoint(f"10.0.0.{i}", 8080) for i in range(1, 9)]
    for name, options in [
        ("ring_hash", {}),
        ("ring_hash", {"load_factor": 1.25}),
        ("maglev", {}),
        ("maglev", {"load_factor": 1.25}),
    ]:
        algo = create(name, **options)
        algo.update(pool)
        for key in keys:
            ep = algo.get(key)
            algo.put(ep)
            twin = algo.get(key.encode("utf-8", "surrogatepass"))
            algo.put(twin)
            assert ep is not None and ep == twin, (name, key)
    print("ok")
    """
)


def test_lone_surrogate_keys_do_not_crash_ring_hash_or_maglev() -> None:
    """In a child process (a segfault must not take pytest down): str keys with lone surrogates
    reach an endpoint, the same one as their surrogatepass UTF-8 bytes."""
    done = subprocess.run(
        [sys.executable, "-c", CRAFTED_KEYS], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize("key", ["user-1", "tenant/é", "日本語-ключ", "emoji-\U0001f600"])
def test_valid_str_keys_hash_as_before(key: str) -> None:
    """Valid str keys keep mmh3's own UTF-8 hash: no key moves to another endpoint."""
    assert hash_key(key) == mmh3.hash(key) == mmh3.hash(key.encode())
    assert hash_key(key.encode()) == mmh3.hash(key)


def test_lone_surrogate_key_is_its_surrogatepass_bytes() -> None:
    """The defined key of a lone surrogate is its 3-byte surrogatepass form."""
    assert encode_key(LONE_SURROGATE) == b"\xed\xb3\xbf"
    assert hash_key(b"\xed\xb3\xbf") == mmh3.hash(b"\xed\xb3\xbf")


def test_custom_hash_function_gets_surrogatepass_bytes() -> None:
    """A ring with its own hash_function is handed bytes for a lone-surrogate key, not an encode error."""
    seen: list[bytes] = []

    def fn(data: bytes) -> int:
        seen.append(data)
        return mmh3.hash(data) & 0xFFFFFFFF

    ring = RingHash(replicas=4, hash_function=fn)
    ring.update(eps(3))
    seen.clear()
    assert ring.get(LONE_SURROGATE) == ring.get(b"\xed\xb3\xbf")
    assert seen == [b"\xed\xb3\xbf", b"\xed\xb3\xbf"]


def test_maglev_and_ring_hash_take_non_ascii_keys_as_their_utf8_bytes() -> None:
    """str and bytes forms of a non-ASCII key pick the same endpoint."""
    for name in ("ring_hash", "maglev"):
        algo = create(name)
        algo.update(eps(20))
        for key in ("tenant/é", "ключ-7", "a\U0001f600"):
            assert algo.get(key) == algo.get(key.encode())
