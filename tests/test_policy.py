"""nba.policy: pmfs equal Vowpal Wabbit's cb_explore_adf on negated costs, properties, seeded sampling.

VW parity. ``cb_explore_adf`` only reports the pmf, so the raw costs come from a
twin ``--cb_adf`` workspace trained on the same examples (same learner, same
updates: exploration does not change what greedy and softmax learn). SquareCB
learns without importance weights: VW sets the logged probability to 1 on every
labelled action except the last one of the example (its loop stops one short),
so the twin is given exactly those labels. A second set of checks fixes the
costs exactly instead (``--initial_weight 1 --noconstant``: an action's cost is
its one feature value) to pin down ties and near-ties.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nba
from nba._core import hashing as hashing_core
from nba._core import policy as policy_core
from nba.policy import PMF_TOLERANCE, UCB, EpsilonGreedy, Greedy, Softmax, SquareCB, Thompson, sample, sample_slate

N_TRAIN = 300
N_TEST = 200
N_ACTIONS = 5
TOL = 1e-6  # VW computes in float32; nba in float64


# --------------------------------------------------------------------------- VW helpers


def _examples(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray, int, float, float]]:
    """Seeded contextual-bandit examples: (shared, action features, logged action, cost, probability)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        u = rng.normal(size=3)
        acts = rng.normal(size=(N_ACTIONS, 3))
        costs = -(acts @ u) + rng.normal(scale=0.1, size=N_ACTIONS)
        a = int(rng.integers(N_ACTIONS))
        out.append((u, acts, a, float(costs[a]), 1.0 / N_ACTIONS))
    return out


def _lines(ex, *, label: bool = True, squarecb_twin: bool = False) -> list[str]:
    u, acts, a, cost, p = ex
    if squarecb_twin and a < len(acts) - 1:
        p = 1.0  # what SquareCB's learn() does to the label before the base learner sees it
    lines = ["shared |s " + " ".join(f"u{i}:{v:.4f}" for i, v in enumerate(u))]
    for j, f in enumerate(acts):
        lab = f"0:{cost:.4f}:{p} " if (label and j == a) else ""
        lines.append(lab + "|a " + " ".join(f"f{i}:{v:.4f}" for i, v in enumerate(f)))
    return lines


def _workspace(args: str):
    """A VW workspace; only the parity tests need VW, so only they skip without it."""
    vowpalwabbit = pytest.importorskip("vowpalwabbit")
    return vowpalwabbit.Workspace(args + " --quiet")


def _chisquare_p(observed, expected) -> float:
    """scipy's chi-square p-value; only the sampling-frequency tests need scipy, so only they skip without it."""
    return float(pytest.importorskip("scipy.stats").chisquare(observed, expected).pvalue)


def _train(args: str, train, **kw):
    ws = _workspace(args)
    for ex in train:
        ws.learn(_lines(ex, **kw))
    return ws


@pytest.fixture(scope="module")
def data():
    return _examples(N_TRAIN, 1), _examples(N_TEST, 2)


@pytest.fixture(scope="module")
def twin_scores(data):
    """Negated cb_adf costs of the test examples from a model trained like the explore ones."""
    train, test = data
    ws = _train("--cb_adf -q sa", train)
    scores = [-np.asarray(ws.predict(_lines(ex, label=False)), dtype=np.float64) for ex in test]
    ws.finish()
    return scores


def _vw_pmfs(args: str, data, **kw) -> list[np.ndarray]:
    train, test = data
    ws = _train(f"--cb_explore_adf {args} -q sa", train, **kw)
    pmfs = [np.asarray(ws.predict(_lines(ex, label=False)), dtype=np.float64) for ex in test]
    ws.finish()
    return pmfs


def _assert_all_close(policy_pmf, scores_list, vw_pmfs) -> None:
    assert len(scores_list) == len(vw_pmfs) == N_TEST
    for s, p in zip(scores_list, vw_pmfs):
        ours = policy_pmf(s)
        np.testing.assert_allclose(ours, p, rtol=0, atol=TOL)


# --------------------------------------------------------------------------- VW parity: trained models


@pytest.mark.parametrize("epsilon", [0.0, 0.05, 0.2, 0.5, 1.0])
def test_epsilon_greedy_equals_vw_cb_explore_adf_on_a_trained_model(data, twin_scores, epsilon):
    vw = _vw_pmfs(f"--epsilon {epsilon}", data)
    _assert_all_close(EpsilonGreedy(epsilon).pmf, twin_scores, vw)


def test_greedy_equals_vw_epsilon_zero(data, twin_scores):
    vw = _vw_pmfs("--epsilon 0", data)
    _assert_all_close(Greedy().pmf, twin_scores, vw)


@pytest.mark.parametrize(("lam", "epsilon"), [(0.0, 0.0), (0.5, 0.0), (2.0, 0.0), (10.0, 0.0), (2.0, 0.3), (10.0, 0.1)])
def test_softmax_equals_vw_cb_explore_adf_softmax_on_a_trained_model(data, twin_scores, lam, epsilon):
    vw = _vw_pmfs(f"--softmax --lambda {lam} --epsilon {epsilon}", data)
    _assert_all_close(Softmax(lam, epsilon=epsilon).pmf, twin_scores, vw)


def test_softmax_negative_vw_lambda_means_the_same_as_positive(data, twin_scores):
    # VW flips a negative --lambda (costs are minimized either way); nba's lambda_ is that |lambda|.
    vw = _vw_pmfs("--softmax --lambda -3", data)
    _assert_all_close(Softmax(3.0).pmf, twin_scores, vw)


@pytest.mark.parametrize(("gamma_scale", "gamma_exponent"), [(10.0, 0.5), (1.0, 0.3), (50.0, 0.0)])
def test_squarecb_equals_vw_cb_explore_adf_squarecb_on_a_trained_model(data, gamma_scale, gamma_exponent):
    train, test = data
    args = f"--squarecb --gamma_scale {gamma_scale} --gamma_exponent {gamma_exponent}"
    vw = _vw_pmfs(args, data)
    twin = _train("--cb_adf -q sa", train, squarecb_twin=True)
    scores = [-np.asarray(twin.predict(_lines(ex, label=False)), dtype=np.float64) for ex in test]
    twin.finish()
    policy = SquareCB(gamma_scale, gamma_exponent)
    policy.observe(N_TRAIN)  # VW's counter: one per learned example
    _assert_all_close(policy.pmf, scores, vw)
    _assert_all_close(lambda s: SquareCB(gamma_scale, gamma_exponent).pmf(s, t=N_TRAIN), scores, vw)


# --------------------------------------------------------------------------- VW parity: exact costs, ties


def _fixed_cost_lines(costs: np.ndarray) -> list[str]:
    return ["shared |s z:0"] + [f"|a x:{c!r}" for c in costs.tolist()]


def _tie_heavy_costs(n: int, seed: int) -> list[np.ndarray]:
    """Cost vectors drawn from a small grid (many exact ties) with near-ties mixed in."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(2, 12))
        c = rng.choice([-1.0, -0.25, 0.0, 0.5, 1.0, 2.0], size=k)
        near = rng.random(k) < 0.3
        # relative offsets either inside VW's 1e-4 tie tolerance or clearly outside it
        c = c + near * rng.choice([3e-5, -3e-5, 5e-4, -5e-4], size=k) * np.maximum(np.abs(c), 1.0)
        out.append(c.astype(np.float32).astype(np.float64))  # VW reads feature values as float32
    return out


@pytest.fixture(scope="module")
def tie_costs():
    """(costs written into the examples, costs as VW parsed them, read back from cb_adf).

    VW's float parser can be 1 ulp off, and near-ties make the pmf sensitive to
    that ulp: VW is always fed the written costs, nba the parsed ones.
    """
    ws = _workspace("--cb_adf --initial_weight 1 --noconstant -l 0")
    intended = _tie_heavy_costs(300, 7)
    parsed = [np.asarray(ws.predict(_fixed_cost_lines(c)), dtype=np.float64) for c in intended]
    ws.finish()
    for c, q in zip(intended, parsed):
        np.testing.assert_allclose(q, c, rtol=1e-6, atol=0)
    return intended, parsed


def _fixed_cost_vw(args: str, tie_costs, learn: int = 0) -> list[np.ndarray]:
    costs_list = tie_costs[0]
    ws = _workspace(f"--cb_explore_adf {args} --initial_weight 1 --noconstant -l 0")
    for _ in range(learn):  # -l 0: learning only advances counters, weights stay 1
        ws.learn(["shared |s z:0", "0:1:0.5 |a x:1", "|a x:0"])
    pmfs = [np.asarray(ws.predict(_fixed_cost_lines(c)), dtype=np.float64) for c in costs_list]
    ws.finish()
    return pmfs


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.6])
def test_epsilon_greedy_splits_ties_like_vw_including_near_ties(tie_costs, epsilon):
    vw = _fixed_cost_vw(f"--epsilon {epsilon}", tie_costs)
    for c, p in zip(tie_costs[1], vw):
        np.testing.assert_allclose(EpsilonGreedy(epsilon).pmf(-c), p, rtol=0, atol=TOL)
    # the grid makes ties frequent: the test would not notice a tie bug otherwise
    assert sum(int((p > p.min() + 1e-9).sum()) > 1 for p in vw) > 50


def test_exact_ties_only_when_tie_rtol_is_zero():
    s = np.array([1.0, 1.0 + 2e-5, 0.0])
    np.testing.assert_allclose(Greedy().pmf(s), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(Greedy(tie_rtol=0.0).pmf(s), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(UCB().pmf(np.array([2.0, 1.0, 2.0])), [0.5, 0.0, 0.5])


@pytest.mark.parametrize(("lam", "epsilon"), [(1.0, 0.0), (4.0, 0.5), (30.0, 0.2)])
def test_softmax_equals_vw_on_exact_costs(tie_costs, lam, epsilon):
    vw = _fixed_cost_vw(f"--softmax --lambda {lam} --epsilon {epsilon}", tie_costs)
    for c, p in zip(tie_costs[1], vw):
        np.testing.assert_allclose(Softmax(lam, epsilon=epsilon).pmf(-c), p, rtol=0, atol=TOL)


@pytest.mark.parametrize("learned", [0, 1, 37])
def test_squarecb_equals_vw_on_exact_costs_first_tied_action_gets_the_rest(tie_costs, learned):
    vw = _fixed_cost_vw("--squarecb", tie_costs, learn=learned)
    for c, p in zip(tie_costs[1], vw):
        np.testing.assert_allclose(SquareCB().pmf(-c, t=learned), p, rtol=0, atol=TOL)


# --------------------------------------------------------------------------- properties (hypothesis)

_finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
_score_vectors = st.lists(_finite, min_size=1, max_size=40).map(lambda v: np.asarray(v, dtype=np.float64))
_prob = st.floats(min_value=0.0, max_value=1.0)


def _vw_minimum_probability(p: np.ndarray, eps: float) -> np.ndarray:
    """Reference: VW's sort-based enforce_minimum_probability (consider_zero_valued_elements=true)."""
    n = p.shape[0]
    if eps == 0.0:
        return p.copy()
    if eps > 0.999:
        return np.full(n, 1.0 / n)
    m = eps / n
    srt = np.sort(p)[::-1]
    running, rho, rho_sum = 0.0, 0, srt[0]
    for idx, prob in enumerate(srt):
        running += prob
        if prob > ((n - idx - 1) * m + running - 1.0) / (idx + 1.0) + m:
            rho, rho_sum = idx, running
    tau = ((n - rho - 1.0) * m + rho_sum - 1.0) / (rho + 1.0)
    return np.maximum(p - tau, m)


def _check_pmf(p: np.ndarray, n: int) -> None:
    assert p.shape == (n,) and p.dtype == np.float64
    assert (p >= 0.0).all()
    assert abs(p.sum() - 1.0) < 1e-9


@settings(max_examples=150, deadline=None)
@given(_score_vectors, _prob)
def test_epsilon_greedy_pmf_is_a_distribution_with_floor_and_top_mass(s, eps):
    p = EpsilonGreedy(eps).pmf(s)
    n = s.shape[0]
    _check_pmf(p, n)
    assert (p >= eps / n - 1e-12).all()
    top = np.argmax(s)
    assert p[top] == p.max()
    tied = np.abs(s - s[top]) <= 1e-4 * (np.abs(s) + abs(s[top]))
    assert p[top] >= eps / n + (1 - eps) / tied.sum() - 1e-12


@settings(max_examples=150, deadline=None)
@given(_score_vectors, st.floats(min_value=0.0, max_value=50.0), _prob)
def test_softmax_pmf_matches_the_sorting_reference_and_is_monotone(s, lam, eps):
    p = Softmax(lam, epsilon=eps).pmf(s)
    n = s.shape[0]
    _check_pmf(p, n)
    raw = np.exp(lam * (s - s.max()))
    np.testing.assert_allclose(p, _vw_minimum_probability(raw / raw.sum(), eps), rtol=0, atol=1e-12)
    assert (p >= eps / n - 1e-12).all()
    order = np.argsort(s, kind="stable")
    assert (np.diff(p[order]) >= -1e-12).all()


@settings(max_examples=150, deadline=None)
@given(_score_vectors, st.floats(min_value=0.0, max_value=1e4))
def test_squarecb_pmf_is_a_distribution_favouring_the_best(s, gamma_scale):
    pol = SquareCB(gamma_scale, 0.5)
    p = pol.pmf(s, t=100)
    _check_pmf(p, s.shape[0])
    assert p[np.argmax(s)] >= p.max() - 1e-12  # the best gets 1 - (the rest): equal up to rounding


@settings(max_examples=100, deadline=None)
@given(_score_vectors, st.floats(min_value=-1e3, max_value=1e3))
def test_pmfs_ignore_a_constant_shift_of_scores(s, c):
    pols = [Softmax(1.5, epsilon=0.1)]
    top2 = np.sort(s)[-2:]
    if s.shape[0] == 1 or top2[1] - top2[0] > 1e-6 * (1.0 + abs(c) + np.abs(s).max()):
        pols.append(SquareCB(5.0, 0.5, t=9))  # only when the shift cannot round the best into a tie
    for pol in pols:
        np.testing.assert_allclose(pol.pmf(s + c), pol.pmf(s), rtol=0, atol=1e-6)


def test_pmf_writes_into_out_and_returns_it():
    s = np.array([0.3, 0.1, 0.9])
    out = np.empty(3)
    for pol in (Greedy(), EpsilonGreedy(0.1), Softmax(2.0), SquareCB(t=4), UCB()):
        assert pol.pmf(s, out) is out
        np.testing.assert_array_equal(out, pol.pmf(s))
    assert EpsilonGreedy(0.1).pmf([0.3, 0.1, 0.9]).tolist() == EpsilonGreedy(0.1).pmf(s).tolist()


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_raise_schema_error_naming_the_position(bad):
    s = np.array([0.1, 0.2, bad, 0.3])
    for pol in (Greedy(), EpsilonGreedy(0.1), Softmax(1.0), SquareCB(t=1), UCB()):
        with pytest.raises(nba.SchemaError, match="score 2"):
            pol.pmf(s)


@pytest.mark.parametrize(
    "make",
    [
        lambda: EpsilonGreedy(-0.1),
        lambda: EpsilonGreedy(1.5),
        lambda: EpsilonGreedy(math.nan),
        lambda: EpsilonGreedy("0.1"),
        lambda: Softmax(-1.0),
        lambda: Softmax(math.inf),
        lambda: Softmax(1.0, epsilon=2.0),
        lambda: Greedy(tie_rtol=-1e-4),
        lambda: SquareCB(gamma_scale=-1.0),
        lambda: SquareCB(gamma_exponent=math.nan),
        lambda: SquareCB(t=-1),
        lambda: Thompson(draws=0),
        lambda: Thompson(draws=2.5),
    ],
)
def test_bad_policy_parameters_raise_config_error(make):
    with pytest.raises(nba.ConfigError):
        make()


@pytest.mark.parametrize("scores", [[], [[0.1, 0.2]], ["a", "b"], np.zeros((2, 2))])
def test_malformed_scores_raise_schema_error(scores):
    with pytest.raises(nba.SchemaError):
        EpsilonGreedy(0.1).pmf(scores)


def test_bad_out_buffer_raises_schema_error():
    with pytest.raises(nba.SchemaError, match="out must be"):
        Greedy().pmf(np.zeros(3), out=np.zeros(4))
    with pytest.raises(nba.SchemaError, match="out must be"):
        Greedy().pmf(np.zeros(3), out=np.zeros(3, dtype=np.float32))


def test_thompson_needs_a_model_not_scores():
    with pytest.raises(nba.ConfigError, match="model_pmf"):
        Thompson().pmf(np.zeros(3))
    with pytest.raises(nba.ConfigError, match="posterior-sampling"):
        Thompson().model_pmf(nba.LinUCB(2, 2), np.ones(2), event_id="e")
    with pytest.raises(nba.ConfigError, match="upper-confidence-bound"):
        UCB().model_pmf(nba.BetaThompson(2), None)


def test_policies_have_names_for_logs_and_encode_as_plain_data():
    import msgspec

    assert EpsilonGreedy(0.05).name == "epsilon_greedy(epsilon=0.05)"
    assert Softmax(2.0).name == "softmax(lambda=2.0)"
    assert Greedy().name == "greedy"
    assert SquareCB().name == "squarecb(gamma_scale=10.0,gamma_exponent=0.5)"
    assert msgspec.json.decode(msgspec.json.encode(EpsilonGreedy(0.05)), type=EpsilonGreedy) == EpsilonGreedy(0.05)


def test_squarecb_counts_observed_examples_from_many_threads():
    import threading

    pol = SquareCB()
    threads = [threading.Thread(target=lambda: [pol.observe() for _ in range(1000)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pol.t == 4000
    assert pol.gamma() == 10.0 * math.sqrt(4000)
    np.testing.assert_allclose(SquareCB().pmf(np.arange(4.0)), np.full(4, 0.25))  # t = 0: uniform, as VW


# --------------------------------------------------------------------------- sampling


def _splitmix64(x: int) -> int:
    """Reference splitmix64 step (Vigna), in pure Python."""
    m = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def _reference_uniform(event_id: str, seed: int, j: int) -> float:
    """The documented recipe (nba/_core/rng.pxd header), independently in Python."""
    b = event_id.encode()
    k = _splitmix64(seed)
    h = (hashing_core.murmurhash3_32(b, k & 0xFFFFFFFF) << 32) | hashing_core.murmurhash3_32(b, k >> 32)
    key = _splitmix64(h ^ k)
    return (_splitmix64((key + j * 0x9E3779B97F4A7C15) & ((1 << 64) - 1)) >> 11) * 2.0**-53


def test_sampling_follows_the_documented_recipe():
    pmf = np.array([0.1, 0.2, 0.3, 0.4])
    cdf = np.cumsum(pmf)
    for i in range(500):
        eid, seed = f"evt-{i}", i * 7919
        u = _reference_uniform(eid, seed, 0)
        assert policy_core.uniform(policy_core.event_key(eid.encode(), seed), 0) == u
        assert sample(pmf, eid, seed) == int(np.searchsorted(cdf, u, side="right"))


def test_sampling_is_reproducible_across_processes():
    pmf = [0.05, 0.15, 0.3, 0.5]
    ids = [f"user-{i}:{i * i}" for i in range(200)]
    here = [sample(pmf, e, 42) for e in ids] + [sample_slate(pmf, 3, e, 42).tolist() for e in ids]
    code = (
        "import json, sys\nfrom nba.policy import sample, sample_slate\n"
        f"pmf = {pmf!r}\nids = {ids!r}\n"
        "print(json.dumps([sample(pmf, e, 42) for e in ids] + [sample_slate(pmf, 3, e, 42).tolist() for e in ids]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    import json

    assert json.loads(out) == here
    assert len({sample(pmf, "same", s) for s in range(50)}) > 1  # the seed matters
    assert sample(pmf, "same", -1) == sample(pmf, "same", (1 << 64) - 1)  # seeds are taken mod 2**64


N_EVENTS = 20_000


@pytest.mark.parametrize("seed", [0, 123456789])
def test_sample_distribution_matches_the_pmf(seed):
    pmf = np.array([0.02, 0.08, 0.15, 0.25, 0.5])
    counts = np.bincount([sample(pmf, f"event-{i}", seed) for i in range(N_EVENTS)], minlength=5)
    assert _chisquare_p(counts, N_EVENTS * pmf) > 0.001


def test_zero_probability_actions_are_never_sampled():
    pmf = np.array([0.0, 0.5, 0.0, 0.5, 0.0])
    got = {sample(pmf, f"e{i}", 3) for i in range(2000)}
    assert got == {1, 3}
    assert sample([1.0], "only", 0) == 0


def test_slate_first_slot_is_sample_and_slots_follow_successive_draws():
    pmf = np.array([0.1, 0.2, 0.3, 0.4])
    first = np.zeros(4)
    second = np.zeros(4)
    for i in range(N_EVENTS):
        eid = f"slate-{i}"
        s = sample_slate(pmf, 3, eid, 9)
        assert len(set(s.tolist())) == 3
        assert s[0] == sample(pmf, eid, 9)
        first[s[0]] += 1
        second[s[1]] += 1
    # slot 2 of sampling without replacement: P(j) = sum_i p_i p_j / (1 - p_i), i != j
    expect2 = np.array([sum(pmf[i] * pmf[j] / (1 - pmf[i]) for i in range(4) if i != j) for j in range(4)])
    assert _chisquare_p(first, N_EVENTS * pmf) > 0.001
    assert _chisquare_p(second, N_EVENTS * expect2) > 0.001


def test_slate_fills_with_zero_probability_actions_in_pmf_order():
    s = sample_slate([0.0, 1.0, 0.0, 0.0], 4, "e", 0)
    assert s.tolist() == [1, 0, 2, 3]


@pytest.mark.parametrize(
    ("pmf", "match"),
    [
        ([0.5, 0.6], "sums to"),
        ([0.5, 0.4], "sums to"),
        ([1.5, -0.5], r"pmf\[1\]"),
        ([0.5, math.nan, 0.5], r"pmf\[1\]"),
        ([], "empty"),
    ],
)
def test_bad_pmf_raises_schema_error(pmf, match):
    with pytest.raises(nba.SchemaError, match=match):
        sample(pmf, "e", 0)
    with pytest.raises(nba.SchemaError, match=match):
        sample_slate(pmf, 1, "e", 0)


def test_pmf_within_tolerance_of_one_is_accepted():
    assert sample([0.5, 0.5 + PMF_TOLERANCE / 2], "e", 0) in (0, 1)


def test_bad_slate_size_event_id_and_seed_raise():
    with pytest.raises(nba.ConfigError, match="slate size"):
        sample_slate([0.5, 0.5], 3, "e", 0)
    with pytest.raises(nba.ConfigError, match="slate size"):
        sample_slate([0.5, 0.5], 0, "e", 0)
    with pytest.raises(nba.SchemaError, match="event_id"):
        sample([1.0], 17, 0)
    with pytest.raises(nba.ConfigError, match="seed"):
        sample([1.0], "e", 1.5)
