"""The user documentation stays true: runnable code blocks run, relative links resolve, and the
option tables of docs/configuration.md match the code's signatures.

**Runnable blocks.** Put ``<!-- runnable -->`` on the line right before a block's opening fence
(```` ```python ```` or ```` ```sh ````) in README.md or docs/*.md. The block is written to a file and
run in its own process (python: this interpreter; sh: ``bash -eu`` with this interpreter's bin
directory first on ``PATH``, so ``kube-balance`` is the installed command), for at most 60 s,
against a local cluster (``integrations/local_cluster.py``): the fake apiserver with the Service
``web.shop`` (named port ``http``) and three pods on 127.0.0.1, reached through ``KUBECONFIG``
(namespace ``shop``), exactly as a pod reaches the real API server. ``PORT`` holds a free port for
a block that listens. It must exit 0.

**Expected output.** A ```` ```text ```` block preceded by ``<!-- output -->`` right after a runnable
block holds lines that must appear in its output (stdout, then stderr), in order; ``...`` in a
line matches any text.

**Links.** Every relative link ``[text](path#anchor)`` outside code in README.md, docs/*.md,
integrations/README.md and CHANGELOG.md names an existing file; an anchor into a Markdown file
names one of its headings (GitHub's slugs).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import shutil
import socket
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED = [*DOCS, ROOT / "integrations" / "README.md", ROOT / "CHANGELOG.md"]
RUN_TIMEOUT = 60.0

sys.path.insert(0, str(ROOT / "integrations"))
from local_cluster import local_cluster  # noqa: E402


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    expected: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


FENCE = re.compile(r"^(`{3,})(\S*)\s*$")


def fenced(lines: list[str], start: int) -> tuple[str, str, int]:
    """The block whose opening fence is ``lines[start]``: (lang, code, index after its closing fence)."""
    match = FENCE.match(lines[start])
    if match is None:
        raise ValueError(f"line {start + 1}: expected an opening fence, got {lines[start]!r}")
    ticks, lang = match.groups()
    for end in range(start + 1, len(lines)):
        if lines[end].strip() == ticks:
            return lang, "\n".join(lines[start + 1 : end]) + "\n", end + 1
    raise ValueError(f"line {start + 1}: the block is never closed")


def runnable_blocks(path: Path, text: str | None = None) -> list[Block]:
    """The blocks of a Markdown file marked ``<!-- runnable -->``, with their expected output."""
    lines = (path.read_text() if text is None else text).splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != "<!-- runnable -->":
            continue
        if i + 1 >= len(lines) or not FENCE.match(lines[i + 1]):
            raise ValueError(f"{path}:{i + 1}: <!-- runnable --> must be right before a fence")
        lang, code, after = fenced(lines, i + 1)
        if lang not in ("python", "sh"):
            raise ValueError(f"{path}:{i + 2}: a runnable block is python or sh, not {lang!r}")
        expected: tuple[str, ...] = ()
        rest = [n for n in range(after, len(lines)) if lines[n].strip()]
        if rest and lines[rest[0]].strip() == "<!-- output -->":
            _, out, _ = fenced(lines, rest[0] + 1)
            expected = tuple(out.splitlines())
        blocks.append(Block(path, i + 2, lang, code, expected))
    return blocks


def output_matches(expected: tuple[str, ...], output: str) -> str | None:
    """None when every expected line appears in ``output`` in order (``...`` matches anything);
    else the first line not found."""
    lines = output.splitlines()
    at = 0
    for want in expected:
        pattern = re.compile(".*".join(re.escape(part) for part in want.split("...")))
        while at < len(lines) and not pattern.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return want
        at += 1
    return None


ALL_BLOCKS = [block for path in DOCS for block in runnable_blocks(path)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.id for b in ALL_BLOCKS])
async def test_runnable_block_runs(block: Block, tmp_path: Path) -> None:
    """The block runs to exit 0 against the local cluster, and prints its expected output."""
    if block.lang == "sh" and "curl " in block.code and shutil.which("curl") is None:
        pytest.skip("the block calls curl, which is not installed here")
    script = tmp_path / ("block.py" if block.lang == "python" else "block.sh")
    script.write_text(block.code)
    argv = [sys.executable, str(script)] if block.lang == "python" else ["bash", "-eu", str(script)]
    async with AsyncExitStack() as stack, asyncio.timeout(RUN_TIMEOUT + 30):
        cluster = await local_cluster(stack, pods=3)
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "PORT": str(free_port()),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT / "integrations"),
        }
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
        except TimeoutError:
            os.killpg(proc.pid, 9)
            await proc.wait()
            pytest.fail(f"{block.id}: still running after {RUN_TIMEOUT} s")
    output = out.decode() + err.decode()
    assert proc.returncode == 0, f"{block.id} exited {proc.returncode}:\n{output}"
    missing = output_matches(block.expected, output)
    assert missing is None, f"{block.id}: expected output line {missing!r} not found in:\n{output}"


def test_quick_starts_are_runnable() -> None:
    """The README's quick starts (httpx, aiohttp, FastAPI, the proxy) are all marked runnable."""
    readme = [b.code for b in ALL_BLOCKS if b.path.name == "README.md"]
    for needle in ("BalancedTransport(", "BalancedConnector(", "BalancedClients(", "kube-balance proxy"):
        assert any(needle in code for code in readme), needle


def test_runnable_marker_parsing() -> None:
    """The marker finds the block after it (and its output), and rejects a misplaced marker."""
    text = "x\n<!-- runnable -->\n```python\nprint(1)\n```\n\n<!-- output -->\n```text\n1\n```\n```python\nno\n```\n"
    (block,) = runnable_blocks(ROOT / "x.md", text)
    assert (block.line, block.lang, block.code, block.expected) == (3, "python", "print(1)\n", ("1",))
    with pytest.raises(ValueError, match="right before a fence"):
        runnable_blocks(ROOT / "x.md", "<!-- runnable -->\n\n```python\nprint(1)\n```\n")
    with pytest.raises(ValueError, match="python or sh"):
        runnable_blocks(ROOT / "x.md", "<!-- runnable -->\n```yaml\na: 1\n```\n")


def test_output_matching() -> None:
    """Expected lines match in order, `...` matching any text; a missing line is named."""
    assert output_matches(("a ... c", "d"), "x\na b c\nd\n") is None
    assert output_matches(("d", "a ... c"), "a b c\nd\n") == "a ... c"  # order matters
    assert output_matches(("a c",), "a b c\n") == "a c"


# Links ----------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def broken_links(path: Path) -> list[str]:
    """The relative links of ``path`` (outside code blocks) whose file or anchor does not exist."""
    broken = []
    for target in LINK.findall(prose(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    return broken


def prose(text: str) -> str:
    """``text`` without fenced code blocks (inline code stays: a link's text may hold a code span)."""
    out, fence = [], None
    for line in text.splitlines():
        match = FENCE.match(line.strip())
        if fence is None and match:
            fence = match.group(1)
        elif fence is not None and line.strip() == fence:
            fence = None
        elif fence is None:
            out.append(line)
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (a repeated heading gets -1, -2...)."""
    seen: dict[str, int] = {}
    result = set()
    for line in prose(path.read_text()).splitlines():
        if match := re.match(r"#{1,6}\s+(.*)", line):
            base = slug(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            result.add(base if n == 0 else f"{base}-{n}")
    return result


@pytest.mark.parametrize("path", LINKED, ids=[str(p.relative_to(ROOT)) for p in LINKED])
def test_relative_links_resolve(path: Path) -> None:
    """Every relative link of the file names an existing file, and an existing heading."""
    assert broken_links(path) == []


def test_link_checker_finds_broken_links(tmp_path: Path) -> None:
    """The checker reports a missing file and a missing anchor, and skips URLs and code blocks."""
    (tmp_path / "a.md").write_text("# A title\n## `get()` and put\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "[ok](a.md) [ok](a.md#a-title) [ok](a.md#get-and-put) [ok](#here) [web](https://x.y/z)\n"
        "## Here\n[bad](b.md) [bad](a.md#nope)\n```\n[in code](nowhere.md)\n```\n"
    )
    assert broken_links(doc) == ["b.md: no such file", "a.md#nope: no heading #nope in a.md"]
    assert slug("Zone-aware routing: `ZoneAware`") == "zone-aware-routing-zoneaware"


# Option tables --------------------------------------------------------------------------------


def documented_callables() -> dict[str, Callable[..., Any]]:
    """The headings of docs/configuration.md's option tables, and what each documents."""
    import kube_balance as kb
    from kube_balance.algorithms import KEYLESS, create
    from kube_balance.discovery import DnsSource, KubernetesSource, StaticSource
    from kube_balance.integrations.aiohttp import BalancedConnector, BalancedMiddleware
    from kube_balance.integrations.fastapi import BalancedClients
    from kube_balance.integrations.httpx import BalancedTransport

    found: dict[str, Callable[..., Any]] = {
        "LoadBalancer": kb.LoadBalancer,
        "BalancedTransport": BalancedTransport,
        "BalancedConnector": BalancedConnector,
        "BalancedMiddleware": BalancedMiddleware,
        "BalancedTransport.cluster": BalancedTransport.cluster,
        "BalancedConnector.cluster": BalancedConnector.cluster,
        "HedgePolicy": kb.HedgePolicy,
        "Subset": kb.Subset,
        "BalancedClients": BalancedClients,
        "BalancedClients.httpx": BalancedClients.httpx,
        "BalancedClients.httpx_cluster": BalancedClients.httpx_cluster,
        "RetryPolicy": kb.RetryPolicy,
        "RetryBudget": kb.RetryBudget,
        "EndpointPolicy.default": kb.EndpointPolicy.default,
        "OutlierDetector": kb.OutlierDetector,
        "SuccessRate": kb.SuccessRate,
        "PanicThreshold": kb.PanicThreshold,
        "OverloadPenalty": kb.OverloadPenalty,
        "SlowStart": kb.SlowStart,
        "ZoneAware": kb.ZoneAware,
        "AffinityKey": kb.AffinityKey,
        "KubernetesSource": KubernetesSource,
        "DnsSource": DnsSource,
        "StaticSource": StaticSource,
    }
    for name in (*KEYLESS, "ring_hash", "maglev"):  # the built-ins (tests may register others)
        found[name] = type(create(name))
    return found


def option_tables(text: str) -> dict[str, dict[str, str]]:
    """``### `Name` ...`` headings followed by ``| `option` | default | ... |`` rows."""
    tables: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if heading := re.match(r"###\s+`([\w.]+)", line):
            current = tables.setdefault(heading.group(1), {})
        elif line.startswith("#"):
            current = None
        elif current is not None and (row := re.match(r"\|\s*`(\*{0,2}\w+)`\s*\|\s*([^|]*)\|", line)):
            current[row.group(1)] = row.group(2).strip()
    return tables


def table_problems(func: Callable[..., Any], table: dict[str, str]) -> list[str]:
    """How an option table disagrees with ``func``'s signature: a parameter missing or unknown, a
    required one not written "required", a literal default (the cell's first code span) not equal."""
    params = {
        p.name: p
        for p in inspect.signature(func).parameters.values()
        if p.name != "self" and p.kind is not p.VAR_POSITIONAL
    }
    documented = {k.lstrip("*"): v for k, v in table.items()}
    problems = [f"{name}: not documented" for name in params.keys() - documented.keys()]
    problems += [f"{name}: no such parameter" for name in documented.keys() - params.keys()]
    for option, cell in documented.items():
        param = params.get(option)
        if param is None or param.kind is param.VAR_KEYWORD:
            continue
        if param.default is param.empty:
            if not cell.startswith("required"):
                problems.append(f"{option}: required, documented as {cell!r}")
            continue
        literal = re.match(r"`([^`]*)`", cell)
        try:
            value = ast.literal_eval(literal.group(1)) if literal else None
        except (ValueError, SyntaxError):
            continue  # an expression, such as httpx.Limits(...): described, not compared
        if literal and value != param.default:
            problems.append(f"{option}: documented {value!r}, the code says {param.default!r}")
    return sorted(problems)


def test_configuration_tables_match_the_signatures() -> None:
    """Every public constructor has a table; each lists every parameter exactly, and a default
    written as a literal is the signature's default."""
    tables = option_tables((ROOT / "docs" / "configuration.md").read_text())
    callables = documented_callables()
    assert set(tables) == set(callables)
    problems = {name: table_problems(func, tables[name]) for name, func in callables.items()}
    assert {name: p for name, p in problems.items() if p} == {}


def test_table_checker_finds_mismatches() -> None:
    """The table checker reports an unknown, an undocumented, a required and a wrong default."""

    def example(service: str, *, timeout: float = 5.0, mode: str = "a", **extra: Any) -> None: ...

    text = (
        "### `example`\n| option | default |\n|---|---|\n| `service` | `x` |\n"
        "| `timeout` | `3.0` |\n| `bogus` | `1` |\n| `**extra` | |\n## next\n| `ignored` | `1` |\n"
    )
    (table,) = option_tables(text).values()
    assert table_problems(example, table) == [
        "bogus: no such parameter",
        "mode: not documented",
        "service: required, documented as '`x`'",
        "timeout: documented 3.0, the code says 5.0",
    ]


def test_readme_rbac_rules_are_the_manifests() -> None:
    """The Role rules shown in the README are integrations/kubernetes/rbac.yaml's Role, exactly."""
    import yaml

    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("## On the cluster: RBAC")
    fence = next(i for i in range(start, len(lines)) if lines[i] == "```yaml")
    _, shown, _ = fenced(lines, fence)
    manifest = yaml.safe_load_all((ROOT / "integrations" / "kubernetes" / "rbac.yaml").read_text())
    (role,) = (doc for doc in manifest if doc["kind"] == "Role")
    assert yaml.safe_load(shown) == {"rules": role["rules"]}
