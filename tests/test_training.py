"""nba.training: models trained from the decision log score in nba exactly as in the library that trained them."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nba
from nba import DecisionLog
from nba.cli import main
from nba.errors import ConfigError, SchemaError
from nba.evaluation import DR, LightGBMRewardModel, evaluate, from_joined, model_candidate
from nba.log import join
from nba.models.vw import VWModel
from nba.offline import compare
from nba.training import TrainResult, load_reward_model, train_reward_model, train_vw, vw_args
from tests.training_worlds import decider_log, write_log

vowpalwabbit = pytest.importorskip("vowpalwabbit")
lgb = pytest.importorskip("lightgbm")

TOL = 1e-5  # as tests/models/test_vw.py: VW sums float32


def _vw_reference(model_path: str, lines: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """VW's own raw per-action costs and cb_explore_adf pmfs of the dsjson lines, from the saved model file."""
    ws = vowpalwabbit.Workspace(f"--quiet --dsjson -t -i {model_path}")
    costs, pmfs = [], []
    try:
        for line in lines:
            exs = ws.parse(line)
            pmfs.append(np.array(ws.predict(exs)))
            costs.append(np.array([e.get_partial_prediction() for e in exs[1:]]))
            ws.finish_example(exs)
    finally:
        ws.finish()
    return costs, pmfs


def _nba_costs(model: VWModel, lines: list[str]) -> list[np.ndarray]:
    out = []
    for line in lines:
        c = json.loads(line)["c"]
        shared = {k: v for k, v in c.items() if k != "_multi"}
        out.append(model.score(shared, model.prepare_actions(c["_multi"])))
    return out


@st.composite
def _logs(draw: st.DrawFn) -> dict:
    k = draw(st.integers(2, 5))
    n = draw(st.integers(40, 120))
    return {
        "k": k,
        "n": n,
        "seed": draw(st.integers(0, 2**16)),
        "strings": draw(st.booleans()),
        "cb_type": draw(st.sampled_from(["dr", "ips", "mtr"])),
        "epsilon": draw(st.sampled_from([0.0, 0.05, 0.3])),
        "interactions": draw(st.sampled_from([(), ("UA",), ("UA", "GA"), ("UGA",), ("UA", "UU")])),
        "learning_rate": draw(st.sampled_from([0.1, 0.5, 2.0])),
        "passes": draw(st.sampled_from([1, 1, 2])),
        "bits": draw(st.sampled_from([12, 18, 22])),
    }


def _write_random_log(directory: Path, case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    k = case["k"]
    arms = {
        f"arm{j}": {"Action": {"id": f"arm{j}", "price": float(rng.integers(1, 9)), "promo": bool(j % 2)}}
        for j in range(k)
    }
    with DecisionLog(directory) as log:
        log.register_catalog("c", arms)
        for i in range(case["n"]):
            pmf = rng.dirichlet(np.ones(k)) * 0.8 + 0.2 / k
            pmf = (pmf / pmf.sum()).tolist()
            chosen = int(rng.choice(k, p=pmf))
            user: dict = {"age": float(rng.normal()), "visits": float(rng.integers(0, 4))}
            if case["strings"]:
                user["segment"] = str(rng.choice(["gold", "silver plus", "x:y"]))
            features = {"User": user, "Geo": {"lat": float(rng.normal()), "eu": bool(rng.random() < 0.5)}}
            log.append_decision(f"e{i}", actions=list(arms), pmf=pmf, chosen=[chosen], features=features,
                                catalog_id="c", now=1000.0 + i)
            if rng.random() < 0.6:
                log.append_outcome(f"e{i}", float(rng.random() < 0.3 + 0.1 * chosen), now=1000.5 + i)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_logs())
def test_a_trained_model_scores_in_nba_as_vowpalwabbit_predicts(case):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _write_random_log(d / "log", case)
        res = train_vw(
            d / "log", d / "m.vw", cb_type=case["cb_type"], epsilon=case["epsilon"],
            interactions=case["interactions"], learning_rate=case["learning_rate"], passes=case["passes"],
            bits=case["bits"], dsjson=d / "train.dsjson", seed=1,
        )
        assert res.examples == case["n"] and res.kind == "vw" and res.paths == (str(d / "m.vw"), str(d / "train.dsjson"))
        assert f"--cb_type {case['cb_type']}" in res.args and np.isfinite(res.average_loss)
        model = nba.load_model(d / "m.vw")
        assert isinstance(model, VWModel)
        assert model.info.cb_type == case["cb_type"] and model.info.bits == case["bits"]
        lines = (d / "train.dsjson").read_text().splitlines()
        ref_costs, ref_pmfs = _vw_reference(str(d / "m.vw"), lines)
        ours = _nba_costs(model, lines)
        assert np.ptp(np.concatenate(ref_costs)) > 1e-4, "the model learned nothing; the comparison would be vacuous"
        np.testing.assert_allclose(np.concatenate(ours), np.concatenate(ref_costs), rtol=TOL, atol=TOL)
        # the pmf nba's EpsilonGreedy gives the negated costs is VW's cb_explore_adf pmf, where no tie blurs it
        pol = nba.EpsilonGreedy(case["epsilon"])
        for cost, pmf in zip(ours, ref_pmfs):
            s = np.sort(cost)
            if s[1] - s[0] > 1e-3:
                np.testing.assert_allclose(pol.pmf(-cost), pmf, atol=1e-6)


def test_a_decider_with_the_trained_model_beats_uniform_by_dr_and_live(tmp_path):
    """Uniform exploration logged by a real Decider; the trained model's Decider is far better, offline and live."""
    catalog, world = decider_log(tmp_path / "log", 3000, seed=3)
    train_vw(tmp_path / "log", tmp_path / "m.vw", interactions=("UA",))
    model = nba.load_model(tmp_path / "m.vw")
    policy = nba.EpsilonGreedy(0.05)
    cmp = compare(tmp_path / "log", candidates={"trained": model_candidate(model, policy, catalog)}, n_bootstrap=200)
    assert cmp.beats("trained", "uniform"), cmp.summary()
    assert cmp["trained"].estimate.gaussian.low > cmp["uniform"].estimate.gaussian.high + 0.1
    # live, on fresh contexts of the same world: the Decider's true mean reward is what DR estimated
    x = np.random.default_rng(5).normal(size=(2000, world.dim))
    q = world.expected_reward(x)
    dec = nba.Decider(catalog, model, policy=policy, seed=1)
    live = np.mean([q[i, catalog.index(dec.decide({f"x{j}": x[i, j] for j in range(world.dim)}).arm)]
                    for i in range(len(x))])
    assert live > q.mean() + 0.2
    tr = cmp["trained"].estimate.gaussian
    assert tr.low - 0.03 <= live <= tr.high + 0.03, (live, tr)


# --------------------------------------------------------------------------- reward model


def test_the_reward_model_loads_in_nba_and_predicts_as_lightgbm(tmp_path):
    info = write_log(tmp_path / "log", 1500, seed=2, beta=2.0)
    res = train_reward_model(tmp_path / "log", tmp_path / "r.txt", num_boost_round=30)
    assert isinstance(res, TrainResult) and res.kind == "lightgbm" and res.examples == 1500
    assert res.actions == ("a0", "a1", "a2", "a3") and '"objective":"binary"' in res.args
    model = nba.load_model(tmp_path / "r.txt")
    ref = lgb.Booster(model_file=str(tmp_path / "r.txt"))
    assert list(ref.feature_name()) == ["User.x0", "User.x1", "User.x2", "action"]
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=(500, 3)), rng.integers(0, 4, size=500).astype(float)])
    np.testing.assert_allclose(model.predict(X), ref.predict(X), rtol=1e-12, atol=1e-12)
    # as reward_model=: the same predictions as LightGBMRewardModel(n_folds=1) fitted on the same log
    rm = load_reward_model(tmp_path / "r.txt")
    data = from_joined(join(tmp_path / "log"))
    same = LightGBMRewardModel(num_boost_round=30, params={"objective": "binary"}).predict(data)
    np.testing.assert_allclose(rm.predict(data), same, rtol=1e-9, atol=1e-9)
    rep = evaluate(tmp_path / "log", lambda r: [0.25] * 4, estimators=DR(), reward_model=rm, n_bootstrap=0)
    assert rep["dr"].gaussian.low <= info["q"].mean() <= rep["dr"].gaussian.high


def test_a_reward_model_refuses_a_log_of_other_features_or_actions(tmp_path):
    write_log(tmp_path / "log", 300, seed=2)
    train_reward_model(tmp_path / "log", tmp_path / "r.txt", num_boost_round=5)
    rm = load_reward_model(tmp_path / "r.txt")
    from nba.evaluation import SyntheticBandit

    with pytest.raises(SchemaError, match="context columns"):
        rm.predict(SyntheticBandit(n_actions=4, dim=5).sample(20))
    with pytest.raises(SchemaError, match="not in the reward model's training log"):
        rm.predict(SyntheticBandit(n_actions=5, dim=3).sample(20))
    lgb.train({"verbose": -1}, lgb.Dataset(np.ones((50, 2)), np.arange(50.0)), 2).save_model(str(tmp_path / "o.txt"))
    with pytest.raises(nba.errors.ModelFormatError, match="not a reward model"):
        load_reward_model(tmp_path / "o.txt")


# --------------------------------------------------------------------------- errors


def test_an_empty_log_or_one_without_rewards_is_a_config_error(tmp_path):
    DecisionLog(tmp_path / "empty").close()
    with pytest.raises(ConfigError, match="no decision to train on"):
        train_vw(tmp_path / "empty", tmp_path / "m.vw")
    with pytest.raises(ConfigError, match="no decision to train on"):
        train_reward_model(tmp_path / "empty", tmp_path / "r.txt")
    with DecisionLog(tmp_path / "quiet") as log:
        log.register_catalog("c", {"a": {"Action": {"id": "a"}}, "b": {"Action": {"id": "b"}}})
        for i in range(20):
            log.append_decision(f"e{i}", actions=["a", "b"], pmf=[0.5, 0.5], chosen=[i % 2], catalog_id="c",
                                features={"User": {"x": 1.0}}, now=1000.0 + i)
    with pytest.raises(ConfigError, match="has a reward"):
        train_vw(tmp_path / "quiet", tmp_path / "m.vw")
    with pytest.raises(ConfigError, match="has a reward"):
        train_reward_model(tmp_path / "quiet", tmp_path / "r.txt")
    with pytest.raises(ConfigError, match="directory of a DecisionLog"):
        train_vw(tmp_path / "missing", tmp_path / "m.vw")
    assert not (tmp_path / "m.vw").exists()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"cb_type": "foo"}, "cb_type"),
        ({"epsilon": 1.5}, "epsilon"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"bits": 29}, "bits"),
        ({"interactions": "UA"}, "not one string"),
        ({"interactions": ("U",)}, "two or three"),
        ({"interactions": ("UAGX",)}, "two or three"),
        ({"interactions": (":A",)}, "wildcard"),
        ({"interactions": (3,)}, "namespace letters"),
        ({"extra_args": ("-f other.vw",)}, "sets this itself"),
        ({"extra_args": ("--cb_type ips",)}, "sets this itself"),
        ({"extra_args": (3,)}, "must be a str"),
    ],
)
def test_bad_settings_are_config_errors_before_training(kw, match):
    with pytest.raises(ConfigError, match=match):
        vw_args(**kw)


def test_interactions_by_namespace_name_are_their_first_letters():
    assert vw_args(interactions=[("User", "Action"), "GA", "UA"])[-4:] == ["--interactions", "UA", "--interactions", "GA"]


def test_an_option_nba_cannot_score_is_refused_and_its_model_removed(tmp_path):
    write_log(tmp_path / "log", 200)
    with pytest.raises(ConfigError, match="nba cannot score"):
        train_vw(tmp_path / "log", tmp_path / "m.vw", extra_args=["--lrq UA2"])
    assert not (tmp_path / "m.vw").exists()
    with pytest.raises(ConfigError, match="vowpalwabbit refused"):
        train_vw(tmp_path / "log", tmp_path / "m.vw", extra_args=["--no_such_option"])


def test_a_missing_extra_is_a_config_error_naming_it(tmp_path, monkeypatch):
    write_log(tmp_path / "log", 50)
    monkeypatch.setitem(sys.modules, "vowpalwabbit", None)
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    with pytest.raises(ConfigError, match=r"nba\[train\]"):
        train_vw(tmp_path / "log", tmp_path / "m.vw")
    with pytest.raises(ConfigError, match=r"nba\[train\]"):
        train_reward_model(tmp_path / "log", tmp_path / "r.txt")


def test_training_is_deterministic_for_a_seed(tmp_path):
    write_log(tmp_path / "log", 400, seed=4)
    a = train_vw(tmp_path / "log", tmp_path / "a.vw", interactions=("UA",), passes=2)
    b = train_vw(tmp_path / "log", tmp_path / "b.vw", interactions=("UA",), passes=2)
    assert (tmp_path / "a.vw").read_bytes() == (tmp_path / "b.vw").read_bytes()
    assert a.examples == b.examples == 400 and a.average_loss == b.average_loss


# --------------------------------------------------------------------------- CLI


def test_nba_train_writes_models_that_nba_inspect_reads(tmp_path, capsys):
    write_log(tmp_path / "log", 300)
    out = tmp_path / "out"
    rc = main(["train", str(tmp_path / "log"), "--out", str(out), "--interactions", "UA", "--epsilon", "0.1",
               "--cb-type", "ips", "--passes", "2", "--reward-model", "--reward-window", "60"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert str(out / "model.vw") in printed and "nba.load_model" in printed and "reward_model.txt" in printed
    assert main(["inspect", str(out / "model.vw")]) == 0
    text = capsys.readouterr().out
    assert "cb_explore_adf" in text and "cb_type ips" in text and "interactions: UA" in text
    assert "epsilon 0.1" in text
    assert main(["inspect", str(out / "reward_model.txt")]) == 0
    assert "lightgbm" in capsys.readouterr().out
    assert main(["train", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "directory of a DecisionLog" in capsys.readouterr().err


def test_nba_export_accepts_dsjson_flag(tmp_path, capsys):
    write_log(tmp_path / "log", 30)
    assert main(["export", str(tmp_path / "log"), str(tmp_path / "x.dsjson"), "--dsjson"]) == 0
    assert len((tmp_path / "x.dsjson").read_text().splitlines()) == 30

