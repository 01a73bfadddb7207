"""The seams of ``nba.base``: new model kinds and policies plug into the Decider without editing it.

A pure-Python model, online learner and policies, written here against the
Protocols only, are decided with end to end, logged and read back; an object
that is no model is a ``ConfigError`` naming what is accepted; a
``lightgbm.Booster`` is loaded through ``nba.load_model``; and every built-in
model and policy satisfies its Protocol, at run time (``isinstance``) and for
mypy (``_typed_seams``, checked by ``test_builtins_satisfy_the_protocols_for_mypy``).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nba
from nba.bandits import UCB1, BetaThompson, LinearThompson, LinUCB
from nba.base import (
    CountingPolicy,
    FusedPolicy,
    FusedScorer,
    Model,
    ModelPolicy,
    OnlineLearner,
    Policy,
    Scorer,
)
from nba.catalog import Catalog
from nba.log import DecisionRecord, OutcomeRecord, read_records
from nba.models.lightgbm import TreeEnsemble
from nba.models.vw import VWModel
from nba.policy import UCB, EpsilonGreedy, Greedy, Softmax, SquareCB, Thompson, sample

SCHEMA = nba.FeatureSchema([nba.Numeric("age"), nba.Categorical("segment", ["gold", "silver"])])
ARMS = [nba.Arm(f"a{i}", features={"fee": float(i)}) for i in range(4)]
T0 = 1.7e9


# --------------------------------------------------------------------------- a new model kind


class _LinearScorer:
    """Scores arm i as w[i] . x."""

    def __init__(self, w: np.ndarray, version: str) -> None:
        self.w, self.version = w, version
        self.score_bounds = (-math.inf, math.inf)

    def buffers(self, n_arms: int) -> dict[str, np.ndarray]:
        return {}

    def score(self, x: np.ndarray, idx: np.ndarray, out: np.ndarray, buf: dict[str, np.ndarray]) -> None:
        np.dot(self.w[idx], x, out=out)


class LinearArms:
    """A model nba has never heard of: one weight vector per arm over the schema's columns."""

    score_bounds = (-math.inf, math.inf)

    def __init__(self, w: np.ndarray) -> None:
        self.w = np.ascontiguousarray(w, dtype=np.float64)
        self.version = hashlib.sha256(self.w.tobytes()).hexdigest()[:12]

    def bind(self, catalog: Catalog) -> _LinearScorer:
        if self.w.shape != (len(catalog), catalog.schema.n_columns):
            raise nba.ConfigError(f"LinearArms has weights {self.w.shape} for {len(catalog)} arms")
        return _LinearScorer(self.w, self.version)


class Proportional:
    """A policy nba has never heard of: p_i proportional to priority - min + floor."""

    def __init__(self, floor: float) -> None:
        self.floor = floor
        self.name = f"proportional(floor={floor})"

    def pmf(self, priorities: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty(len(priorities)) if out is None else out
        np.subtract(priorities, priorities.min() - self.floor, out=out)
        out /= out.sum()
        return out


# --------------------------------------------------------------------------- a new online learner and model policy


class _MeanScorer:
    def __init__(self, learner: MeanReward) -> None:
        self.learner = learner
        self.score_bounds = (0.0, 1.0)

    @property
    def version(self) -> str:
        return self.learner.version

    def buffers(self, n_arms: int) -> dict[str, np.ndarray]:
        return {}

    def score(self, x: np.ndarray, idx: np.ndarray, out: np.ndarray, buf: dict[str, np.ndarray]) -> None:
        np.take(self.learner.means(), idx, out=out)


class MeanReward:
    """A learner nba has never heard of: the mean reward per arm (0.5 before any), rewards in [0, 1]."""

    score_bounds = (0.0, 1.0)

    def __init__(self, n_arms: int) -> None:
        self.sums = np.zeros(n_arms)
        self.pulls = np.zeros(n_arms)
        self.seen: list[tuple[int, Any, float]] = []

    @property
    def updates(self) -> int:
        return len(self.seen)

    @property
    def version(self) -> str:
        return f"mean@{self.updates}"

    @property
    def n_arms(self) -> int:
        return self.sums.shape[0]

    @property
    def n_features(self) -> int:
        return 0

    def means(self) -> np.ndarray:
        return np.where(self.pulls > 0, self.sums / np.maximum(self.pulls, 1), 0.5)

    def check_reward(self, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise nba.SchemaError(f"MeanReward learns rewards in [0, 1], got {value!r}")
        return float(value)

    def update(self, arm_index: int, x: np.ndarray | None, reward: float) -> None:
        r = self.check_reward(reward)
        self.sums[arm_index] += r
        self.pulls[arm_index] += 1
        self.seen.append((arm_index, x, r))

    def bind(self, catalog: Catalog) -> _MeanScorer:
        if self.n_arms != len(catalog):
            raise nba.ConfigError(f"MeanReward has {self.n_arms} arms, the catalogue {len(catalog)}")
        return _MeanScorer(self)


class AskTheModel:
    """A model policy nba has never heard of: uniform over the offered arms, counting what it is asked."""

    name = "ask"

    def __init__(self) -> None:
        self.asked: list[tuple[list[int], list[float], list[float]]] = []

    def uses_model(self, model: Any) -> bool:
        if not isinstance(model, MeanReward):
            raise nba.ConfigError("AskTheModel asks a MeanReward")
        return True

    def model_pmf(self, model: Any, x: Any = None, *, event_id: str, seed: int = 0, arms: Any = None,
                  scale: Any = None, out: Any = None, scores: Any = None) -> np.ndarray:
        assert x is None  # a context-free learner gets no vector
        self.asked.append((list(arms), list(scale), list(scores)))
        out = np.empty(len(arms)) if out is None else out
        out.fill(1.0 / len(arms))
        return out


# --------------------------------------------------------------------------- plugging in


def _profile(i: int) -> dict[str, Any]:
    return {"id": f"u{i}", "age": float(20 + i % 50), "segment": ["gold", "silver"][i % 2]}


def test_a_new_model_kind_and_policy_decide_end_to_end_and_log(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    catalog = nba.Catalog(ARMS, SCHEMA, arbitration="score")
    model = LinearArms(rng.normal(size=(len(ARMS), SCHEMA.n_columns)))
    policy = Proportional(0.1)
    with nba.Decider(catalog, model, policy=policy, log=nba.DecisionLog(tmp_path), seed=3) as dec:
        decisions = [dec.decide(_profile(i), event_id=f"e{i}", now=T0 + i, n=1 + i % 2) for i in range(50)]
    for i, d in enumerate(decisions):
        x = SCHEMA.vectorize(_profile(i))
        scores = model.w @ x  # every arm is eligible
        pmf = policy.pmf(catalog.priorities(scores))
        first = sample(pmf, f"e{i}", 3)
        assert d.scores == tuple(scores.tolist()) and d.pmf == tuple(pmf.tolist())
        assert d.arm == ARMS[first].id and d.probability == pmf[first] and len(d.arms) == 1 + i % 2
        assert d.model_version == model.version and d.policy == "proportional(floor=0.1)"
    records = [r for r in read_records(tmp_path) if isinstance(r, DecisionRecord)]
    assert [(r.event_id, tuple(r.pmf), r.probability, r.model_version, r.policy) for r in records] == [
        (d.event_id, d.pmf, d.probability, d.model_version, d.policy) for d in decisions
    ]
    assert [[r.actions[c] for c in r.chosen] for r in records] == [list(d.arms) for d in decisions]


def test_a_new_online_learner_learns_from_the_deciders_rewards(tmp_path: Path) -> None:
    learner = MeanReward(len(ARMS))
    arms = [nba.Arm(a.id, features=a.features, value=1.0 + i) for i, a in enumerate(ARMS)]
    with nba.Decider(arms, learner, schema=SCHEMA, policy=EpsilonGreedy(0.2), log=nba.DecisionLog(tmp_path),
                     default_reward=0.0) as dec:
        for i in range(40):
            d = dec.decide(_profile(i), event_id=f"e{i}", now=T0 + i)
            assert d.model_version == f"mean@{learner.updates}"
            if i % 2:
                dec.reward(d.event_id, 1.0, now=T0 + i + 0.5)
        with pytest.raises(nba.SchemaError, match="MeanReward learns rewards"):
            dec.reward("e0", 2.0, now=T0 + 41)  # check_reward is asked before anything is logged or learned
        dec.flush()
    assert len(learner.seen) == 40 and all(x is None for _, x, _ in learner.seen)
    assert sum(r for _, _, r in learner.seen) == 20.0  # the rewarded ones; the others taught default_reward
    outcomes = [r for r in read_records(tmp_path) if isinstance(r, OutcomeRecord)]
    assert len(outcomes) == 20
    with pytest.raises(nba.ConfigError, match="default_reward"):
        nba.Decider(arms, MeanReward(len(ARMS)), schema=SCHEMA, default_reward=-1.0)


def test_a_new_model_policy_is_asked_for_the_pmf_with_the_offered_arms() -> None:
    learner = MeanReward(len(ARMS))
    policy = AskTheModel()
    arms = [nba.Arm(a.id, features=a.features, value=2.0, weight=0.5, eligibility=f"age >= {20 + 10 * i}")
            for i, a in enumerate(ARMS)]
    dec = nba.Decider(arms, learner, schema=SCHEMA, policy=policy)
    d = dec.decide(_profile(15))  # age 35: arms a0, a1
    assert d.actions == ("a0", "a1") and d.pmf == (0.5, 0.5) and d.policy == "ask"
    assert policy.asked == [([0, 1], [1.0, 1.0], [0.5, 0.5])]  # arms, value x weight, the scorer's scores
    with pytest.raises(nba.ConfigError, match="policy 'default' cannot choose for model 'default': AskTheModel"):
        nba.Decider(arms, BetaThompson(len(ARMS)), schema=SCHEMA, policy=AskTheModel())


@pytest.mark.parametrize("thing", [object(), {"weights": [1.0]}, 3.5, np.zeros(3)], ids=type)
def test_an_object_that_is_no_model_is_a_config_error_naming_what_is_accepted(thing: Any) -> None:
    with pytest.raises(nba.ConfigError, match=r"nba\.load_model.*online learner.*nba\.base\.Model") as e:
        nba.Decider(ARMS, thing, schema=SCHEMA)
    assert type(thing).__name__ in str(e.value)


def test_paths_and_none_are_refused_before_anything_is_read(tmp_path: Path) -> None:
    (tmp_path / "m.txt").write_text("tree\n")
    for source in (str(tmp_path / "m.txt"), tmp_path / "m.txt", b"tree\n"):
        with pytest.raises(nba.ConfigError, match=r"load it first with nba\.load_model"):
            nba.Decider(ARMS, source, schema=SCHEMA)
    with pytest.raises(nba.ConfigError, match="needs a model"):
        nba.Decider(ARMS, None, schema=SCHEMA)


def test_swapping_in_an_object_that_is_no_model_changes_nothing() -> None:
    dec = nba.Decider(ARMS, LinearArms(np.ones((4, SCHEMA.n_columns))), schema=SCHEMA, arbitration="score")
    before = dec.model_version
    with pytest.raises(nba.ConfigError, match=r"nba\.base\.Model"):
        dec.swap_model(object())
    assert dec.model_version == before and dec.decide(_profile(1)).model_version == before


def test_an_object_that_is_no_policy_is_a_config_error_naming_the_protocol() -> None:
    with pytest.raises(nba.ConfigError, match=r"policy 'default' is a object.*nba\.base\.Policy"):
        nba.Decider(ARMS, LinearArms(np.ones((4, SCHEMA.n_columns))), schema=SCHEMA, policy=object())


def test_a_lightgbm_booster_is_loaded_through_load_model() -> None:
    lgb = pytest.importorskip("lightgbm")
    catalog = nba.Catalog(ARMS, SCHEMA)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, len(catalog.feature_names)))
    y = (X[:, 0] + rng.normal(size=500) > 0).astype(float)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7}, lgb.Dataset(
        X, y, feature_name=list(catalog.feature_names)), 10)
    direct = nba.Decider(catalog, booster)
    loaded = nba.Decider(catalog, nba.load_model(booster))
    assert direct.model_version == loaded.model_version == nba.load_model(booster).version
    for i in range(20):
        assert direct.decide(_profile(i), event_id=f"e{i}", now=T0) == loaded.decide(_profile(i), event_id=f"e{i}",
                                                                                      now=T0)
    direct.swap_model(booster, name="default")  # swap_model takes what the constructor takes
    assert direct.model_version == loaded.model_version


# --------------------------------------------------------------------------- built-ins satisfy the Protocols


def _tree() -> TreeEnsemble:
    pytest.importorskip("lightgbm")
    import lightgbm as lgb

    catalog = nba.Catalog(ARMS, SCHEMA)
    X = np.random.default_rng(2).normal(size=(200, len(catalog.feature_names)))
    return nba.load_model(lgb.train({"objective": "regression", "verbose": -1, "num_leaves": 4},
                                    lgb.Dataset(X, X[:, 0], feature_name=list(catalog.feature_names)), 3))


def _vw(tmp_path: Path) -> VWModel:
    vw = pytest.importorskip("vowpalwabbit")
    ws = vw.Workspace("--cb_adf --quiet")
    ex = ws.parse(["shared |User age:3", "0:1:0.5 |Action fee:1", "|Action fee:2"])
    ws.learn(ex)
    ws.finish_example(ex)
    ws.save(str(tmp_path / "cb.model"))
    ws.finish()
    model = nba.load_model(tmp_path / "cb.model", feature_check="off")  # trained on other names: only the types matter here
    assert isinstance(model, VWModel)
    return model


LEARNERS = [lambda: BetaThompson(4), lambda: UCB1(4), lambda: LinUCB(4, SCHEMA.n_columns),
            lambda: LinearThompson(4, SCHEMA.n_columns), lambda: MeanReward(4)]


@pytest.mark.parametrize("make", LEARNERS, ids=["BetaThompson", "UCB1", "LinUCB", "LinearThompson", "MeanReward"])
def test_online_learners_are_models_that_learn(make: Any) -> None:
    m = make()
    assert isinstance(m, Model) and isinstance(m, OnlineLearner)
    assert not isinstance(m.bind(nba.Catalog(ARMS, SCHEMA)), FusedScorer)


def test_loaded_models_are_models_and_trees_bind_for_the_fused_kernel(tmp_path: Path) -> None:
    catalog = nba.Catalog(ARMS, SCHEMA)
    tree = _tree()
    assert isinstance(tree, Model) and not isinstance(tree, OnlineLearner)
    scorer = tree.bind(catalog)
    assert isinstance(scorer, FusedScorer) and scorer.forest is not None and "acc" in scorer.buffers(4)
    assert isinstance(LinearArms(np.ones((4, 3))), Model) and not isinstance(LinearArms(np.ones((4, 3))), OnlineLearner)
    vwm = _vw(tmp_path)
    assert isinstance(vwm, Model) and not isinstance(vwm, OnlineLearner)
    assert not isinstance(vwm.bind(catalog), FusedScorer)
    for thing in (object(), np.zeros(2), "model.txt"):
        assert not isinstance(thing, Model)


def test_policies_satisfy_their_protocols() -> None:
    for p in (Greedy(), EpsilonGreedy(0.1), Softmax(1.0), SquareCB()):
        assert isinstance(p, Policy) and isinstance(p, FusedPolicy) and not isinstance(p, ModelPolicy)
        params = p.kernel_params()
        assert params is not None and len(params) == 3
    for mp in (UCB(), Thompson()):
        assert isinstance(mp, ModelPolicy) and isinstance(mp, Policy) and not isinstance(mp, FusedPolicy)
    assert isinstance(SquareCB(), CountingPolicy) and not isinstance(EpsilonGreedy(0.1), CountingPolicy)
    assert isinstance(Proportional(0.1), Policy) and not isinstance(Proportional(0.1), FusedPolicy)
    assert isinstance(AskTheModel(), ModelPolicy) and not isinstance(AskTheModel(), Policy)


def test_kernel_params_are_what_the_fused_kernel_is_given() -> None:
    from nba._core import decide as decide_core

    assert EpsilonGreedy(0.1).kernel_params() == (decide_core.DECIDE_EPSILON_GREEDY, 0.1, 1e-4)
    assert Greedy(tie_rtol=0.0).kernel_params() == (decide_core.DECIDE_EPSILON_GREEDY, 0.0, 0.0)
    assert Softmax(2.0, epsilon=0.1).kernel_params() == (decide_core.DECIDE_SOFTMAX, 2.0, 0.1)
    sq = SquareCB(10.0, 0.5, t=4)
    assert sq.kernel_params() == (decide_core.DECIDE_SQUARECB, 20.0, 0.0)
    sq.observe(5)
    assert sq.kernel_params() == (decide_core.DECIDE_SQUARECB, 30.0, 0.0)  # read per decision: the count moves


def _typed_seams(tree: TreeEnsemble, vwm: VWModel, catalog: Catalog) -> None:
    """Never called: mypy checks each built-in against its Protocol (see the test below)."""
    models: list[Model] = [tree, vwm, BetaThompson(4), UCB1(4), LinUCB(4, 3), LinearThompson(4, 3),
                           LinearArms(np.ones((4, 3))), MeanReward(4)]
    learners: list[OnlineLearner] = [BetaThompson(4), UCB1(4), LinUCB(4, 3), LinearThompson(4, 3), MeanReward(4)]
    scorers: list[Scorer] = [tree.bind(catalog), vwm.bind(catalog), LinUCB(4, 3).bind(catalog),
                             LinearArms(np.ones((4, 3))).bind(catalog), MeanReward(4).bind(catalog)]
    fused: FusedScorer = tree.bind(catalog)
    policies: list[Policy] = [Greedy(), EpsilonGreedy(0.1), Softmax(1.0), SquareCB(), UCB(), Thompson(),
                              Proportional(0.1)]
    fused_policies: list[FusedPolicy] = [Greedy(), EpsilonGreedy(0.1), Softmax(1.0), SquareCB()]
    model_policies: list[ModelPolicy] = [UCB(), Thompson(), AskTheModel()]
    counting: CountingPolicy = SquareCB()
    del models, learners, scorers, fused, policies, fused_policies, model_policies, counting


@pytest.mark.slow
def test_builtins_satisfy_the_protocols_for_mypy(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    out, err, status = api.run([
        __file__, "--follow-imports=silent", "--ignore-missing-imports", "--no-error-summary",
        "--cache-dir", str(tmp_path / "mypy-cache"), "--hide-error-context",
    ])
    assert status == 0, out + err
