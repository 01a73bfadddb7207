"""``decide_core.decide_forest``: one compiled call for score -> arbitration -> pmf -> seeded draw.

It must equal the public step-by-step path exactly: the bound forest's scores
(themselves equal to ``TreeEnsemble.predict`` on the arms' rows),
``Catalog.priorities``, ``policy.pmf`` and ``nba.policy.sample`` - the same
scores, priorities and pmf bit for bit and the same chosen arm - for every
built-in policy and arbitration. A non-finite priority j returns ``-1 - j``
(and the Decider names that arm in a SchemaError); a pmf that fails
``sample``'s check returns ``-1 - len(idx)``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import nba
from nba._core import decide as decide_core
from nba.errors import SchemaError
from nba.models.lightgbm import load_lightgbm
from nba.policy import EpsilonGreedy, Greedy, Softmax, SquareCB, sample
from tests.isolated import assert_prints_ok
from tests.models import lightgbm_cases as cases
from tests.models.lightgbm_cases import SPECIALS

lgb = pytest.importorskip("lightgbm")

N_ARMS = 70  # two 64-arm words
U64 = (1 << 64) - 1


def _schema() -> nba.FeatureSchema:
    return nba.FeatureSchema(
        [
            nba.Numeric("age"),
            nba.Numeric("income", allow_missing=True),
            nba.Categorical("segment", ["gold", "silver", "bronze"]),
            nba.Numeric("hour", source="context"),
        ]
    )


def _arms(rng: np.random.Generator, n: int = N_ARMS, values=None) -> list[nba.Arm]:
    values = rng.choice([0.0, 0.5, 1.0, 1.0, 2.75, 0.1, 3.3], n) if values is None else values
    weights = rng.choice([0.0, 1.0, 1.0, 0.25, 1.5], n)
    return [
        nba.Arm(
            f"arm{i}",
            features={"fee": float(rng.integers(0, 50)), "tier": i % 9, "kind": ["card", "loan", "save"][i % 3]},
            value=float(values[i]),
            weight=float(weights[i]),
        )
        for i in range(n)
    ]


def _training_data(catalog: nba.Catalog, rng: np.random.Generator, n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    names = list(catalog.feature_names)
    X = rng.standard_normal((n, len(names)))
    col = {c: j for j, c in enumerate(names)}
    X[:, col["tier"]] = rng.integers(0, 9, n)
    X[:, col["fee"]] = rng.integers(0, 50, n)
    X[rng.random(n) < 0.1, col["income"]] = np.nan
    for group in ("segment=", "kind="):
        cols = [j for c, j in col.items() if c.startswith(group)]
        X[:, cols] = 0.0
        X[np.arange(n), rng.choice(cols, n)] = 1.0
    z = (
        X[:, col["age"]]
        + X[:, col["fee"]] / 20
        + 1.5 * (X[:, col["tier"]] % 3 == 1)
        + X[:, col["kind=card"]] * X[:, col["hour"]]
        - np.nan_to_num(X[:, col["income"]], nan=2.0)
        + 0.3 * rng.standard_normal(n)
    )
    return X, z


class _World:
    """A catalogue, its two arbitrations, and bound forests of a binary and a regression model."""

    def __init__(self) -> None:
        rng = np.random.default_rng(99)
        arms = _arms(rng)
        schema = _schema()
        self.catalogs = {a: nba.Catalog(arms, schema, arbitration=a) for a in ("product", "score")}
        catalog = self.catalogs["product"]
        X, z = _training_data(catalog, rng)
        names = list(catalog.feature_names)
        self.models = {}
        self.forests = {}
        for kind, params, y in (
            ("binary", {"objective": "binary"}, (z > 0).astype(float)),
            ("regression", {"objective": "regression"}, z),
        ):
            booster = cases.train(params, X, y, rounds=15, feature_name=names, categorical_feature=["tier"])
            model = load_lightgbm(booster)
            layout = catalog.layout(model.feature_names)
            forest = model.bind_arms(layout.shared_cols, layout.template)
            assert forest is not None and forest.arm_splits > 0
            self.models[kind] = model
            self.forests[kind] = forest
        self.n_shared = schema.n_columns


@pytest.fixture(scope="module")
def world() -> _World:
    return _World()


def _policies() -> dict:
    return {
        "greedy": lambda: Greedy(),
        "epsilon_greedy": lambda: EpsilonGreedy(0.1),
        "softmax": lambda: Softmax(lambda_=3, epsilon=0.05),
        "squarecb": lambda: SquareCB(10.0, 0.5, t=37),
        "greedy_exact_ties": lambda: Greedy(tie_rtol=0.0),
    }


def _random_x(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal(n) * 2
    m = rng.random(n) < 0.15
    x[m] = rng.choice(SPECIALS, int(m.sum()))
    return x


def _random_idx(rng: np.random.Generator, n: int) -> np.ndarray:
    r = rng.random()
    if r < 0.15:
        return np.arange(n, dtype=np.intp)
    if r < 0.3:
        return np.array([rng.integers(0, n)], dtype=np.intp)
    m = rng.random(n) < rng.uniform(0.05, 0.95)
    m[rng.integers(0, n)] = True
    return np.flatnonzero(m).astype(np.intp)


def _event_id(rng: np.random.Generator, i: int) -> str:
    return ["", "e", "évé-💡", f"req-{i}", f"{rng.integers(0, 2**63):x}"][i % 5] + ("" if i % 5 < 3 else str(i))


def _fused(forest, catalog: nba.Catalog, policy, x, idx, eid: str, seed: int):
    n = len(catalog)
    code, p1, p2 = policy.kernel_params()
    f0, f1 = catalog.arbitration_factors
    acc, scores, pri, pmf = (np.full(n, np.nan) for _ in range(4))
    c = decide_core.decide_forest(forest, x, idx, f0, f1, code, p1, p2, eid.encode("utf-8"), seed & U64, acc, scores, pri,
                            pmf)
    k = idx.shape[0]
    for buf in (scores, pri, pmf):
        assert np.isnan(buf[k:n]).all(), "decide_forest wrote past len(idx)"
    return c, scores[:k], pri[:k], pmf[:k]


def _bits(a) -> list[int]:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64).tolist()


@pytest.mark.parametrize("model_kind", ["binary", "regression"])
@pytest.mark.parametrize("arbitration", ["product", "score"])
@pytest.mark.parametrize("policy_name", sorted(_policies()))
def test_fused_decision_equals_the_step_by_step_path(world: _World, model_kind: str, arbitration: str,
                                                      policy_name: str, rng: np.random.Generator) -> None:
    catalog = world.catalogs[arbitration]
    forest = world.forests[model_kind]
    model = world.models[model_kind]
    policy = _policies()[policy_name]()
    layout = catalog.layout(model.feature_names)
    n = len(catalog)
    chosen_seen = set()
    for i in range(60):
        x = _random_x(rng, world.n_shared)
        idx = _random_idx(rng, n)
        eid = _event_id(rng, i)
        seed = int(rng.integers(-(2**63), 2**63)) * (1 if i % 3 else 3)
        c, s_f, pri_f, pmf_f = _fused(forest, catalog, policy, x, idx, eid, seed)

        # Step by step, through the public API.
        scores = model.predict(layout.fill(x, idx))
        s_b = np.empty(idx.shape[0])
        forest.scores(x, idx, np.empty(n), s_b)
        assert _bits(s_b) == _bits(scores)
        pri = catalog.priorities(scores, idx)
        pmf = policy.pmf(pri)
        chosen = sample(pmf, eid, seed)

        assert _bits(s_f) == _bits(scores), f"scores differ (draw {i})"
        assert _bits(pri_f) == _bits(pri), f"priorities differ (draw {i})"
        assert _bits(pmf_f) == _bits(pmf), f"pmf differs (draw {i}): {pmf_f} vs {pmf}"
        assert c == chosen, f"draw {i}: fused chose {c}, sample chose {chosen}"
        assert 0 <= c < idx.shape[0] and pmf[c] > 0
        chosen_seen.add(int(idx[c]))
    assert len(chosen_seen) > 1 or policy_name.startswith("greedy")


def test_arbitration_factors_are_what_priorities_multiply(world: _World) -> None:
    product, score = world.catalogs["product"], world.catalogs["score"]
    assert product.arbitration_factors[0] is product.values and product.arbitration_factors[1] is product.weights
    assert (score.arbitration_factors[0] == 1.0).all() and (score.arbitration_factors[1] == 1.0).all()
    assert not (product.values == 1.0).all() and not (product.weights == 1.0).all()


def test_same_event_and_seed_replay_and_others_differ(world: _World, rng: np.random.Generator) -> None:
    catalog = world.catalogs["product"]
    forest = world.forests["binary"]
    x = _random_x(rng, world.n_shared)
    idx = np.arange(len(catalog), dtype=np.intp)
    policy = Softmax(lambda_=0.5, epsilon=0.5)
    first = [_fused(forest, catalog, policy, x, idx, f"ev{i}", 7)[0] for i in range(200)]
    again = [_fused(forest, catalog, policy, x, idx, f"ev{i}", 7)[0] for i in range(200)]
    other_seed = [_fused(forest, catalog, policy, x, idx, f"ev{i}", 8)[0] for i in range(200)]
    assert first == again
    assert first != other_seed
    assert len(set(first)) > 10


# ----------------------------------------------------------------------------- non-finite priorities


def _huge_leaves(booster: lgb.Booster, target: float, per_sign: bool = False) -> str:
    """The model text with each tree's leaf values scaled so that its largest is +-target: sums overflow to
    +-inf. ``per_sign``: every leaf is moved to within [0.7, 1] x target of +-target, keeping its sign and order."""

    def repl(m: re.Match) -> str:
        v = np.array([float(a) for a in m.group(1).split()])
        if per_sign:
            v = np.sign(v) * (0.7 + 0.3 * np.abs(v) / np.abs(v).max()) * target
        elif np.abs(v).max() > 0:
            v = v / np.abs(v).max() * target
        return "leaf_value=" + " ".join(repr(float(a)) for a in v)

    text = re.sub(r"^leaf_value=(.*)$", repl, booster.model_to_string(), flags=re.M)
    return re.sub(r"^tree_sizes=.*\n", "", text, flags=re.M)


@pytest.fixture(scope="module")
def huge() -> dict:
    """A catalogue with zero and huge arm values and weights; regression models with +-1e308-scale leaves."""
    rng = np.random.default_rng(5)
    values = rng.choice([0.0, 1.0, 1e10, 0.5], N_ARMS)
    catalog = nba.Catalog(_arms(rng, values=values), _schema())
    names = list(catalog.feature_names)
    X, z = _training_data(catalog, rng)
    booster = cases.train({"objective": "regression"}, X, z, rounds=6, feature_name=names)
    model = load_lightgbm(_huge_leaves(booster, 1e308))
    layout = catalog.layout(model.feature_names)
    forest = model.bind_arms(layout.shared_cols, layout.template)
    assert forest is not None
    # One tree whose extreme leaves are +-1.5e308: finite scores whose difference overflows.
    one = cases.train({"objective": "regression", "boost_from_average": False}, X, z, rounds=1, feature_name=names)
    extreme = load_lightgbm(_huge_leaves(one, 1.5e308, per_sign=True))
    return {"catalog": catalog, "booster": booster, "model": model, "forest": forest,
            "extreme": extreme.bind_arms(layout.shared_cols, layout.template)}


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("policy_name", sorted(_policies()))
def test_non_finite_priority_returns_its_position(huge, policy_name: str, rng: np.random.Generator) -> None:
    catalog, model, forest = huge["catalog"], huge["model"], huge["forest"]
    policy = _policies()[policy_name]()
    layout = catalog.layout(model.feature_names)
    seen = {"inf": 0, "nan": 0, "finite": 0}
    for i in range(150):
        x = _random_x(rng, catalog.schema.n_columns)
        idx = _random_idx(rng, len(catalog))
        c, s_f, pri_f, pmf_f = _fused(forest, catalog, policy, x, idx, f"h{i}", i)
        scores = model.predict(layout.fill(x, idx))
        pri = catalog.priorities(scores, idx)
        assert _bits(s_f) == _bits(scores)
        assert _bits(pri_f) == _bits(pri)
        bad = np.flatnonzero(~np.isfinite(pri))
        if bad.size:
            seen["nan" if np.isnan(pri[bad[0]]) else "inf"] += 1
            assert c == -1 - int(bad[0]), f"draw {i}: got {c}, first non-finite priority is {bad[0]}"
            with pytest.raises(SchemaError):
                policy.pmf(pri)
            continue
        seen["finite"] += 1
        pmf = policy.pmf(pri)
        try:
            chosen = sample(pmf, f"h{i}", i)
        except SchemaError:  # the pmf itself is not a distribution (see the next test)
            assert c == -1 - idx.shape[0]
            continue
        assert _bits(pmf_f) == _bits(pmf) and c == chosen
    assert min(seen.values()) >= 5, seen


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning")
def test_pmf_that_is_not_a_distribution_returns_minus_one_minus_k(huge, rng: np.random.Generator) -> None:
    """Finite priorities +-1e308 apart overflow max - min; with gamma = 0 (SquareCB, t = 0) or lambda 0
    (Softmax) that is 0 * inf = NaN in the pmf, which sample() refuses: so must the fused kernel."""
    catalog, forest = huge["catalog"], huge["extreme"]
    score_catalog = nba.Catalog(catalog.arms, catalog.schema, arbitration="score")
    all_idx = np.arange(len(catalog), dtype=np.intp)
    found = 0
    for i in range(200):
        x = _random_x(rng, catalog.schema.n_columns)
        s = np.empty(len(catalog))
        forest.scores(x, all_idx, np.empty(len(catalog)), s)
        ok = np.flatnonzero(np.isfinite(s))
        if ok.size < 2:
            continue
        lo, hi = ok[np.argmin(s[ok])], ok[np.argmax(s[ok])]
        if np.isfinite(s[hi] - s[lo]):
            continue
        idx = np.sort(np.array([lo, hi, *ok[:3]], dtype=np.intp))
        idx = np.unique(idx)
        for policy in (SquareCB(), Softmax(lambda_=0.0)):
            pri = score_catalog.priorities(s[idx], idx)
            assert np.isfinite(pri).all()
            pmf = policy.pmf(pri)
            with pytest.raises(SchemaError, match="pmf"):
                sample(pmf, f"p{i}", 0)
            c, _, pri_f, pmf_f = _fused(forest, score_catalog, policy, x, idx, f"p{i}", 0)
            assert c == -1 - idx.shape[0]
            assert _bits(pri_f) == _bits(pri) and _bits(pmf_f) == _bits(pmf)
        found += 1
    assert found >= 3


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning")
def test_decider_names_the_arm_with_a_non_finite_priority(huge, rng: np.random.Generator) -> None:
    # Six arms (all three kinds, so the same columns). The model's scores are signed, so "product" would be
    # refused (it inverts the ranking of negative scores): with "score" an infinite score is the bad priority.
    catalog = nba.Catalog(_arms(np.random.default_rng(1), 6, values=[0.0, 1.0, 0.5, 1.0, 2.0, 0.0]), _schema(),
                          arbitration="score")
    model = load_lightgbm(_huge_leaves(huge["booster"], 6e307))  # sums of a few trees overflow
    policy = EpsilonGreedy(0.1)
    decider = nba.Decider(catalog, model, policy=policy, seed=3)
    assert decider._state.scorers["default"].forest is not None  # the fused path is the one under test
    layout = catalog.layout(model.feature_names)
    idx = np.arange(len(catalog), dtype=np.intp)
    errors = decisions = 0
    for i in range(120):
        profile = {"age": float(rng.standard_normal() * 3), "income": float(rng.standard_normal()),
                   "segment": str(rng.choice(["gold", "silver", "bronze", "tin"]))}
        context = {"hour": float(rng.standard_normal() * 3)}
        x = catalog.schema.vectorize(profile, context)
        scores = model.predict(layout.fill(x, idx))
        pri = catalog.priorities(scores, idx)
        bad = np.flatnonzero(~np.isfinite(pri))
        if bad.size:
            arm = catalog.ids[int(bad[0])]
            with pytest.raises(SchemaError, match=f"arm {arm!r}: model score"):
                decider.decide(profile, context, event_id=f"d{i}")
            errors += 1
        else:
            d = decider.decide(profile, context, event_id=f"d{i}")
            pmf = policy.pmf(pri)
            assert _bits(d.scores) == _bits(scores) and _bits(d.pmf) == _bits(pmf)
            assert d.arm == catalog.ids[sample(pmf, f"d{i}", 3)]
            decisions += 1
    assert errors >= 5 and decisions >= 5, (errors, decisions)


def test_decider_fused_decisions_equal_the_step_by_step_path(world: _World, rng: np.random.Generator) -> None:
    catalog = world.catalogs["product"]
    model = world.models["binary"]
    policy = SquareCB(5.0, 0.5, t=12)
    decider = nba.Decider(catalog, model, policy=policy, seed=-11)
    assert decider._state.scorers["default"].forest is not None
    layout = catalog.layout(model.feature_names)
    idx = np.arange(len(catalog), dtype=np.intp)
    for i in range(40):
        profile = {"age": float(rng.standard_normal()), "income": None if i % 4 == 0 else float(rng.standard_normal()),
                   "segment": ["gold", "silver", "bronze"][i % 3]}
        context = {"hour": float(rng.integers(0, 24))}
        d = decider.decide(profile, context, event_id=f"s{i}")
        scores = model.predict(layout.fill(catalog.schema.vectorize(profile, context), idx))
        pmf = policy.pmf(catalog.priorities(scores, idx))
        assert _bits(d.scores) == _bits(scores) and _bits(d.pmf) == _bits(pmf)
        assert d.arm == catalog.ids[sample(pmf, f"s{i}", -11)]
        assert d.probability == pmf[catalog.index(d.arm)]


# ----------------------------------------------------------------------------- bad calls


def _good_args(world: _World) -> dict:
    n = len(world.catalogs["product"])
    f0, f1 = world.catalogs["product"].arbitration_factors
    return {
        "forest": world.forests["binary"], "x": np.zeros(world.n_shared), "idx": np.arange(5, dtype=np.intp),
        "values": f0, "weights": f1, "policy": 0, "p1": 0.1, "p2": 1e-4, "event_id": b"e", "seed": 1,
        "acc": np.empty(n), "scores": np.empty(n), "pri": np.empty(n), "pmf": np.empty(n),
    }


def _call(args: dict) -> int:
    return decide_core.decide_forest(*args.values())


def test_good_args_decide(world: _World) -> None:
    assert 0 <= _call(_good_args(world)) < 5


@pytest.mark.parametrize(
    "change",
    [
        {"idx": np.empty(0, dtype=np.intp)},
        {"idx": np.array([3, 2], dtype=np.intp)},
        {"idx": np.array([0, N_ARMS], dtype=np.intp)},
        {"idx": np.arange(5, dtype=np.int32)},
        {"policy": 3},
        {"policy": -1},
        {"values": np.ones(N_ARMS - 1)},
        {"weights": np.ones(N_ARMS, dtype=np.float32)},
        {"x": np.zeros(3)},
        {"acc": np.empty(N_ARMS - 1)},
        {"scores": np.empty(4)},
        {"pri": np.empty(4)},
        {"pmf": np.empty(2 * N_ARMS)[::2]},
    ],
    ids=lambda c: next(iter(c)) + "-" + str(getattr(c[next(iter(c))], "shape", c[next(iter(c))])),
)
def test_bad_buffers_and_codes_raise_value_error(world: _World, change: dict) -> None:
    args = {**_good_args(world), **change}
    with pytest.raises(ValueError):
        _call(args)


def test_none_arguments_raise_and_do_not_crash() -> None:
    """In a child process: reading an ndarray's or a forest's fields from None must not happen."""
    code = r"""
import numpy as np
from nba._core import decide as decide_core
from nba.models.lightgbm import load_lightgbm
from tests.models import lightgbm_cases as cases
rng = np.random.default_rng(0)
X, z = cases.data(rng, 300)
forest = load_lightgbm(cases.train({"objective": "regression"}, X, z, rounds=3)).bind_arms([0, 1], X[:8])
good = [forest, np.zeros(2), np.arange(3), np.ones(8), np.ones(8), 0, 0.1, 1e-4, b"e", 1,
        np.empty(8), np.empty(8), np.empty(8), np.empty(8)]
assert 0 <= decide_core.decide_forest(*good) < 3
for i in (0, 1, 2, 3, 4, 8, 10, 11, 12, 13):
    args = list(good)
    args[i] = None
    try:
        decide_core.decide_forest(*args)
    except (TypeError, ValueError) as e:
        if i == 0 and not isinstance(e, TypeError):  # not a message built from fields read off None
            raise SystemExit(f"forest None: {e!r}")
    else:
        raise SystemExit(f"argument {i} = None was accepted")
print("ok")
"""
    assert_prints_ok(code)
