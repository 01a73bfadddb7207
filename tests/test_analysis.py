"""nba.analysis: Welch and SRM against scipy, lift coverage with and without CUPED, analyze on a Decider's log."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import nba
from nba.analysis import analyze, lift, srm, welch
from nba.bandits import BetaThompson
from nba.errors import ConfigError, SchemaError
from nba.experiments import Allocator
from nba.log import DecisionRecord, JoinedExample, join, read_records
from nba.policy import EpsilonGreedy

# --------------------------------------------------------------------------- Welch == scipy


def _close(x: float, y: float, tol: float = 1e-12) -> bool:
    return math.isclose(x, y, rel_tol=tol, abs_tol=tol)


@st.composite
def _two_samples(draw):
    n_a = draw(st.integers(2, 60))
    n_b = draw(st.integers(2, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale_a = draw(st.floats(0.01, 100.0))
    scale_b = draw(st.floats(0.01, 100.0))
    shift = draw(st.floats(-50.0, 50.0))
    a = rng.normal(0.0, scale_a, n_a)
    b = rng.normal(shift, scale_b, n_b) if draw(st.booleans()) else shift + rng.exponential(scale_b, n_b)
    return a, b, draw(st.sampled_from([0.8, 0.9, 0.95, 0.99]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_two_samples())
def test_welch_equals_scipy_ttest_ind_unequal_var(sample) -> None:
    a, b, level = sample
    got = welch(a, b, level=level)
    want = stats.ttest_ind(b, a, equal_var=False)
    ci = want.confidence_interval(level)
    assert _close(got.t, want.statistic) and _close(got.p_value, want.pvalue) and _close(got.df, want.df)
    scale = max(1.0, abs(ci.low), abs(ci.high))
    assert abs(got.interval.low - ci.low) <= 1e-12 * scale and abs(got.interval.high - ci.high) <= 1e-12 * scale
    assert _close(got.diff, float(np.mean(b) - np.mean(a)), 1e-12 * max(1.0, abs(np.mean(b))))
    assert got.interval.level == level


def test_welch_refuses_bad_samples() -> None:
    with pytest.raises(SchemaError, match="at least 2"):
        welch([1.0], [1.0, 2.0])
    with pytest.raises(SchemaError, match="finite"):
        welch([1.0, math.nan], [1.0, 2.0])
    with pytest.raises(ConfigError, match="between 0 and 1"):
        welch([1.0, 2.0], [1.0, 2.0], level=95)


def test_welch_of_constant_samples_is_nan_not_an_error() -> None:
    w = welch([1.0, 1.0], [2.0, 2.0])
    assert w.diff == 1.0 and w.se == 0.0 and math.isnan(w.p_value) and math.isnan(w.interval.low)


# --------------------------------------------------------------------------- SRM


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 100_000), min_size=2, max_size=6),
    st.lists(st.floats(0.05, 1.0), min_size=6, max_size=6),
)
def test_srm_equals_scipy_chisquare(counts, raw_weights) -> None:
    names = [f"v{i}" for i in range(len(counts))]
    w = dict(zip(names, raw_weights))
    got = srm(dict(zip(names, counts)), w)
    total = sum(counts)
    if total == 0:
        assert not got.checked and not got.alert
        return
    exp = np.array([total * w[n] / sum(w.values()) for n in names])
    want = stats.chisquare(counts, exp)
    assert _close(got.chi2, want.statistic, 1e-9) and _close(got.p_value, want.pvalue, 1e-9)
    assert got.checked == (min(counts) >= 8)
    assert got.alert == (got.checked and want.pvalue < 0.001)


def test_srm_fires_on_a_52_48_split_of_20k_units() -> None:
    got = srm({"a": 10_400, "b": 9_600}, {"a": 0.5, "b": 0.5})
    assert got.alert and got.p_value < 1e-6 and got.expected == {"a": 10_000.0, "b": 10_000.0}


def test_srm_false_alarm_rate_on_fair_splits_is_near_the_threshold() -> None:
    rng = np.random.default_rng(7)
    weights = {"a": 0.5, "b": 0.3, "c": 0.2}
    n_trials = 3000
    counts = rng.multinomial(5000, list(weights.values()), size=n_trials)
    checks = [srm(dict(zip(weights, map(int, c))), weights) for c in counts]
    alarms = sum(c.alert for c in checks)
    # Binomial(3000, 0.001): mean 3; P(X >= 12) < 1e-4. Zero alarms is plausible (5%) and fine.
    assert alarms < 12
    # and the test is not merely mute: its p-values are uniform, so p < 0.05 in 5% +- 3 sigma of the splits
    share = sum(c.p_value < 0.05 for c in checks) / n_trials
    assert abs(share - 0.05) <= 3 * math.sqrt(0.05 * 0.95 / n_trials)


def test_srm_skips_too_small_variants_and_zero_weights() -> None:
    small = srm({"a": 7, "b": 30}, {"a": 0.5, "b": 0.5})
    assert not small.checked and not small.alert and small.p_value < 0.01
    off = srm({"a": 500, "b": 500, "c": 0}, {"a": 0.5, "b": 0.5, "c": 0.0})
    assert off.checked and not off.alert and off.expected["c"] == 0.0
    with pytest.raises(ConfigError, match="no weight"):
        srm({"a": 5, "z": 5}, {"a": 1.0})


# --------------------------------------------------------------------------- lift coverage, CUPED


def _experiment(rng, n=300, mu_a=10.0, lift_abs=0.5, beta=2.0, noise=1.5):
    xa, xb = rng.normal(5.0, 1.0, n), rng.normal(5.0, 1.0, n + 37)  # unequal sizes
    ya = mu_a + beta * (xa - 5.0) + rng.normal(0.0, noise, n)
    yb = mu_a + lift_abs + beta * (xb - 5.0) + rng.normal(0.0, noise * 1.3, n + 37)  # unequal variances
    return ya, yb, xa, xb


def test_lift_intervals_cover_the_true_lift_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(11)
    n_sims, mu_a, lift_abs = 600, 10.0, 0.5
    true_rel = lift_abs / mu_a
    hits = Counter()
    raw_est, cuped_est = [], []
    for _ in range(n_sims):
        ya, yb, xa, xb = _experiment(rng, mu_a=mu_a, lift_abs=lift_abs)
        for name, lf in (("raw", lift(ya, yb)), ("cuped", lift(ya, yb, covariate_control=xa, covariate_treatment=xb))):
            hits[name + "-abs"] += lf.absolute_interval.low <= lift_abs <= lf.absolute_interval.high
            hits[name + "-rel"] += lf.relative_interval.low <= true_rel <= lf.relative_interval.high
            (cuped_est if lf.cuped else raw_est).append(lf.absolute)
    sigma = math.sqrt(0.95 * 0.05 / n_sims)
    for key, h in hits.items():
        assert abs(h / n_sims - 0.95) <= 3 * sigma, (key, h / n_sims)
    # a large lift on a small control mean: the relative interval's denominator matters, with CUPED too
    # (GrowthBook's shortcut, adjusted variances in the no-CUPED formula, covers ~0.87 here)
    big = Counter()
    for _ in range(400):
        ya, yb, xa, xb = _experiment(rng, mu_a=1.0, lift_abs=1.0, beta=2.0, noise=1.0)  # +100%
        for lf in (lift(ya, yb), lift(ya, yb, covariate_control=xa, covariate_treatment=xb)):
            big[lf.cuped] += lf.relative_interval.low <= 1.0 <= lf.relative_interval.high
    for cuped, h in big.items():
        assert abs(h / 400 - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / 400), (cuped, h / 400)
    # unbiased: the mean CUPED estimate lies within 4 standard errors of the true lift
    assert abs(np.mean(cuped_est) - lift_abs) <= 4 * np.std(cuped_est) / math.sqrt(n_sims)
    # and tighter: corr(Y, X) ~ 0.8 here, so the spread shrinks by about sqrt(1 - 0.64) = 0.6
    assert np.std(cuped_est) < 0.75 * np.std(raw_est)


def test_cuped_reduces_the_standard_error_when_the_covariate_correlates() -> None:
    ya, yb, xa, xb = _experiment(np.random.default_rng(3), n=2000)
    raw = lift(ya, yb)
    adj = lift(ya, yb, covariate_control=xa, covariate_treatment=xb)
    width = lambda lf: lf.absolute_interval.high - lf.absolute_interval.low  # noqa: E731
    assert adj.cuped and not raw.cuped and width(adj) < 0.7 * width(raw)
    # by hand: theta = cov(Y, X) / var(X) pooled, Y' = Y - theta (X - mean X), then Welch on Y'
    y, x = np.concatenate([ya, yb]), np.concatenate([xa, xb])
    theta = np.cov(y, x)[0, 1] / np.var(x, ddof=1)
    want = stats.ttest_ind(yb - theta * (xb - x.mean()), ya - theta * (xa - x.mean()), equal_var=False)
    assert _close(adj.p_value, want.pvalue, 1e-9) and _close(adj.absolute_interval.low, want.confidence_interval().low, 1e-9)
    assert _close(adj.relative, adj.absolute / ya.mean(), 1e-12)
    # an unrelated covariate changes (almost) nothing
    rng = np.random.default_rng(4)
    noise = lift(ya, yb, covariate_control=rng.normal(size=ya.size), covariate_treatment=rng.normal(size=yb.size))
    assert 0.95 < width(noise) / width(raw) < 1.05


def test_relative_lift_is_growthbooks_delta_method() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.exponential(2.0, 400), rng.exponential(2.3, 350)
    lf = lift(a, b)
    ma, mb, va, vb = a.mean(), b.mean(), a.var(ddof=1), b.var(ddof=1)
    var = vb / (b.size * ma**2) + mb**2 * va / (a.size * ma**4)
    df = stats.ttest_ind(b, a, equal_var=False).df
    q = stats.t.ppf(0.975, df)
    assert _close(lf.relative, mb / ma - 1)
    assert _close(lf.relative_interval.low, mb / ma - 1 - q * math.sqrt(var), 1e-10)
    assert _close(lf.relative_interval.high, mb / ma - 1 + q * math.sqrt(var), 1e-10)


# --------------------------------------------------------------------------- analyze on joined examples


def _joined(rows):
    """JoinedExamples from (event_id, unit, variant, arm, reward) rows of experiment 'e'."""
    out = []
    for i, (eid, unit, variant, arm, reward) in enumerate(rows):
        d = DecisionRecord(
            event_id=eid, ts=1_700_000_000.0 + i, actions=["x", "y"], pmf=[0.5, 0.5], chosen=[["x", "y"].index(arm)],
            probability=0.5, variants={"e": variant} if variant else {}, unit=unit,
        )
        out.append(JoinedExample(d, reward, reward != 0.0, d.ts))
    return out


def test_analyze_aggregates_per_unit_and_per_decision() -> None:
    rows = [
        ("1", "u1", "a", "x", 1.0), ("2", "u1", "a", "y", 0.0), ("3", "u2", "a", "x", 2.0),
        ("4", "u3", "b", "x", 0.0), ("5", "u4", "b", "y", 3.0), ("6", "u4", "b", "y", 1.0), ("7", "u5", "b", "x", 1.0),
        ("8", None, "b", "x", 1.0), ("9", "u9", None, "x", 5.0),
    ]
    res = analyze(_joined(rows))
    assert list(res) == ["e"]
    r = res["e"]
    a, b = r.variants
    assert (a.variant, a.units, a.decisions, a.reward_sum) == ("a", 2, 3, 3.0)
    assert (b.variant, b.units, b.decisions, b.reward_sum) == ("b", 4, 5, 6.0)  # the unit-less decision is a unit
    assert a.mean_per_unit == 1.5 and b.mean_per_unit == 1.5 and a.mean_per_decision == 1.0
    assert math.isclose(b.rate, 4 / 5) and math.isclose(a.rate, 2 / 3)
    lf = r.lifts[0]
    assert (lf.variant, lf.control, r.control) == ("b", "a", "a") and lf.absolute == 0.0 and lf.relative == 0.0
    w = welch([1.0, 2.0], [0.0, 4.0, 1.0, 1.0])
    assert lf.absolute_interval == w.interval and lf.p_value == w.p_value
    assert {(s.variant, s.arm): s.decisions for s in r.arms} == {("a", "x"): 2, ("a", "y"): 1, ("b", "x"): 3, ("b", "y"): 2}
    assert any("alphabetically first" in n for n in r.notes) and any("equal weights" in n for n in r.notes)
    assert any("without a unit" in n for n in r.notes)
    assert "experiment 'e'" in r.summary() and "SRM" in r.summary()


def test_analyze_per_decision_interval_is_the_delta_method_across_units() -> None:
    rng = np.random.default_rng(2)
    rows, y, d = [], defaultdict(float), Counter()
    for i in range(400):
        u = f"u{rng.integers(0, 60)}"
        r = float(rng.random() < 0.3)
        rows.append((str(i), u, "a", "x", r))
        y[u] += r
        d[u] += 1
    v = analyze(_joined(rows)).get("e").variants[0]
    ys, ds = np.array([y[u] for u in y]), np.array([d[u] for u in y])
    ratio = ys.sum() / ds.sum()
    c = np.cov(ys, ds)
    se = math.sqrt((c[0, 0] - 2 * ratio * c[0, 1] + ratio**2 * c[1, 1]) / (ds.mean() ** 2 * ys.size))
    q = stats.t.ppf(0.975, ys.size - 1)
    assert _close(v.mean_per_decision, ratio) and _close(v.interval_per_decision.high, ratio + q * se, 1e-10)


def test_arm_stats_equal_a_t_interval_even_for_large_similar_rewards() -> None:
    rng = np.random.default_rng(8)
    rewards = 1e6 + rng.normal(0.0, 1e-3, 50)
    rows = [(str(i), f"u{i}", "a", ("x", "y")[i % 2], float(r)) for i, r in enumerate(rewards)]
    arms = {s.arm: s for s in analyze(_joined(rows)).get("e").arms}
    for arm, vals in (("x", rewards[0::2]), ("y", rewards[1::2])):
        lo, hi = stats.t.interval(0.95, vals.size - 1, loc=vals.mean(), scale=stats.sem(vals))
        got = arms[arm]
        assert got.decisions == vals.size and math.isclose(got.mean, vals.mean(), rel_tol=1e-14)
        assert math.isclose(got.interval.high - got.interval.low, hi - lo, rel_tol=1e-6)


def test_analyze_leaves_out_units_seen_in_two_variants() -> None:
    rows = [("1", "u1", "a", "x", 1.0), ("2", "u1", "b", "x", 1.0), ("3", "u2", "a", "x", 0.0), ("4", "u3", "b", "x", 0.0)]
    r = analyze(_joined(rows))["e"]
    assert [v.units for v in r.variants] == [1, 1]
    assert any("more than one variant" in n for n in r.notes)


def test_analyze_cuped_uses_the_covariate_per_unit() -> None:
    rng = np.random.default_rng(9)
    rows, pre = [], {}
    for i in range(600):
        u = f"u{i}"
        pre[u] = float(rng.normal(5.0, 1.0))
        v = "a" if i % 2 else "b"
        rows.append((str(i), u, v, "x", pre[u] * 2 + (0.5 if v == "b" else 0.0) + float(rng.normal())))
    plain = analyze(_joined(rows))["e"].lifts[0]
    adj = analyze(_joined(rows), covariate=pre)["e"].lifts[0]
    assert adj.cuped and not plain.cuped
    assert adj.absolute_interval.high - adj.absolute_interval.low < 0.6 * (plain.absolute_interval.high - plain.absolute_interval.low)
    want = lift(
        [r[4] for r in rows if r[2] == "a"], [r[4] for r in rows if r[2] == "b"],
        covariate_control=[pre[r[1]] for r in rows if r[2] == "a"],
        covariate_treatment=[pre[r[1]] for r in rows if r[2] == "b"], variant="b", control_name="a",
    )
    assert adj == want
    partial = analyze(_joined(rows), covariate=lambda u: pre[u] if u != "u0" else None)["e"]
    assert any("1 unit(s) have no pre-period covariate" in n for n in partial.notes)


def test_analyze_edges_empty_log_unknown_control_bad_level_undeclared_variant() -> None:
    assert analyze([]) == {}
    exp = nba.Experiment("e", {"a": 0.5, "b": 0.5})
    empty = analyze([], experiments=[exp])["e"]
    assert [v.units for v in empty.variants] == [0, 0] and empty.control == "a"
    assert all(math.isnan(v.mean_per_unit) for v in empty.variants) and math.isnan(empty.lifts[0].absolute)
    assert any("no units" in n for n in empty.notes) and not empty.srm.alert
    assert "nan" in empty.summary()
    rows = _joined([("1", "u1", "a", "x", 1.0), ("2", "u2", "c", "x", 1.0)])
    with pytest.raises(ConfigError, match="control 'z'"):
        analyze(rows, control="z")
    with pytest.raises(ConfigError, match="level"):
        analyze(rows, level=1.0)
    with pytest.raises(SchemaError, match=r"variants \['c'\]"):
        analyze(rows, experiments=[exp])
    assert analyze(rows, control={"e": "c"})["e"].control == "c"
    zero = analyze(_joined([("1", "u1", "a", "x", 0.0), ("2", "u2", "a", "x", 0.0), ("3", "u3", "b", "x", 1.0),
                            ("4", "u4", "b", "x", 0.0)]))["e"]
    assert math.isnan(zero.lifts[0].relative) and any("mean 0" in n for n in zero.notes)


# --------------------------------------------------------------------------- analyze on a Decider's real log


def _arms() -> list[nba.Arm]:
    return [nba.Arm(f"offer{i}", features={"fee": float(i)}) for i in range(3)]


def _schema() -> nba.FeatureSchema:
    return nba.FeatureSchema([nba.Numeric("age", source="profile")])


def test_analyze_on_a_deciders_log_matches_a_direct_recount(tmp_path) -> None:
    exp = nba.Experiment("banner", {"control": 0.5, "new": 0.3, "bold": 0.2}, salt="s1")
    rng = np.random.default_rng(1)
    t0 = 1_700_000_000.0
    with nba.Decider(
        _arms(), BetaThompson(3), schema=_schema(), policy=EpsilonGreedy(0.2), experiments=[exp],
        log=nba.DecisionLog(tmp_path), seed=4,
    ) as dec:
        for i in range(1500):
            unit = f"user{int(rng.integers(0, 600))}"
            d = dec.decide({"id": unit, "age": 30.0}, now=t0 + i)
            if rng.random() < 0.25:
                dec.reward(d.event_id, 1.0, now=t0 + i + 1)
    res = analyze(tmp_path, experiments=[exp], reward_window=3600)
    r = res["banner"]
    # direct recount from the records
    joined = list(join(tmp_path, reward_window=3600))
    alloc = Allocator([exp])
    unit_variant: dict = {}
    per_unit: dict = defaultdict(float)
    decisions = Counter()
    arms = Counter()
    for ex in joined:
        d = ex.decision
        v = d.variants["banner"]
        assert alloc.assign(d.unit).variants["banner"] == v  # the logged variant is the unit's allocation
        assert unit_variant.setdefault(d.unit, v) == v  # one unit, one variant
        per_unit[d.unit] += ex.reward
        decisions[v] += 1
        arms[(v, d.actions[d.chosen[0]])] += 1
    assert len([x for x in read_records(tmp_path) if isinstance(x, DecisionRecord)]) == 1500 == len(joined)
    units = Counter(unit_variant.values())
    assert [v.variant for v in r.variants] == ["control", "new", "bold"] and r.control == "control"
    for v in r.variants:
        assert v.units == units[v.variant] and v.decisions == decisions[v.variant]
        want = sum(per_unit[u] for u, vv in unit_variant.items() if vv == v.variant)
        assert math.isclose(v.reward_sum, want) and math.isclose(v.mean_per_unit, want / units[v.variant])
    assert {(a.variant, a.arm): a.decisions for a in r.arms} == dict(arms)
    assert r.srm.checked and not r.srm.alert and r.srm.observed == {k: units[k] for k in ("control", "new", "bold")}
    assert math.isclose(sum(r.srm.expected.values()), len(unit_variant))
    assert [lf.variant for lf in r.lifts] == ["new", "bold"]
    assert not any("equal weights" in n for n in r.notes)
    # the same analysis from the joined examples, and with the weights given instead of the Experiment
    assert analyze(joined, experiments=[exp]) == res
    by_weights = analyze(joined, weights={"banner": {"control": 0.5, "new": 0.3, "bold": 0.2}})["banner"]
    assert by_weights.srm == r.srm and by_weights.variants == r.variants


def test_analyze_splits_decisions_in_several_experiments_and_filters_by_name() -> None:
    rng = np.random.default_rng(6)
    both, only_e, only_f = [], [], []
    for i in range(300):
        k = i % 90
        u = f"u{k}"
        ve, vf = ("a", "b")[k % 2], ("p", "q")[(k // 2) % 2]
        r = float(rng.random() < 0.4)
        d = DecisionRecord(
            event_id=str(i), ts=1_700_000_000.0 + i, actions=["x"], pmf=[1.0], chosen=[0], probability=1.0,
            variants={"e": ve, "f": vf}, unit=u,
        )
        both.append(JoinedExample(d, r, True, d.ts))
        only_e.append(JoinedExample(msgspec.structs.replace(d, variants={"e": ve}), r, True, d.ts))
        only_f.append(JoinedExample(msgspec.structs.replace(d, variants={"f": vf}), r, True, d.ts))
    res = analyze(both)
    assert list(res) == ["e", "f"]
    assert res["e"] == analyze(only_e)["e"] and res["f"] == analyze(only_f)["f"]
    assert list(analyze(both, experiments=["f"])) == ["f"]
    with pytest.raises(ConfigError, match="reward_window"):
        analyze(both, reward_window=60)
    with pytest.raises(ConfigError, match="iterable of JoinedExample"):
        analyze(3)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="JoinedExample"):
        analyze([d.decision for d in both])  # type: ignore[misc]
    with pytest.raises(SchemaError, match="finite"):
        analyze([msgspec.structs.replace(both[0], reward=math.inf)] + both[1:])


def test_analyze_notes_units_in_a_variant_of_weight_zero() -> None:
    exp = nba.Experiment("e", {"a": 0.5, "b": 0.5, "off": 0.0})
    rows = [(str(i), f"u{i}", ("a", "b")[i % 2], "x", float(i % 3 == 0)) for i in range(40)] + [("x", "ux", "off", "x", 1.0)]
    r = analyze(_joined(rows), experiments=[exp])["e"]
    assert [v.units for v in r.variants] == [20, 20, 1] and r.srm.checked and not r.srm.alert
    assert any("weight 0" in n for n in r.notes)
