"""Round trip: decide with nba, export dsjson, train VW on it, load the VW model into a new Decider."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nba
from nba.bandits import LinUCB
from nba.log import export_dsjson
from nba.models.vw import VWModel
from nba.policy import EpsilonGreedy, Greedy

vw = pytest.importorskip("vowpalwabbit")

SEGMENTS = ["young", "old"]
# click probability of each arm per segment: a1 is best for the young, a2 for the old
P_CLICK = {"young": [0.1, 0.7, 0.2, 0.1], "old": [0.1, 0.2, 0.7, 0.1]}


def _schema() -> nba.FeatureSchema:
    return nba.FeatureSchema([nba.Categorical("segment", SEGMENTS)])


def _arms() -> list[nba.Arm]:
    return [nba.Arm(f"a{i}", features={"kind": f"k{i}"}) for i in range(4)]


def test_vw_trained_on_the_exported_log_decides_and_prefers_the_better_arm(tmp_path) -> None:
    log_dir = tmp_path / "log"
    catalog = nba.Catalog(_arms(), _schema())
    bandit = LinUCB(len(catalog), _schema().n_columns, alpha=0.5)
    rng = np.random.default_rng(3)
    with nba.Decider(catalog, bandit, policy=EpsilonGreedy(0.5), log=nba.DecisionLog(log_dir), seed=4) as dec:
        for i in range(1500):
            seg = SEGMENTS[i % 2]
            d = dec.decide({"id": f"u{i}", "segment": seg}, now=1000.0 + i)
            reward = float(rng.random() < P_CLICK[seg][catalog.index(d.arm)])
            dec.reward(d.event_id, reward, now=1000.5 + i)
    out = tmp_path / "train.dsjson"
    n = export_dsjson(log_dir, out, reward_window=60.0).events
    assert n == 1500

    model_path = tmp_path / "cb.vw"
    ws = vw.Workspace(f"--cb_explore_adf --dsjson -q UA --epsilon 0.05 --quiet --strict_parse -d {out} -f {model_path}")
    assert ws.get_weighted_examples() == n
    ws.finish()

    probe: dict[str, str] = {}
    for line in out.read_text().splitlines():
        probe.setdefault(json.loads(line)["c"]["User"]["segment"], line)
    model = nba.load_model(str(model_path))
    assert isinstance(model, VWModel)
    vw_catalog = nba.Catalog(_arms(), _schema(), arbitration="score")  # negated costs are signed
    dec2 = nba.Decider(vw_catalog, model, policy=Greedy())
    for seg, best in (("young", "a1"), ("old", "a2")):
        d = dec2.decide({"id": "probe", "segment": seg})
        assert d.arm == best, (seg, d.scores)
        assert d.model_version == dec2.model_version and len(d.model_version) == 12
        # the vowpalwabbit package, loading the same file, puts its greedy mass on the same arm
        # (its pmf is in "_multi" order: all four arms were eligible, so catalogue order)
        check = vw.Workspace(f"--quiet --dsjson -i {model_path}")
        pmf = check.predict(check.parse(probe[seg]))
        check.finish()
        assert f"a{int(np.argmax(pmf))}" == best, pmf
