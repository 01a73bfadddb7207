"""Off-policy evaluation: nba.evaluation against vw-estimators and a plain numpy bootstrap.

* ``ope-ips-snips-gaussian-10k``: IPS, SNIPS and IPS's Gaussian interval over a
  10,000-decision log; vw-estimators adds the examples one by one (its API),
  nba takes the arrays and checks them (pmf rows, shapes) first. Both give the
  same numbers (checked before timing).
* ``ope-dr-bootstrap-10k``: DR with a 200-resample percentile bootstrap; the
  reference resamples with ``rng.choice`` in a Python loop, as a data scientist
  would write it.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.workloads import ope_log
from nba.evaluation import DR, IPS, SNIPS, estimate

N = 10_000
N_BOOT = 200
IPS_FLOORS = {"vw-estimators": 2.0}
# nba resamples as counts and takes every estimator's sums in one matrix product: a gain with several
# estimators per call (evaluate's default is four), about even for this one (0.6-0.9x measured on the
# noisy 2-core host). The floor only catches a gross regression.
BOOT_FLOORS = {"numpy-loop": 0.3}


@pytest.fixture(scope="module")
def log():
    return ope_log(N, n_actions=10, seed=0)


def _vw(p_log: list[float], r: list[float], p_pred: list[float]) -> tuple[float, float, list]:
    from estimators.bandits import gaussian, ips, snips

    e_ips, e_snips, e_g = ips.Estimator(), snips.Estimator(), gaussian.Interval()
    for a, b, c in zip(p_log, r, p_pred):
        e_ips.add_example(a, b, c)
        e_snips.add_example(a, b, c)
        e_g.add_example(a, b, c)
    return e_ips.get(), e_snips.get(), e_g.get(0.05)


def _vw_inputs(log):
    data, pi, _ = log
    p_pred = pi[np.arange(data.n), data.action]
    return data.pscore.tolist(), data.reward.tolist(), p_pred.tolist()


def _nba_ips(log):
    data, pi, _ = log
    return estimate(data, pi, estimators=(IPS(), SNIPS()), n_bootstrap=0)


def _numpy_boot_dr(log, seed: int = 0) -> tuple[float, float]:
    data, pi, q = log
    rows = np.arange(data.n)
    w = pi[rows, data.action] / data.pscore
    terms = np.sum(pi * q, axis=1) + w * (data.reward - q[rows, data.action])
    rng = np.random.default_rng(seed)
    boots = [terms[rng.choice(data.n, size=data.n)].mean() for _ in range(N_BOOT)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(lo), float(hi)


def test_references_agree_with_nba(log):
    rep = _nba_ips(log)
    want_ips, want_snips, (g_lo, g_hi) = _vw(*_vw_inputs(log))
    assert abs(rep["ips"].value - want_ips) <= 1e-12 and abs(rep["snips"].value - want_snips) <= 1e-12
    assert abs(rep["ips"].gaussian.low - g_lo) <= 1e-12 and abs(rep["ips"].gaussian.high - g_hi) <= 1e-12
    data, pi, q = log
    boot = estimate(data, pi, estimators=DR(), reward_model=q, n_bootstrap=N_BOOT)["dr"].bootstrap
    lo, hi = _numpy_boot_dr(log)
    assert boot is not None and abs(boot.low - lo) < 0.01 and abs(boot.high - hi) < 0.01  # different draws


def test_ips_nba(benchmark, log):
    benchmark.group = "ope-ips-snips-gaussian-10k"
    benchmark.extra_info.update(impl="nba", floors=IPS_FLOORS, call="estimate(data, pi, (IPS(), SNIPS()))")
    benchmark(_nba_ips, log)


def test_ips_vw_estimators(benchmark, log):
    benchmark.group = "ope-ips-snips-gaussian-10k"
    benchmark.extra_info.update(impl="vw-estimators", call="add_example x 10k; get()")
    benchmark(_vw, *_vw_inputs(log))


def test_dr_bootstrap_nba(benchmark, log):
    data, pi, q = log
    benchmark.group = "ope-dr-bootstrap-10k"
    benchmark.extra_info.update(impl="nba", floors=BOOT_FLOORS, call=f"estimate(DR(), n_bootstrap={N_BOOT})")
    benchmark(estimate, data, pi, estimators=DR(), reward_model=q, n_bootstrap=N_BOOT)


def test_dr_bootstrap_numpy(benchmark, log):
    benchmark.group = "ope-dr-bootstrap-10k"
    benchmark.extra_info.update(impl="numpy-loop", call="rng.choice resample x 200")
    benchmark(_numpy_boot_dr, log)
