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
