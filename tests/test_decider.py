"""Decider.decide / reward: eligibility, arbitration, fallback, slates, replay, logging, learning, swaps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import lightgbm as lgb
import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nba
from nba.bandits import BetaThompson, LinUCB
from nba.experiments import Allocator
from nba.log import ActivationRecord, DecisionRecord, OutcomeRecord, read_records
from nba.policy import EpsilonGreedy, Greedy


def _schema() -> nba.FeatureSchema:
    return nba.FeatureSchema(
        [
            nba.Numeric("age", source="profile"),
            nba.Categorical("segment", ["gold", "silver", "bronze"]),
            nba.Numeric("hour", source="context"),
        ]
    )


def _arms(n: int = 5, **extra: dict) -> list[nba.Arm]:
    arms = []
    for i in range(n):
        kw = {
            "features": {"fee": float(i * 10), "kind": ["card", "loan"][i % 2]},
            "value": 1.0 + i / 10,
            "channels": {"web": {"text": f"offer {i} web"}, "email": {"subject": f"offer {i}"}},
        }
        kw.update(extra.get(f"offer{i}", {}))
        arms.append(nba.Arm(f"offer{i}", **kw))
    return arms


def _booster(catalog: nba.Catalog, seed: int = 0, rounds: int = 20) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    names = list(catalog.feature_names)
    X = rng.normal(size=(600, len(names)))
    y = (X[:, 0] + X[:, -1] + 0.3 * rng.normal(size=600) > 0).astype(float)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": seed, "deterministic": True}
    return lgb.train(params, lgb.Dataset(X, y, feature_name=names), rounds)


@pytest.fixture(scope="module")
def catalog() -> nba.Catalog:
    return nba.Catalog(_arms(), _schema())


@pytest.fixture(scope="module")
def model(catalog: nba.Catalog):
    return nba.load_model(_booster(catalog))


PROFILE = {"id": "u1", "age": 30.0, "segment": "gold"}
CTX = {"hour": 10.0}


def _decisions(log_dir: Path) -> list[DecisionRecord]:
    return [r for r in read_records(log_dir) if isinstance(r, DecisionRecord)]


def _expected_scores(model, catalog: nba.Catalog, profile, context, arm_idx) -> np.ndarray:
    """Reference scores: the rows built by the catalogue's layout, scored row by row."""
    x = catalog.schema.vectorize(profile, context)
    layout = catalog.layout(model.feature_names or catalog.feature_names)
    rows = layout.fill(x, np.asarray(arm_idx, dtype=np.intp))
    return np.array([model.predict_row(r) for r in rows])


# --------------------------------------------------------------------------- eligibility


def test_ineligible_arms_are_never_chosen(model) -> None:
    extra = {"offer0": {"eligibility": "age >= 65"}, "offer1": {"eligibility": "segment in ['bronze']"}}
    cat = nba.Catalog(_arms(**extra), _schema())
    dec = nba.Decider(cat, model, policy=EpsilonGreedy(1.0), seed=3)
    seen = set()
    for i in range(200):
        d = dec.decide(PROFILE, CTX, event_id=f"e{i}")
        assert "offer0" not in d.actions and "offer1" not in d.actions
        seen.add(d.arm)
    assert seen == {"offer2", "offer3", "offer4"}  # epsilon=1: uniform over the eligible arms only


def test_channel_restricts_arms_and_selects_the_payload(model) -> None:
    extra = {"offer2": {"channels": {"email": {"subject": "only email"}}}}
    cat = nba.Catalog(_arms(**extra), _schema())
    dec = nba.Decider(cat, model, policy=EpsilonGreedy(1.0))
    for i in range(50):
        d = dec.decide(PROFILE, CTX, channel="web", event_id=f"w{i}")
        assert "offer2" not in d.actions
        assert d.payload == {"text": f"{d.arm} web".replace("offer", "offer ")}
    d = dec.decide(PROFILE, CTX, channel="email", event_id="m")
    assert "offer2" in d.actions
    assert d.payload == cat.payload(cat.index(d.arm), "email")


def test_time_window_is_respected(model) -> None:
    now = datetime(2026, 1, 10, tzinfo=timezone.utc)
    extra = {
        "offer0": {"start": now + timedelta(days=1)},
        "offer1": {"end": now - timedelta(days=1)},
        "offer2": {"start": now - timedelta(days=1), "end": now + timedelta(days=1)},
    }
    dec = nba.Decider(nba.Catalog(_arms(**extra), _schema()), model)
    d = dec.decide(PROFILE, CTX, now=now.timestamp())
    assert d.actions == ("offer2", "offer3", "offer4")
    d = dec.decide(PROFILE, CTX, now=(now + timedelta(days=2)).timestamp())
    assert d.actions == ("offer0", "offer3", "offer4")


# --------------------------------------------------------------------------- arbitration


def test_greedy_picks_the_highest_score_times_value_times_weight(catalog, model) -> None:
    weights = {"offer1": {"weight": 3.0}, "offer3": {"weight": 0.5}}
    cat = nba.Catalog(_arms(**weights), _schema())
    dec = nba.Decider(cat, model, policy=Greedy())
    rng = np.random.default_rng(1)
    for i in range(30):
        prof = {"id": f"u{i}", "age": float(rng.integers(18, 80)), "segment": ["gold", "silver", "bronze"][i % 3]}
        ctx = {"hour": float(rng.integers(0, 24))}
        d = dec.decide(prof, ctx)
        s = _expected_scores(model, cat, prof, ctx, range(len(cat)))
        np.testing.assert_allclose(d.scores, s, rtol=1e-12)
        pri = s * np.array([a.value * a.weight for a in cat.arms])
        assert d.arm == cat.ids[int(np.argmax(pri))]
        assert d.probability == 1.0


# --------------------------------------------------------------------------- fallback


def test_fallback_arm_is_returned_and_logged_when_nothing_is_eligible(tmp_path, model) -> None:
    extra = {f"offer{i}": {"eligibility": "age > 200"} for i in range(5)}
    cat = nba.Catalog(_arms(**extra), _schema())
    with nba.Decider(cat, model, log=nba.DecisionLog(tmp_path), fallback="offer3") as dec:
        d = dec.decide(PROFILE, CTX, channel="web")
    assert d.fallback and d.arm == "offer3" and d.probability == 1.0
    assert d.payload == {"text": "offer 3 web"}
    (rec,) = _decisions(tmp_path)
    assert rec.fallback and rec.actions == ["offer3"] and rec.event_id == d.event_id


def test_no_eligible_arm_without_fallback_raises_config_error(model) -> None:
    extra = {f"offer{i}": {"eligibility": "age > 200"} for i in range(5)}
    dec = nba.Decider(nba.Catalog(_arms(**extra), _schema()), model)
    with pytest.raises(nba.ConfigError, match="fallback"):
        dec.decide(PROFILE, CTX)


# --------------------------------------------------------------------------- slates, replay, pmf


def test_slate_returns_distinct_ranked_arms(catalog, model) -> None:
    dec = nba.Decider(catalog, model, policy=EpsilonGreedy(0.3), seed=5)
    for i in range(50):
        d = dec.decide(PROFILE, CTX, n=3, event_id=f"s{i}")
        assert len(d.arms) == 3 and len(set(d.arms)) == 3
        assert d.arms[0] == d.arm
        assert d.probability == d.pmf[d.actions.index(d.arm)]
    assert len(dec.decide(PROFILE, CTX, n=99).arms) == len(catalog)


def test_same_event_id_and_seed_give_the_same_choice_across_deciders(catalog, model) -> None:
    a = nba.Decider(catalog, model, policy=EpsilonGreedy(0.5), seed=11)
    b = nba.Decider(catalog, model, policy=EpsilonGreedy(0.5), seed=11)
    chosen = [a.decide(PROFILE, CTX, event_id=f"ev{i}").arm for i in range(100)]
    assert chosen == [b.decide(PROFILE, CTX, event_id=f"ev{i}").arm for i in range(100)]
    assert len(set(chosen)) > 1  # epsilon 0.5 explores: the equality above is not trivial
    c = nba.Decider(catalog, model, policy=EpsilonGreedy(0.5), seed=12)
    assert chosen != [c.decide(PROFILE, CTX, event_id=f"ev{i}").arm for i in range(100)]


def test_pmf_sums_to_one_and_logged_probability_matches(tmp_path, catalog, model) -> None:
    with nba.Decider(catalog, model, policy=EpsilonGreedy(0.2), log=nba.DecisionLog(tmp_path)) as dec:
        ds = [dec.decide(PROFILE, CTX, event_id=f"p{i}") for i in range(30)]
    recs = {r.event_id: r for r in _decisions(tmp_path)}
    assert len(recs) == 30
    for d in ds:
        assert sum(d.pmf) == pytest.approx(1.0, abs=1e-12)
        r = recs[d.event_id]
        assert r.actions[r.chosen[0]] == d.arm
        assert r.probability == r.pmf[r.chosen[0]] == d.probability
        assert tuple(r.pmf) == d.pmf
        # epsilon-greedy reference: 1 - eps + eps/k on the best priority, eps/k elsewhere
        k = len(d.actions)
        best = int(np.argmax(np.array(d.scores) * np.array([catalog.arms[catalog.index(a)].value for a in d.actions])))
        ref = np.full(k, 0.2 / k)
        ref[best] += 0.8
        np.testing.assert_allclose(d.pmf, ref, rtol=1e-12)


# --------------------------------------------------------------------------- rewards and learning


def test_reward_writes_an_outcome_record(tmp_path, catalog, model) -> None:
    with nba.Decider(catalog, model, log=nba.DecisionLog(tmp_path)) as dec:
        d = dec.decide(PROFILE, CTX)
        dec.reward(d.event_id, 1.0)
    outs = [r for r in read_records(tmp_path) if isinstance(r, OutcomeRecord)]
    assert [(o.event_id, o.value) for o in outs] == [(d.event_id, 1.0)]


def test_deferred_decision_is_logged_and_activated(tmp_path, catalog, model) -> None:
    with nba.Decider(catalog, model, log=nba.DecisionLog(tmp_path)) as dec:
        d = dec.decide(PROFILE, CTX, defer=True)
        assert d.deferred
        dec.activate(d.event_id)
        with pytest.raises(nba.UnknownEventError):
            dec.activate("never-made")
    recs = list(read_records(tmp_path))
    assert [r.deferred for r in recs if isinstance(r, DecisionRecord)] == [True]
    assert [r.event_id for r in recs if isinstance(r, ActivationRecord)] == [d.event_id]


def test_first_aggregate_teaches_the_first_reward_at_once() -> None:
    bandit = BetaThompson(5)
    dec = nba.Decider(_arms(), bandit, schema=_schema(), aggregate="first")
    d = dec.decide(PROFILE, CTX)
    i = dec.catalog.index(d.arm)
    dec.reward(d.event_id, 1.0)
    dec.reward(d.event_id, 1.0)  # later rewards of the same event teach nothing more
    assert bandit.pulls[i] == 1 and bandit.alpha[i] == 2.0 and bandit.pulls.sum() == 1


def test_sum_aggregate_teaches_the_sum_after_the_window() -> None:
    bandit = LinUCB(5, _schema().n_columns, alpha=0.1)
    dec = nba.Decider(_arms(), bandit, schema=_schema(), aggregate="sum", reward_window=10.0, arbitration="score")
    d = dec.decide(PROFILE, CTX, now=1000.0)
    i = dec.catalog.index(d.arm)
    dec.reward(d.event_id, 1.0, now=1001.0)
    dec.reward(d.event_id, 2.0, now=1002.0)
    assert bandit.pulls.sum() == 0  # the window is still open
    dec.reward("other", 0.0, now=1011.0)  # any later call closes expired windows
    assert bandit.pulls[i] == 1 and bandit.pulls.sum() == 1
    x = _schema().vectorize(PROFILE, CTX)
    ref = LinUCB(5, _schema().n_columns, alpha=0.1)
    ref.update(i, x, 3.0)
    np.testing.assert_allclose(bandit.theta, ref.theta)


def test_deferred_never_activated_teaches_nothing() -> None:
    bandit = BetaThompson(5)
    dec = nba.Decider(_arms(), bandit, schema=_schema(), reward_window=1.0)
    d = dec.decide(PROFILE, CTX, defer=True, now=0.0)
    dec.reward(d.event_id, 1.0, now=0.5)
    dec.reward("x", 0.0, now=100.0)
    assert bandit.pulls.sum() == 0


def test_online_bandit_learns_the_better_arm() -> None:
    bandit = BetaThompson(5)
    dec = nba.Decider(_arms(), bandit, schema=_schema(), policy=EpsilonGreedy(0.1), seed=2)
    rng = np.random.default_rng(0)
    p_click = {f"offer{i}": 0.1 for i in range(5)} | {"offer2": 0.6}
    for i in range(600):
        d = dec.decide(PROFILE, CTX, event_id=f"t{i}")
        dec.reward(d.event_id, float(rng.random() < p_click[d.arm]))
    picks = [dec.decide(PROFILE, CTX, event_id=f"f{i}").arm for i in range(100)]
    assert picks.count("offer2") > 80


# --------------------------------------------------------------------------- experiments and swaps


def test_experiment_variant_overrides_model_and_policy_and_is_logged(tmp_path, catalog, model) -> None:
    other = nba.load_model(_booster(catalog, seed=9))
    exp = nba.Experiment(
        "m", variants={"control": 0.5, "treat": 0.5}, overrides={"treat": {"model": "alt", "policy": "greedy"}}
    )
    with nba.Decider(
        catalog, model, models={"alt": other}, policies={"greedy": Greedy()}, experiments=[exp],
        log=nba.DecisionLog(tmp_path),
    ) as dec:
        alloc = Allocator([exp])
        ds = [dec.decide({**PROFILE, "id": f"u{i}"}, CTX) for i in range(40)]
    recs = {r.event_id: r for r in _decisions(tmp_path)}
    variants = set()
    for i, d in enumerate(ds):
        v = alloc.assign(f"u{i}").variants["m"]
        variants.add(v)
        want = other if v == "treat" else model
        assert d.variants == {"m": v} and recs[d.event_id].variants == {"m": v}
        assert d.model_version == str(want.version) == recs[d.event_id].model_version
        assert d.policy == (Greedy().name if v == "treat" else EpsilonGreedy(0.05).name)
        np.testing.assert_allclose(d.scores, _expected_scores(want, catalog, {**PROFILE, "id": f"u{i}"}, CTX, range(5)))
    assert variants == {"control", "treat"}


def test_swap_model_changes_model_version(catalog, model) -> None:
    dec = nba.Decider(catalog, model)
    other = nba.load_model(_booster(catalog, seed=4, rounds=10))
    assert str(model.version) != str(other.version)
    assert dec.decide(PROFILE, CTX).model_version == str(model.version)
    dec.swap_model(other)
    assert dec.model_version == str(other.version)
    assert dec.decide(PROFILE, CTX).model_version == str(other.version)


# --------------------------------------------------------------------------- privacy and errors


@pytest.mark.parametrize("arbitration", ["score", "product"])
def test_ucb_decisions_use_the_bounds_just_scored(arbitration) -> None:
    """The Decider's UCB pmf (from the scores it logs) equals the policy's own model_pmf, weighted as arbitrated."""
    if arbitration == "product":  # LinUCB's bounds are signed: "product" only where values are equal
        catalog = nba.Catalog(_arms(**{f"offer{i}": {"value": 2.0} for i in range(5)}), _schema())
    else:
        catalog = nba.Catalog(_arms(), _schema(), arbitration="score")
    model = nba.LinUCB(n_arms=len(catalog), n_features=catalog.schema.n_columns, alpha=0.5)
    dec = nba.Decider(catalog, model, policy=nba.UCB(), seed=3)
    rng = np.random.default_rng(5)
    for i in range(60):
        prof = {"id": f"u{i}", "age": float(rng.integers(18, 80)), "segment": ["gold", "silver"][i % 2]}
        d = dec.decide(prof, CTX)
        idx = np.array([catalog.index(a) for a in d.actions], dtype=np.intp)
        scale = catalog.values[idx] * catalog.weights[idx] if arbitration == "product" else np.ones(idx.size)
        want = nba.UCB().model_pmf(model, catalog.schema.vectorize(prof, CTX), event_id=d.event_id, arms=idx, scale=scale)
        assert d.pmf == tuple(want.tolist())
        dec.reward(d.event_id, float(rng.random() < 0.3))


def test_squarecb_counts_the_examples_an_online_model_learns() -> None:
    catalog = nba.Catalog(_arms(), _schema(), arbitration="score")  # LinUCB's scores are signed
    model = nba.LinUCB(n_arms=len(catalog), n_features=catalog.schema.n_columns)
    policy = nba.SquareCB(gamma_scale=10.0)
    dec = nba.Decider(catalog, model, policy=policy, reward_window=0.0, default_reward=0.0)
    first = dec.decide(PROFILE, CTX, now=1.0)
    np.testing.assert_allclose(first.pmf, 1.0 / len(first.pmf))  # t = 0: uniform
    for i in range(5):
        d = dec.decide(PROFILE, CTX, now=2.0 + i)
        dec.reward(d.event_id, 1.0, now=2.0 + i)
    # Five rewards, and the first decision's window closed unrewarded (learned with the default).
    assert policy.t == 6 and model.updates == 6
    assert np.ptp(dec.decide(PROFILE, CTX).pmf) > 0.01  # gamma > 0: no longer uniform


def test_log_holds_only_declared_features(tmp_path, catalog, model) -> None:
    prof = {**PROFILE, "email": "jane.doe@example.com", "ssn": "123-45-6789"}
    with nba.Decider(catalog, model, log=nba.DecisionLog(tmp_path)) as dec:
        dec.decide(prof, {**CTX, "ip": "10.1.2.3"})
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in (b"jane.doe", b"example.com", b"123-45-6789", b"10.1.2.3", b"email", b"ssn"):
        assert secret not in data
    (rec,) = _decisions(tmp_path)
    names = {n for ns in rec.features.values() for n in ns}
    assert names <= {"age", "segment", "hour"}


def test_logged_features_read_back_as_used_features(tmp_path, catalog, model) -> None:
    """The Decider logs the model's vector; the reader turns it back into used_features, unknown categories too."""
    inputs = [(PROFILE, CTX), ({**PROFILE, "segment": "platinum"}, CTX), ({"id": "u9", "age": 30.0}, None)]
    with nba.Decider(catalog, model, log=nba.DecisionLog(tmp_path)) as dec:
        for prof, ctx in inputs:
            dec.decide(prof, ctx)
    recs = _decisions(tmp_path)
    assert len(recs) == 3
    for rec, (prof, ctx) in zip(recs, inputs):
        assert rec.x == catalog.schema.vectorize(prof, ctx).tolist()
        assert msgspec.json.encode(rec.features) == msgspec.json.encode(catalog.schema.used_features(prof, ctx))


def test_bad_inputs_raise_typed_errors(catalog, model) -> None:
    dec = nba.Decider(catalog, model)
    with pytest.raises(nba.SchemaError):
        dec.decide({"id": "u", "age": "old", "segment": "gold"}, CTX)
    with pytest.raises(nba.ConfigError):
        dec.decide(PROFILE, CTX, n=0)
    with pytest.raises(nba.ConfigError):
        dec.decide(PROFILE, CTX, n=True)  # type: ignore[arg-type]
    nothing = nba.Catalog(_arms(**{f"offer{i}": {"eligibility": "age > 200"} for i in range(5)}), _schema())
    with pytest.raises(nba.ConfigError, match="slate"):
        nba.Decider(nothing, model, fallback="offer0").decide(PROFILE, CTX, n=0)  # checked before the fallback
    with pytest.raises(nba.SchemaError):
        dec.reward("e", float("nan"))
    with pytest.raises(nba.SchemaError):
        dec.reward("e", "1")  # type: ignore[arg-type]
    with pytest.raises(nba.ConfigError):
        nba.Decider(_arms(), model)  # no schema
    with pytest.raises(nba.ConfigError):
        nba.Decider(catalog, model, fallback="nope")
    with pytest.raises(nba.ConfigError):
        nba.Decider(catalog, model, aggregate="mean")  # type: ignore[arg-type]
    with pytest.raises(nba.ConfigError):
        nba.Decider(catalog, None)
    with pytest.raises(nba.ConfigError):
        nba.Decider(catalog, model, experiments=[nba.Experiment("e", ["a", "b"], overrides={"b": {"model": "x"}})])
    with pytest.raises(nba.ConfigError):
        nba.Decider(catalog, LinUCB(3, 5))  # wrong arm count


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    thresholds=st.lists(st.integers(0, 100), min_size=5, max_size=5),
    age=st.integers(0, 100),
    segment=st.sampled_from(["gold", "silver", "bronze"]),
    epsilon=st.floats(0.0, 1.0),
    eid=st.text(min_size=1, max_size=12),
)
def test_decision_is_among_naively_eligible_arms_with_a_consistent_pmf(model, thresholds, age, segment, epsilon, eid) -> None:
    extra = {f"offer{i}": {"eligibility": f"age >= {t}"} for i, t in enumerate(thresholds)}
    cat = nba.Catalog(_arms(**extra), _schema())
    dec = nba.Decider(cat, model, policy=EpsilonGreedy(epsilon), fallback="offer0")
    d = dec.decide({"id": "u", "age": float(age), "segment": segment}, CTX, event_id=eid)
    eligible = tuple(f"offer{i}" for i, t in enumerate(thresholds) if age >= t)
    if not eligible:
        assert d.fallback and d.arm == "offer0"
        return
    assert d.actions == eligible and d.arm in eligible and not d.fallback
    assert sum(d.pmf) == pytest.approx(1.0, abs=1e-12)
    assert d.probability == d.pmf[d.actions.index(d.arm)] > 0


@pytest.mark.parametrize("arbitration", ["score", "product"])
def test_model_policies_weigh_draws_as_the_catalogue_arbitrates(arbitration) -> None:
    """A Beta-Bernoulli model's draws lie in [0, 1]: "product" weighs them by value, "score" does not."""
    arms = [nba.Arm("cheap", value=1.0), nba.Arm("dear", value=1000.0)]
    bandit = BetaThompson(2)
    for _ in range(50):  # "cheap" converts twice as often as "dear"
        bandit.update(0, None, 1.0)
        bandit.update(0, None, 0.0)
        bandit.update(1, None, 0.0)
        bandit.update(1, None, 0.0)
        bandit.update(1, None, 1.0)
    dec = nba.Decider(arms, bandit, schema=_schema(), policy=nba.Thompson(), arbitration=arbitration)
    picks = [dec.decide(PROFILE, CTX).arm for _ in range(200)]
    assert picks.count("dear" if arbitration == "product" else "cheap") > 190


def test_arbitrations_model_policies_cannot_apply_are_refused_at_build() -> None:
    arms = [nba.Arm("a", value=1.0), nba.Arm("b", value=2.0)]
    model = nba.LinUCB(2, _schema().n_columns)
    with pytest.raises(nba.ConfigError, match="weighs the draws of model 'default'"):
        nba.Decider(arms, model, schema=_schema(), policy=nba.UCB(), arbitration="probability")
    with pytest.raises(nba.ConfigError, match="inverts the ranking"):
        nba.Decider(arms, model, schema=_schema(), policy=nba.UCB())  # signed estimates x differing values
    nba.Decider(arms, BetaThompson(2), schema=_schema(), policy=nba.Thompson(), arbitration="probability")
