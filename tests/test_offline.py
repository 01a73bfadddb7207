"""nba.offline: compare and discover on logs of worlds whose true policy values are known."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nba
from nba import DecisionLog
from nba.errors import ConfigError, SchemaError
from nba.evaluation import LightGBMRewardModel, from_joined
from nba.log import join
from nba.offline import LOW_CONFIDENCE_DECISIONS, Comparison, Setting, compare, discover, vw_candidate
from nba.training import train_vw
from tests.training_worlds import write_log

pytest.importorskip("vowpalwabbit")
pytest.importorskip("lightgbm")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """4000 decisions logged by softmax(2 q): the logged policy differs from uniform, both with known values."""
    d = tmp_path_factory.mktemp("offline") / "log"
    info = write_log(d, 4000, seed=5, beta=2.0)
    return d, info


def test_uniform_and_logged_estimates_cover_their_true_values(world):
    d, info = world
    q, pmf = info["q"], info["pmf"]
    cmp = compare(d, n_bootstrap=200)
    assert [r.kind for r in cmp.rows] == ["logged", "baseline", "uniform"]
    uniform = cmp["uniform"].estimate
    assert uniform.estimator == "dr" and uniform.gaussian.low <= q.mean() <= uniform.gaussian.high
    assert uniform.bootstrap is not None and uniform.bootstrap.low <= q.mean() <= uniform.bootstrap.high
    logged = cmp["logged"].estimate
    true_logged = float(np.mean(np.sum(pmf * q, axis=1)))
    assert logged.estimator == "mean" and logged.value == pytest.approx(float(np.mean(info["reward"])))
    assert logged.gaussian.low <= true_logged <= logged.gaussian.high
    base = cmp["baseline"].estimate  # the first offered action, a0, every time
    assert base.gaussian.low <= q[:, 0].mean() <= base.gaussian.high
    assert {e.estimator for e in cmp["uniform"].report.estimates} == {"dr", "ips", "snips"}


def _flat(context: np.ndarray, action: np.ndarray) -> np.ndarray:
    """A constant reward model: DR stays unbiased with it, and it costs nothing to fit."""
    return np.full(len(action), 0.5)


def test_low_confidence_flips_at_the_threshold(world):
    d = list(join(world[0]))
    assert LOW_CONFIDENCE_DECISIONS == 50_000
    default = compare(d, n_bootstrap=0, reward_model=_flat)
    assert default.low_confidence and default.threshold == 50_000 and "fewer than 50000" in default.notes[0]
    at = compare(d, n_bootstrap=0, low_confidence_below=4000, reward_model=_flat)
    above = compare(d, n_bootstrap=0, low_confidence_below=4001, reward_model=_flat)
    assert not at.low_confidence and not any("low confidence" in n for n in at.notes)
    assert above.low_confidence and "4000 decisions, fewer than 4001" in above.notes[0]
    assert "low confidence" in above.summary()


def test_candidates_as_callables_arrays_and_vw_models_agree(world, tmp_path):
    d, info = world
    train_vw(d, tmp_path / "m.vw", interactions=("UA",))
    model = nba.load_model(tmp_path / "m.vw")
    examples = list(join(d))
    cand = vw_candidate(model, examples)
    data = from_joined(examples)
    as_array = np.array([cand(ex.decision) for ex in examples])  # every decision offers a0..a3 in vocabulary order
    q = LightGBMRewardModel(n_folds=2).predict(data)
    cmp = compare(examples, candidates={"vw": model, "fn": cand, "array": as_array}, reward_model=q, n_bootstrap=0)
    assert cmp["vw"].estimate == cmp["fn"].estimate == cmp["array"].estimate
    assert cmp.beats("vw", "uniform") and cmp.beats("vw", "logged") and not cmp.beats("uniform", "vw")
    # the trained policy's true value (epsilon-greedy at 0.05 on these contexts) lies in its interval
    true = float(np.mean(np.sum(as_array * info["q"], axis=1)))
    e = cmp["vw"].estimate.gaussian
    assert e.low <= true <= e.high
    text = cmp.summary()
    assert "vw" in text and "uniform" in text and "logged" in text
    assert isinstance(msgspec_roundtrip(cmp), dict)


def msgspec_roundtrip(cmp: Comparison) -> object:
    import msgspec

    return msgspec.json.decode(msgspec.json.encode(cmp))


def test_the_baseline_is_an_arm_or_a_function(world):
    d, q = list(join(world[0])), world[1]["q"]
    opts = {"n_bootstrap": 0, "reward_model": _flat}
    by_name = compare(d, baseline="a2", **opts)["baseline (a2)"].estimate
    by_fn = compare(d, baseline=lambda r: "a2", **opts)["baseline"].estimate
    by_index = compare(d, baseline=lambda r: 2, **opts)["baseline"].estimate
    assert by_name == by_fn == by_index
    assert by_name.gaussian.low <= q[:, 2].mean() <= by_name.gaussian.high
    with pytest.raises(SchemaError, match="offered only"):
        compare(d, baseline=lambda r: "nope", **opts)
    with pytest.raises(SchemaError, match="offered action's id or index"):
        compare(d, baseline=lambda r: 9, **opts)
    with pytest.raises(ConfigError, match="baseline="):
        compare(d, baseline=3, n_bootstrap=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="candidate name"):
        compare(d, candidates={"uniform": lambda r: [0.25] * 4}, **opts)
    with pytest.raises(ConfigError, match="level"):
        compare(d, level=95, n_bootstrap=0)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no policy named"):
        compare(d, **opts)["nope"]


# --------------------------------------------------------------------------- discover


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Uniform logging in a world where a3 is planted best (+0.35 expected reward everywhere)."""
    d = tmp_path_factory.mktemp("planted") / "log"
    info = write_log(d, 3000, seed=8, bias={3: 0.35})
    return d, info


GRID = {"epsilon": [0.05, 0.2], "interactions": [(), ("UA",)], "learning_rate": [0.5]}


def test_discover_ranks_deterministically_for_a_seed(planted):
    d, _ = planted
    a = discover(d, grid=GRID, seed=3, n_bootstrap=50)
    b = discover(d, grid=GRID, seed=3, n_bootstrap=50)
    assert [t.setting for t in a.trials] == [t.setting for t in b.trials]
    assert [t.estimate for t in a.trials] == [t.estimate for t in b.trials]
    values = [t.estimate.value for t in a.trials]
    assert values == sorted(values, reverse=True) and len(values) == 4
    assert a.n_train == 2100 and a.n_holdout == 900 and a.low_confidence


def test_the_best_setting_beats_uniform_and_the_logged_policy_on_a_planted_best_action(planted):
    d, info = planted
    found = discover(d, grid=GRID, n_bootstrap=0)
    best = found.trials[0]
    assert best.setting == found.best
    assert best.estimate.gaussian.low > found.uniform.gaussian.high, found.summary()
    assert found.beats_logged and found.logged.estimator == "mean"
    # trained on the whole log, the best setting's greedy choice is mostly the planted arm
    from nba.training import train_vw as _train

    tmp = d.parent / "best.vw"
    _train(d, tmp, **found.best.kwargs())
    model = nba.load_model(tmp)
    examples = list(join(d))
    cand = vw_candidate(model, examples, nba.Greedy())
    picks = np.array([np.argmax(cand(ex.decision)) for ex in examples[:500]])
    assert np.mean(picks == 3) > 0.5
    assert "best:" in found.summary() and "beats the logged policy" in found.summary()


def test_the_default_grid_crosses_epsilons_interactions_and_learning_rates(planted):
    d, _ = planted
    found = discover(d, holdout=0.5, n_bootstrap=0)
    got = {(s.epsilon, s.interactions, s.learning_rate) for s in (t.setting for t in found.trials)}
    want = {(e, i, lr) for e in (0.02, 0.05, 0.1, 0.2) for i in ((), ("UA",)) for lr in (0.1, 0.5, 1.0)}
    assert got == want and found.n_holdout == 1500


def test_discover_refuses_bad_grids_and_holdouts(planted, tmp_path):
    d, _ = planted
    with pytest.raises(ConfigError, match="holdout"):
        discover(d, holdout=1.0)
    with pytest.raises(ConfigError, match="not settings"):
        discover(d, grid={"eps": [0.1]})
    with pytest.raises(ConfigError, match="at least one value"):
        discover(d, grid={"epsilon": []})
    with pytest.raises(ConfigError, match="Setting"):
        discover(d, grid=[{"epsilon": 0.1}])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="epsilon"):
        discover(d, grid=[Setting(epsilon=2.0)])
    with pytest.raises(ConfigError, match="directory of a DecisionLog"):
        discover(tmp_path / "missing")


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.sampled_from([-1.0, 0.0, 0.5, 0.50001, 2.0, 2.0 + 1e-9]), min_size=1, max_size=6),
    eps=st.sampled_from([0.0, 0.02, 0.05, 0.1, 0.2, 1.0]),
)
def test_epsilon_greedy_is_greedy_mixed_with_uniform_as_discover_builds_it(scores, eps):
    """discover scores each model once and mixes its greedy pmf (ties split) with uniform per epsilon."""
    s = np.array(scores)
    mixed = (1 - eps) * nba.EpsilonGreedy(0.0).pmf(s) + eps / len(s)
    np.testing.assert_allclose(nba.EpsilonGreedy(eps).pmf(s), mixed, atol=1e-12)


def test_a_discover_trial_is_the_estimate_of_that_model_on_the_held_out_part(planted, tmp_path):
    """The same setting trained by train_vw on the earlier 70% and compared on the later 30% gives the same DR."""
    d, _ = planted
    grid = [Setting(epsilon=0.1, interactions=("UA",), learning_rate=0.5)]
    found = discover(d, grid=grid, n_bootstrap=0, reward_model=_flat)
    examples = sorted(join(d), key=lambda ex: ex.decision.ts)
    early, late = examples[:2100], examples[2100:]
    with DecisionLog(tmp_path / "early") as log:
        log.register_catalog("offers", early[0].catalog.arms)
        for ex in early:
            log.append(ex.decision)
            for o in ex.outcomes:
                log.append(o)
    train_vw(tmp_path / "early", tmp_path / "m.vw", **found.best.kwargs())
    model = nba.load_model(tmp_path / "m.vw")
    cmp = compare(late, candidates={"m": vw_candidate(model, late, nba.EpsilonGreedy(0.1))}, reward_model=_flat,
                  n_bootstrap=0)
    assert cmp["m"].estimate.value == pytest.approx(found.trials[0].estimate.value, abs=1e-12)
    assert cmp["uniform"].estimate.value == pytest.approx(found.uniform.value, abs=1e-12)
