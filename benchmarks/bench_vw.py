"""VW contextual-bandit decisions: nba against Vowpal Wabbit itself.

Workload (``workloads.vw_examples``): 10 actions x (20 shared ``User`` features +
5 ``Action`` features: an id string, a price, a category string, two numbers),
scored by a ``--cb_explore_adf -q UA -b 18`` model trained by VW
(``workloads.vw_model_file``). One decision is:

* nba: the shared feature dict -> ``VWModel.score(..., negate=True)`` against the
  catalogue's ``ActionSet`` (hashed once), i.e. negated costs -> epsilon-greedy pmf
  by nba.policy's kernel (``nba-policy``: through the public ``EpsilonGreedy.pmf``,
  which re-validates its arguments on every call; numpy before nba.policy existed);
* ``vw-text``: ``Workspace.predict`` on the decision's text lines (prepared in
  advance, so VW is not charged for formatting them), which returns the pmf;
* ``vw-preparsed``: the decision parsed by ``Workspace.parse`` in advance, then
  ``predict_multi`` and the pmf from ``get_action_scores``.

Groups: ``vw-cb-decision`` (one fixed decision, pytest-benchmark's timing; nba
declares its floors there), and ``vw-cb-decision-latency`` (256 varied decisions
cycled, each call timed with ``perf_counter_ns``; p50/p99/p99.9 in
``extra_info``). Before any timing, nba's costs must match VW's raw predictions
and nba's pmf VW's pmf on every benchmark decision.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import nba
from benchmarks.latency import record_latency
from benchmarks.workloads import vw_examples, vw_model_file, vw_text
from nba.models.vw import VWModel

vowpalwabbit = pytest.importorskip("vowpalwabbit")

ARGS = "--cb_explore_adf -q UA -b 18"
EPSILON = 0.05  # VW's default for --cb_explore_adf
N_DECISIONS = 256
LATENCY_CALLS = int(os.environ.get("NBA_BENCH_LATENCY_CALLS", "5000"))
FLOORS = {"vw-text": 10.0, "vw-preparsed": 1.5}
WORKLOAD = {"n_shared": 20, "n_actions": 10, "n_action_features": 5, "strings": False}


def _epsilon_greedy(*, validated: bool = True) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """pmf(scores, out) with VW's epsilon-greedy rule, from nba.policy when it exists.

    ``validated``: the public ``EpsilonGreedy.pmf`` (checks its arguments on every
    call); otherwise the policy kernel it runs (``nba._core.pmf_epsilon_greedy``,
    which still refuses non-finite scores), as a Decider that has already checked
    its buffers would call it. Without nba.policy: the same rule in numpy.
    """
    try:
        from nba._core import policy as policy_core
        from nba.policy import EpsilonGreedy
    except ImportError:  # pragma: no cover - before nba.policy existed

        def pmf(scores: np.ndarray, out: np.ndarray) -> np.ndarray:
            out.fill(EPSILON / scores.shape[0])
            out[int(np.argmax(scores))] += 1.0 - EPSILON
            return out

        return pmf
    policy = EpsilonGreedy(EPSILON)
    if validated:
        return lambda scores, out: policy.pmf(scores, out=out)
    kernel, eps, tie = policy_core.pmf_epsilon_greedy, float(policy.epsilon), float(policy.tie_rtol)

    def pmf_kernel(scores: np.ndarray, out: np.ndarray) -> np.ndarray:
        if kernel(scores, eps, tie, out) >= 0:
            raise nba.SchemaError("non-finite score")
        return out

    return pmf_kernel


@dataclass
class Bench:
    model: VWModel
    actions: object  # ActionSet
    shared: list[dict]  # N_DECISIONS shared contexts
    lines: list[list[str]]  # the same decisions as VW text
    vw: object  # vowpalwabbit.Workspace with the model loaded
    parsed: list[list]  # the same decisions parsed by VW in advance
    pmf: Callable[[np.ndarray, np.ndarray], np.ndarray]

    def nba_decision(self, i: int, pmf: Callable | None = None) -> Callable[[], np.ndarray]:
        """One nba decision: dict -> scores (negated costs) -> pmf, into preallocated buffers."""
        model, actions, shared, pmf = self.model, self.actions, self.shared[i], pmf or self.pmf
        n = actions.n_actions
        scores, out = np.empty(n), np.empty(n)

        def decide() -> np.ndarray:
            model.score(shared, actions, out=scores, negate=True)
            return pmf(scores, out)

        return decide

    def vw_text_decision(self, i: int) -> Callable[[], list]:
        vw, lines = self.vw, self.lines[i]
        return lambda: vw.predict(lines)

    def vw_preparsed_decision(self, i: int) -> Callable[[], list]:
        from vowpalwabbit.pyvw import pylibvw

        predict_multi, vw, exs = pylibvw.vw.predict_multi, self.vw, self.parsed[i]

        def decide() -> list:
            predict_multi(vw, exs)
            return exs[0].get_action_scores()

        return decide


def _check_agreement(b: Bench) -> None:
    """nba's costs equal VW's raw predictions and nba's pmf VW's pmf, on every decision."""
    for i in range(N_DECISIONS):
        costs = b.model.score(b.shared[i], b.actions)
        exs = b.vw.parse(b.lines[i])
        b.vw.predict(exs)
        raw = np.array([e.get_partial_prediction() for e in exs[1:]])
        vw_pmf = np.array(exs[0].get_action_scores())
        b.vw.finish_example(exs)
        np.testing.assert_allclose(costs, raw, rtol=1e-5, atol=1e-5, err_msg=f"decision {i}: costs")
        np.testing.assert_allclose(b.nba_decision(i)(), vw_pmf, atol=1e-6, err_msg=f"decision {i}: pmf")
        np.testing.assert_array_equal(b.nba_decision(i, _epsilon_greedy(validated=True))(), b.nba_decision(i)())
        np.testing.assert_allclose(b.vw_preparsed_decision(i)(), vw_pmf, atol=1e-6)
        np.testing.assert_allclose(b.vw_text_decision(i)(), vw_pmf, atol=1e-6)


@pytest.fixture(scope="module")
def bench() -> Bench:
    path = vw_model_file(ARGS, n_train=2000, seed=0, **WORKLOAD)
    decisions = vw_examples(N_DECISIONS, 1, **WORKLOAD)
    catalogue = decisions[0][1]  # one catalogue: the actions are the same in every decision
    model = nba.load_model(path)
    vw = vowpalwabbit.Workspace(f"-i {path} -t --quiet")
    lines = [vw_text(shared, catalogue) for shared, _, _, _ in decisions]
    b = Bench(
        model=model,
        actions=model.prepare_actions(catalogue),
        shared=[shared for shared, _, _, _ in decisions],
        lines=lines,
        vw=vw,
        parsed=[vw.parse(ls) for ls in lines],
        pmf=_epsilon_greedy(validated=False),
    )
    _check_agreement(b)
    yield b
    for exs in b.parsed:
        vw.finish_example(exs)
    vw.finish()


# --------------------------------------------------------------------------- one decision


GROUP = "vw-cb-decision"


def test_decision_nba(benchmark, bench):
    benchmark.group = GROUP
    benchmark.extra_info.update(
        impl="nba", floors=FLOORS, call="VWModel.score(dict, negate=True) -> nba._core.pmf_epsilon_greedy"
    )
    benchmark(bench.nba_decision(0))


def test_decision_nba_public_policy(benchmark, bench):
    """The same decision through the public ``EpsilonGreedy.pmf``, which validates its arguments each call."""
    benchmark.group = GROUP
    benchmark.extra_info.update(impl="nba-policy", call="VWModel.score(dict, negate=True) -> EpsilonGreedy.pmf")
    benchmark(bench.nba_decision(0, _epsilon_greedy(validated=True)))


def test_decision_nba_vector(benchmark, bench):
    """The Decider's bound path: the shared features as a float64 vector hashed once."""
    columns = [("User", name) for name in sorted({n for s in bench.shared for n in s["User"]})]
    bound = bench.model.bind_shared(columns)
    index = {c: k for k, c in enumerate(columns)}
    x = np.zeros(len(columns))
    for name, v in bench.shared[0]["User"].items():
        x[index[("User", name)]] = v
    # Same features, another summation order (columns sorted by name): equal to float32 rounding.
    np.testing.assert_allclose(bench.model.score_vector(x, bound, bench.actions),
                               bench.model.score(bench.shared[0], bench.actions), rtol=1e-6, atol=1e-6)
    n = bench.actions.n_actions
    scores, out = np.empty(n), np.empty(n)
    model, actions, pmf = bench.model, bench.actions, bench.pmf

    def decide() -> np.ndarray:
        model.score_vector(x, bound, actions, out=scores, negate=True)
        return pmf(scores, out)

    benchmark.group = GROUP
    benchmark.extra_info.update(impl="nba-vector", call="VWModel.score_vector(x, negate=True) -> pmf",
                                columns=len(columns))
    benchmark(decide)


def test_decision_nba_costs_only(benchmark, bench):
    benchmark.group = GROUP
    benchmark.extra_info.update(impl="nba-costs", call="VWModel.score(dict, out=buf) only")
    benchmark(bench.model.score, bench.shared[0], bench.actions, np.empty(bench.actions.n_actions))


def test_decision_vw_text(benchmark, bench):
    benchmark.group = GROUP
    benchmark.extra_info.update(impl="vw-text", call="Workspace.predict(lines)")
    benchmark(bench.vw_text_decision(0))


def test_decision_vw_preparsed(benchmark, bench):
    benchmark.group = GROUP
    benchmark.extra_info.update(impl="vw-preparsed", call="predict_multi(parsed) + get_action_scores")
    benchmark(bench.vw_preparsed_decision(0))


# --------------------------------------------------------------------------- per-call latency


def _latency(benchmark, impl: str, calls: list[Callable[[], object]]) -> None:
    # warm every call first: nba's hash cache fills outside the measurement
    record_latency(benchmark, f"{GROUP}-latency", impl, calls, LATENCY_CALLS, warmup=len(calls))


def test_latency_nba(benchmark, bench):
    _latency(benchmark, "nba", [bench.nba_decision(i) for i in range(N_DECISIONS)])


def test_latency_vw_text(benchmark, bench):
    _latency(benchmark, "vw-text", [bench.vw_text_decision(i) for i in range(N_DECISIONS)])


def test_latency_vw_preparsed(benchmark, bench):
    _latency(benchmark, "vw-preparsed", [bench.vw_preparsed_decision(i) for i in range(N_DECISIONS)])
