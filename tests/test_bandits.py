"""nba.bandits: learning on simulated environments, exact pmfs, samplers, state, threads, errors.

Environments are seeded and their best arms known. Regret is the expected
regret of the arm played (gap of its mean reward to the best mean, in that
round's context), so the criteria are not at the mercy of reward noise:

* sublinear regret: regret over the second half of T is at most 0.5x the regret
  over the first half (linear regret, i.e. no learning, gives ~1x);
* the best arm (the context's best arm for contextual bandits) is played in
  more than 80% of the last 20% of rounds.

Each learner runs as the Decider drives it: its policy's pmf (``UCB`` or
``Thompson`` through ``model_pmf``), ``nba.policy.sample`` seeded by the event id,
then ``update``.
"""

from __future__ import annotations

import copy
import math
import pickle
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nba
from benchmarks.workloads import linear_bandit_rounds
from nba.bandits import (
    MAX_ABS_FEATURE,
    MAX_ABS_REWARD,
    MIN_RIDGE,
    UCB1,
    UNPLAYED_SCORE,
    BetaThompson,
    LinearThompson,
    LinUCB,
    OnlineBandit,
)
from nba.policy import UCB, Thompson, sample

scipy_stats = pytest.importorskip("scipy.stats")
scipy_integrate = pytest.importorskip("scipy.integrate")

T = 3000


# --------------------------------------------------------------------------- simulated environments


def _run_bernoulli(model, means: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Play T rounds of a Bernoulli bandit; returns (expected regret, played arm) per round."""
    rng = np.random.default_rng(seed)
    policy = Thompson() if model.exploration == "thompson" else UCB()
    regret = np.empty(T)
    played = np.empty(T, dtype=np.int64)
    for t in range(T):
        eid = f"run{seed}-{t}"
        pmf = policy.model_pmf(model, None, event_id=eid, seed=seed)
        a = sample(pmf, eid, seed)
        model.update(a, None, float(rng.random() < means[a]))
        regret[t] = means.max() - means[a]
        played[t] = a
    return regret, played


def _run_linear(model, theta: np.ndarray, seed: int, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Play T rounds of a linear bandit, reward x . theta_a + N(0, noise^2); returns
    (expected regret, whether the context's best arm was played) per round."""
    rng = np.random.default_rng(seed)
    d = theta.shape[1]
    policy = Thompson() if model.exploration == "thompson" else UCB()
    regret = np.empty(T)
    best = np.empty(T, dtype=bool)
    for t in range(T):
        x = np.append(rng.normal(size=d - 1), 1.0)  # last feature: intercept
        eid = f"lin{seed}-{t}"
        pmf = policy.model_pmf(model, x, event_id=eid, seed=seed)
        a = sample(pmf, eid, seed)
        mu = theta @ x
        model.update(a, x, float(mu[a] + noise * rng.normal()))
        regret[t] = mu.max() - mu[a]
        best[t] = a == int(np.argmax(mu))
    return regret, best


def _assert_learns(regret: np.ndarray, best_share_last: float) -> None:
    first, second = regret[: T // 2].sum(), regret[T // 2 :].sum()
    assert second <= 0.5 * first, f"regret first half {first:.1f}, second half {second:.1f}: not sublinear"
    assert best_share_last > 0.8, f"best arm played in only {best_share_last:.0%} of the last 20% of rounds"


BERNOULLI_MEANS = np.array([0.1, 0.25, 0.4, 0.75, 0.3])
PLANTED_THETA = np.array(
    [
        [1.0, 0.0, -0.5, 0.2],
        [-0.5, 1.0, 0.5, 0.0],
        [0.0, -1.0, 1.0, 0.1],
        [0.3, 0.3, -1.0, 0.3],
    ]
)


@pytest.mark.parametrize("make", [lambda: BetaThompson(5), lambda: UCB1(5)], ids=["BetaThompson", "UCB1"])
@pytest.mark.parametrize("seed", [1, 2])
def test_context_free_bandit_regret_is_sublinear_and_it_settles_on_the_best_arm(make, seed):
    model = make()
    regret, played = _run_bernoulli(model, BERNOULLI_MEANS, seed)
    share = float(np.mean(played[-T // 5 :] == int(np.argmax(BERNOULLI_MEANS))))
    _assert_learns(regret, share)
    assert model.updates == T


@pytest.mark.parametrize(
    "make",
    [lambda: LinUCB(4, 4, alpha=1.0), lambda: LinearThompson(4, 4, v=0.2)],
    ids=["LinUCB", "LinearThompson"],
)
@pytest.mark.parametrize("seed", [1, 2])
def test_linear_bandit_regret_is_sublinear_and_it_plays_each_contexts_best_arm(make, seed):
    model = make()
    regret, best = _run_linear(model, PLANTED_THETA, seed)
    _assert_learns(regret, float(best[-T // 5 :].mean()))


def test_linucb_recovers_a_planted_linear_reward_model_and_equals_ridge_regression():
    n_arms, d = 4, 5
    theta_true, X, arms, y = linear_bandit_rounds(4000, n_arms, d, seed=5, noise=0.1)
    model = LinUCB(n_arms, d, ridge=1.0)
    for x, a, r in zip(X, arms, y):  # uniform logging: every arm sees ~1000 contexts
        model.update(int(a), x, float(r))
    theta = model.theta
    # statistical: ~1000 rows per arm and noise 0.1 put each coefficient within ~0.01
    assert np.abs(theta - theta_true).max() < 0.05
    # exact: Sherman-Morrison updates equal the closed-form ridge solution
    for a in range(n_arms):
        Xa, ya = X[arms == a], y[arms == a]
        ref = np.linalg.solve(np.eye(d) + Xa.T @ Xa, Xa.T @ ya)
        np.testing.assert_allclose(theta[a], ref, rtol=0, atol=1e-9)
    assert model.pulls.tolist() == np.bincount(arms, minlength=n_arms).tolist()


def test_linucb_score_is_mean_plus_alpha_times_width_from_the_closed_form():
    rng = np.random.default_rng(8)
    model = LinUCB(3, 5, alpha=0.7, ridge=2.0)
    X = rng.normal(size=(300, 5))
    arms = rng.integers(3, size=300)
    y = rng.normal(size=300)
    for x, a, r in zip(X, arms, y):
        model.update(int(a), x, float(r))
    x = rng.normal(size=5)
    expect = []
    for a in range(3):
        Xa, ya = X[arms == a], y[arms == a]
        A = 2.0 * np.eye(5) + Xa.T @ Xa
        th = np.linalg.solve(A, Xa.T @ ya)
        expect.append(th @ x + 0.7 * math.sqrt(x @ np.linalg.solve(A, x)))
    np.testing.assert_allclose(model.score(x), expect, rtol=1e-9, atol=1e-12)
    mean, width = model.mean_width(x)
    np.testing.assert_allclose(mean + 0.7 * width, expect, rtol=1e-9, atol=1e-12)


def test_ucb1_plays_unplayed_arms_first_then_follows_the_ucb1_formula():
    model = UCB1(3)
    np.testing.assert_array_equal(model.score(), np.full(3, UNPLAYED_SCORE))
    np.testing.assert_allclose(model.pmf(), np.full(3, 1 / 3))
    model.update(1, None, 1.0)
    np.testing.assert_allclose(model.pmf(), [0.5, 0.0, 0.5])  # ties among the unplayed split evenly
    for a, r in [(0, 0.0), (2, 1.0), (2, 0.0), (0, 1.0)]:
        model.update(a, None, r)
    pulls, sums, t = np.array([2, 1, 2]), np.array([1.0, 1.0, 1.0]), 5
    np.testing.assert_allclose(model.score(), sums / pulls + np.sqrt(2 * math.log(t) / pulls))
    np.testing.assert_allclose(model.pmf(), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(model.means(), sums / pulls)


# --------------------------------------------------------------------------- samplers and exact pmfs


def test_beta_thompson_posterior_draws_follow_the_beta_posterior():
    model = BetaThompson(2, prior=(0.5, 2.0))
    for r in [1.0, 0.0, 1.0, 0.3, 1.0]:
        model.update(0, None, r)
    a, b = 0.5 + 3.3, 2.0 + 1.7
    np.testing.assert_allclose(model.alpha, [a, 0.5])
    np.testing.assert_allclose(model.beta, [b, 2.0])
    draws = np.array([model.score(event_id=f"d{i}") for i in range(4000)])
    assert scipy_stats.kstest(draws[:, 0], scipy_stats.beta(a, b).cdf).pvalue > 0.001
    assert scipy_stats.kstest(draws[:, 1], scipy_stats.beta(0.5, 2.0).cdf).pvalue > 0.001  # shape < 1 path
    np.testing.assert_allclose(model.score(), [a / (a + b), 0.5 / 2.5])  # no event id: posterior mean


def test_linear_thompson_draws_are_normal_around_the_estimate_with_v_times_the_width():
    rng = np.random.default_rng(3)
    model = LinearThompson(2, 3, v=0.5)
    for _ in range(40):
        x = rng.normal(size=3)
        model.update(int(rng.integers(2)), x, float(x[0]))
    x = rng.normal(size=3)
    mean, width = model.mean_width(x)
    draws = np.array([model.score(x, event_id=f"n{i}") for i in range(4000)])
    for a in range(2):
        z = (draws[:, a] - mean[a]) / (0.5 * width[a])
        assert scipy_stats.kstest(z, "norm").pvalue > 0.001
    np.testing.assert_allclose(model.score(x), mean)


def _p_best_beta(params: list[tuple[float, float]]) -> np.ndarray:
    """Exact P(arm is best) for independent Beta posteriors, by numerical integration."""
    out = []
    for i, (a, b) in enumerate(params):
        def f(x, i=i, a=a, b=b):
            v = scipy_stats.beta(a, b).pdf(x)
            for j, (aj, bj) in enumerate(params):
                if j != i:
                    v *= scipy_stats.beta(aj, bj).cdf(x)
            return v

        out.append(scipy_integrate.quad(f, 0, 1, limit=200)[0])
    return np.array(out)


def test_thompson_choices_are_distributed_exactly_as_p_best_and_pmfs_average_to_it():
    model = BetaThompson(3, draws=16)
    for arm, succ, fail in [(0, 3, 5), (1, 5, 4), (2, 2, 1)]:
        for _ in range(succ):
            model.update(arm, None, 1.0)
        for _ in range(fail):
            model.update(arm, None, 0.0)
    exact = _p_best_beta([(4, 6), (6, 5), (3, 2)])
    assert abs(exact.sum() - 1) < 1e-6
    n = 20_000
    pmfs = np.empty((n, 3))
    counts = np.zeros(3)
    for i in range(n):
        eid = f"ts-{i}"
        pmfs[i] = nba.Thompson().model_pmf(model, None, event_id=eid)
        counts[sample(pmfs[i], eid, 0)] += 1
    # every pmf is a share of 16 draws; each is exact for its own event
    np.testing.assert_array_equal(pmfs * 16, np.round(pmfs * 16))
    np.testing.assert_allclose(pmfs.sum(axis=1), 1.0)
    # averaged over events the choice is plain Thompson sampling: P(best)
    assert scipy_stats.chisquare(counts, n * exact).pvalue > 0.001
    se = np.sqrt(exact * (1 - exact) / (n * 16))
    assert (np.abs(pmfs.mean(axis=0) - exact) < 5 * se + 1e-3).all()


def test_thompson_pmf_is_reproducible_per_event_and_varies_across_events():
    model = LinearThompson(3, 2, v=1.0)
    x = np.array([0.5, 1.0])
    p1 = model.pmf(x, event_id="e1", seed=7)
    np.testing.assert_array_equal(p1, model.pmf(x, event_id="e1", seed=7))
    assert any(not np.array_equal(p1, model.pmf(x, event_id=f"e{i}", seed=7)) for i in range(2, 10))
    assert model.pmf(x, event_id="e1", draws=1000).shape == (3,)


def test_pmf_over_offered_arms_with_scale():
    model = LinUCB(4, 2, alpha=0.0)
    x = np.array([1.0, 1.0])
    for a, r in enumerate([0.1, 0.5, 0.3, 0.4]):
        for _ in range(20):
            model.update(a, x, r)
    np.testing.assert_allclose(model.pmf(x), [0, 1, 0, 0])
    np.testing.assert_allclose(model.pmf(x, arms=[3, 0, 2]), [1, 0, 0])  # arm 1 not offered
    np.testing.assert_allclose(model.pmf(x, arms=[3, 2], scale=[1.0, 2.0]), [0, 1])  # 0.6 > 0.4
    bt = BetaThompson(3)
    for _ in range(200):
        bt.update(0, None, 1.0)
        bt.update(1, None, 0.0)
    np.testing.assert_allclose(bt.pmf(event_id="e", arms=[1, 0]), [0, 1])
    np.testing.assert_allclose(bt.pmf(event_id="e", arms=[1, 0], scale=[-1.0, -1.0]), [1, 0])


# --------------------------------------------------------------------------- state


def _trained(kind: str):
    rng = np.random.default_rng(11)
    model = {
        "BetaThompson": lambda: BetaThompson(5, prior=(2.0, 3.0), draws=20),
        "UCB1": lambda: UCB1(5),
        "LinUCB": lambda: LinUCB(5, 3, alpha=0.4, ridge=0.5),
        "LinearThompson": lambda: LinearThompson(5, 3, v=0.3, ridge=2.0, draws=40),
    }[kind]()
    for _ in range(300):
        x = rng.normal(size=3)
        model.update(int(rng.integers(5)), x, float(rng.random()))
    return model


KINDS = ["BetaThompson", "UCB1", "LinUCB", "LinearThompson"]


def _fingerprint(model) -> list[np.ndarray]:
    x = np.array([0.3, -1.2, 0.7])
    kw = {"event_id": "fp", "seed": 3} if model.exploration == "thompson" else {}
    return [model.score(x), model.score(x, **kw), model.pmf(x, **kw)]


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_reproduces_scores_and_keeps_learning_identically(kind):
    model = _trained(kind)
    data = model.to_bytes()
    for restored in (
        type(model).from_bytes(data),
        OnlineBandit.from_bytes(data),
        pickle.loads(pickle.dumps(model)),
        copy.deepcopy(model),
    ):
        assert type(restored) is type(model) and restored.updates == model.updates == 300
        for a, b in zip(_fingerprint(model), _fingerprint(restored)):
            np.testing.assert_array_equal(a, b)
        assert restored.to_bytes() == data
    twin = type(model).from_bytes(data)
    for m in (model, twin):
        m.update(2, np.array([1.0, 0.0, 1.0]), 1.0)
    for a, b in zip(_fingerprint(model), _fingerprint(twin)):
        np.testing.assert_array_equal(a, b)
    assert twin.updates == 301


def test_ucb_pmf_survives_an_unplayed_bound_times_a_huge_scale():
    """UNPLAYED_SCORE x a large value overflows to inf: those arms still win, tied; the pmf is never garbage."""
    model = UCB1(4)
    model.update(0, reward=1.0)
    model.update(1, reward=0.0)  # arms 2 and 3 never played
    pmf = model.pmf(scale=[1.0, 1.0, 1e10, 1e10], out=np.full(4, 123.0))
    np.testing.assert_array_equal(pmf, [0.0, 0.0, 0.5, 0.5])
    pmf = model.pmf(arms=[0, 3], scale=[1.0, 1e10])
    np.testing.assert_array_equal(pmf, [0.0, 1.0])


def test_updates_counts_the_updates():
    model = LinUCB(2, 2)
    assert model.updates == 0
    model.update(0, [1.0, 2.0], 1.0)
    model.update(1, [1.0, 2.0], 0.0)
    assert model.updates == 2


@pytest.mark.parametrize(
    ("data", "cls"),
    [
        (b"not msgpack at all", OnlineBandit),
        (b"\x82\xa6format\x01\xa5state\x80", OnlineBandit),
        (None, LinUCB),  # a valid UCB1 state loaded as LinUCB
    ],
)
def test_bad_saved_state_raises_model_format_error(data, cls):
    if data is None:
        data = UCB1(3).to_bytes()
    with pytest.raises(nba.ModelFormatError):
        cls.from_bytes(data)


def test_truncated_state_arrays_raise_model_format_error():
    import msgspec

    raw = msgspec.msgpack.decode(LinUCB(2, 3).to_bytes())
    raw["state"]["ainv"] = raw["state"]["ainv"][:-8]
    with pytest.raises(nba.ModelFormatError, match="ainv"):
        LinUCB.from_bytes(msgspec.msgpack.encode(raw))


# --------------------------------------------------------------------------- threads

N_THREADS = 8
PER_THREAD = 1500


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_updates_lose_nothing_while_scores_run(kind):
    model = _trained(kind)
    before = model.pulls.copy()
    d = max(model.n_features, 1)
    errors: list[BaseException] = []
    stop = threading.Event()

    def learner(i: int) -> None:
        x = np.full(d, 0.1 * (i + 1))
        try:
            for _ in range(PER_THREAD):
                model.update(i % model.n_arms, x if model.n_features else None, 0.5)
        except BaseException as e:  # noqa: BLE001 - any failure in a thread is reported below  # pragma: no cover
            errors.append(e)

    def scorer() -> None:
        x = np.ones(d)
        kw = {"event_id": "s"} if model.exploration == "thompson" else {}
        try:
            while not stop.is_set():
                s = model.score(x if model.n_features else None)
                p = model.pmf(x if model.n_features else None, **kw)
                assert np.isfinite(s).all() and abs(p.sum() - 1) < 1e-9
        except BaseException as e:  # noqa: BLE001 - any failure in a thread is reported below  # pragma: no cover
            errors.append(e)

    scorers = [threading.Thread(target=scorer) for _ in range(2)]
    learners = [threading.Thread(target=learner, args=(i,)) for i in range(N_THREADS)]
    for t in scorers + learners:
        t.start()
    for t in learners:
        t.join()
    stop.set()
    for t in scorers:
        t.join()
    assert not errors, errors
    assert model.updates == 300 + N_THREADS * PER_THREAD
    expect = before + np.bincount(np.arange(N_THREADS) % model.n_arms, minlength=model.n_arms) * PER_THREAD
    assert model.pulls.tolist() == expect.tolist()


def test_concurrent_linear_updates_equal_the_serial_ridge_solution():
    model = LinUCB(2, 3)
    xs = [np.array([1.0, 0.1 * i, -0.2 * i]) for i in range(N_THREADS)]

    def learner(i: int) -> None:
        for _ in range(500):
            model.update(i % 2, xs[i], float(i))

    threads = [threading.Thread(target=learner, args=(i,)) for i in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a in range(2):
        A = np.eye(3) + sum(500 * np.outer(xs[i], xs[i]) for i in range(a, N_THREADS, 2))
        b = sum(500 * float(i) * xs[i] for i in range(a, N_THREADS, 2))
        np.testing.assert_allclose(model.theta[a], np.linalg.solve(A, b), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kind", ["LinUCB", "LinearThompson"])
def test_linear_input_errors_are_schema_errors_and_change_nothing(kind):
    model = _trained(kind)
    state = model.to_bytes()
    for bad_x, match in [
        (np.ones(2), "expected x of 3"),
        (np.ones((1, 3)), "expected x of 3"),
        (None, "needs a context vector"),
        (["a", "b", "c"], "x must be"),
        (np.array([1.0, np.nan, 0.0]), r"x\[1\]"),
        (np.array([np.inf, 1.0, 0.0]), r"x\[0\]"),
    ]:
        with pytest.raises(nba.SchemaError, match=match):
            model.update(0, bad_x, 1.0)
        with pytest.raises(nba.SchemaError, match=match):
            model.score(bad_x)
    for arm, match in [(5, "out of range"), (-1, "out of range"), (1.0, "must be an int"), (True, "must be an int")]:
        with pytest.raises(nba.SchemaError, match=match):
            model.update(arm, np.ones(3), 1.0)
    for reward in (math.nan, math.inf, "1", None):
        with pytest.raises(nba.SchemaError, match="reward"):
            model.update(0, np.ones(3), reward)
    assert model.to_bytes() == state


def test_context_free_input_errors():
    bt = BetaThompson(3)
    for reward in (1.5, -0.1, math.nan):
        with pytest.raises(nba.SchemaError, match="reward"):
            bt.update(0, None, reward)
    with pytest.raises(nba.SchemaError, match="out of range"):
        UCB1(3).update(3, None, 1.0)
    with pytest.raises(nba.SchemaError, match="out must be"):
        UCB1(3).score(None, np.zeros(4))
    for arms, match in [([], "non-empty"), ([0, 3], "outside"), ([1, 1], "distinct"), ([0.5], "int")]:
        with pytest.raises(nba.SchemaError, match=match):
            bt.pmf(event_id="e", arms=arms)
    with pytest.raises(nba.SchemaError, match="scale"):
        bt.pmf(event_id="e", arms=[0, 1], scale=[1.0])
    with pytest.raises(nba.SchemaError, match="event_id"):
        bt.pmf(event_id=3)
    assert bt.updates == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: BetaThompson(0),
        lambda: BetaThompson(2, prior=(0.0, 1.0)),
        lambda: BetaThompson(2, prior=(1.0,)),
        lambda: BetaThompson(2, draws=0),
        lambda: UCB1(1.5),
        lambda: LinUCB(2, 0),
        lambda: LinUCB(2, 2, alpha=-1.0),
        lambda: LinUCB(2, 2, ridge=0.0),
        lambda: LinearThompson(2, 2, v=math.nan),
    ],
)
def test_bad_constructor_arguments_raise_config_error(make):
    with pytest.raises(nba.ConfigError):
        make()


# --------------------------------------------------------------------------- bounded learning (issue 8)

_NEW = {
    "BetaThompson": lambda: BetaThompson(3, prior=(0.5, 2.0)),
    "UCB1": lambda: UCB1(3),
    "LinUCB": lambda: LinUCB(3, 4, alpha=1.0, ridge=MIN_RIDGE),
    "LinearThompson": lambda: LinearThompson(3, 4, v=1.0, ridge=1.0),
}


@pytest.mark.parametrize("kind", KINDS)
def test_check_reward_returns_a_float_or_refuses_what_the_model_cannot_learn(kind):
    model = _NEW[kind]()
    lo, hi = model.reward_range
    assert (lo, hi) == ((0.0, 1.0) if kind == "BetaThompson" else (-MAX_ABS_REWARD, MAX_ABS_REWARD))
    for ok in (lo, hi, (lo + hi) / 2, np.float64(hi), np.float32(lo), int(hi), np.int64(lo)):
        got = model.check_reward(ok)
        assert type(got) is float and got == float(ok)
    for bad in (hi * 1.0000001 + 1e-9, lo - 1e-9 - abs(lo) * 1e-7, 1e308, -1e308, math.inf, -math.inf, math.nan,
                True, None, "1", [1.0], 10**400):
        with pytest.raises(nba.SchemaError, match="reward"):
            model.check_reward(bad)
    assert model.updates == 0


def test_two_rewards_of_one_summed_are_refused_by_a_beta_model():
    """What the Decider does with aggregate="sum": check the running total before consuming a reward."""
    model = BetaThompson(2)
    assert model.check_reward(1.0) == 1.0
    with pytest.raises(nba.SchemaError, match=r"\[0, 1\]"):
        model.check_reward(1.0 + 1.0)


def test_a_reward_of_1e308_is_refused_and_linucb_keeps_deciding():
    model = LinUCB(3, 2)
    model.update(0, [1.0, 0.5], 1.0)
    state = model.to_bytes()
    for reward in (1e308, -1e308, 2e6):
        with pytest.raises(nba.SchemaError, match="reward"):
            model.update(1, [1.0, 1.0], reward)
    assert model.to_bytes() == state
    assert np.isfinite(model.score([1.0, 2.0])).all()
    model.update(1, [1.0, 1.0], MAX_ABS_REWARD)
    assert np.isfinite(model.score([1.0, 2.0])).all()


@pytest.mark.parametrize("kind", ["LinUCB", "LinearThompson"])
def test_linear_update_refuses_features_beyond_max_abs_feature_and_changes_nothing(kind):
    model = _NEW[kind]()
    state = model.to_bytes()
    for v, match in ((MAX_ABS_FEATURE * 1.5, "1e\\+09"), (-1e300, "1e\\+09"), (math.nan, "finite")):
        with pytest.raises(nba.SchemaError, match=rf"x\[2\].*{match}"):
            model.update(0, [0.0, 1.0, v, 0.0], 1.0)
    with pytest.raises(nba.SchemaError, match="expected x of 4"):
        model.update(0, [0.0, 1.0], 1.0)
    assert model.to_bytes() == state
    model.update(0, [MAX_ABS_FEATURE, -MAX_ABS_FEATURE, 0.0, 1.0], 1.0)
    assert model.updates == 1
    # Scoring takes any finite x, as before.
    assert np.isfinite(model.score([1e12, 0.0, 0.0, 0.0])).all()


_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, -1.0, 0.5, MAX_ABS_REWARD, -MAX_ABS_REWARD, MAX_ABS_FEATURE, -MAX_ABS_FEATURE,
                     1e308, -1e308, 5e-324, 2e6, 1e9 * (1 + 1e-15)]),
)
_in_range = st.one_of(st.floats(-MAX_ABS_FEATURE, MAX_ABS_FEATURE), st.floats(-3, 3),
                      st.sampled_from([MAX_ABS_FEATURE, -MAX_ABS_FEATURE]))
_x = st.one_of(*[st.lists(_in_range, min_size=4, max_size=4)] * 3,
               st.lists(st.one_of(_in_range, _value), min_size=4, max_size=4))
_reward = st.one_of(st.floats(-MAX_ABS_REWARD, MAX_ABS_REWARD), st.floats(0, 1), st.floats(0, 1), _value)
_step = st.tuples(st.integers(-1, 3), _x, _reward)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), steps=st.lists(_step, min_size=1, max_size=40))
def test_after_any_accepted_updates_scores_stay_finite_and_refused_updates_change_nothing(kind, steps):
    model = _NEW[kind]()
    probes = [np.ones(4), np.array([MAX_ABS_FEATURE, -MAX_ABS_FEATURE, MAX_ABS_FEATURE, 1.0]), np.zeros(4)]
    for arm, x, reward in steps:
        before = model.to_bytes()
        version = model.updates
        try:
            model.update(arm, np.array(x) if model.n_features else None, reward)
        except nba.SchemaError:
            assert model.to_bytes() == before and model.updates == version
            continue
        assert model.updates == version + 1
        for probe in probes:
            xs = probe if model.n_features else None
            assert np.isfinite(model.score(xs)).all()
            kw = {"event_id": "e"} if model.exploration == "thompson" else {}
            assert np.isfinite(model.score(xs, **kw)).all()
            assert abs(model.pmf(xs, **kw).sum() - 1.0) < 1e-9
    restored = OnlineBandit.from_bytes(model.to_bytes())
    assert restored.to_bytes() == model.to_bytes()


def test_check_reward_is_cheap():
    import time

    models = [f() for f in _NEW.values()]
    for model in models:
        t = time.perf_counter()
        for _ in range(20_000):
            model.check_reward(0.25)
        per_call = (time.perf_counter() - t) / 20_000
        assert per_call < 5e-6, f"{type(model).__name__}.check_reward takes {per_call * 1e9:.0f} ns"


def test_ridge_below_min_ridge_and_oversized_states_are_config_errors():
    with pytest.raises(nba.ConfigError, match="ridge"):
        LinUCB(2, 2, ridge=MIN_RIDGE / 10)
    with pytest.raises(nba.ConfigError, match="GiB of state"):
        LinUCB(100, 4096)


@pytest.mark.parametrize(
    ("kind", "field", "patch", "needle"),
    [
        ("LinUCB", "ainv", lambda a: a * 1e300, "out of the range"),
        ("LinUCB", "b", lambda a: a + 1e30, "out of the range"),
        ("LinearThompson", "theta", lambda a: a + 1e200, "out of the range"),
        ("LinUCB", "pulls", lambda a: -a - 1, "negative pull"),
        ("UCB1", "sums", lambda a: a + 1e300, "sums"),
        ("BetaThompson", "alpha", lambda a: a + 1e6, "alpha and beta"),
        ("BetaThompson", "beta", lambda a: a * 0.0 + 0.1, "alpha and beta"),
    ],
)
def test_saved_states_that_accepted_updates_cannot_reach_are_refused(kind, field, patch, needle):
    import msgspec

    model = _trained(kind)
    raw = msgspec.msgpack.decode(model.to_bytes())
    dtype = "<i8" if field == "pulls" else "<f8"
    arr = np.frombuffer(raw["state"][field], dtype=dtype)
    raw["state"][field] = patch(arr).astype(dtype).tobytes()
    with pytest.raises(nba.ModelFormatError, match=needle):
        OnlineBandit.from_bytes(msgspec.msgpack.encode(raw))


@pytest.mark.parametrize("kind", ["LinUCB", "LinearThompson"])
def test_an_update_rounding_would_corrupt_is_refused_atomically(kind):
    """Features 1e8 next to 1 make the computed A^-1 indefinite; that update is refused, nothing learned."""
    model = (LinUCB if kind == "LinUCB" else LinearThompson)(3, 4, ridge=1.0)
    model.update(0, [0.0, 94906266.0, 0.0, 1.0], 0.0)
    state = model.to_bytes()
    with pytest.raises(nba.SchemaError, match="standardize"):
        model.update(0, [0.0, 60023876.0, 0.0, 1.0], 2.0)
    assert model.to_bytes() == state
    model.update(0, [0.0, 1.0, 0.0, 1.0], 2.0)  # well-scaled features still learn
    assert np.isfinite(model.score(np.ones(4))).all() and model.updates == 2


@pytest.mark.parametrize("kind", [LinUCB, LinearThompson])
def test_a_linear_model_of_one_arm_learns(kind):
    model = kind(1, 2)  # broadcasting the prior to one arm gave a read-only array
    model.update(0, [1.0, 2.0], 1.0)
    assert model.pulls.tolist() == [1] and np.isfinite(model.score(np.ones(2))).all()
