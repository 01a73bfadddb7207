"""Off-policy evaluation: nba.evaluation against vw-estimators and a plain numpy bootstrap.

* ``ope-ips-snips-gaussian-10k``: IPS, SNIPS and IPS's Gaussian interval over a
  10,000-decision log; vw-estimators adds the examples one by one (its API),
  nba takes the arrays and checks them (pmf rows, shapes) first. Both give the
  same numbers (checked before timing).
* ``ope-bootstrap-4-estimators-10k``: 200-resample percentile bootstrap
  intervals of IPS, SNIPS, DM and DR (``evaluate``'s default set); the reference
  resamples with ``rng.choice`` in a Python loop, as a data scientist would write it.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.workloads import ope_log
from nba.evaluation import DM, DR, IPS, SNIPS, estimate

N = 10_000
N_BOOT = 200
IPS_FLOORS = {"vw-estimators": 2.0}
# nba resamples as counts and takes every estimator's sums in one matrix product; the loop gathers
# each estimator's terms per resample (sharing the resample, as one would write it). About even
# (0.8x measured on the noisy 2-core host: bincount and the product cost what the gathers do at
# this size); the floor only catches a gross regression.
BOOT_FLOORS = {"numpy-loop": 0.4}


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


def _numpy_boot(log, seed: int = 0) -> list[tuple[float, float]]:
    """IPS, SNIPS, DM and DR percentile intervals from one loop of ``rng.choice`` resamples."""
    data, pi, q = log
    rows = np.arange(data.n)
    w = pi[rows, data.action] / data.pscore
    wr = w * data.reward
    q_pi = np.sum(pi * q, axis=1)
    dr = q_pi + w * (data.reward - q[rows, data.action])
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(N_BOOT):
        i = rng.choice(data.n, size=data.n)
        boots.append((wr[i].mean(), wr[i].sum() / w[i].sum(), q_pi[i].mean(), dr[i].mean()))
    lo, hi = np.percentile(np.array(boots), [2.5, 97.5], axis=0)
    return list(zip(lo.tolist(), hi.tolist()))


def _nba_boot(log):
    data, pi, q = log
    return estimate(data, pi, estimators=(IPS(), SNIPS(), DM(), DR()), reward_model=q, n_bootstrap=N_BOOT)


def test_references_agree_with_nba(log):
    rep = _nba_ips(log)
    want_ips, want_snips, (g_lo, g_hi) = _vw(*_vw_inputs(log))
    assert abs(rep["ips"].value - want_ips) <= 1e-12 and abs(rep["snips"].value - want_snips) <= 1e-12
    assert abs(rep["ips"].gaussian.low - g_lo) <= 1e-12 and abs(rep["ips"].gaussian.high - g_hi) <= 1e-12
    boot = _nba_boot(log)
    for e, (lo, hi) in zip(boot.estimates, _numpy_boot(log)):
        assert e.bootstrap is not None and abs(e.bootstrap.low - lo) < 0.01 and abs(e.bootstrap.high - hi) < 0.01


def test_ips_nba(benchmark, log):
    benchmark.group = "ope-ips-snips-gaussian-10k"
    benchmark.extra_info.update(impl="nba", floors=IPS_FLOORS, call="estimate(data, pi, (IPS(), SNIPS()))")
    benchmark(_nba_ips, log)


def test_ips_vw_estimators(benchmark, log):
    benchmark.group = "ope-ips-snips-gaussian-10k"
    benchmark.extra_info.update(impl="vw-estimators", call="add_example x 10k; get()")
    benchmark(_vw, *_vw_inputs(log))


def test_bootstrap_nba(benchmark, log):
    benchmark.group = "ope-bootstrap-4-estimators-10k"
    benchmark.extra_info.update(
        impl="nba", floors=BOOT_FLOORS, call=f"estimate((IPS(), SNIPS(), DM(), DR()), n_bootstrap={N_BOOT})"
    )
    benchmark(_nba_boot, log)


def test_bootstrap_numpy(benchmark, log):
    benchmark.group = "ope-bootstrap-4-estimators-10k"
    benchmark.extra_info.update(impl="numpy-loop", call=f"rng.choice resample x {N_BOOT}, 4 estimators each")
    benchmark(_numpy_boot, log)
