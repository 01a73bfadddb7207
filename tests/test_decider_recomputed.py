"""Every decision equals its step-by-step recomputation through public APIs, bit for bit.

For each model kind (LightGBM binary on the fused kernel, a raw-score regression,
Vowpal Wabbit cb_adf, the four online learners) and policy, with slates,
fallbacks, deferred decisions, experiments and rewards, each ``Decision`` is
recomputed from the documented parts: ``FeatureSchema.vectorize``,
``Catalog.eligible``, the model's own scoring (``TreeEnsemble.predict`` on the
arms' rows, not the bound forest the Decider runs; a learner's ``score``/``pmf``
on a copy restored from its ``to_bytes``), ``Catalog.priorities``, the policy's
``pmf`` or ``model_pmf``, ``nba.policy.sample`` / ``sample_slate``. Scores, pmf,
probability and choice must be equal (``==``, not approximately), and the log
must read back as exactly that decision. A learner must end in the state of a
twin taught the same (arm, x, reward) sequence.

Why a recomputation rather than recorded hashes: a hash pins every incidental
detail and breaks on any legitimate change (a new log field, a fixed LightGBM
corner case) without saying whether the change was meant; the recomputation
states the contract (the Decider's output is what its public parts compute),
so it catches the fast paths drifting from the documented ones, which is what a
redesign risks. Whether the parts themselves moved is what the reference-parity
tests (LightGBM, VW, the policies against VW) check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import nba
from nba.bandits import OnlineBandit
from nba.base import FusedScorer
from nba.log import DecisionRecord, read_records
from nba.models.lightgbm import TreeEnsemble
from nba.policy import sample, sample_slate

SEED = 7
T0 = 1.7e9
N = 160
SEGMENTS = ["gold", "silver", "bronze"]
SCHEMA = nba.FeatureSchema(
    [nba.Numeric(f"p{j}") for j in range(4)]
    + [nba.Categorical("segment", SEGMENTS), nba.Numeric("hour", source="context")]
)


def _arms(values: bool = True, rules: bool = False) -> list[nba.Arm]:
    return [
        nba.Arm(
            f"offer{i}",
            features={"fee": float(i * 5), "kind": ["card", "loan", "savings"][i % 3]},
            value=1.0 + (i % 4) / 4 if values else 1.0,
            channels={"web": {"text": f"offer {i}"}},
            eligibility=f"p0 > {0.4 * (i - 3)}" if rules else None,
        )
        for i in range(6)
    ]


PROFILES = [
    (
        {"id": f"u{k}", **{f"p{j}": float(v) for j, v in enumerate(np.random.default_rng(k).normal(size=4))},
         "segment": SEGMENTS[k % 3]},
        {"hour": float(k % 24)},
    )
    for k in range(N)
]


@pytest.fixture(scope="module")
def trees() -> dict[str, Any]:
    lgb = pytest.importorskip("lightgbm")
    names = list(nba.Catalog(_arms(), SCHEMA).feature_names)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(2000, len(names)))
    z = X[:, 0] + 0.5 * X[:, -1] - 0.3 * X[:, 3]
    out = {}
    for objective, y in (("binary", (z + rng.normal(size=2000) > 0).astype(float)), ("regression", z)):
        params = {"objective": objective, "num_leaves": 15, "verbose": -1, "seed": 1, "deterministic": True,
                  "min_data_in_leaf": 5}
        out[objective] = nba.load_model(lgb.train(params, lgb.Dataset(X, y, feature_name=names), 20))
    return out


@dataclass
class Case:
    model: Any
    policy: Any
    arms: list[nba.Arm] = field(default_factory=_arms)
    arbitration: str = "product"
    slate_every: int = 0
    n: int = 1
    defer_every: int = 0
    reward: Callable[[int, np.random.Generator], float | None] | None = None
    kw: dict[str, Any] = field(default_factory=dict)


def _click(i: int, rng: np.random.Generator) -> float | None:
    return float(rng.random() < 0.4) if i % 4 else None


def _signed(i: int, rng: np.random.Generator) -> float | None:
    return float(rng.normal()) if i % 3 else None


def _tree_cases(trees: dict[str, Any]) -> dict[str, Case]:
    soft = nba.Softmax(3.0, epsilon=0.05)
    exp = nba.Experiment("x", variants={"a": 0.5, "b": 0.5}, overrides={"b": {"policy": "soft"}})
    return {
        "trees-fused-epsilon-experiment": Case(trees["binary"], nba.EpsilonGreedy(0.1), slate_every=5,
                                               kw={"experiments": [exp], "policies": {"soft": soft}}),
        "trees-fused-squarecb": Case(trees["binary"], nba.SquareCB(t=50)),
        "trees-fused-greedy-slates": Case(trees["binary"], nba.Greedy(), n=3),
        "trees-probability": Case(trees["binary"], nba.EpsilonGreedy(0.2), arbitration="probability"),
        "trees-raw-score-softmax": Case(trees["regression"], nba.Softmax(2.0), arbitration="score"),
        "trees-fallback-deferred": Case(trees["binary"], nba.EpsilonGreedy(0.1), arms=_arms(rules=True),
                                        slate_every=3, defer_every=7, kw={"fallback": "offer0"}),
    }


def _online_cases() -> dict[str, Case]:
    d = SCHEMA.n_columns
    return {
        "beta-thompson": Case(nba.BetaThompson(6), nba.Thompson(), reward=_click, slate_every=6),
        "beta-epsilon": Case(nba.BetaThompson(6, prior=(2.0, 3.0)), nba.EpsilonGreedy(0.1), reward=_click),
        "linucb-ucb": Case(nba.LinUCB(6, d, alpha=0.5), nba.UCB(), arms=_arms(values=False), reward=_signed,
                           slate_every=4),
        "ucb1-ucb": Case(nba.UCB1(6), nba.UCB(), arms=_arms(values=False), reward=_click),
        "linear-thompson": Case(nba.LinearThompson(6, d, v=0.3), nba.Thompson(draws=32), arms=_arms(values=False),
                                reward=_signed),
        "linucb-squarecb": Case(nba.LinUCB(6, d), nba.SquareCB(), arms=_arms(values=False), reward=_signed),
    }


TREE_CASES = [
    "trees-fused-epsilon-experiment", "trees-fused-squarecb", "trees-fused-greedy-slates", "trees-probability",
    "trees-raw-score-softmax", "trees-fallback-deferred",
]
ONLINE_CASES = ["beta-thompson", "beta-epsilon", "linucb-ucb", "ucb1-ucb", "linear-thompson", "linucb-squarecb"]


def _scores(model: Any, catalog: nba.Catalog, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The model's scores of arms ``idx`` through its own public scoring, not the Decider's scorer."""
    if isinstance(model, OnlineBandit):
        return np.asarray(model.score(x if model.n_features else None))[idx]
    if isinstance(model, TreeEnsemble):
        return model.predict(catalog.layout(model.feature_names).fill(x, idx))
    scorer = model.bind(catalog)  # VW: the bound, hashed-once form is the public scoring path of vectors
    out = np.empty(idx.shape[0])
    scorer.score(x, idx, out, scorer.buffers(len(catalog)))
    return out


def _expected_pmf(policy: Any, model: Any, catalog: nba.Catalog, x: np.ndarray, idx: np.ndarray,
                  scores: np.ndarray, eid: str) -> np.ndarray:
    if isinstance(model, OnlineBandit) and isinstance(policy, (nba.UCB, nba.Thompson)):
        f = catalog.arbitration_factors
        assert f is not None
        return policy.model_pmf(model, x if model.n_features else None, event_id=eid, seed=SEED, arms=idx,
                                scale=(f[0] * f[1])[idx])
    return policy.pmf(catalog.priorities(scores, idx))


def _run(case: Case, tmp_path: Any) -> None:
    catalog = nba.Catalog(case.arms, SCHEMA, arbitration=case.arbitration)
    policies = {"default": case.policy, **case.kw.get("policies", {})}
    learner = case.model if isinstance(case.model, OnlineBandit) else None
    twin = type(learner).from_bytes(learner.to_bytes()) if learner is not None else None
    taught: list[tuple[int, np.ndarray | None, float]] = []
    pending: list[tuple[int, np.ndarray | None]] = []
    rng = np.random.default_rng(17)
    decisions = []
    with nba.Decider(catalog, case.model, policy=case.policy, log=nba.DecisionLog(tmp_path), seed=SEED,
                     **case.kw) as dec:
        for i, (profile, context) in enumerate(PROFILES):
            eid, ts = f"e{i}", T0 + i
            n = 3 if case.slate_every and i % case.slate_every == 0 else case.n
            defer = bool(case.defer_every and i % case.defer_every == 0)
            state = type(learner).from_bytes(learner.to_bytes()) if learner is not None else case.model
            d = dec.decide(profile, context, event_id=eid, now=ts, n=n, defer=defer, channel="web")
            decisions.append(d)
            x = SCHEMA.vectorize(profile, context)
            idx = catalog.eligible(profile, context, "web", ts)
            if idx.shape[0] == 0:
                assert d.fallback and d.arm == d.arms[0] == case.kw["fallback"] and d.pmf == (1.0,)
                assert d.probability == 1.0 and d.scores == () and d.model_version == dec.model_version
                continue
            scores = _scores(state, catalog, x, idx)
            policy = policies["soft" if d.variants.get("x") == "b" else "default"]
            pmf = _expected_pmf(policy, state, catalog, x, idx, scores, eid)
            k = min(n, idx.shape[0])
            chosen = [sample(pmf, eid, SEED)] if n == 1 else sample_slate(pmf, k, eid, SEED).tolist()
            ids = [catalog.ids[j] for j in idx.tolist()]
            assert d.actions == tuple(ids) and not d.fallback
            assert d.scores == tuple(scores.tolist())  # == on floats: bit for bit (no NaN here)
            assert d.pmf == tuple(pmf.tolist())
            assert d.arms == tuple(ids[c] for c in chosen) and d.arm == ids[chosen[0]]
            assert d.probability == pmf[chosen[0]]
            assert d.policy == policy.name and d.deferred == defer and d.channel == "web"
            assert d.payload == {"text": f"offer {idx[chosen[0]]}"}
            if learner is not None:
                assert d.model_version == f"{type(learner).__name__}@{state.updates}"
                r = case.reward(i, rng) if case.reward is not None else None
                xl = x if learner.n_features else None
                if r is not None:
                    dec.reward(eid, r, now=ts + 0.5)
                    taught.append((int(idx[chosen[0]]), xl, r))
                else:
                    pending.append((int(idx[chosen[0]]), xl))
            else:
                assert d.model_version == str(case.model.version)
        dec.flush()  # closes every reward window: the unrewarded ones teach default_reward (0.0), oldest first
    if twin is not None:
        for arm, xl, r in taught + [(a, xl, 0.0) for a, xl in pending]:
            twin.update(arm, xl, r)
        assert learner is not None and learner.to_bytes() == twin.to_bytes()
    records = [r for r in read_records(tmp_path) if isinstance(r, DecisionRecord)]
    assert len(records) == len(decisions)
    for rec, d in zip(records, decisions):
        assert (rec.event_id, rec.ts, tuple(rec.actions), tuple(rec.pmf), rec.probability) == (
            d.event_id, d.timestamp, d.actions, d.pmf, d.probability)
        assert [d.actions[c] for c in rec.chosen] == list(d.arms)
        assert (rec.model_version, rec.policy, rec.variants, rec.fallback, rec.deferred, rec.channel) == (
            d.model_version, d.policy, d.variants, d.fallback, d.deferred, d.channel)
        assert rec.scores == (None if d.fallback else list(d.scores))
        if not d.fallback:
            prof, ctx = PROFILES[int(d.event_id[1:])]
            assert rec.x == SCHEMA.vectorize(prof, ctx).tolist()


@pytest.mark.parametrize("name", TREE_CASES)
def test_tree_decisions_equal_their_public_recomputation(trees: dict[str, Any], tmp_path: Any, name: str) -> None:
    _run(_tree_cases(trees)[name], tmp_path)


@pytest.mark.parametrize("name", ONLINE_CASES)
def test_online_decisions_equal_their_public_recomputation(tmp_path: Any, name: str) -> None:
    _run(_online_cases()[name], tmp_path)


def test_the_tree_cases_cover_the_fused_and_step_paths_and_fallbacks(trees: dict[str, Any]) -> None:
    catalog = nba.Catalog(_arms(), SCHEMA)
    # The fused kernel runs for a bound forest under a built-in arbitration (the first cases)...
    assert isinstance(trees["binary"].bind(catalog), FusedScorer)
    assert trees["binary"].bind(catalog).forest is not None and catalog.arbitration_factors is not None
    # ...and not under "probability" or a policy without kernel_params: the step-by-step path.
    assert nba.Catalog(_arms(), SCHEMA, arbitration="probability").arbitration_factors is None
    cat = nba.Catalog(_arms(rules=True), SCHEMA)
    empty = sum(cat.eligible(p, c, "web", T0).shape[0] == 0 for p, c in PROFILES)
    assert 0 < empty < N  # some decisions fall back, most do not


def _vw_model(tmp_path: Any) -> Any:
    vw = pytest.importorskip("vowpalwabbit")
    rng = np.random.default_rng(3)
    ws = vw.Workspace("--cb_adf -q UA --quiet")
    for _ in range(300):
        seg = SEGMENTS[int(rng.integers(3))]
        chosen = int(rng.integers(4))
        cost = -1.0 if chosen == SEGMENTS.index(seg) else 0.0
        lines = [f"shared |User p0:{float(rng.normal())} segment{seg}"]
        for k in range(4):
            label = f"0:{cost}:0.25 " if k == chosen else ""
            lines.append(f"{label}|Action fee:{5.0 * k} kind{['card', 'loan', 'savings'][k % 3]}")
        ex = ws.parse(lines)
        ws.learn(ex)
        ws.finish_example(ex)
    path = tmp_path / "cb.model"
    ws.save(str(path))
    ws.finish()
    return nba.load_model(path)


@pytest.mark.parametrize("policy", [nba.EpsilonGreedy(0.1), nba.SquareCB(t=20), nba.Softmax(1.0)], ids=str)
def test_vw_decisions_equal_their_public_recomputation(tmp_path: Any, policy: Any) -> None:
    model = _vw_model(tmp_path)
    arms = [nba.Arm(a.id, features=a.features, channels=a.channels) for a in _arms(values=False)[:4]]
    (tmp_path / "log").mkdir()
    _run(Case(model, policy, arms=arms, slate_every=3), tmp_path / "log")
