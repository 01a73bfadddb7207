"""Exploration and online bandits: nba against the same arithmetic written in numpy.

There is no library that does this on the hot path (VW's explore code is not
exposed to Python), so the references are straightforward numpy versions of the
same semantics, each checked against nba before timing:

* ``policy-pmf-10arms``: epsilon-greedy pmf (VW's tie rule), 10 scores;
* ``softmax-pmf-10arms``: softmax with VW's minimum-probability projection;
* ``sample-10arms``: one seeded draw per event id (numpy: a Generator seeded by a
  hash of the event id, then ``choice``);
* ``thompson-pmf-10arms``: Beta-Bernoulli P(best) from 16 seeded posterior draws (the default);
* ``linear-thompson-pmf-10arms-20f``: the same for linear Thompson (64 draws);
* ``linucb-score-10arms-20f`` and ``linucb-update-20f``: disjoint LinUCB;
* ``decision-latency-*``: many single calls (varied event ids and contexts),
  each timed with ``perf_counter_ns``; p50/p99/p99.9 land in ``extra_info``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from functools import partial

import numpy as np
import pytest

from benchmarks.latency import record_latency
from benchmarks.workloads import linear_bandit_rounds
from nba.bandits import BetaThompson, LinearThompson, LinUCB
from nba.policy import EpsilonGreedy, Softmax, sample

N_ARMS = 10
N_FEATURES = 20
EPSILON = 0.05
LAMBDA = 2.0
LATENCY_CALLS = int(os.environ.get("NBA_BENCH_LATENCY_CALLS", "5000"))

PMF_FLOORS = {"numpy": 2.0}
SAMPLE_FLOORS = {"numpy": 3.0}
THOMPSON_FLOORS = {"numpy": 1.5}
LINEAR_FLOORS = {"numpy": 1.5}


# --------------------------------------------------------------------------- references


def np_epsilon_greedy(s: np.ndarray, eps: float, rtol: float = 1e-4) -> np.ndarray:
    """VW's cb_explore_adf epsilon-greedy in numpy: sort, count the leading tied run."""
    order = np.argsort(-s, kind="stable")
    srt = s[order]
    same = np.abs(srt - srt[0]) <= rtol * (np.abs(srt) + abs(srt[0]))
    tied = int(np.argmin(same)) if not same.all() else s.shape[0]
    p = np.full(s.shape[0], eps / s.shape[0])
    p[order[:tied]] += (1.0 - eps) / tied
    return p


def np_softmax(s: np.ndarray, lam: float, eps: float) -> np.ndarray:
    """Softmax, then VW's sort-based minimum-probability projection, in numpy."""
    p = np.exp(lam * (s - s.max()))
    p /= p.sum()
    n = p.shape[0]
    m = eps / n
    srt = np.sort(p)[::-1]
    cs = np.cumsum(srt)
    idx = np.arange(n)
    ok = srt > ((n - idx - 1) * m + cs - 1.0) / (idx + 1.0) + m
    rho = int(np.flatnonzero(ok)[-1]) if ok.any() else 0
    tau = ((n - rho - 1.0) * m + cs[rho] - 1.0) / (rho + 1.0)
    return np.maximum(p - tau, m)


def np_sample(pmf: np.ndarray, event_id: str, seed: int) -> int:
    """A reproducible draw the usual numpy way: seed a Generator from a hash of the event id."""
    h = hashlib.blake2b(event_id.encode(), digest_size=8, key=seed.to_bytes(8, "little")).digest()
    return int(np.random.default_rng(int.from_bytes(h, "little")).choice(pmf.shape[0], p=pmf))


def np_beta_pmf(alpha: np.ndarray, beta: np.ndarray, draws: int, event_id: str) -> np.ndarray:
    rng = np.random.default_rng(int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little"))
    best = np.argmax(rng.beta(alpha, beta, size=(draws, alpha.shape[0])), axis=1)
    return np.bincount(best, minlength=alpha.shape[0]) / draws


class NumpyLinear:
    """Disjoint ridge regressions in numpy: A^-1 stack, b, theta; Sherman-Morrison updates."""

    def __init__(self, n_arms: int, d: int) -> None:
        self.ainv = np.repeat(np.eye(d)[None], n_arms, axis=0)
        self.b = np.zeros((n_arms, d))
        self.theta = np.zeros((n_arms, d))

    def update(self, a: int, x: np.ndarray, r: float) -> None:
        ai = self.ainv[a]
        u = ai @ x
        ai -= np.outer(u, u) / (1.0 + x @ u)
        self.b[a] += r * x
        self.theta[a] = ai @ self.b[a]

    def mean_width(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.theta @ x, np.sqrt(np.einsum("j,ajk,k->a", x, self.ainv, x))

    def ucb(self, x: np.ndarray, alpha: float) -> np.ndarray:
        m, w = self.mean_width(x)
        return m + alpha * w

    def thompson_pmf(self, x: np.ndarray, v: float, draws: int, event_id: str) -> np.ndarray:
        m, w = self.mean_width(x)
        rng = np.random.default_rng(int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little"))
        best = np.argmax(m + v * w * rng.standard_normal((draws, m.shape[0])), axis=1)
        return np.bincount(best, minlength=m.shape[0]) / draws


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def scores() -> list[np.ndarray]:
    rng = np.random.default_rng(17)
    return [rng.normal(size=N_ARMS) for _ in range(256)]


@pytest.fixture(scope="module")
def trained():
    """nba's and numpy's linear models after the same 2000 rounds, plus a Beta bandit."""
    _, X, arms, rewards = linear_bandit_rounds(2000, N_ARMS, N_FEATURES, seed=3)
    lin, lts, ref = LinUCB(N_ARMS, N_FEATURES), LinearThompson(N_ARMS, N_FEATURES, v=0.5), NumpyLinear(N_ARMS, N_FEATURES)
    for x, a, r in zip(X, arms, rewards):
        lin.update(int(a), x, float(r))
        lts.update(int(a), x, float(r))
        ref.update(int(a), x, float(r))
    beta = BetaThompson(N_ARMS)
    rng = np.random.default_rng(4)
    means = np.linspace(0.05, 0.3, N_ARMS)
    for _ in range(2000):
        a = int(rng.integers(N_ARMS))
        beta.update(a, None, float(rng.random() < means[a]))
    xs = np.ascontiguousarray(X[:256])
    for x in xs[:50]:
        np.testing.assert_allclose(lin.score(x), ref.ucb(x, 1.0), rtol=1e-9, atol=1e-9)
    return {"linucb": lin, "lints": lts, "ref": ref, "beta": beta, "xs": xs}


def test_references_agree_with_nba(scores):
    for s in scores[:100]:
        np.testing.assert_allclose(EpsilonGreedy(EPSILON).pmf(s), np_epsilon_greedy(s, EPSILON), atol=1e-12)
        np.testing.assert_allclose(Softmax(LAMBDA, epsilon=EPSILON).pmf(s), np_softmax(s, LAMBDA, EPSILON), atol=1e-12)


# --------------------------------------------------------------------------- pmf and sampling


def test_pmf_nba(benchmark, scores):
    benchmark.group = "policy-pmf-10arms"
    benchmark.extra_info.update(impl="nba", floors=PMF_FLOORS, call="EpsilonGreedy.pmf(s, out)")
    pol, s, out = EpsilonGreedy(EPSILON), scores[0], np.empty(N_ARMS)
    benchmark(pol.pmf, s, out)


def test_pmf_numpy(benchmark, scores):
    benchmark.group = "policy-pmf-10arms"
    benchmark.extra_info.update(impl="numpy")
    benchmark(np_epsilon_greedy, scores[0], EPSILON)


def test_softmax_nba(benchmark, scores):
    benchmark.group = "softmax-pmf-10arms"
    benchmark.extra_info.update(impl="nba", floors=PMF_FLOORS, call="Softmax(2, epsilon=0.05).pmf(s, out)")
    pol, s, out = Softmax(LAMBDA, epsilon=EPSILON), scores[0], np.empty(N_ARMS)
    benchmark(pol.pmf, s, out)


def test_softmax_numpy(benchmark, scores):
    benchmark.group = "softmax-pmf-10arms"
    benchmark.extra_info.update(impl="numpy")
    benchmark(np_softmax, scores[0], LAMBDA, EPSILON)


def test_sample_nba(benchmark, scores):
    benchmark.group = "sample-10arms"
    benchmark.extra_info.update(impl="nba", floors=SAMPLE_FLOORS, call="sample(pmf, event_id, seed)")
    pmf = EpsilonGreedy(0.2).pmf(scores[0])
    benchmark(sample, pmf, "0f8c2a3e-7d1b-4c55-9a0e-1b2c3d4e5f60", 42)


def test_sample_numpy(benchmark, scores):
    benchmark.group = "sample-10arms"
    benchmark.extra_info.update(impl="numpy", call="default_rng(blake2b(event_id)).choice(n, p=pmf)")
    pmf = EpsilonGreedy(0.2).pmf(scores[0])
    benchmark(np_sample, pmf, "0f8c2a3e-7d1b-4c55-9a0e-1b2c3d4e5f60", 42)


# --------------------------------------------------------------------------- online bandits


def test_thompson_pmf_nba(benchmark, trained):
    benchmark.group = "thompson-pmf-10arms"
    benchmark.extra_info.update(impl="nba", floors=THOMPSON_FLOORS, draws=16, call="BetaThompson.pmf(event_id=...)")
    benchmark(trained["beta"].pmf, None, None, event_id="evt-1")


def test_thompson_pmf_numpy(benchmark, trained):
    benchmark.group = "thompson-pmf-10arms"
    benchmark.extra_info.update(impl="numpy", draws=16)
    b = trained["beta"]
    alpha, beta = b.alpha, b.beta
    benchmark(np_beta_pmf, alpha, beta, 16, "evt-1")


def test_linear_thompson_pmf_nba(benchmark, trained):
    benchmark.group = "linear-thompson-pmf-10arms-20f"
    benchmark.extra_info.update(impl="nba", floors=THOMPSON_FLOORS, draws=64)
    benchmark(trained["lints"].pmf, trained["xs"][0], None, event_id="evt-1", draws=64)


def test_linear_thompson_pmf_numpy(benchmark, trained):
    benchmark.group = "linear-thompson-pmf-10arms-20f"
    benchmark.extra_info.update(impl="numpy", draws=64)
    benchmark(trained["ref"].thompson_pmf, trained["xs"][0], 0.5, 64, "evt-1")


def test_linucb_score_nba(benchmark, trained):
    benchmark.group = "linucb-score-10arms-20f"
    benchmark.extra_info.update(impl="nba", floors=LINEAR_FLOORS, call="LinUCB.score(x, out)")
    benchmark(trained["linucb"].score, trained["xs"][0], np.empty(N_ARMS))


def test_linucb_score_numpy(benchmark, trained):
    benchmark.group = "linucb-score-10arms-20f"
    benchmark.extra_info.update(impl="numpy")
    benchmark(trained["ref"].ucb, trained["xs"][0], 1.0)


def test_linucb_update_nba(benchmark, trained):
    benchmark.group = "linucb-update-20f"
    benchmark.extra_info.update(impl="nba", floors=LINEAR_FLOORS, call="LinUCB.update(arm, x, r)")
    model = LinUCB(N_ARMS, N_FEATURES)  # a fresh copy: the benchmark's updates stay out of `trained`
    benchmark(model.update, 3, trained["xs"][1], 0.5)


def test_linucb_update_numpy(benchmark, trained):
    benchmark.group = "linucb-update-20f"
    benchmark.extra_info.update(impl="numpy")
    ref = NumpyLinear(N_ARMS, N_FEATURES)
    benchmark(ref.update, 3, trained["xs"][1], 0.5)


# --------------------------------------------------------------------------- per-call latency percentiles


def _latency(benchmark, group: str, impl: str, call: Callable[[int], object]) -> None:
    """Time ``LATENCY_CALLS`` single calls ``call(i)``, i = 0, 1, ..."""
    record_latency(benchmark, group, impl, [partial(call, i) for i in range(LATENCY_CALLS)], LATENCY_CALLS)


def test_latency_epsilon_greedy_choice_nba(benchmark, scores):
    pol, out = EpsilonGreedy(EPSILON), np.empty(N_ARMS)
    ids = [f"event-{i}" for i in range(LATENCY_CALLS)]

    def call(i: int) -> int:
        return sample(pol.pmf(scores[i % len(scores)], out), ids[i], 42)

    _latency(benchmark, "decision-latency-epsilon-greedy-10arms", "nba", call)


def test_latency_epsilon_greedy_choice_numpy(benchmark, scores):
    ids = [f"event-{i}" for i in range(LATENCY_CALLS)]

    def call(i: int) -> int:
        return np_sample(np_epsilon_greedy(scores[i % len(scores)], EPSILON), ids[i], 42)

    _latency(benchmark, "decision-latency-epsilon-greedy-10arms", "numpy", call)


def test_latency_thompson_choice_nba(benchmark, trained):
    model = trained["beta"]
    ids = [f"event-{i}" for i in range(LATENCY_CALLS)]

    def call(i: int) -> int:
        return sample(model.pmf(event_id=ids[i]), ids[i], 42)

    _latency(benchmark, "decision-latency-thompson-10arms", "nba", call)


def test_latency_thompson_choice_numpy(benchmark, trained):
    alpha, beta = trained["beta"].alpha, trained["beta"].beta
    ids = [f"event-{i}" for i in range(LATENCY_CALLS)]

    def call(i: int) -> int:
        return np_sample(np_beta_pmf(alpha, beta, 16, ids[i]), ids[i], 42)

    _latency(benchmark, "decision-latency-thompson-10arms", "numpy", call)


def test_latency_linucb_choice_nba(benchmark, trained):
    model, xs = trained["linucb"], trained["xs"]
    ids = [f"event-{i}" for i in range(LATENCY_CALLS)]

    def call(i: int) -> int:
        return sample(model.pmf(xs[i % len(xs)]), ids[i], 42)

    _latency(benchmark, "decision-latency-linucb-10arms-20f", "nba", call)


def test_latency_linucb_choice_numpy(benchmark, trained):
    ref, xs = trained["ref"], trained["xs"]
    ids = [f"event-{i}" for i in range(LATENCY_CALLS)]

    def call(i: int) -> int:
        u = ref.ucb(xs[i % len(xs)], 1.0)
        p = (u == u.max()) / np.count_nonzero(u == u.max())
        return np_sample(p, ids[i], 42)

    _latency(benchmark, "decision-latency-linucb-10arms-20f", "numpy", call)
