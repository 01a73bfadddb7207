"""Off-policy evaluation (nba.evaluation): estimators against known truths, identities, vw-estimators parity."""

from __future__ import annotations

import math
import tempfile
import warnings
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nba
from nba import DecisionLog
from nba.errors import ConfigError, SchemaError
from nba.evaluation import (
    DM,
    DR,
    IPS,
    SNIPS,
    BanditData,
    DRShrinkage,
    LightGBMRewardModel,
    Report,
    SwitchDR,
    SyntheticBandit,
    UnexploredActionWarning,
    effective_sample_size,
    estimate,
    evaluate,
    from_joined,
    model_candidate,
)
from nba.log import join
from nba.log.reader import JoinedExample
from nba.log.records import DecisionRecord
from nba.policy import EpsilonGreedy, Greedy

BANDIT = SyntheticBandit(n_actions=4, dim=3, beta=1.0, seed=7)


def _candidate(data: BanditData, eps: float = 0.3) -> np.ndarray:
    """An epsilon-greedy policy on a fixed linear score: different from the behaviour policy, fully explored."""
    k = data.n_actions
    scores = data.context @ np.linspace(-1, 1, data.context.shape[1] * k).reshape(-1, k)
    return np.eye(k)[np.argmax(scores, axis=1)] * (1 - eps) + eps / k


def _good_model(data: BanditData, seed: int, noise: float = 0.02) -> np.ndarray:
    """A good reward model: the true expected reward with a little noise."""
    assert data.expected_reward is not None
    rng = np.random.default_rng(seed)
    return data.expected_reward + rng.normal(scale=noise, size=data.expected_reward.shape)


# --------------------------------------------------------------------------- truth and coverage


def test_ips_snips_and_dr_gaussian_intervals_cover_the_true_value_near_their_level():
    seeds = range(200)
    covered = {"ips": 0, "snips": 0, "dr": 0}
    for seed in seeds:
        data = BANDIT.sample(800, seed=seed)
        pi = _candidate(data)
        truth = data.policy_value(pi)
        rep = estimate(data, pi, estimators=(IPS(), SNIPS(), DR()), reward_model=_good_model(data, seed), n_bootstrap=0)
        for name in covered:
            g = rep[name].gaussian
            covered[name] += g.low <= truth <= g.high
    for name, c in covered.items():
        assert 0.90 <= c / len(seeds) <= 0.99, (name, c)


def test_bootstrap_intervals_cover_the_true_value_near_their_level():
    seeds = range(60)
    covered = {"ips": 0, "snips": 0, "dr": 0}
    for seed in seeds:
        data = BANDIT.sample(600, seed=1000 + seed)
        pi = _candidate(data)
        truth = data.policy_value(pi)
        rep = estimate(
            data, pi, estimators=(IPS(), SNIPS(), DR()), reward_model=_good_model(data, seed), n_bootstrap=300
        )
        for name in covered:
            b = rep[name].bootstrap
            assert b is not None and b.method == "bootstrap"
            covered[name] += b.low <= truth <= b.high
    for name, c in covered.items():
        assert c / len(seeds) >= 0.85, (name, c)


def test_ips_and_dr_are_unbiased_and_dr_has_lower_variance_with_a_good_reward_model():
    ips, dr, truths = [], [], []
    for seed in range(150):
        data = BANDIT.sample(500, seed=5000 + seed)
        pi = _candidate(data)
        truths.append(data.policy_value(pi))
        rep = estimate(data, pi, estimators=(IPS(), DR()), reward_model=_good_model(data, seed), n_bootstrap=0)
        ips.append(rep["ips"].value)
        dr.append(rep["dr"].value)
    err_ips = np.array(ips) - truths
    err_dr = np.array(dr) - truths
    # Mean error within 3 standard errors of 0 (unbiased), and DR's spread well below IPS's.
    for err in (err_ips, err_dr):
        assert abs(err.mean()) < 3 * err.std(ddof=1) / math.sqrt(len(err))
    assert err_dr.std() < 0.7 * err_ips.std()


def test_dr_with_a_cross_fitted_lightgbm_reward_model_covers_the_truth_with_a_narrower_interval():
    data = SyntheticBandit(n_actions=3, dim=3, beta=0.5, seed=3).sample(2000, seed=1)
    pi = _candidate(data)
    truth = data.policy_value(pi)
    model = LightGBMRewardModel(n_folds=2, num_boost_round=30)
    rep = estimate(data, pi, estimators=(IPS(), DM(), DR()), reward_model=model, n_bootstrap=0)
    g_dr, g_ips = rep["dr"].gaussian, rep["ips"].gaussian
    assert g_dr.low <= truth <= g_dr.high
    assert g_dr.high - g_dr.low < g_ips.high - g_ips.low
    assert abs(rep["dm"].value - truth) < 0.05


def test_policy_value_is_the_mean_expected_reward_under_the_candidate():
    data = BANDIT.sample(50, seed=3)
    assert data.expected_reward is not None
    greedy = np.eye(4)[np.argmax(data.expected_reward, axis=1)]
    assert data.policy_value(greedy) == pytest.approx(float(np.mean(data.expected_reward.max(axis=1))))
    assert data.policy_value(lambda x: np.full(4, 0.25)) == pytest.approx(float(np.mean(data.expected_reward)))


def test_synthetic_bandit_is_seeded_and_gaussian_rewards_centre_on_the_expected_reward():
    a, b = BANDIT.sample(100, seed=4), BANDIT.sample(100, seed=4)
    assert np.array_equal(a.reward, b.reward) and np.array_equal(a.action, b.action)
    assert not np.array_equal(a.context, BANDIT.sample(100, seed=5).context)
    g = SyntheticBandit(n_actions=3, reward_type="continuous", reward_std=0.1, seed=1).sample(4000, seed=0)
    assert g.expected_reward is not None
    resid = g.reward - g.expected_reward[np.arange(g.n), g.action]
    assert abs(resid.mean()) < 0.01 and resid.std() == pytest.approx(0.1, rel=0.1)
    # beta=0: the logging policy is uniform.
    u = SyntheticBandit(n_actions=5, beta=0.0).sample(10)
    assert np.allclose(u.pscore, 0.2)


# --------------------------------------------------------------------------- metamorphic identities


@st.composite
def logs(draw: st.DrawFn, const_reward: float | None = None) -> tuple[BanditData, np.ndarray, np.ndarray]:
    """A random log over K actions with a random candidate and reward model."""
    n = draw(st.integers(2, 40))
    k = draw(st.integers(2, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    pmf = rng.dirichlet(np.ones(k), size=n) + 1e-3
    pmf /= pmf.sum(axis=1, keepdims=True)
    action = np.array([rng.choice(k, p=p) for p in pmf], dtype=np.intp)
    reward = np.full(n, const_reward) if const_reward is not None else rng.random(n)
    data = BanditData(
        context=rng.normal(size=(n, 2)),
        action=action,
        reward=reward,
        pscore=pmf[np.arange(n), action],
        actions=tuple(f"a{j}" for j in range(k)),
        pmf=pmf,
    )
    pi = rng.dirichlet(np.ones(k) * draw(st.sampled_from([0.1, 1.0, 10.0])), size=n)
    return data, pi, rng.random((n, k))


@settings(max_examples=60, deadline=None)
@given(logs())
def test_switch_dr_at_infinity_is_dr_and_shrinkage_at_zero_is_dm_at_infinity_dr(log):
    data, pi, q = log
    rep = estimate(
        data,
        pi,
        estimators=(DR(), SwitchDR(math.inf), DM(), DRShrinkage(0.0), DRShrinkage(math.inf)),
        reward_model=q,
        n_bootstrap=20,
    )
    dr, sw, dm, os0, osinf = rep.estimates
    assert sw.value == dr.value and sw.gaussian == dr.gaussian and sw.bootstrap == dr.bootstrap
    assert os0.value == dm.value and os0.gaussian == dm.gaussian
    assert osinf.value == dr.value
    # switch-DR at tau=0 drops every correction of a positive weight: DM again.
    (sw0,) = estimate(data, pi, estimators=SwitchDR(0.0), reward_model=q, n_bootstrap=0).estimates
    assert sw0.value == pytest.approx(dm.value, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.floats(-5, 5, allow_nan=False).flatmap(lambda c: st.tuples(st.just(c), logs(const_reward=c))))
def test_snips_of_a_constant_reward_is_that_constant(case):
    c, (data, pi, _) = case
    (snips,) = estimate(data, pi, estimators=SNIPS(), n_bootstrap=10).estimates
    assert snips.value == pytest.approx(c, abs=1e-12)
    assert snips.gaussian.high - snips.gaussian.low == pytest.approx(0.0, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(logs())
def test_ips_of_the_behaviour_policy_is_the_mean_reward_with_every_weight_one(log):
    data, _, _ = log
    assert data.pmf is not None
    rep = estimate(data, data.pmf, estimators=(IPS(), SNIPS()), n_bootstrap=0)
    assert rep["ips"].value == pytest.approx(float(np.mean(data.reward)), abs=1e-12)
    assert rep["snips"].value == pytest.approx(float(np.mean(data.reward)), abs=1e-12)
    assert rep.ess == pytest.approx(data.n) and rep.max_weight == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(logs(), st.floats(0.5, 5.0))
def test_clipping_caps_every_weight_and_changes_nothing_above_the_largest(log, cap):
    data, pi, q = log
    w = pi[np.arange(data.n), data.action] / data.pscore
    rep = estimate(data, pi, estimators=(IPS(), IPS(max_weight=cap), IPS(max_weight=w.max() + 1)), n_bootstrap=0)
    plain, clipped, loose = rep.estimates
    assert clipped.value == pytest.approx(float(np.mean(np.minimum(w, cap) * data.reward)), abs=1e-12)
    assert loose.value == plain.value
    assert rep.max_weight == pytest.approx(float(w.max()))
    assert rep.ess == pytest.approx(effective_sample_size(w))


@settings(max_examples=30, deadline=None)
@given(logs())
def test_a_candidate_callable_and_its_pmf_array_give_the_same_report(log):
    data, pi, q = log
    rows = {tuple(c): p for c, p in zip(data.context.tolist(), pi)}
    by_array = estimate(data, pi, estimators=(IPS(), SNIPS(), DR()), reward_model=q, n_bootstrap=30)
    by_call = estimate(
        data, lambda x: rows[tuple(x.tolist())], estimators=(IPS(), SNIPS(), DR()), reward_model=q, n_bootstrap=30
    )
    assert by_call == by_array


def test_the_bootstrap_is_seeded_and_an_estimators_interval_does_not_depend_on_the_others_asked():
    data = BANDIT.sample(300, seed=11)
    pi, q = _candidate(data), _good_model(data, 11)
    alone = estimate(data, pi, estimators=IPS(), n_bootstrap=200, seed=5)["ips"].bootstrap
    among = estimate(data, pi, estimators=(SNIPS(), DR(), IPS()), reward_model=q, n_bootstrap=200, seed=5)["ips"]
    assert alone is not None and among.bootstrap is not None
    assert alone.low == pytest.approx(among.bootstrap.low, abs=1e-12)
    assert alone.high == pytest.approx(among.bootstrap.high, abs=1e-12)
    other = estimate(data, pi, estimators=IPS(), n_bootstrap=200, seed=6)["ips"].bootstrap
    assert other is not None and (other.low, other.high) != (alone.low, alone.high)


def test_effective_sample_size():
    assert effective_sample_size([1.0, 1.0, 1.0, 1.0]) == 4.0
    assert effective_sample_size([4.0, 0.0, 0.0, 0.0]) == 1.0
    assert effective_sample_size([0.0, 0.0]) == 0.0
    assert effective_sample_size([1.0, 3.0]) == pytest.approx(16 / 10)


# --------------------------------------------------------------------------- parity with vw-estimators


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(  # p_log, reward, p_pred; no subnormals: scipy's beta overflows on them (vw-estimators too)
            st.floats(0.01, 1.0, allow_subnormal=False),
            st.floats(0.0, 1.0, allow_subnormal=False),
            st.floats(0.0, 1.0, allow_subnormal=False),
        ),
        min_size=2,
        max_size=60,
    ),
    st.sampled_from([0.9, 0.95, 0.99]),
)
def test_ips_snips_and_their_gaussian_and_clopper_pearson_intervals_match_vw_estimators(rows, level):
    from estimators.bandits import clopper_pearson, gaussian, ips, snips

    vw = {
        "ips": ips.Estimator(),
        "snips": snips.Estimator(),
        "g": gaussian.Interval(),
        "cp": clopper_pearson.Interval(),
    }
    for p_log, r, p_pred in rows:
        for e in vw.values():
            e.add_example(p_log, r, p_pred)
    # Two actions: the logged one (index 0) with the logged and predicted probabilities, and the rest.
    n = len(rows)
    p_log, reward, p_pred = (np.array(c) for c in zip(*rows))
    data = BanditData(
        context=np.zeros((n, 1)),
        action=np.zeros(n, dtype=np.intp),
        reward=reward,
        pscore=p_log,
        actions=("logged", "other"),
    )
    rep = estimate(
        data,
        np.column_stack([p_pred, 1 - p_pred]),
        estimators=(IPS(), SNIPS()),
        level=level,
        n_bootstrap=0,
        reward_range=(0.0, 1.0),
    )
    alpha = 1 - level
    _same(rep["ips"].value, vw["ips"].get())
    _same(rep["snips"].value, vw["snips"].get())
    g_low, g_high = vw["g"].get(alpha)
    _same(rep["ips"].gaussian.low, g_low)
    _same(rep["ips"].gaussian.high, g_high)
    cp = rep["ips"].clopper_pearson
    assert cp is not None
    cp_low, cp_high = vw["cp"].get(alpha)
    _same(cp.low, cp_low)
    _same(cp.high, cp_high)


def _same(got: float, want: float | None) -> None:
    """Equal to 1e-12; vw-estimators' None (undefined) and NaN (scipy's) are our NaN."""
    if want is None or math.isnan(want):
        assert math.isnan(got), (got, want)
    else:
        assert abs(got - want) <= 1e-12, (got, want)


# --------------------------------------------------------------------------- diagnostics


def test_mass_on_an_action_the_logging_policy_never_explored_warns():
    data = BanditData(
        context=np.zeros((3, 1)),
        action=np.array([0, 1, 0], dtype=np.intp),
        reward=np.array([1.0, 0.0, 1.0]),
        pscore=np.array([0.5, 0.5, 0.5]),
        actions=("a", "b", "never"),
        pmf=np.array([[0.5, 0.5, 0.0]] * 3),
    )
    pi = np.array([[0.2, 0.2, 0.6], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    with pytest.warns(UnexploredActionWarning, match="never explored"):
        rep = estimate(data, pi, estimators=IPS(), n_bootstrap=0)
    assert rep.unexplored_mass == pytest.approx(0.2)
    assert len(rep.warnings) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert estimate(data, data.pmf, estimators=IPS(), n_bootstrap=0).unexplored_mass == 0.0


# --------------------------------------------------------------------------- bad input


def _data(**over):
    kw = dict(
        context=np.zeros((2, 1)),
        action=np.array([0, 1], dtype=np.intp),
        reward=np.array([1.0, 0.0]),
        pscore=np.array([0.5, 0.5]),
        actions=("a", "b"),
    )
    kw.update(over)
    return BanditData(**kw)


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"pscore": np.array([0.5, -0.1])}, "propensity"),
        ({"pscore": np.array([0.5, 0.0])}, "propensity"),
        ({"pscore": np.array([0.5])}, "shape"),
        ({"action": np.array([0, 2], dtype=np.intp)}, "indices"),
        ({"reward": np.array([1.0, math.nan])}, "finite"),
        ({"context": np.zeros((3, 1))}, "context"),
        ({"pmf": np.array([[0.5, 0.6], [0.5, 0.5]])}, "sums to"),
        ({"pmf": np.array([[0.5, 0.5], [1.5, -0.5]])}, "negative"),
        ({"pmf": np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])}, "shape"),
    ],
)
def test_bad_logged_data_raises_schema_error(over, match):
    with pytest.raises(SchemaError, match=match):
        _data(**over)


def test_bad_candidates_and_options_raise_typed_errors():
    data = _data()
    with pytest.raises(SchemaError, match="sums to"):
        estimate(data, np.array([[0.5, 0.6], [0.5, 0.5]]))
    with pytest.raises(SchemaError, match="negative"):
        estimate(data, np.array([[1.2, -0.2], [0.5, 0.5]]), estimators=IPS())
    with pytest.raises(SchemaError, match="shape"):
        estimate(data, np.array([[1.0], [1.0]]), estimators=IPS())
    with pytest.raises(SchemaError, match="shape"):
        estimate(data, lambda x: [1.0, 0.0, 0.0], estimators=IPS())
    with pytest.raises(SchemaError, match="shape"):
        estimate(data, data_pmf := np.full((2, 2), 0.5), estimators=DM(), reward_model=np.zeros((2, 3)))
    assert data_pmf.shape == (2, 2)
    with pytest.raises(ConfigError, match="estimators"):
        estimate(data, np.full((2, 2), 0.5), estimators=["ips"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="level"):
        estimate(data, np.full((2, 2), 0.5), level=95.0)
    with pytest.raises(ConfigError, match="max_weight"):
        IPS(max_weight=-1.0)
    with pytest.raises(ConfigError, match="tau"):
        SwitchDR(tau=math.nan)
    with pytest.raises(ConfigError, match="lam"):
        DRShrinkage(lam=-0.5)
    with pytest.raises(SchemaError, match="reward_range"):
        estimate(data, np.full((2, 2), 0.5), estimators=IPS(), reward_range=(0.0, 0.5))


# --------------------------------------------------------------------------- joined logs


@pytest.mark.parametrize(
    ("pmf", "chosen", "probability", "match"),
    [
        ([0.5, 0.6], 0, 0.5, "not a distribution"),
        ([1.5, -0.5], 0, 1.5, "not a distribution"),
        ([1.0, 0.0], 1, 0.0, "not a distribution"),
        ([0.5, 0.5], 2, 0.5, "chosen is not an index"),
        ([1.0], 0, 1.0, "differ in length"),
    ],
)
def test_a_damaged_logged_decision_raises_schema_error_naming_it(pmf, chosen, probability, match):
    bad = DecisionRecord(
        event_id="bad-1", ts=1.0, actions=["a", "b"], pmf=pmf, chosen=[chosen], probability=probability
    )
    ok = DecisionRecord(event_id="ok", ts=1.0, actions=["a", "b"], pmf=[0.5, 0.5], chosen=[0], probability=0.5)
    examples = [JoinedExample(decision=ok, reward=1.0, observed=True, start=1.0), JoinedExample(bad, 0.0, False, 1.0)]
    with pytest.raises(SchemaError, match=f"'bad-1'.*{match}"):
        evaluate(examples, lambda r: [0.5, 0.5], estimators=IPS())
    with pytest.raises(SchemaError, match="no joined decisions"):
        from_joined([])


def _record(i: int, rng: np.random.Generator, actions: list[str]) -> tuple[DecisionRecord, int]:
    pmf = rng.dirichlet(np.ones(len(actions))) * 0.9 + 0.1 / len(actions)
    pmf = (pmf / pmf.sum()).tolist()
    chosen = int(rng.choice(len(actions), p=pmf))
    rec = DecisionRecord(
        event_id=f"e{i}",
        ts=1000.0 + i,
        actions=actions,
        pmf=pmf,
        chosen=[chosen],
        probability=pmf[chosen],
        features={"User": {"age": float(rng.integers(18, 80)), "city": str(rng.choice(["Paris", "Lyon"]))}},
    )
    return rec, chosen


def test_evaluate_on_a_log_directory_matches_evaluate_on_its_joined_examples():
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d) as log:
            for i in range(300):
                actions = ["a", "b", "c"] if i % 3 else ["b", "c"]  # offers vary per decision
                rec, chosen = _record(i, rng, actions)
                log.append(rec)
                if actions[chosen] == "b" and rng.random() < 0.7:
                    log.append_outcome(rec.event_id, 1.0, now=rec.ts + 1)

        def always_b(record: DecisionRecord) -> list[float]:
            return [1.0 if a == "b" else 0.0 for a in record.actions]

        rep = evaluate(d, always_b, estimators=(IPS(), SNIPS(), DR()), reward_model=LightGBMRewardModel(n_folds=2))
        again = evaluate(
            join(d), always_b, estimators=(IPS(), SNIPS(), DR()), reward_model=LightGBMRewardModel(n_folds=2)
        )
        assert rep == again
        assert rep.n == 300
        for e in rep.estimates:
            assert e.gaussian.low <= 0.7 + 0.15 and e.gaussian.high >= 0.7 - 0.15, e
            assert e.bootstrap is not None
        data = from_joined(join(d))
        assert data.actions == ("b", "c", "a")  # first appearance: decision 0 offers only b, c
        assert data.context.shape == (300, 2)  # User.age, User.city (a category code)
        assert data.pmf is not None and np.all(data.pmf[0::3, 2] == 0.0)  # "a" not offered there
        with pytest.raises(ConfigError, match="join options"):
            evaluate(join(d), always_b, reward_window=10.0)


def _decider_log(d: str, rng: np.random.Generator) -> tuple[nba.Catalog, Any]:
    """A real Decider with a LightGBM model and epsilon-greedy exploration, logging 200 rewarded decisions."""
    import lightgbm as lgb

    schema = nba.FeatureSchema([nba.Numeric("age", source="profile"), nba.Numeric("hour", source="context")])
    arms = [nba.Arm(f"offer{i}", features={"fee": float(i)}, value=1.0 + i / 10) for i in range(4)]
    catalog = nba.Catalog(arms, schema)
    names = list(catalog.feature_names)
    X = rng.normal(size=(400, len(names)))
    y = (X[:, 0] + X[:, -1] > 0).astype(float)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": 0, "deterministic": True}
    model = nba.load_model(lgb.train(params, lgb.Dataset(X, y, feature_name=names), 10))
    with nba.Decider(catalog, model, policy=EpsilonGreedy(0.3), log=nba.DecisionLog(d), seed=1) as dec:
        for i in range(200):
            got = dec.decide({"age": float(rng.normal())}, {"hour": float(rng.normal())}, now=1000.0 + i)
            if rng.random() < (0.8 if got.arm == "offer0" else 0.3):
                dec.reward(got.event_id, 1.0, now=1000.5 + i)
    return catalog, model


def test_model_candidate_reproduces_the_logged_pmf_of_the_same_model_and_policy():
    rng = np.random.default_rng(2)
    with tempfile.TemporaryDirectory() as d:
        catalog, model = _decider_log(d, rng)
        joined = list(join(d))
        same = model_candidate(model, EpsilonGreedy(0.3), catalog)
        for ex in joined:
            assert np.allclose(same(ex.decision), ex.decision.pmf, atol=1e-12)
        rep = evaluate(joined, same, estimators=(IPS(), SNIPS()), n_bootstrap=0)
        mean = float(np.mean([ex.reward for ex in joined]))
        assert rep["ips"].value == pytest.approx(mean, abs=1e-9) and rep.ess == pytest.approx(len(joined))
        # Greedy on the same model: a different candidate, weights 1/p(greedy arm) on its matches, 0 elsewhere.
        greedy = evaluate(joined, model_candidate(model, Greedy(), catalog), estimators=IPS(), n_bootstrap=0)
        assert greedy.max_weight == pytest.approx(1 / (0.7 + 0.3 / 4))
        assert greedy.ess < len(joined)


# --------------------------------------------------------------------------- reward models


def test_dr_stays_unbiased_with_a_wrong_reward_model_while_dm_does_not():
    dr, dm, truths = [], [], []
    for seed in range(100):
        data = BANDIT.sample(500, seed=9000 + seed)
        pi = _candidate(data)
        truths.append(data.policy_value(pi))
        wrong = np.full((data.n, data.n_actions), 0.9)  # far from every true mean
        rep = estimate(data, pi, estimators=(DM(), DR()), reward_model=wrong, n_bootstrap=0)
        dm.append(rep["dm"].value)
        dr.append(rep["dr"].value)
    err_dr = np.array(dr) - truths
    assert abs(err_dr.mean()) < 3 * err_dr.std(ddof=1) / math.sqrt(len(err_dr))
    assert abs(np.mean(dm) - np.mean(truths)) > 0.2


def test_a_callable_reward_model_gets_contexts_and_one_action_index_per_row():
    data = BANDIT.sample(30, seed=1)
    seen = []

    def q(context: np.ndarray, action: np.ndarray) -> np.ndarray:
        seen.append(int(action[0]))
        assert context.shape == (30, 3) and np.all(action == action[0])
        return np.full(30, 0.1 * action[0])

    pi = _candidate(data)
    rep = estimate(data, pi, estimators=DM(), reward_model=q, n_bootstrap=0)
    assert seen == [0, 1, 2, 3]
    assert rep["dm"].value == pytest.approx(float(np.mean(pi @ (0.1 * np.arange(4)))))


def test_lightgbm_reward_model_is_deterministic_and_cross_fits():
    data = BANDIT.sample(400, seed=2)
    one = LightGBMRewardModel(num_boost_round=20).predict(data)
    assert one.shape == (400, 4) and np.array_equal(one, LightGBMRewardModel(num_boost_round=20).predict(data))
    crossed = LightGBMRewardModel(n_folds=3, num_boost_round=20).predict(data)
    assert not np.array_equal(one, crossed)  # each fold predicted by a model that never saw it
    # In-sample fits its own rewards more closely than the cross-fitted predictions do.
    rows = np.arange(data.n)
    assert np.mean((one[rows, data.action] - data.reward) ** 2) < np.mean(
        (crossed[rows, data.action] - data.reward) ** 2
    )
    with pytest.raises(ConfigError, match="n_folds"):
        LightGBMRewardModel(n_folds=0)


def test_report_is_plain_data_that_encodes_to_json():
    data = BANDIT.sample(100, seed=3)
    rep = estimate(data, _candidate(data), reward_model=_good_model(data, 0), n_bootstrap=50)
    assert [e.estimator for e in rep.estimates] == ["ips", "snips", "dm", "dr"]
    back = msgspec.json.decode(msgspec.json.encode(rep), type=Report)
    assert back == rep
    with pytest.raises(AttributeError):
        rep.n = 3  # type: ignore[misc]
    with pytest.raises(KeyError, match="no estimate"):
        rep["switch-dr"]
