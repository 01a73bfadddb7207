"""A Decider scoring with a VW model gives the scores VW's own parser and nba's dict path give."""

from __future__ import annotations

import numpy as np
import pytest

import nba

vw = pytest.importorskip("vowpalwabbit")


def _train(tmp_path, args: str):
    rng = np.random.default_rng(3)
    ws = vw.Workspace(f"{args} --quiet")
    segs = ["gold", "silver", "new york"]
    for _ in range(400):
        seg = segs[int(rng.integers(3))]
        age = float(rng.integers(18, 80))
        chosen = int(rng.integers(3))
        cost = -1.0 if (chosen == segs.index(seg)) else 0.0
        lines = [f"shared |User age:{age} segment{seg.replace(' ', '_')}"]
        for k in range(3):
            label = f"0:{cost}:0.333 " if k == chosen else ""
            lines.append(f"{label}|Action ida{k} fee:{10.0 * k + 1}")
        ex = ws.parse(lines)
        ws.learn(ex)
        ws.finish_example(ex)
    path = tmp_path / "cb.model"
    ws.save(str(path))
    ws.finish()
    return path


@pytest.mark.parametrize("args", ["--cb_adf -q UA", "--cb_explore_adf -q UA --epsilon 0.1"])
def test_decider_scores_equal_negated_vw_costs_of_the_logged_features(tmp_path, args):
    path = _train(tmp_path, args)
    model = nba.load_model(path)
    ref = vw.Workspace(f"-i {path} --testonly --quiet") if "--cb_adf" in args else None
    schema = nba.FeatureSchema(
        [nba.Numeric("age", source="profile"), nba.Categorical("segment", ["gold", "silver", "new york"])]
    )
    arms = [nba.Arm(f"a{k}", features={"id": f"a{k}", "fee": 10.0 * k + 1}) for k in range(3)]
    decider = nba.Decider(arms, model, schema=schema, policy=nba.Greedy())
    actions = model.prepare_actions([{"Action": dict(a.features)} for a in arms])
    rng = np.random.default_rng(9)
    for _ in range(100):
        profile = {"age": float(rng.integers(18, 80)), "segment": ["gold", "silver", "new york"][int(rng.integers(3))]}
        d = decider.decide(profile)
        shared = {"User": {"age": profile["age"], "segment": profile["segment"]}}
        expected = -model.score(shared, actions)
        np.testing.assert_allclose(d.scores, expected, rtol=0, atol=1e-6)
        assert d.arm == arms[int(np.argmax(expected))].id
        if ref is not None:  # VW's own parser and predictor on the same example
            seg = profile["segment"].replace(" ", "_")
            lines = [f"shared |User age:{profile['age']} segment{seg}"] + [
                f"|Action ida{k} fee:{10.0 * k + 1}" for k in range(3)
            ]
            np.testing.assert_allclose(d.scores, -np.asarray(ref.predict(lines)), rtol=0, atol=1e-5)
    if ref is not None:
        ref.finish()


def test_product_arbitration_of_a_cost_model_with_arm_values_is_refused_at_build(tmp_path):
    """Negated costs are negative: score x value would rank the value-300 offer below the value-5 one."""
    model = nba.load_model(_train(tmp_path, "--cb_adf -q UA"))
    schema = nba.FeatureSchema([nba.Numeric("age"), nba.Categorical("segment", ["gold", "silver", "new york"])])
    arms = [nba.Arm(f"a{k}", features={"id": f"a{k}", "fee": 10.0 * k + 1}, value=v) for k, v in enumerate([5, 300, 40])]
    with pytest.raises(nba.ConfigError, match="inverts the ranking.*'probability'.*'score'"):
        nba.Decider(arms, model, schema=schema, policy=nba.Greedy())
    profile = {"age": 30.0, "segment": "gold"}
    # "probability": clip(-cost, 0, 1) x value, which is expected value for a model trained on cost = -reward
    d = nba.Decider(arms, model, schema=schema, policy=nba.Greedy(), arbitration="probability").decide(profile)
    p = np.clip(np.array(d.scores), 0.0, 1.0) * np.array([5.0, 300.0, 40.0])
    assert d.arm == arms[int(np.argmax(p))].id
    equal = [nba.Arm(a.id, features=a.features) for a in arms]  # equal values: product cannot invert anything
    nba.Decider(equal, model, schema=schema, policy=nba.Greedy())


def _train_spelled(tmp_path, args: str, spell) -> str:
    """A model of the world above whose segment features are written ``spell(seg)`` in VW text."""
    rng = np.random.default_rng(5)
    ws = vw.Workspace(f"{args} --quiet")
    segs = ["gold", "silver", "new_york"]
    for _ in range(300):
        s = int(rng.integers(3))
        chosen = int(rng.integers(3))
        lines = [f"shared |User age:{float(rng.integers(18, 80))} {spell(segs[s])}"]
        lines += [("0:-1:0.333 " if k == chosen and k == s else "0:0:0.333 " if k == chosen else "") + f"|Action ida{k}"
                  for k in range(3)]
        ex = ws.parse(lines)
        ws.learn(ex)
        ws.finish_example(ex)
    path = str(tmp_path / f"m{abs(hash((args, spell('x'))))}.model")
    ws.save(path)
    ws.finish()
    return path


_SCHEMA = nba.FeatureSchema([nba.Numeric("age"), nba.Categorical("segment", ["gold", "silver", "new_york"])])
_ARMS = [nba.Arm(f"a{k}", features={"id": f"a{k}"}) for k in range(3)]


@pytest.mark.parametrize("args", ["--cb_explore_adf", "--cb_explore_adf -q UA", "--cb_adf -q UA --ignore_linear U"])
def test_a_model_trained_on_the_names_nba_hashes_binds_quietly(tmp_path, args, recwarn):
    model = nba.load_model(_train_spelled(tmp_path, args, lambda s: f"segment{s}"))
    nba.Decider(_ARMS, model, schema=_SCHEMA, policy=nba.Greedy())
    assert not [w for w in recwarn if issubclass(w.category, nba.models.vw.FeatureMismatchWarning)]
    scorer = model.bind(nba.Catalog(_ARMS, _SCHEMA))
    hits = model.feature_hits([("User", "age"), *[("User", "segment", s) for s in ("gold", "silver", "new_york")]],
                              scorer.actions)
    assert hits.rate == 1.0 and hits.missed == () and hits.hint == ""


@pytest.mark.parametrize("args", ["--cb_explore_adf", "--cb_adf -q UA"])
def test_the_text_format_name_value_mistake_warns_with_the_fix(tmp_path, args):
    """VW text ``segment=gold`` is one feature named 'segment=gold'; nba hashes segment='gold' as 'segmentgold'."""
    path = _train_spelled(tmp_path, args, lambda s: f"segment={s}")
    with pytest.warns(nba.models.vw.FeatureMismatchWarning, match=r"segment=gold.*'segmentgold'.*nba export"):
        nba.Decider(_ARMS, nba.load_model(path), schema=_SCHEMA, policy=nba.Greedy())
    with pytest.raises(nba.SchemaError, match="has weights for 25% of the schema's 4 features"):
        nba.Decider(_ARMS, nba.load_model(path, feature_check="raise"), schema=_SCHEMA, policy=nba.Greedy())
    model = nba.load_model(path, feature_check="off")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nba.Decider(_ARMS, model, schema=_SCHEMA, policy=nba.Greedy())
    import pickle

    assert pickle.loads(pickle.dumps(model)).feature_check == "off"
    with pytest.raises(nba.ConfigError, match="feature_check='loud'"):
        nba.load_model(path, feature_check="loud")


def test_nba_inspect_shows_a_logs_hit_rate_and_the_fix(tmp_path, capsys):
    from nba.cli import main

    log_dir = tmp_path / "log"
    with nba.DecisionLog(log_dir) as log:
        d = nba.Decider(_ARMS, nba.load_model(_train_spelled(tmp_path, "--cb_explore_adf -q UA",
                                                             lambda s: f"segment{s}")),
                        schema=_SCHEMA, policy=nba.Greedy(), log=log)
        d.decide({"age": 30.0, "segment": "gold"})
    good = _train_spelled(tmp_path, "--cb_explore_adf -q UA --ignore_linear U", lambda s: f"segment{s}")
    bad = _train_spelled(tmp_path, "--cb_explore_adf", lambda s: f"segment={s}")
    assert main(["inspect", good, "--log", str(log_dir)]) == 0
    out = capsys.readouterr().out
    assert "weights for: 4 of 4 (100%)" in out and "namespace User: 4 of 4" in out and "interactions: UA" in out
    assert main(["inspect", bad, "--log", str(log_dir)]) == 0
    out = capsys.readouterr().out
    assert "weights for: 1 of 4 (25%)" in out and "User:segment=gold" in out and "'segmentgold'" in out
    assert main(["inspect", bad]) == 0
    assert "pass --log LOGDIR" in capsys.readouterr().out
    assert main(["inspect", bad, "--log", str(tmp_path / "empty")]) == 2
