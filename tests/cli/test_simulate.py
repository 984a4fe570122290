"""`kube-balance simulate`: the load-aware algorithms steer around the slow pod; the table prints."""

from __future__ import annotations

import pytest

from kube_balance.cli import main
from kube_balance.cli._simulate import simulate


def test_load_aware_algorithms_avoid_the_slow_pod() -> None:
    """least_request and peak_ewma send the 10x slower pod far less than its 10% and cut p99."""
    rr = simulate("round_robin", requests=4000)
    lr = simulate("least_request", requests=4000)
    ewma = simulate("peak_ewma", requests=4000)
    assert rr.shares[0] == pytest.approx(0.10, abs=0.002)
    assert lr.shares[0] < 0.05 and ewma.shares[0] < 0.05
    assert lr.p99 < rr.p99 / 3 and ewma.p99 < rr.p99 / 3
    assert sum(lr.shares) == pytest.approx(1.0)


def test_simulation_is_deterministic() -> None:
    """The same seed gives the same result."""
    assert simulate("random", requests=500, seed=3) == simulate("random", requests=500, seed=3)


def test_simulate_command_prints_tables(capsys: pytest.CaptureFixture[str]) -> None:
    """`kube-balance simulate` prints the per-algorithm and per-pod tables."""
    assert (
        main(["simulate", "--requests", "300", "--algorithm", "round_robin", "--algorithm", "peak_ewma"]) == 0
    )
    out = capsys.readouterr().out
    assert "slow pod share" in out and "share per pod" in out
    assert out.count("peak_ewma") == 2


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("0", "0 is out of range: from 1 to 1,000,000 requests per algorithm"),
        ("-5", "-5 is out of range: from 1 to 1,000,000"),
        ("1000001", "1000001 is out of range: from 1 to 1,000,000"),
        ("999999999999", "999999999999 is out of range"),  # ran for minutes, silently
        ("many", "'many' is not a whole number"),
    ],
)
def test_bad_request_count(capsys: pytest.CaptureFixture[str], given: str, says: str) -> None:
    """A count out of range or not a number is refused at once, naming the value and the range:
    argparse's usage error, exit code 2."""
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", "--requests", given])
    assert exit_.value.code == 2
    assert f"argument --requests: {says}" in capsys.readouterr().err


def test_request_counts_at_the_bounds_and_with_separators() -> None:
    """1 and 1,000,000 are taken; so are 20_000 and 20,000 as written in the help."""
    from kube_balance.cli import MAX_SIMULATED, _request_count

    assert _request_count("1") == 1 and _request_count(str(MAX_SIMULATED)) == MAX_SIMULATED == 1_000_000
    assert _request_count("20_000") == _request_count("20,000") == 20_000


def test_bounded_loads_protect_the_slow_pod_under_affinity() -> None:
    """ring_hash sends the slow pod its key share; with load_factor 1.25 the cap moves requests off it."""
    plain = simulate("ring_hash", requests=4000)
    bounded = simulate("ring_hash", requests=4000, options={"load_factor": 1.25}, label="bounded")
    assert bounded.algorithm == "bounded"
    assert plain.shares[0] > 0.08
    assert bounded.shares[0] < 0.05
    assert bounded.p99 < plain.p99 / 3
