"""`kube-balance demo` on real pods: each scene's invariant, the summary table, the PNG, clear errors."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import kube_balance.demo as demo
from kube_balance.cli import main
from kube_balance.demo import SCENES
from kube_balance.demo._display import LiveDisplay, PlainDisplay, summary_text
from kube_balance.demo._plot import write_png
from kube_balance.demo._scene import SceneResult
from kube_balance.demo._scenes_change import _next_name
from kube_balance.demo._traffic import Record, Tally

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass
class Run:
    code: int
    out: str
    results: dict[str, SceneResult]
    png: Path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One quick run of every scene through the command (stdout is not a terminal: plain lines)."""
    png = tmp_path_factory.mktemp("demo") / "demo.png"
    seen: list[SceneResult] = []
    original = demo.run_scenes

    async def recording(names: Sequence[str], out: PlainDisplay, **options: Any) -> list[SceneResult]:
        results = await original(names, out, **options)
        seen.extend(results)
        return results

    buffer = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(buffer):
        patch.setattr(demo, "run_scenes", recording)
        code = main(["demo", "--quick", "--out", str(png)])
    return Run(code, buffer.getvalue(), {r.key: r for r in seen}, png)


def test_every_scene_runs_in_order(run: Run) -> None:
    """All nine scenes ran, in the documented order; the exit code says whether every check held."""
    assert list(run.results) == list(SCENES)
    assert run.code == (0 if all(r.passed for r in run.results.values()) else 1)


def test_l4_service_sends_every_http2_request_to_one_pod(run: Run) -> None:
    """Through the L4 proxy one HTTP/2 connection carries everything to one pod; balanced, no pod gets 2x its share."""
    why = run.results["why"]
    l4, ours = why.phases
    assert l4.count >= 300 and l4.failed == 0
    assert len(l4.pods()) == 1
    shares = ours.shares()
    assert len(shares) == 10 and ours.failed == 0
    assert max(shares.values()) <= 0.2
    assert why.figures["l4_max_share"] == 1.0


def test_slow_pod_scene_reports_each_algorithm(run: Run) -> None:
    """The slow-pod scene ran round_robin, least_request and peak_ewma; round_robin gives the slow pod its 10%."""
    slow = run.results["slow"]
    assert [t.label for t in slow.phases] == ["round_robin", "least_request", "peak_ewma"]
    assert all(t.failed == 0 and t.count > 0 for t in slow.phases)
    assert slow.figures["round_robin_slow_share"] == pytest.approx(0.1, abs=0.02)
    assert {"round_robin_p50", "peak_ewma_p99", "least_request_slow_share"} <= slow.figures.keys()


def test_rolling_update_loses_no_request(run: Run) -> None:
    """Every pod replaced during traffic, 0 failed requests, every new pod served some."""
    rolling = run.results["rolling"]
    (tally,) = rolling.phases
    assert tally.count > 0 and tally.failed == 0 and not tally.errors
    assert rolling.figures["new_pods_served"] == 10
    assert {p for p in tally.pods() if "-v2-" in p} == {f"web-v2-{i}" for i in range(10)}


def test_failing_pod_is_ejected_and_its_share_drops_to_zero(run: Run) -> None:
    """The 503 pod had its share before, was ejected, and got no request after."""
    failing = run.results["failing"]
    assert failing.figures["ejected"] == 1.0
    assert failing.figures["share_before"] > 0
    assert failing.figures["share_after"] == 0.0
    assert failing.phases[2].failed == 0


def test_affinity_keeps_keys_on_their_pods(run: Run) -> None:
    """ring_hash with bounded loads: most keys stay put while the hot pod sheds some of its requests."""
    affinity = run.results["affinity"]
    assert affinity.figures["stayed"] >= 0.8
    assert 0 < affinity.figures["hot_moved"] < 1
    assert affinity.figures["failed"] == 0


def test_aiohttp_scene_runs(run: Run) -> None:
    """The aiohttp BalancedConnector scene answered every request on several pods."""
    tally = run.results["aiohttp"].phases[0]
    assert tally.count > 0 and tally.failed == 0
    assert len(tally.pods()) >= 5


def test_cluster_client_balances_two_services_by_name(run: Run) -> None:
    """One BalancedTransport.cluster(): web.shop and orders.shop:9090 spread over every pod of each,
    watches started by the first requests (one Service read each), localhost passed through."""
    cluster = run.results["cluster"]
    assert cluster.passed, cluster.checks
    (tally,) = cluster.phases
    assert tally.count == 270 and tally.failed == 0
    by_service = {key: {r.pod for r in tally.records if r.key == key} for key in ("web", "orders", "direct")}
    # web's pods are the rolling update's new ones by now (web-v2-*): ten of them, every one served
    assert len(by_service["web"]) == 10 and all(p.startswith("web-") for p in by_service["web"])
    assert by_service["orders"] == {f"orders-{i}" for i in range(4)}
    (direct,) = by_service["direct"]
    assert direct.endswith(" (direct)") and direct.removesuffix(" (direct)") in by_service["web"]
    assert cluster.figures["orders_service_reads"] == 1


def test_subsetting_bounds_connections_and_covers_every_pod(run: Run) -> None:
    """10 clients, subset 3: each client used at most 3 pods and 3 connections, every pod served,
    and the windows tile the pods (each pod in exactly 3 subsets: 3 x 30 / 3 requests each)."""
    subset = run.results["subset"]
    assert subset.passed, subset.checks
    assert subset.matrix is not None
    rows, pods, counts = subset.matrix
    assert len(rows) == 10 and len(pods) == 10
    assert all(sum(1 for c in row if c) <= 3 and sum(row) == 30 for row in counts)
    assert all(sum(1 for row in counts if row[j]) == 3 for j in range(10))
    assert subset.figures["max_connections"] <= 3 and subset.figures["connections"] <= 30
    assert subset.figures["max_mean"] <= 1.1


def test_hedging_sends_hedges_within_the_budget(run: Run) -> None:
    """With HedgePolicy() hedges were sent, at most 5% of the requests, none failed; the flapping
    pod answered requests in both phases (the same traffic)."""
    hedge = run.results["hedge"]
    plain, hedged = hedge.phases
    assert plain.failed == 0 and hedged.failed == 0 and plain.count > 0 and hedged.count > 0
    assert hedge.figures["plain_hedges"] == 0
    assert 0 < hedge.figures["hedged_hedges"] <= 0.05 * hedged.count
    assert hedge.checks["hedging: extra requests within the 5% budget"]
    assert plain.pods()[hedge.focus] > 0 and hedged.pods()[hedge.focus] > 0


def test_summary_table_and_plot_path_are_printed(run: Run) -> None:
    """The output has each scene's title, the summary table and the PNG's path."""
    for result in run.results.values():
        assert result.title in run.out
    assert "Summary" in run.out and "requests" in run.out
    assert f"Plot: {run.png}" in run.out
    last = run.out.rstrip().splitlines()[-1]  # it read "(36.0 s; the simulation on a simulated clock: ...)"
    assert re.fullmatch(
        r"Done in \d+\.\d s\. The algorithms on a simulated clock, without pods: kube-balance simulate", last
    ), last


def test_png_is_written_and_valid(run: Run) -> None:
    """A real PNG, readable back by matplotlib, of a sensible size."""
    import matplotlib.image

    data = run.png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(run.png).shape
    assert width > 800 and height > 600


def test_without_matplotlib_the_plot_says_which_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No matplotlib: write_png raises ImportError naming the extra; the command prints it instead."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = SceneResult("x", "x", phases=[Tally("t")])
    with pytest.raises(ImportError, match=r"kube-balance\[demo\]"):
        write_png([result], tmp_path / "x.png")
    assert demo._plot([result], tmp_path / "x.png").startswith("No plot: ")
    assert not (tmp_path / "x.png").exists()


def test_missing_extra_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Without the demo extra's packages the command names them and the extra, exit code 2."""
    monkeypatch.setattr(demo, "_missing_modules", lambda: ["hypercorn"])
    assert main(["demo", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "hypercorn" in err and "pip install 'kube-balance[demo]'" in err


@pytest.mark.parametrize("spec", ["nope", "why,nope", ",", ""])
def test_bad_scenes_are_refused(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--scenes takes known names only; argparse exits 2 naming them."""
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--scenes", spec])
    assert exit_.value.code == 2
    assert "why, slow, rolling, failing, affinity, aiohttp, cluster, subset, hedge" in capsys.readouterr().err


def test_scene_names_keep_the_usual_order() -> None:
    """--scenes picks scenes and runs them in the documented order."""
    assert demo._scene_names("aiohttp, why") == ["why", "aiohttp"]
    assert demo._scene_names("hedge,subset,cluster") == ["cluster", "subset", "hedge"]
    assert demo._scene_names(None) == list(SCENES)


def test_next_pod_names() -> None:
    """A rolling update names new pods as a new ReplicaSet's."""
    assert _next_name("web-3") == "web-v2-3"
    assert _next_name("web-v2-3") == "web-v3-3"
    assert _next_name("web-h2-0") == "web-h2-v2-0"


def test_summary_text_flags_failed_checks() -> None:
    """The plain summary has a row per scene and names each failed check."""
    ok = SceneResult("a", "1. A", phases=[Tally("t")], headline="fine", checks={"holds": True})
    bad = SceneResult("b", "2. B", phases=[Tally("t")], headline="not", checks={"breaks": False})
    text = summary_text([ok, bad])
    assert "1. A" in text and "2. B" in text and "CHECK FAILED" in text
    assert "check failed: breaks" in text and "check failed: holds" not in text


def test_live_display_renders_a_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rich view draws the running phase's per-pod table and progress, and stops cleanly."""
    from rich.console import Console

    out = io.StringIO()
    monkeypatch.setattr("rich.console.Console", lambda: Console(file=out, width=120, force_terminal=True))
    live = LiveDisplay()
    try:
        tally = Tally("phase one")
        tally.add("web-0", 0.02, 200)
        tally.add("web-1", 0.02, 503)
        live.phase_started(tally, 1.0, ["web-0", "web-1"])
        console = Console(file=io.StringIO(), width=120)
        console.print(live._render())
        text = console.file.getvalue()  # type: ignore[attr-defined]
        assert "phase one: 2 requests, 1 failed" in text and "web-0" in text and "progress" in text
        live.phase_done(tally, ["web-0", "web-1"], "note")
    finally:
        live.close()
    assert "phase one" in out.getvalue()


def test_a_panel_of_many_pods_gets_one_legend_entry_per_group(tmp_path: Path) -> None:
    """Past MAX_LEGEND pods (a rolling update's old and new pods, two Services' pods) a panel's
    legend names each group of pods and its size, coloured as its pods are."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _plot = importlib.import_module("kube_balance.demo._plot")  # the package has a function _plot

    tally = Tally("rolling update", started=0.0)
    pods = [f"web-v1-{i}" for i in range(10)] + [f"web-v2-{i}" for i in range(10)] + ["web-v2-9 (direct)"]
    tally.records = [Record(0.01 * n, pods[n % 21], 0.01, 200) for n in range(210)]
    result = SceneResult("rolling", "3. Rolling", phases=[tally])
    figure, ax = plt.subplots()
    try:
        _plot._shares_over_time(ax, result)
        legend = ax.get_legend()
        labels = [t.get_text() for t in legend.get_texts()]
        assert labels == ["web-v1-* (10 pods)", "web-v2-* (10 pods)", "web-v2-9 (direct)"]
        groups = _plot._groups(pods)
        assert _plot._shade(groups, "web-v1-0") in _plot._FAMILIES[0]
        assert _plot._shade(groups, "web-v2-4") in _plot._FAMILIES[1]
        assert _plot._shade(groups, "web-v1-1") != _plot._shade(groups, "web-v1-0")  # shades in turn
    finally:
        plt.close(figure)
    few = SceneResult("slow", "2. Slow", phases=[Tally("t", started=0.0, records=tally.records[:12])])
    figure, ax = plt.subplots()
    try:
        _plot._shares_over_time(ax, few)  # 12 pods: each named
        assert len(ax.get_legend().get_texts()) == 12
    finally:
        plt.close(figure)


def test_the_plot_path_is_checked_before_the_scenes_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out is settled first (a bad one used to fail with matplotlib's traceback after a minute
    of scenes): a directory gets the default name, a name without suffix gets .png (the file
    matplotlib would write, now the one printed), an unknown format or unwritable place exits 2."""
    assert demo.plot_path(str(tmp_path)) == tmp_path / demo.DEFAULT_OUT
    assert demo.plot_path(str(tmp_path / "plot")) == tmp_path / "plot.png"
    assert demo.plot_path(str(tmp_path / "sub" / "p.SVG")) == tmp_path / "sub" / "p.SVG"
    assert not (tmp_path / "sub" / "p.SVG").exists()  # checked, not left behind
    kept = tmp_path / "kept.pdf"
    kept.write_bytes(b"old")
    assert demo.plot_path(str(kept)) == kept and kept.read_bytes() == b"old"
    with pytest.raises(ValueError, match=r"^--out .*p\.xyz: the plot is written as \.png, \.svg, \.pdf; "):
        demo.plot_path(str(tmp_path / "p.xyz"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"^--out .*file/p\.png: cannot write the plot there \("):
        demo.plot_path(str(blocker / "p.png"))
    assert main(["demo", "--scenes", "why", "--out", str(tmp_path / "p.xyz")]) == 2
    assert "kube-balance demo: --out " in capsys.readouterr().err
