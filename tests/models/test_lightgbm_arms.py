"""Catalogue-bound forests (``TreeEnsemble.bind_arms`` -> ``trees_core.ArmForestCore``).

A bound forest scores every eligible arm in one walk per tree. Its scores must be
bit-identical to scoring each arm's full model row (the shared vector in the
shared columns, the arm's fixed features in the others) with
``TreeEnsemble.predict``, raw and transformed, and so to ``lightgbm.Booster.predict``.

Every model is trained here by LightGBM (or is LightGBM's own text, edited); arm
rows and shared vectors come from ``_probe``: NaN, +-inf, +-0.0, values in and
around LightGBM's zero band, split thresholds and their neighbours, unseen,
negative and non-integer categories. The split of the model's columns into shared
and arm columns is random, plus the all-shared and all-arm edge cases.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nba
from nba.errors import SchemaError
from nba.models.lightgbm import TreeEnsemble, load_lightgbm
from nba.policy import EpsilonGreedy, sample
from tests.isolated import assert_prints_ok
from tests.models import lightgbm_cases as cases
from tests.models.conftest import kernel_name
from tests.models.lightgbm_cases import KZERO, SPECIALS

lgb = pytest.importorskip("lightgbm")

# Every test here runs on each row kernel in turn (bitvector AVX-512, AVX2, lane chains): bit for bit on each.
pytestmark = pytest.mark.usefixtures("tree_kernel")

N_ARMS = (1, 5, 64, 65, 150)
_F64 = np.dtype(np.float64)


# ----------------------------------------------------------------------------- helpers


def _assert_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """got and want hold the same float64 bit patterns (stricter than ==: -0.0 != 0.0, NaN == NaN)."""
    got = np.ascontiguousarray(got, dtype=_F64)
    want = np.ascontiguousarray(want, dtype=_F64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    bad = np.flatnonzero(got.view(np.uint64) != want.view(np.uint64))
    assert bad.size == 0, (
        f"{what}: {bad.size} of {got.size} scores differ; first at {bad[0]}: {got[bad[0]]!r} != {want[bad[0]]!r}"
    )


def _splits(nf: int, rng: np.random.Generator, forced: tuple = ()) -> list[np.ndarray]:
    """Shared-column lists (in shared-vector order): all shared (shuffled), none shared, two random, ``forced``."""
    out = [rng.permutation(nf).astype(np.intp), np.empty(0, dtype=np.intp)]
    if nf > 1:
        for _ in range(2):
            out.append(rng.permutation(nf)[: int(rng.integers(1, nf))].astype(np.intp))
    out += [np.asarray(f, dtype=np.intp) for f in forced]
    return out


def _eligible(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Ascending catalogue positions: all, first, last, random subsets, and subsets across / skipping 64-arm words."""
    subs = [np.arange(n), np.array([0]), np.array([n - 1])]
    for p in (0.1, 0.5, 0.9):
        m = rng.random(n) < p
        if m.any():
            subs.append(np.flatnonzero(m))
    if n > 64:
        subs.append(np.arange(64, n))
        subs.append(np.unique([0, 63, 64, n - 1]))
    if n > 128:
        a = np.arange(n)
        subs.append(np.flatnonzero((a < 64) | (a >= 128)))  # the middle word has no eligible arm
        subs.append(np.flatnonzero((a % 7 == 3) & (a >= 64)))
    return [np.ascontiguousarray(s, dtype=np.intp) for s in subs]


def _full_rows(arm_rows: np.ndarray, shared_cols: np.ndarray, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The model rows of arms ``idx``: each arm's own row with the shared vector in the shared columns."""
    rows = arm_rows[idx].copy()
    rows[:, shared_cols] = x
    return rows


def _bound_scores(forest, x: np.ndarray, idx: np.ndarray, raw: bool) -> np.ndarray:
    """forest.scores into a fresh buffer; checks it fills out[:k] only and returns out."""
    n_arms = forest.n_arms
    acc = np.full(n_arms, np.nan)  # scratch: whatever it holds must not leak into scores
    acc[::2] = 1e300
    out = np.full(idx.shape[0] + 3, -7.25)
    res = forest.scores(np.ascontiguousarray(x), idx, acc, out, raw_score=raw)
    assert res is out
    assert np.all(out[idx.shape[0]:] == -7.25), "scores wrote past len(idx)"
    return out[: idx.shape[0]].copy()


def _check_parity(
    model: TreeEnsemble,
    booster: lgb.Booster | None,
    rows,
    rng: np.random.Generator,
    *,
    forced: tuple = (),
    n_arms: tuple[int, ...] = N_ARMS,
    n_x: int = 3,
) -> int:
    """Bound scores == predict on the full rows, for every arm count, column split, shared vector and subset.

    ``rows(n)`` gives n probe rows of the model's width. The references are computed
    in one batch at the end. Returns how many arm scores were compared.
    """
    nf = model.num_features
    raws, trans, full, where = [], [], [], []
    for n in n_arms:
        arm_rows = rows(n)
        for shared in _splits(nf, rng, forced):
            forest = model.bind_arms(shared, arm_rows)
            assert forest is not None
            assert (forest.n_arms, forest.n_shared) == (n, shared.shape[0])
            for probe_row in rows(n_x):
                x = probe_row[shared]
                for idx in _eligible(rng, n):
                    raws.append(_bound_scores(forest, x, idx, True))
                    trans.append(_bound_scores(forest, x, idx, False))
                    full.append(_full_rows(arm_rows, shared, x, idx))
                    where += [f"n_arms={n} shared={shared.tolist()} x={x.tolist()} arm={a}" for a in idx.tolist()]
    R = np.concatenate(full)
    got_raw, got = np.concatenate(raws), np.concatenate(trans)

    def check(a: np.ndarray, b: np.ndarray, what: str) -> None:
        bad = np.flatnonzero(a.view(np.uint64) != np.ascontiguousarray(b, dtype=_F64).view(np.uint64))
        assert bad.size == 0, (
            f"{what}: {bad.size} of {a.size} scores differ; first: {a[bad[0]]!r} != {b[bad[0]]!r} at "
            f"{where[bad[0]]}, row {R[bad[0]].tolist()}"
        )

    check(got_raw, model.predict(R, raw_score=True), "raw vs predict")
    check(got, model.predict(R), "transformed vs predict")
    step = max(1, R.shape[0] // 200)  # one row at a time is the core's other path (single-row walk)
    check(got_raw[::step], np.array([model.predict_row(r, raw_score=True) for r in R[::step]]), "raw vs predict_row")
    if booster is not None:
        check(got_raw, booster.predict(R, raw_score=True, num_threads=1), "raw vs LightGBM")
        np.testing.assert_allclose(got, booster.predict(R, num_threads=1), rtol=1e-12, atol=1e-12)
    return got_raw.shape[0]


def _prober(booster: lgb.Booster, rng: np.random.Generator, cat: tuple[int, ...] = (), extra=None):
    """rows(n): n rows drawn from one big ``_probe`` pool (``extra`` edits the pool in place first)."""
    pool = cases.probe(booster, rng, 3000, cat=cat)
    if extra is not None:
        extra(pool)

    def rows(n: int) -> np.ndarray:
        return pool[rng.choice(pool.shape[0], n, replace=False)]

    return rows


# ----------------------------------------------------------------------------- parity over trained models


@pytest.mark.parametrize(
    "objective",
    ["regression", "binary", "binary_sigmoid", "poisson", "regression_sqrt", "cross_entropy_lambda"],
)
def test_bound_scores_equal_predict_and_lightgbm(objective: str, rng: np.random.Generator) -> None:
    X, z = cases.data(rng)
    params: dict = {"objective": objective}
    y = z
    if objective.startswith("binary"):
        params["objective"] = "binary"
        if objective == "binary_sigmoid":
            params["sigmoid"] = 0.7
        y = (z > 0).astype(float)
    elif objective == "poisson":
        y = rng.poisson(np.exp(np.clip(z, -2, 2))).astype(float)
    elif objective == "regression_sqrt":
        params = {"objective": "regression", "reg_sqrt": True}
    elif objective == "cross_entropy_lambda":
        y = 1.0 / (1.0 + np.exp(-z))
    booster = cases.train(params, X, y, rounds=12)
    model = load_lightgbm(booster)
    assert model.num_class == 1
    n = _check_parity(model, booster, _prober(booster, rng), rng)
    assert n > 1000


@pytest.mark.parametrize("max_cat_to_onehot", [4, 64])
def test_categorical_features_as_arm_and_as_shared_columns(max_cat_to_onehot: int, rng: np.random.Generator) -> None:
    booster = cases.categorical_booster(rng, max_cat_to_onehot, rounds=10)
    model = load_lightgbm(booster)
    assert model.summary().categorical_splits > 0
    # Column 4 an arm feature and column 5 shared, and the other way round.
    forced = ([0, 5, 2], [4, 1], [5], [4])
    _check_parity(model, booster, _prober(booster, rng, cat=(4, 5)), rng, forced=forced)


def test_categorical_nan_in_training_data(rng: np.random.Generator) -> None:
    X, y = cases.categorical_nan_data(rng)
    booster = cases.train({"objective": "binary"}, X, y > 0.5, categorical_feature=[4])
    _check_parity(load_lightgbm(booster), booster, _prober(booster, rng, cat=(4,)), rng, forced=([4], [0, 1, 2]))


@pytest.mark.parametrize("use_missing", [True, False])
@pytest.mark.parametrize("zero_as_missing", [True, False])
def test_missing_value_modes(use_missing: bool, zero_as_missing: bool, rng: np.random.Generator) -> None:
    booster = cases.missing_booster(rng, use_missing, zero_as_missing)
    _check_parity(load_lightgbm(booster), booster, _prober(booster, rng), rng, n_arms=(5, 65, 150))


@pytest.mark.parametrize("decision_type", [0, 2, 4, 6, 8, 10])
def test_every_missing_type_and_default_direction(decision_type: int, rng: np.random.Generator) -> None:
    """Every split rewritten to one (missing type, default_left); thresholds in and around the zero band."""
    text = cases.decision_type_model(rng, decision_type)
    ref = lgb.Booster(model_str=text)
    near_zero = np.array([0.0, -0.0, 5e-36, -5e-36, 1e-35, -1e-35, KZERO, -KZERO, 2e-35, -2e-35, np.nan])

    def more_zeros(X: np.ndarray) -> None:
        mask = rng.random(X.shape) < 0.3
        X[mask] = rng.choice(near_zero, int(mask.sum()))

    _check_parity(load_lightgbm(text), ref, _prober(ref, rng, extra=more_zeros), rng, n_arms=(5, 65, 150))


def test_random_forest_average_output(rng: np.random.Generator) -> None:
    X, z = cases.data(rng)
    booster = cases.train({"objective": "binary", "boosting": "rf", "bagging_fraction": 0.6, "bagging_freq": 1}, X, z > 0)
    model = load_lightgbm(booster)
    assert model.average_output
    _check_parity(model, booster, _prober(booster, rng), rng)


def _every_other_tree_a_leaf(booster: lgb.Booster) -> str:
    """The model text with every odd tree replaced by a single leaf (LightGBM's own layout of one)."""
    head, *trees = booster.model_to_string().split("\nTree=")
    out = []
    for t, block in enumerate(trees):
        if t % 2:
            value = re.search(r"^leaf_value=(\S+)", block, flags=re.MULTILINE).group(1)
            tail = block[block.index("\n\n"):]  # the blank lines (and, after the last tree, "end of trees")
            block = (
                f"{t}\nnum_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\ndecision_type=\n"
                f"left_child=\nright_child=\nleaf_value={value}\nleaf_weight=\nleaf_count=10\ninternal_value=\n"
                f"internal_weight=\ninternal_count=\nis_linear=0\nshrinkage=1{tail}"
            )
        out.append(block)
    head = re.sub(r"^tree_sizes=.*\n", "", head, flags=re.MULTILINE)
    return "\nTree=".join([head, *out])


@pytest.mark.parametrize("how", ["constant_target", "min_data_in_leaf", "mixed"])
def test_single_leaf_trees(how: str, rng: np.random.Generator) -> None:
    X, z = cases.data(rng, 300)
    if how == "constant_target":
        booster = cases.train({"objective": "regression"}, X, np.full(300, 2.5))
    elif how == "min_data_in_leaf":
        booster = cases.train({"objective": "regression", "min_data_in_leaf": 10_000}, X, z)
    else:
        booster = lgb.Booster(model_str=_every_other_tree_a_leaf(cases.train({"objective": "binary"}, X, z > 0, rounds=9)))
    model = load_lightgbm(booster.model_to_string())
    s = model.summary()
    if how == "mixed":
        single = [t["num_leaves"] == 1 for t in booster.dump_model()["tree_info"]]
        assert single == [t % 2 == 1 for t in range(9)] and s.leaves > 2 * s.trees
    else:
        assert s.leaves == s.trees
    _check_parity(model, booster, _prober(booster, rng), rng, n_arms=(1, 65, 150))


def test_one_feature_model(rng: np.random.Generator) -> None:
    X = rng.standard_normal((500, 1))
    booster = cases.train({"objective": "regression"}, X, np.sin(2 * X[:, 0]) + 0.2 * rng.standard_normal(500))
    _check_parity(load_lightgbm(booster), booster, _prober(booster, rng), rng)


# ----------------------------------------------------------------------------- a property over small models


@st.composite
def _specs(draw) -> dict:
    nf = draw(st.integers(1, 5))
    return {
        "seed": draw(st.integers(0, 2**32 - 1)),
        "nf": nf,
        "objective": draw(st.sampled_from(["regression", "binary"])),
        "num_leaves": draw(st.integers(2, 12)),
        "rounds": draw(st.integers(1, 6)),
        "use_missing": draw(st.booleans()),
        "zero_as_missing": draw(st.booleans()),
        "cat": draw(st.sampled_from([(), (0,), (nf - 1,)])),
        "n_arms": draw(st.sampled_from([1, 2, 63, 64, 65, 129])),
        "shared": draw(st.lists(st.booleans(), min_size=nf, max_size=nf)),
        "values": draw(
            st.lists(
                st.one_of(st.floats(), st.sampled_from(SPECIALS.tolist()), st.integers(-3, 40).map(float)),
                min_size=1,
                max_size=12,
            )
        ),
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=_specs())
def test_property_bound_scores_equal_rows(spec: dict) -> None:
    rng = np.random.default_rng(spec["seed"])
    nf = spec["nf"]
    X = rng.standard_normal((300, nf))
    X[rng.random(X.shape) < 0.1] = np.nan
    X[rng.random(X.shape) < 0.1] = 0.0
    for f in spec["cat"]:
        X[:, f] = rng.integers(0, 12, 300)
    y = np.nan_to_num(X[:, 0], nan=0.5) + 0.3 * rng.standard_normal(300)
    if spec["objective"] == "binary":
        y = (y > 0).astype(float)
    params = {
        "objective": spec["objective"],
        "num_leaves": spec["num_leaves"],
        "min_data_in_leaf": 3,
        "use_missing": spec["use_missing"],
        "zero_as_missing": spec["zero_as_missing"],
        "max_cat_to_onehot": 3,
        "min_data_per_group": 3,
        "cat_smooth": 1,
    }
    booster = cases.train(params, X, y, rounds=spec["rounds"], categorical_feature=list(spec["cat"]))
    model = load_lightgbm(booster)
    n = spec["n_arms"]
    arm_rows = cases.probe(booster, rng, n, cat=spec["cat"])
    xs = cases.probe(booster, rng, 4, cat=spec["cat"])
    vals = np.array(spec["values"])  # hypothesis' own floats, anywhere in the rows
    for M in (arm_rows, xs):
        mask = rng.random(M.shape) < 0.25
        M[mask] = rng.choice(vals, int(mask.sum()))
    shared = rng.permutation(np.flatnonzero(spec["shared"])).astype(np.intp)
    forest = model.bind_arms(shared, arm_rows)
    assert forest is not None
    full, raws, trans = [], [], []
    for row in xs:
        x = row[shared]
        for idx in _eligible(rng, n):
            raws.append(_bound_scores(forest, x, idx, True))
            trans.append(_bound_scores(forest, x, idx, False))
            full.append(_full_rows(arm_rows, shared, x, idx))
    R = np.concatenate(full)
    _assert_bits(np.concatenate(raws), booster.predict(R, raw_score=True), "raw vs LightGBM")
    _assert_bits(np.concatenate(raws), model.predict(R, raw_score=True), "raw vs predict")
    _assert_bits(np.concatenate(trans), model.predict(R), "transformed vs predict")


# ----------------------------------------------------------------------------- which kernel scores a forest
#
# Where the bitvector kernel serves the ensemble, a forest ranks the shared vector once and
# ANDs each arm's precomputed bitvectors (its own splits) into the shared ones; otherwise it
# walks each tree with the set of arms. The parity tests above run on both (tree_kernel).


def _forest_kernel(tree_kernel: str) -> str:
    return "walk" if tree_kernel == "lanes" else f"bitvector-{tree_kernel}"


def test_forest_kernel_follows_the_row_kernel(small, rng: np.random.Generator, tree_kernel: str) -> None:
    booster, model = small
    forest = model.bind_arms(np.arange(3, dtype=np.intp), cases.probe(booster, rng, 9))
    assert model.row_kernel == kernel_name(tree_kernel)
    assert forest.kernel == _forest_kernel(tree_kernel)
    assert forest.bitvector_declined is None
    tables = forest._bitvector_tables()
    assert tables["armv"].shape == (9, 16)  # 6 trees: one block of 16 lanes per arm


@pytest.mark.parametrize("num_leaves", [15, 48])
def test_categorical_splits_on_arm_features_keep_the_bitvector_forest(
    num_leaves: int, rng: np.random.Generator, tree_kernel: str
) -> None:
    """An arm's categories are fixed, so its categorical splits are precomputed like any of its splits;
    on a shared feature they make the forest walk (as the rows take the lane chains)."""
    X, z = cases.data(rng, 3000)
    X[:, 0] = rng.integers(0, 8, 3000)
    X[:, 1] = rng.integers(0, 5, 3000)
    booster = cases.train({"objective": "regression", "max_cat_to_onehot": 2, "num_leaves": num_leaves,
                           "min_data_in_leaf": 3, "min_data_per_group": 3, "cat_smooth": 1}, X,
                          z + X[:, 0] % 3 - X[:, 1] % 2, rounds=12, categorical_feature=[0, 1])
    model = load_lightgbm(booster)
    assert model.bitvector_declined == "categorical splits"
    prober = _prober(booster, rng, cat=(0, 1))
    forest = model.bind_arms(np.arange(2, X.shape[1], dtype=np.intp), prober(4))  # categories: arms' only
    wide = num_leaves > 32
    assert forest.kernel == ("walk" if wide and tree_kernel == "avx2" else _forest_kernel(tree_kernel))
    assert forest.bitvector_declined is None
    assert _check_parity(model, booster, prober, rng, forced=(np.arange(2, X.shape[1]),), n_arms=(1, 9, 65)) > 0
    walked = model.bind_arms(np.arange(1, X.shape[1], dtype=np.intp), prober(4))  # category 1 is shared
    assert (walked.kernel, walked.bitvector_declined) == ("walk", "categorical splits on shared features")
    assert walked._bitvector_tables() is None


def test_arm_bitvectors_past_the_cap_walk_exactly(small, rng: np.random.Generator, monkeypatch) -> None:
    from nba._core import trees as trees_core

    booster, model = small
    monkeypatch.setattr(trees_core, "_FOREST_QS_MAX_BYTES", 16 * 4 * 8)  # room for 8 arms' one block
    assert model.bind_arms(np.arange(3, dtype=np.intp), cases.probe(booster, rng, 8)).bitvector_declined is None
    assert _check_parity(model, booster, _prober(booster, rng), rng, n_arms=(9, 65)) > 0
    forest = model.bind_arms(np.arange(3, dtype=np.intp), cases.probe(booster, rng, 9))
    assert (forest.kernel, forest.bitvector_declined) == ("walk", "arm bitvectors past 512 bytes")


@pytest.mark.parametrize("num_leaves", [40, 64])
def test_wide_trees_bound_scores_equal_rows(num_leaves: int, rng: np.random.Generator, tree_kernel: str) -> None:
    """Trees of 33-64 leaves: the wide layout's forest with AVX-512, the walk otherwise."""
    X, z = cases.data(rng, 4000)
    X[rng.random(X.shape) < 0.1] = np.nan
    booster = cases.train({"objective": "regression", "num_leaves": num_leaves, "min_data_in_leaf": 2}, X, z, rounds=12)
    model = load_lightgbm(booster)
    forest = model.bind_arms(np.arange(2, dtype=np.intp), cases.probe(booster, rng, 5))
    assert forest.kernel == ("bitvector-avx512" if tree_kernel == "avx512" else "walk")
    tables = forest._bitvector_tables()
    assert tables is not None and tables["armv"].dtype == np.uint64  # built at bind, whatever the ask
    assert _check_parity(model, booster, _prober(booster, rng), rng, n_arms=(1, 9, 65)) > 0


@pytest.mark.parametrize("num_leaves", [31, 63])
@pytest.mark.parametrize("mutation", ["arm", "shared"])
def test_a_wrong_arm_or_shared_bitvector_is_caught(
    mutation: str, num_leaves: int, rng: np.random.Generator, tree_kernel: str
) -> None:
    """The bitvector forest reads its own tables: corrupt them and its scores must go wrong (unless walked)."""
    X, z = cases.data(rng, 4000)
    booster = cases.train({"objective": "regression", "num_leaves": num_leaves, "min_data_in_leaf": 2}, X, z,
                          rounds=20)
    model = load_lightgbm(booster)
    lanes = 8 if num_leaves > 32 else 16
    shared = np.arange(0, X.shape[1], 2, dtype=np.intp)  # every other column an arm's
    arm_rows = cases.probe(booster, rng, 40)
    xs = cases.probe(booster, rng, 50)
    idx = np.arange(40, dtype=np.intp)

    def exact(forest) -> bool:
        got = np.concatenate([_bound_scores(forest, x[shared], idx, True) for x in xs])
        want = model.predict(np.concatenate([_full_rows(arm_rows, shared, x[shared], idx) for x in xs]),
                             raw_score=True)
        return bool(np.array_equal(got.view(np.uint64), want.view(np.uint64)))

    forest = model.bind_arms(shared, arm_rows)
    assert forest.kernel == ("walk" if lanes == 8 and tree_kernel == "avx2" else _forest_kernel(tree_kernel))
    assert exact(forest)
    tables = forest._bitvector_tables()
    if mutation == "arm":  # each arm's first tree ignores the arm's own splits
        tables["armv"][:, 0] = np.iinfo(tables["armv"].dtype).max
    else:  # every node of tree 0 on a shared feature stops firing, as if it were an arm's
        g0 = int(model._core._bitvector_tables()["gstart"][0])
        tables["tix"][g0 * 64 + np.arange(0, 64 * 3, lanes)] = 255
    assert exact(forest) == (forest.kernel == "walk")  # the walk never reads these tables


# ----------------------------------------------------------------------------- what cannot be bound


def test_multiclass_models_are_not_bound(rng: np.random.Generator) -> None:
    X, z = cases.data(rng, 400)
    for objective in ("multiclass", "multiclassova"):
        booster = cases.train({"objective": objective, "num_class": 3}, X, np.searchsorted([-0.5, 0.5], z), rounds=3)
        model = load_lightgbm(booster)
        arm_rows = cases.probe(booster, rng, 5)
        for shared in _splits(model.num_features, rng):
            assert model.bind_arms(shared, arm_rows) is None


def _chain_tree(t: int, depth: int, feats: list[int], thr: list[float], dts: list[int], left_deep: bool,
                leaf_values: np.ndarray) -> str:
    """LightGBM text of one tree that is a chain of ``depth`` splits (depth + 1 leaves).

    Node j splits on feats[j] at thr[j]; its off-chain child is leaf j, the chain
    continues on the left (``left_deep``) or right side; the last node ends in leaf ``depth``.
    """
    left, right = [], []
    for j in range(depth):
        on = j + 1 if j + 1 < depth else ~depth
        off = ~j
        left.append(on if left_deep else off)
        right.append(off if left_deep else on)

    def ints(v) -> str:
        return " ".join(str(int(a)) for a in v)

    def flts(v) -> str:
        return " ".join(repr(float(a)) for a in v)

    return "\n".join(
        [
            f"Tree={t}",
            f"num_leaves={depth + 1}",
            "num_cat=0",
            f"split_feature={ints(feats)}",
            f"split_gain={flts(np.ones(depth))}",
            f"threshold={flts(thr)}",
            f"decision_type={ints(dts)}",
            f"left_child={ints(left)}",
            f"right_child={ints(right)}",
            f"leaf_value={flts(leaf_values)}",
            f"leaf_weight={flts(np.ones(depth + 1))}",
            f"leaf_count={ints(np.ones(depth + 1))}",
            f"internal_value={flts(np.zeros(depth))}",
            f"internal_weight={flts(np.ones(depth))}",
            f"internal_count={ints(np.ones(depth))}",
            "is_linear=0",
            "shrinkage=1",
            "",
            "",
        ]
    )


def _chain_model(depth: int, rng: np.random.Generator, n_features: int = 3) -> str:
    """Three chain trees of exactly ``depth``: left-deep on arm-style column 1 (the bound walk's
    stack grows to ``depth``), right-deep on column 0, and one alternating columns 0-2 with NaN rules."""
    trees = []
    # Tree 0: column 1 at thresholds depth - j - 0.5: an arm with value v leaves the chain at level depth - v.
    thr = [depth - j - 0.5 for j in range(depth)]
    trees.append(_chain_tree(0, depth, [1] * depth, thr, [2] * depth, True, rng.standard_normal(depth + 1)))
    # Tree 1: right-deep on column 0 at increasing thresholds: a value v leaves the chain near level v.
    inc = [j - 0.5 for j in range(depth)]
    trees.append(_chain_tree(1, depth, [0] * depth, inc, [0] * depth, False, rng.standard_normal(depth + 1)))
    feats = [j % n_features for j in range(depth)]
    dts = [[0, 2, 4, 6, 8, 10][j % 6] for j in range(depth)]
    trees.append(_chain_tree(2, depth, feats, [(-1) ** j * (depth - j) / 3 for j in range(depth)], dts,
                             bool(depth % 2), rng.standard_normal(depth + 1)))
    head = "\n".join(
        [
            "tree",
            "version=v4",
            "num_class=1",
            "num_tree_per_iteration=1",
            "label_index=0",
            f"max_feature_idx={n_features - 1}",
            "objective=regression",
            "feature_names=" + " ".join(f"Column_{i}" for i in range(n_features)),
            "feature_infos=" + " ".join("[-1000:1000]" for _ in range(n_features)),
            "",
            "",
        ]
    )
    return head + "".join(trees) + "end of trees\n"


def _chain_rows(rng: np.random.Generator, n: int, depth: int) -> np.ndarray:
    R = np.empty((n, 3))
    R[:, 0] = rng.integers(-1, depth + 2, n) + rng.choice([-0.5, 0.0, 0.5], n)
    R[:, 1] = np.arange(n) % (depth + 2)  # every level of the left-deep chain peels off some arms
    R[:, 2] = rng.standard_normal(n) * depth / 3
    R[rng.random(R.shape) < 0.1] = np.nan
    return R


@pytest.mark.parametrize("depth", [126, 127])
def test_trees_127_deep_are_bound_and_exact(depth: int, rng: np.random.Generator) -> None:
    text = _chain_model(depth, rng)
    ref = lgb.Booster(model_str=text)
    model = load_lightgbm(text)
    assert model.summary().max_depth == depth

    def rows(n: int) -> np.ndarray:
        return _chain_rows(rng, n, depth)

    # Column 1 as an arm feature makes the left-deep chain push one pending set per level.
    _check_parity(model, ref, rows, rng, forced=([0], [0, 2], [2, 0]), n_arms=(5, 150))


@pytest.mark.parametrize("depth", [128, 129, 300])
def test_trees_128_deep_are_not_bound(depth: int, rng: np.random.Generator) -> None:
    model = load_lightgbm(_chain_model(depth, rng))
    assert model.summary().max_depth == depth
    arm_rows = _chain_rows(rng, 70, depth)
    for shared in _splits(3, rng):
        assert model.bind_arms(shared, arm_rows) is None


def _deep_booster(names: list[str], rng: np.random.Generator) -> lgb.Booster:
    """A genuinely trained model whose first tree is a chain deeper than 128: a geometric target on column 0."""
    n = 200
    X = rng.standard_normal((n, len(names)))
    X[:, 0] = np.arange(n)
    y = 1.5 ** np.arange(n) + X[:, -1]
    params = {
        "objective": "regression",
        "verbose": -1,
        "num_threads": 1,
        "deterministic": True,
        "num_leaves": n,
        "min_data_in_leaf": 1,
        "min_data_in_bin": 1,
        "min_sum_hessian_in_leaf": 0,
        "max_depth": -1,
        "max_bin": 1023,
        "learning_rate": 1.0,
        "boost_from_average": False,
    }
    return lgb.train(params, lgb.Dataset(X, y, feature_name=names), num_boost_round=2)


def test_decider_with_a_model_too_deep_to_bind_scores_rows(rng: np.random.Generator) -> None:
    schema = nba.FeatureSchema([nba.Numeric("visits"), nba.Numeric("hour", source="context")])
    arms = [nba.Arm(f"a{i}", features={"fee": float(i % 9) - 2.0}, value=1.0 + i / 7) for i in range(70)]
    catalog = nba.Catalog(arms, schema, arbitration="score")  # a regression model's signed scores: not "product"
    booster = _deep_booster(list(catalog.feature_names), rng)
    model = load_lightgbm(booster)
    assert model.summary().max_depth >= 128
    layout = catalog.layout(model.feature_names)
    assert model.bind_arms(layout.shared_cols, layout.template) is None
    policy = EpsilonGreedy(0.2)
    decider = nba.Decider(catalog, model, policy=policy, seed=5)
    for i in range(30):
        profile = {"visits": float(rng.integers(-5, 210)) + float(rng.choice([0.0, 0.5]))}
        context = {"hour": float(rng.standard_normal())}
        d = decider.decide(profile, context, event_id=f"deep-{i}")
        x = schema.vectorize(profile, context)
        idx = np.arange(len(arms), dtype=np.intp)
        rows = layout.fill(x, idx)
        want = model.predict(rows)
        _assert_bits(np.array(d.scores), want, "decider scores vs predict")
        _assert_bits(np.array(d.scores), booster.predict(rows), "decider scores vs LightGBM")
        pmf = policy.pmf(catalog.priorities(want, idx))
        _assert_bits(np.array(d.pmf), pmf, "decider pmf")
        assert d.arm == catalog.ids[sample(pmf, f"deep-{i}", 5)]


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small() -> tuple[lgb.Booster, TreeEnsemble]:
    rng = np.random.default_rng(3)
    X, z = cases.data(rng, 500)
    booster = cases.train({"objective": "binary"}, X, z > 0, rounds=6)
    return booster, load_lightgbm(booster)


@pytest.mark.parametrize(
    "shared_cols",
    [[0, 0], [0, 6], [-1], [6], [[0, 1]], np.zeros((2, 2), dtype=int), list(range(7))],
    ids=["duplicate", "past-end", "negative", "one-past", "2d", "2d-array", "too-many"],
)
def test_bad_shared_cols_are_schema_errors(shared_cols, small) -> None:
    _, model = small
    with pytest.raises(SchemaError, match="shared_cols"):
        model.bind_arms(shared_cols, np.zeros((3, 6)))


@pytest.mark.parametrize(
    "arm_rows",
    [np.zeros((0, 6)), np.zeros((3, 5)), np.zeros((3, 7)), np.zeros(6), np.zeros((2, 3, 6)), 1.0],
    ids=["no-arms", "narrow", "wide", "1d", "3d", "scalar"],
)
def test_bad_arm_rows_are_schema_errors(arm_rows, small) -> None:
    _, model = small
    with pytest.raises(SchemaError, match="arm_rows"):
        model.bind_arms([0, 1], arm_rows)


@pytest.mark.parametrize(
    ("shared_cols", "arm_rows"),
    [(["a"], np.zeros((3, 6))), (None, np.zeros((3, 6))), ([0], [["x"] * 6] * 3), ([0.5], np.zeros((3, 6)))],
    ids=["str-cols", "none-cols", "str-rows", "float-cols"],
)
def test_non_numeric_shared_cols_or_arm_rows_are_schema_errors(shared_cols, arm_rows, small) -> None:
    _, model = small
    with pytest.raises(SchemaError):
        model.bind_arms(shared_cols, arm_rows)


def test_arm_rows_are_copied_at_bind(small, rng: np.random.Generator) -> None:
    booster, model = small
    arm_rows = cases.probe(booster, rng, 20)
    shared = np.array([0, 2], dtype=np.intp)
    forest = model.bind_arms(shared, arm_rows)
    x = arm_rows[0, shared]
    idx = np.arange(20, dtype=np.intp)
    before = _bound_scores(forest, x, idx, True)
    arm_rows[:] = 0.0  # the catalogue's matrix changing afterwards must not change the bound forest
    _assert_bits(_bound_scores(forest, x, idx, True), before, "after editing arm_rows")


def test_empty_eligible_set_scores_nothing(small) -> None:
    _, model = small
    forest = model.bind_arms([0], np.zeros((4, 6)))
    out = np.full(2, 3.0)
    forest.scores(np.zeros(1), np.empty(0, dtype=np.intp), np.empty(4), out)
    assert out.tolist() == [3.0, 3.0]


def _bad_calls(n_arms: int, n_shared: int) -> dict:
    x, acc, out = np.zeros(n_shared), np.empty(n_arms), np.empty(n_arms)
    ro = np.empty(n_arms)
    ro.setflags(write=False)
    i = np.arange(3, dtype=np.intp)
    return {
        "descending": (x, np.array([2, 1], dtype=np.intp), acc, out),
        "duplicate": (x, np.array([1, 1], dtype=np.intp), acc, out),
        "negative": (x, np.array([-1, 2], dtype=np.intp), acc, out),
        "past-end": (x, np.array([0, n_arms], dtype=np.intp), acc, out),
        "far-past-end": (x, np.array([10**12], dtype=np.intp), acc, out),
        "idx-int32": (x, i.astype(np.int32), acc, out),
        "idx-float": (x, i.astype(np.float64), acc, out),
        "idx-strided": (x, np.arange(6, dtype=np.intp)[::2], acc, out),
        "idx-2d": (x, i.reshape(1, 3), acc, out),
        "x-short": (np.zeros(n_shared - 1), i, acc, out),
        "x-long": (np.zeros(n_shared + 1), i, acc, out),
        "x-float32": (np.zeros(n_shared, dtype=np.float32), i, acc, out),
        "x-strided": (np.zeros(2 * n_shared)[::2], i, acc, out),
        "x-2d": (np.zeros((1, n_shared)), i, acc, out),
        "acc-short": (x, i, np.empty(n_arms - 1), out),
        "acc-readonly": (x, i, ro, out),
        "acc-float32": (x, i, np.empty(n_arms, dtype=np.float32), out),
        "out-short": (x, i, acc, np.empty(2)),
        "out-readonly": (x, i, acc, ro),
        "out-int": (x, i, acc, np.empty(n_arms, dtype=np.int64)),
        "out-strided": (x, i, acc, np.empty(2 * n_arms)[::2]),
    }


@pytest.mark.parametrize("case", sorted(_bad_calls(10, 3)))
def test_scores_with_bad_buffers_raises_value_error(case: str, small) -> None:
    _, model = small
    forest = model.bind_arms([0, 3, 5], np.zeros((10, 6)))
    args = _bad_calls(10, 3)[case]
    out_before = args[3].tobytes()
    with pytest.raises(ValueError):
        forest.scores(*args)
    with pytest.raises(ValueError):
        forest.scores(*args, raw_score=True)
    assert args[3].tobytes() == out_before, "scores wrote to out before refusing the call"


def test_scores_with_none_or_lists_raises_and_does_not_crash() -> None:
    """In a child process, so that a crash (reading an ndarray's fields from None) fails the test, not the run."""
    code = r"""
import numpy as np
from nba.models.lightgbm import load_lightgbm
from tests.models import lightgbm_cases as cases
rng = np.random.default_rng(0)
X, z = cases.data(rng, 300)
forest = load_lightgbm(cases.train({"objective": "regression"}, X, z, rounds=3)).bind_arms([0, 1], X[:8])
x, idx, acc, out = np.zeros(2), np.arange(3), np.empty(8), np.empty(8)
for i in range(4):
    for bad in (None, [0.0, 1.0, 2.0], 3.0):
        args = [x, idx, acc, out]
        args[i] = bad
        try:
            forest.scores(*args)
        except (TypeError, ValueError):
            pass
        else:
            raise SystemExit(f"argument {i} = {bad!r} was accepted")
print("ok")
"""
    assert_prints_ok(code)


# ----------------------------------------------------------------------------- threads


def test_concurrent_scores_equal_single_threaded(rng: np.random.Generator) -> None:
    n = 3000
    X, z = cases.data(rng, n)
    X[:, 4] = rng.integers(0, 30, n)
    booster = cases.train({"objective": "binary", "max_cat_to_onehot": 4}, X, z + (X[:, 4] % 3) > 0.5, rounds=60,
                     categorical_feature=[4])
    model = load_lightgbm(booster)
    arm_rows = cases.probe(booster, rng, 150, cat=(4,))
    shared = np.array([3, 0, 5], dtype=np.intp)
    forest = model.bind_arms(shared, arm_rows)
    xs = cases.probe(booster, rng, 40, cat=(4,))[:, shared]
    subsets = [s for _ in range(3) for s in _eligible(rng, 150)]
    work = [(np.ascontiguousarray(x), s) for x in xs for s in subsets]
    ref = [_bound_scores(forest, x, s, False) for x, s in work]
    full = np.concatenate([_full_rows(arm_rows, shared, x, s) for x, s in work])
    _assert_bits(np.concatenate(ref), model.predict(full), "single-threaded reference")

    barrier = threading.Barrier(8)
    failures: list[str] = []

    def run(tid: int) -> None:
        acc = np.empty(150)  # each thread its own scratch, as the Decider keeps per-thread buffers
        out = np.empty(150)
        barrier.wait()
        for rep in range(3):
            order = range(len(work)) if (tid + rep) % 2 == 0 else reversed(range(len(work)))
            for j in order:
                x, s = work[j]
                forest.scores(x, s, acc, out)
                if out[: s.shape[0]].view(np.uint64).tolist() != ref[j].view(np.uint64).tolist():
                    failures.append(f"thread {tid} item {j}")
                    return

    threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
