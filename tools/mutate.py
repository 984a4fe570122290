"""Mutation testing for kube-balance: do the tests notice when the code changes?

Usage (from the repository root; ``make mutation MODULES="..."`` runs the same)::

    python tools/mutate.py src/kube_balance/_retry.py src/kube_balance/_pools.py
    python tools/mutate.py --jobs 2 --list src/kube_balance/_policy.py     # the mutants only

For each named module, every mutant (one small change) is applied on its own to a copy of the
tree, and the module's tests (``MODULE_TESTS`` below, or ``--tests``) run against the copy with
``pytest -x``. A mutant is *killed* when the tests fail (or time out), and *survives* when they
pass. The mutations:

- comparisons: ``<`` <-> ``<=``, ``>`` <-> ``>=``, ``==`` <-> ``!=``, ``in`` <-> ``not in``,
  ``is`` <-> ``is not``;
- numbers +1 and -1, ``True`` <-> ``False``;
- ``and`` <-> ``or``;
- the condition of ``if``, ``while`` and ``x if c else y`` negated;
- a statement deleted (replaced by ``pass``);
- ``return x`` replaced by ``return None``.

The score is killed / (mutants - accepted equivalents). Accepted equivalents, mutants that change
nothing observable, are listed in ``tools/mutation-equivalents.txt``, one per line with the reason
(matched by file, mutation and source line, not line number, so they survive edits elsewhere).
Lines marked ``# pragma: no cover`` or ``# pragma: no mutate`` are not mutated.
A module in ``MODULE_SCOPES`` is mutated only in the functions, classes and names listed there.

Copies, not the working tree: a mutant never touches ``src/``, so an interrupted run leaves
nothing behind, and each worker has its own copy (``--jobs`` workers, default: the CPU count).
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = Path(__file__).resolve().parent / "mutation-equivalents.txt"

# The smallest test subset that covers each module (the whole suite per mutant would take hours),
# fast files first: with -x most mutants are killed before the slow property tests run.
MODULE_TESTS: dict[str, list[str]] = {
    "src/kube_balance/_policy.py": [
        "tests/test_policy.py",
        "tests/test_policy_filters.py",
        "tests/health/test_slow_start.py",
        "tests/health/test_panic.py",
        "tests/health/test_outlier.py",
        "tests/health/test_penalty.py",
    ],
    "src/kube_balance/_retry.py": [
        "tests/test_retry.py",
        "tests/test_validation_boundaries.py",
        "tests/test_balancer_dispatch.py",
    ],
    "src/kube_balance/_service.py": ["tests/test_validation_boundaries.py", "tests/test_service.py"],
    "src/kube_balance/_outcome.py": [
        "tests/test_balancer_outcomes.py",
        "tests/integrations/test_outcomes.py",
    ],
    "src/kube_balance/_outlier.py": [
        "tests/health/test_outlier.py",
        "tests/health/test_outlier_boundaries.py",
        "tests/health/test_quiet.py",  # an OK outcome reaches the step only while it has work
    ],
    "src/kube_balance/_health.py": [  # the steps' shared plumbing: every step's tests use it
        "tests/health/test_health_plumbing.py",
        "tests/health/test_outlier.py",
        "tests/health/test_penalty.py",
        "tests/health/test_slow_start.py",
        "tests/health/test_panic.py",
        "tests/health/test_quiet.py",
        "tests/test_policy.py",
    ],
    "src/kube_balance/_penalty.py": [
        "tests/health/test_penalty.py",
        "tests/health/test_quiet.py",  # a penalty wakes the step, its end quiets it again
    ],
    "src/kube_balance/_balancer.py": [  # only the outcome seam: MODULE_SCOPES
        "tests/test_balancer_outcomes.py",
        "tests/test_balancer.py",
        "tests/test_balancer_lifecycle.py",
        "tests/integrations/test_outcomes.py",
        "tests/health/test_quiet.py",  # quiet observers (add_observer(quiet=), set_quiet)
    ],
    "src/kube_balance/_pools.py": [
        "tests/test_pools.py",
        "tests/test_balancer_dispatch.py",
        "tests/integrations/test_outcomes.py",
    ],
    "src/kube_balance/_dispatch.py": [
        "tests/test_balancer_dispatch.py",
        "tests/test_pools.py",
        "tests/test_hedge.py",  # the hedged path (send_hedged, taken, the latency observer)
        "tests/integrations/test_httpx_hedging.py",
    ],
    # The connector's release path (put() once per pick): run it with --line for those lines.
    "src/kube_balance/integrations/aiohttp.py": [
        "tests/integrations/test_aiohttp_options.py",  # check_options(), _routes(): fast, first
        "tests/integrations/test_aiohttp_details.py",  # classification, the key cache bound, close
        "tests/integrations/test_aiohttp_surface.py",  # repr, the hedge copy, the adapter, __init__
        "tests/integrations/test_aiohttp_release.py",
        "tests/integrations/test_aiohttp_attempt_state.py",  # connect(): a hedge's pick, a retry's slot
        "tests/integrations/test_outcomes.py",
        "tests/integrations/test_aiohttp_connector.py",
        "tests/integrations/test_aiohttp_middleware.py",
        "tests/integrations/test_aiohttp_hedging.py",  # a hedged attempt's waited time
        "tests/integrations/test_cluster_aiohttp.py",  # connect() resolving a cluster table's hosts
    ],
    "src/kube_balance/_subset.py": [
        "tests/test_subset.py",
        "tests/integrations/test_subset_pods.py",
    ],
    "src/kube_balance/_hedge.py": [
        "tests/test_hedge.py",
        "tests/integrations/test_httpx_hedging.py",
        "tests/integrations/test_aiohttp_hedging.py",
    ],
    "src/kube_balance/_cluster_options.py": ["tests/test_cluster_hosts.py", "tests/test_cluster_options.py"],
    "src/kube_balance/integrations/_httpcore_orphans.py": ["tests/integrations/test_httpx_pool_orphans.py"],
    "src/kube_balance/algorithms/_least_request.py": [
        "tests/algorithms/test_least_request.py",
        "tests/algorithms/test_least_request_weights.py",
    ],
    "src/kube_balance/algorithms/_bounded.py": [
        "tests/algorithms/test_bounded_walk.py",
        "tests/algorithms/test_ring_hash.py",
        # Maglev's own bounded-load test; its table-building tests take seconds and never reach here.
        "tests/algorithms/test_maglev.py::test_bounded_loads_walk_along_the_table",
        # Removed endpoints passed over (a walk with limit -1), and hash_key's lone surrogates.
        "tests/algorithms/test_maglev_sliced.py::test_removed_endpoint_gets_no_traffic_while_the_new_table_builds",
        "tests/algorithms/test_hash_keys.py",
    ],
    "src/kube_balance/algorithms/_peak_ewma.py": [
        "tests/algorithms/test_peak_ewma_wait.py",
        "tests/algorithms/test_peak_ewma_estimate.py",
        "tests/algorithms/test_peak_ewma.py",
        "tests/health/test_penalty.py",  # the 429 penalty steering peak_ewma
    ],
    "src/kube_balance/algorithms/_ring_hash.py": [
        "tests/algorithms/test_ring_hash.py",
        "tests/algorithms/test_bounded_walk.py",
    ],
    "src/kube_balance/algorithms/_maglev.py": [
        "tests/algorithms/test_maglev.py",
        "tests/algorithms/test_bounded_walk.py",
    ],
    "src/kube_balance/discovery/kubernetes/_merge.py": [
        "tests/discovery/kubernetes/test_slice_merge.py",
        "tests/discovery/kubernetes/test_slice_merge_gaps.py",
        "tests/test_validation_boundaries.py",  # normalize_family
        "tests/discovery/kubernetes/test_slice_merge_props.py",
    ],
}
# The dispatcher's attempts, budget and errors are pinned by a fast file of their own, run first.
MODULE_TESTS["src/kube_balance/_dispatch.py"].insert(0, "tests/test_dispatch_attempts.py")

# Modules mutated only in part (one seam of a larger module, the rest tested elsewhere): the named
# top-level functions and classes, ``Class.method``s and module-level names.
MODULE_SCOPES: dict[str, list[str]] = {
    "src/kube_balance/_balancer.py": [  # the outcome seam
        "_OK",
        "_FAILED",
        "Counters",
        "LoadBalancer.get",
        "LoadBalancer.put",
        "LoadBalancer.unget",
        "LoadBalancer.add_observer",
        "LoadBalancer.set_quiet",
        "LoadBalancer.status",
        # started, read on every request's path and kept current at each change of the run
        "LoadBalancer.start",
        "LoadBalancer._task_done",
        "LoadBalancer._update_started",
        "LoadBalancer.aclose",
        "LoadBalancer.ensure_started",
        "LoadBalancer.wait_ready",  # a timed-out wait ends the startup wait
    ],
}

_COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_OP_TEXT = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}
_SKIP_MARKS = ("pragma: no cover", "pragma: no mutate")
# Stop at the first failure; load only the plugins the tests use (autoloading every installed
# plugin triples pytest's start-up, which dominates a mutant's run).
_PYTEST = [
    "-x",
    "-q",
    "-o",
    "addopts=",
    "-p",
    "no:cacheprovider",
    "-p",
    "pytest_asyncio.plugin",
    "-p",
    "pytest_timeout",
    "-p",
    "_hypothesis_pytestplugin",
]


@dataclasses.dataclass(frozen=True)
class Mutant:
    path: str  # relative to the repository root
    line: int
    text: str  # the source line, stripped (what equivalents match on)
    what: str  # the mutation, e.g. "`<` -> `<=`"
    start: int  # byte offsets of the replaced span in the file
    end: int
    new: str

    def label(self) -> str:
        return f"{self.path}:{self.line}: {self.what}  [{self.text}]"

    def ident(self) -> tuple[str, str, str]:
        return (self.path, self.what, self.text)


class _Finder(ast.NodeVisitor):
    """Collects (node, replacement text, description) for every mutation site of a module."""

    def __init__(self, source: bytes) -> None:
        self.lines = source.splitlines(keepends=True)
        self.offsets = [0]
        for line in self.lines:
            self.offsets.append(self.offsets[-1] + len(line))
        self.sites: list[tuple[ast.AST, str, str]] = []

    # -- traversal: skip what mutating cannot change, or cannot change safely ----------------
    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        pass  # f-string innards: node positions are unreliable before Python 3.12

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for deco in node.decorator_list:
            self.visit(deco)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self._body(node.body)  # annotations (inert: postponed) are skipped

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._body(node.body)

    def visit_Module(self, node: ast.Module) -> None:
        self._body(node.body)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    @staticmethod
    def _inert(stmt: ast.stmt) -> bool:
        """Declarations whose deletion no test can see: ``__all__``, ``__slots__``, bare annotations."""
        if isinstance(stmt, ast.AnnAssign):
            return stmt.value is None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            return stmt.targets[0].id in ("__all__", "__slots__")
        return False

    def _body(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue  # a docstring (or an attribute's docstring): deleting it changes nothing
            if self._inert(stmt):
                continue
            self._statement(stmt)

    def _statement(self, stmt: ast.stmt) -> None:
        if isinstance(
            stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        ):
            self.visit(stmt)
            return
        if not isinstance(stmt, ast.Pass):
            self.sites.append((stmt, "pass", "delete statement"))
        returns_none = isinstance(stmt, ast.Return) and (
            stmt.value is None or (isinstance(stmt.value, ast.Constant) and stmt.value.value is None)
        )
        if isinstance(stmt, ast.Return) and not returns_none:
            self.sites.append((stmt, "return None", "`return ...` -> `return None`"))
        if isinstance(stmt, (ast.If, ast.While)):
            self._negate(stmt.test, f"negate `{type(stmt).__name__.lower()}` condition")
        # Everything below the statement: expressions, and nested bodies as statements.
        for field_name, value in ast.iter_fields(stmt):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                self._body(value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item)
            elif isinstance(value, ast.AST) and field_name != "annotation":
                self.visit(value)

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.excepthandler):
            if node.type is not None:
                self.visit(node.type)
            self._body(node.body)
            return
        super().generic_visit(node)

    # -- expression sites --------------------------------------------------------------------
    def _negate(self, test: ast.expr, what: str) -> None:
        self.sites.append((test, f"not ({self.segment(test)})", what))

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self._negate(node.test, "negate `x if c else y` condition")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        for i, op in enumerate(node.ops):
            swap = _COMPARE_SWAPS.get(type(op))
            if swap is None:
                continue
            mutated = copy.deepcopy(node)
            mutated.ops[i] = swap()
            self.sites.append(
                (node, f"({ast.unparse(mutated)})", f"`{_OP_TEXT[type(op)]}` -> `{_OP_TEXT[swap]}`")
            )
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        mutated = copy.deepcopy(node)
        mutated.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        self.sites.append((node, f"({ast.unparse(mutated)})", f"`{old}` -> `{new}`"))
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            self.sites.append((node, repr(not value), f"`{value}` -> `{not value}`"))
        elif isinstance(value, (int, float)) and not isinstance(value, complex):
            for delta in (1, -1):
                new = value + delta
                self.sites.append((node, f"({new!r})", f"`{value!r}` -> `{new!r}`"))

    # -- positions ---------------------------------------------------------------------------
    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offsets[node.lineno - 1] + node.col_offset  # type: ignore[attr-defined]
        end = self.offsets[node.end_lineno - 1] + node.end_col_offset  # type: ignore[attr-defined]
        return start, end

    def segment(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return b"".join(self.lines)[start:end].decode()


def find_mutants(path: str) -> list[Mutant]:
    """Every mutant of the module at ``path`` (relative to the root) that still compiles."""
    source = (ROOT / path).read_bytes()
    finder = _Finder(source)
    finder.visit(ast.parse(source))
    text_lines = source.decode().splitlines()
    mutants: list[Mutant] = []
    seen: dict[tuple[str, str, str], int] = {}
    for node, new, what in finder.sites:
        line = node.lineno  # type: ignore[attr-defined]
        if any(mark in text_lines[line - 1] for mark in _SKIP_MARKS):
            continue
        start, end = finder.span(node)
        mutated = source[:start] + new.encode() + source[end:]
        try:
            compile(mutated, path, "exec")
        except SyntaxError:
            continue
        text = text_lines[line - 1].strip()
        key = (path, what, text)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:  # the same change on an identical line: number the later ones
            what = f"{what} #{seen[key]}"
        mutants.append(Mutant(path, line, text, what, start, end, new))
    mutants.sort(key=lambda m: (m.line, m.start))
    return mutants


def scope_lines(path: str, names: list[str]) -> set[int]:
    """The lines of ``path`` that the ``names`` of a ``MODULE_SCOPES`` entry span."""
    tree = ast.parse((ROOT / path).read_bytes())
    lines: set[int] = set()
    matched: set[str] = set()

    def add(node: ast.AST, name: str) -> None:
        lines.update(range(node.lineno, node.end_lineno + 1))  # type: ignore[attr-defined]
        matched.add(name)

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name in names:
                add(node, node.name)
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    qualified = f"{node.name}.{getattr(item, 'name', '')}"
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and qualified in names:
                        add(item, qualified)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for name in {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)} & set(names):
                add(node, name)
    if set(names) - matched:
        sys.exit(f"{path}: MODULE_SCOPES names nothing called {sorted(set(names) - matched)}")
    return lines


_EQUIV_LINE = re.compile(r"^(?P<path>\S+?):\d+: (?P<what>.+?)  \[(?P<text>.*)\]  -- (?P<why>\S.*)$")


def load_equivalents(path: Path = EQUIVALENTS) -> dict[tuple[str, str, str], str]:
    """The accepted equivalent mutants: ``file:line: mutation  [source line]  -- why``."""
    found: dict[tuple[str, str, str], str] = {}
    if not path.exists():
        return found
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        match = _EQUIV_LINE.match(raw)
        if match is None:
            sys.exit(
                f"{path.name}:{number}: expected 'file:line: mutation  [source line]  -- why', got {raw!r}"
            )
        found[(match["path"], match["what"], match["text"])] = match["why"]
    return found


# -- running ----------------------------------------------------------------------------------
class Workspace:
    """A private copy of src/, tests/, integrations/ (examples the tests load) and pyproject.toml that one worker mutates in place."""

    def __init__(self, base: Path, number: int) -> None:
        self.root = base / f"w{number}"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", ".hypothesis")
        for name in ("src", "tests", "integrations"):
            shutil.copytree(ROOT / name, self.root / name, ignore=ignore)
        shutil.copy2(ROOT / "pyproject.toml", self.root / "pyproject.toml")
        self.env = {
            **os.environ,
            "PYTHONPATH": str(self.root / "src"),  # ahead of the editable install's path
            "PYTHONDONTWRITEBYTECODE": "1",  # a same-size mutant within the same second: no stale .pyc
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # the plugins the tests need are named in _PYTEST
            "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "mutation"),  # tests/conftest.py
        }

    def run(self, tests: list[str], timeout: float) -> tuple[str, float]:
        """('passed' | 'failed' | 'timeout', seconds) for ``tests`` on this copy as it is now."""
        cmd = [sys.executable, "-m", "pytest", *_PYTEST, *tests]
        began = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=self.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return "timeout", time.monotonic() - began
        return ("passed" if code == 0 else "failed"), time.monotonic() - began

    def check_imports_copy(self) -> None:
        probe = "import kube_balance, sys; print(kube_balance.__file__)"
        out = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not out.startswith(str(self.root)):
            sys.exit(
                f"the copy does not import its own kube_balance (got {out}); is a compiled build installed?"
            )

    def apply(self, mutant: Mutant, original: bytes) -> None:
        (self.root / mutant.path).write_bytes(
            original[: mutant.start] + mutant.new.encode() + original[mutant.end :]
        )

    def restore(self, path: str, original: bytes) -> None:
        (self.root / path).write_bytes(original)


def run_module(
    path: str,
    tests: list[str],
    mutants: list[Mutant],
    spaces: list[Workspace],
    timeout: float | None,
    progress: bool,
) -> dict[Mutant, str]:
    original = (ROOT / path).read_bytes()
    pool: list[Workspace] = list(spaces)
    lock = threading.Lock()

    # The unmutated tests must pass, and tell how long a run takes.
    status, took = spaces[0].run(tests, timeout=600)
    if status != "passed":
        sys.exit(f"{path}: its tests fail before any mutation: {' '.join(tests)}")
    limit = timeout if timeout is not None else max(30.0, 4 * took + 10)
    print(
        f"{path}: {len(mutants)} mutants, tests {' '.join(tests)} ({took:.1f} s clean; timeout {limit:.0f} s)"
    )

    done = 0

    def one(mutant: Mutant) -> tuple[Mutant, str]:
        nonlocal done
        with lock:
            space = pool.pop()
        try:
            space.apply(mutant, original)
            status, _ = space.run(tests, limit)
        finally:
            space.restore(path, original)
            with lock:
                pool.append(space)
                done += 1
                if progress:
                    print(f"  {done}/{len(mutants)}", end="\r", flush=True)
        return mutant, status

    with ThreadPoolExecutor(max_workers=len(spaces)) as executor:
        results = dict(executor.map(one, mutants))
    if progress:
        print(" " * 20, end="\r")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="+", help="modules to mutate, e.g. src/kube_balance/_retry.py")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="parallel workers (default: CPUs)"
    )
    parser.add_argument("--timeout", type=float, help="seconds per mutant (default: 4 x a clean run + 10)")
    parser.add_argument("--tests", nargs="+", help="test files to run instead of the module's mapped ones")
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    parser.add_argument(
        "--line",
        type=int,
        action="append",
        help="only the mutants on this line (repeatable): rerun survivors",
    )
    parser.add_argument(
        "--fail-under", type=float, default=0.0, help="exit 1 if a module scores below (percent)"
    )
    args = parser.parse_args(argv)

    modules = [str(Path(m).resolve().relative_to(ROOT)) if Path(m).is_absolute() else m for m in args.modules]
    for module in modules:
        if not (ROOT / module).is_file():
            parser.error(f"no such module: {module}")
        if args.tests is None and module not in MODULE_TESTS:
            parser.error(
                f"no tests mapped for {module}: add it to MODULE_TESTS in tools/mutate.py, or pass --tests"
            )
    equivalents = load_equivalents()
    found = {module: find_mutants(module) for module in modules}
    for module in set(modules) & set(MODULE_SCOPES):
        scope = scope_lines(module, MODULE_SCOPES[module])
        found[module] = [m for m in found[module] if m.line in scope]
        print(f"{module}: only {', '.join(MODULE_SCOPES[module])} (MODULE_SCOPES)", file=sys.stderr)
    if args.line:
        found = {module: [m for m in ms if m.line in args.line] for module, ms in found.items()}
    if args.list:
        try:
            for module in modules:
                for m in found[module]:
                    print(m.label() + ("  (equivalent)" if m.ident() in equivalents else ""))
        except BrokenPipeError:  # piped into head
            pass
        return 0

    # Stopped with kill: exit through the with-blocks below, so the copies are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    failing = False
    summary: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kube-balance-mutation-") as base:
        spaces = [Workspace(Path(base), i) for i in range(max(1, args.jobs))]
        spaces[0].check_imports_copy()
        for module in modules:
            tests = args.tests or MODULE_TESTS[module]
            began = time.monotonic()
            results = run_module(module, tests, found[module], spaces, args.timeout, sys.stdout.isatty())
            equivalent = [m for m in results if m.ident() in equivalents]
            survivors = [m for m, s in results.items() if s == "passed" and m.ident() not in equivalents]
            killed_equivalent = [m for m in equivalent if results[m] != "passed"]
            counted = len(results) - len(equivalent)
            killed = counted - len(survivors)
            score = 100.0 * killed / counted if counted else 100.0
            timeouts = sum(1 for s in results.values() if s == "timeout")
            for m in survivors:
                print(f"  SURVIVED {m.label()}")
            for m in killed_equivalent:
                print(f"  note: listed as equivalent but killed (remove it from the list): {m.label()}")
            line = (
                f"{module}: {score:.1f}% killed ({killed}/{counted}; {len(equivalent)} equivalent, "
                f"{timeouts} timeouts) in {time.monotonic() - began:.0f} s"
            )
            print(line)
            summary.append(line)
            failing = failing or score < args.fail_under
        stale = set() if args.line else set(equivalents) - {m.ident() for ms in found.values() for m in ms}
        for path, what, text in sorted(stale):
            if path in modules:
                print(f"note: an equivalent no longer matches a mutant (stale): {path}: {what}  [{text}]")
    if len(summary) > 1:
        print("\n".join(["", "summary:", *summary]))
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
