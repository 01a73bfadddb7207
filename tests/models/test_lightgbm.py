"""nba.models.lightgbm against LightGBM itself.

Every model here is trained in the test (small, seeded, single-threaded) and scored
by both ``lightgbm.Booster.predict`` and nba on the same rows: raw scores must be
bit-identical, transformed scores within 1e-12.
"""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

import nba
from nba.errors import ModelFormatError, SchemaError
from nba.models.lightgbm import TreeEnsemble, load_lightgbm

lgb = pytest.importorskip("lightgbm")
from tests.models import lightgbm_cases as cases  # noqa: E402
from tests.models.conftest import kernel_name  # noqa: E402
from tests.models.lightgbm_cases import KZERO, N_FEATURES  # noqa: E402

# Every test here runs on each row kernel in turn (bitvector AVX-512, AVX2, lane chains): bit for bit on each.
pytestmark = pytest.mark.usefixtures("tree_kernel")

# ----------------------------------------------------------------------------- helpers


def _assert_matches(booster: lgb.Booster, X: np.ndarray, model: TreeEnsemble | None = None, **kw) -> TreeEnsemble:
    """Batch scores, and (over all iterations) one-row scores of the first 300 rows, equal LightGBM's."""
    model = load_lightgbm(booster) if model is None else model
    raw = booster.predict(X, raw_score=True, **kw)
    np.testing.assert_array_equal(model.predict(X, raw_score=True, **kw), raw)
    np.testing.assert_allclose(model.predict(X, **kw), booster.predict(X, **kw), rtol=1e-12, atol=1e-12)
    if not kw:  # predict_row has its own entry into the core
        rows = np.array([model.predict_row(r, raw_score=True) for r in X[:300]]).reshape(raw[:300].shape)
        np.testing.assert_array_equal(rows, raw[:300])
    else:  # an iteration range for a single row, as for a batch
        np.testing.assert_array_equal(model.predict(X[:1], raw_score=True, **kw), raw[:1])
    return model


# ----------------------------------------------------------------------------- objectives


def _objective_case(name: str, rng: np.random.Generator) -> tuple[dict, np.ndarray, np.ndarray, dict]:
    X, z = cases.data(rng)
    p: dict = {"objective": name}
    kw: dict = {}
    y = z
    if name in ("binary", "binary_sigmoid"):
        p["objective"] = "binary"
        if name == "binary_sigmoid":
            p["sigmoid"] = 0.7
        y = (z > 0).astype(float)
    elif name in ("cross_entropy", "cross_entropy_lambda"):
        y = 1.0 / (1.0 + np.exp(-z))
    elif name in ("multiclass", "multiclassova"):
        p["num_class"] = 3
        y = np.searchsorted(np.quantile(z, [1 / 3, 2 / 3]), z).astype(float)
    elif name in ("poisson", "tweedie"):
        y = rng.poisson(np.exp(np.clip(z, -2, 2))).astype(float)
    elif name == "gamma":
        y = rng.poisson(np.exp(np.clip(z, -2, 2))).astype(float) + 0.5
    elif name == "mape":
        y = z + 5.0
    elif name == "regression_sqrt":
        p = {"objective": "regression", "reg_sqrt": True}
        y = z * 3
    elif name in ("lambdarank", "rank_xendcg"):
        y = np.clip(np.round(z + 1), 0, 3)
        kw["group"] = [50] * (X.shape[0] // 50)
    elif name == "custom":

        def l2(preds: np.ndarray, data: lgb.Dataset) -> tuple[np.ndarray, np.ndarray]:
            return preds - data.get_label(), np.ones_like(preds)

        p["objective"] = l2
    return p, X, y, kw


OBJECTIVES = [
    "regression",
    "regression_sqrt",
    "regression_l1",
    "huber",
    "fair",
    "quantile",
    "mape",
    "binary",
    "binary_sigmoid",
    "multiclass",
    "multiclassova",
    "cross_entropy",
    "cross_entropy_lambda",
    "poisson",
    "gamma",
    "tweedie",
    "lambdarank",
    "rank_xendcg",
    "custom",
]


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_objective_scores_equal_lightgbm(objective: str, rng: np.random.Generator) -> None:
    params, X, y, kw = _objective_case(objective, rng)
    booster = cases.train(params, X, y, **kw)
    model = _assert_matches(booster, cases.probe(booster, rng))
    assert model.num_class == booster.num_model_per_iteration()
    assert model.num_trees == booster.num_trees()


def test_objective_string_is_kept_verbatim(rng: np.random.Generator) -> None:
    X, z = cases.data(rng)
    booster = cases.train({"objective": "multiclassova", "num_class": 3}, X, np.searchsorted([-0.5, 0.5], z))
    assert load_lightgbm(booster).objective == "multiclassova num_class:3 sigmoid:1"


def test_multiclass_predict_shape_is_rows_by_classes(rng: np.random.Generator) -> None:
    X, z = cases.data(rng)
    booster = cases.train({"objective": "multiclass", "num_class": 4}, X, np.searchsorted([-1, 0, 1], z))
    model = load_lightgbm(booster)
    assert model.predict(X[:7]).shape == (7, 4)
    row = model.predict_row(X[0])
    assert row.shape == (4,)
    np.testing.assert_allclose(row.sum(), 1.0, rtol=1e-12)


# ----------------------------------------------------------------------------- categorical


@pytest.mark.parametrize("max_cat_to_onehot", [4, 64])
def test_categorical_splits_match_with_unseen_negative_and_huge_categories(
    max_cat_to_onehot: int, rng: np.random.Generator
) -> None:
    booster = cases.categorical_booster(rng, max_cat_to_onehot, rounds=12)
    model = _assert_matches(booster, cases.probe(booster, rng, 3000, cat=(4, 5)))
    assert model.summary().categorical_splits > 0


def test_categorical_nan_in_training_data(rng: np.random.Generator) -> None:
    X, y = cases.categorical_nan_data(rng)
    booster = cases.train({"objective": "regression"}, X, y, categorical_feature=[4])
    _assert_matches(booster, cases.probe(booster, rng, cat=(4,)))


# ----------------------------------------------------------------------------- missing values


@pytest.mark.parametrize("use_missing", [True, False])
@pytest.mark.parametrize("zero_as_missing", [True, False])
def test_missing_value_rules_match(use_missing: bool, zero_as_missing: bool, rng: np.random.Generator) -> None:
    booster = cases.missing_booster(rng, use_missing, zero_as_missing)
    _assert_matches(booster, cases.probe(booster, rng))


@pytest.mark.parametrize("decision_type", [0, 2, 4, 6, 8, 10])
def test_every_missing_type_and_default_direction_matches(decision_type: int, rng: np.random.Generator) -> None:
    """Rewrite every split to one (missing type, default_left) pair and let LightGBM score the same text."""
    text = cases.decision_type_model(rng, decision_type)
    ref = lgb.Booster(model_str=text)
    X = cases.probe(ref, rng)
    near_zero = np.array([0.0, -0.0, 5e-36, -5e-36, 1e-35, -1e-35, KZERO, -KZERO, 2e-35, -2e-35, np.nan])
    mask = rng.random(X.shape) < 0.3
    X[mask] = rng.choice(near_zero, int(mask.sum()))
    _assert_matches(ref, X, load_lightgbm(text))


# ----------------------------------------------------------------------------- tree shapes


def test_random_forest_average_output(rng: np.random.Generator) -> None:
    X, z = cases.data(rng)
    booster = cases.train({"objective": "binary", "boosting": "rf", "bagging_fraction": 0.6, "bagging_freq": 1}, X, z > 0)
    model = _assert_matches(booster, cases.probe(booster, rng))
    assert model.average_output
    _assert_matches(booster, X[:200], model, start_iteration=2, num_iteration=3)


def test_very_deep_trees(rng: np.random.Generator) -> None:
    X, z = cases.data(rng, 3000)
    X[:, 0] = np.arange(3000) * 1e-3  # a feature that splits into a long chain
    booster = cases.train(
        {"objective": "regression", "num_leaves": 1500, "min_data_in_leaf": 1, "min_sum_hessian_in_leaf": 0,
         "max_depth": -1, "max_bin": 1023},
        X,
        z + np.sin(X[:, 0] * 40),
        rounds=3,
    )
    model = _assert_matches(booster, cases.probe(booster, rng))
    assert model.summary().max_depth >= 32  # batches walk trees this deep leaf by leaf, not for a fixed depth


@pytest.mark.parametrize("how", ["constant_target", "min_data_in_leaf"])
def test_single_leaf_trees(how: str, rng: np.random.Generator) -> None:
    X, z = cases.data(rng, 300)
    if how == "constant_target":
        booster = cases.train({"objective": "regression"}, X, np.full(300, 2.5))
    else:
        booster = cases.train({"objective": "regression", "min_data_in_leaf": 10_000}, X, z)
    model = _assert_matches(booster, cases.probe(booster, rng, 200))
    assert model.summary().leaves == model.num_trees


def test_mixed_single_leaf_and_split_trees_in_multiclass(rng: np.random.Generator) -> None:
    X, z = cases.data(rng, 400)
    y = np.where(z > 1.5, 2, np.where(z > 0, 1, 0)).astype(float)
    y[:3] = 3  # a rare class whose trees stop splitting
    booster = cases.train({"objective": "multiclass", "num_class": 4, "min_data_in_leaf": 20}, X, y, rounds=6)
    _assert_matches(booster, cases.probe(booster, rng, 500))


@pytest.mark.parametrize(
    ("start_iteration", "num_iteration"),
    [(0, None), (0, 1), (0, 5), (3, None), (3, 4), (9, None), (9, 100), (20, None), (-2, 3), (2, -1), (0, 0)],
)
def test_start_and_num_iteration_like_lightgbm(
    start_iteration: int, num_iteration: int | None, rng: np.random.Generator
) -> None:
    X, z = cases.data(rng)
    for params, y in (({"objective": "regression"}, z), ({"objective": "multiclass", "num_class": 3},
                                                             np.searchsorted([-0.5, 0.5], z))):
        booster = cases.train(params, X, y, rounds=10)
        _assert_matches(booster, X[:300], start_iteration=start_iteration, num_iteration=num_iteration)


@pytest.fixture(scope="module")
def mixed_models() -> list[lgb.Booster]:
    """Models whose tree counts are not multiples of 8, mixing categorical and numerical trees."""
    rng = np.random.default_rng(17)
    X, z = cases.data(rng, 1500)
    X[:, 4] = rng.integers(0, 25, 1500)
    y = z + (X[:, 4] % 5 == 1) * 1.5
    reg = cases.train({"objective": "regression", "max_cat_to_onehot": 2}, X, y, rounds=13, categorical_feature=[4])
    multi = cases.train({"objective": "multiclass", "num_class": 3}, X, np.searchsorted([-0.5, 0.7], y), rounds=7,
                   categorical_feature=[4])
    return [reg, multi]


@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 40])
@pytest.mark.parametrize("with_nan", [False, True])
def test_batches_of_any_size_match_rows_and_lightgbm(n: int, with_nan: bool, mixed_models, rng) -> None:
    for booster in mixed_models:
        X = cases.probe(booster, rng, n, cat=(4,))
        if not with_nan:
            X[np.isnan(X)] = 0.25
        model = _assert_matches(booster, X)
        rows = np.array([model.predict_row(r, raw_score=True) for r in X]).reshape(model.predict(X).shape)
        np.testing.assert_array_equal(rows, model.predict(X, raw_score=True))


def test_categorical_models_walk_with_the_categorical_step(
    rng: np.random.Generator, mixed_models, tree_kernel: str
) -> None:
    """Numerical models take the asked-for kernel; models with categorical splits the lanes' bitset branch."""
    X, z = cases.data(rng)
    assert load_lightgbm(cases.train({"objective": "regression"}, X, z)).row_kernel == kernel_name(tree_kernel)
    assert all(load_lightgbm(b).row_kernel == "lanes-categorical" for b in mixed_models)
    assert all(load_lightgbm(b).bitvector_declined == "categorical splits" for b in mixed_models)


@pytest.mark.parametrize("with_nan", [False, True])
def test_models_too_wide_for_the_stack_cells_score_exactly(with_nan: bool, rng: np.random.Generator) -> None:
    """Over 4096 cells per call (features x views, plus two per tree) the core takes its scratch from the heap."""
    n_features = 2100 if not with_nan else 820  # NaN in training: missing-value splits, five views a feature
    wide = rng.standard_normal((300, n_features))
    y = wide[:, 3] + wide[:, 700]
    if with_nan:
        wide[rng.random(wide.shape) < 0.2] = np.nan
    booster = cases.train({"objective": "regression", "min_data_in_leaf": 5}, wide, y, rounds=3)
    _assert_matches(booster, cases.probe(booster, rng, 200))


def test_nan_leaf_values_in_a_categorical_model(rng: np.random.Generator) -> None:
    """A leaf whose value is NaN passes the categorical step's NaN-threshold test; it must still go on (NaN scores)."""
    X, y = cases.categorical_nan_data(rng, 1500)
    booster = cases.train({"objective": "regression", "max_cat_to_onehot": 2}, X, y, categorical_feature=[4])
    text = re.sub(r"^leaf_value=(\S+)", "leaf_value=nan", booster.model_to_string(), count=3, flags=re.MULTILINE)
    text = re.sub(r"^tree_sizes=.*\n", "", text, flags=re.MULTILINE)  # LightGBM seeks by the byte sizes
    ref = lgb.Booster(model_str=text)
    model = load_lightgbm(text)
    assert model._core.row_kernel == "lanes-categorical"
    X = cases.probe(ref, rng, 600, cat=(4,))
    raw = ref.predict(X, raw_score=True)
    assert 0 < np.isnan(raw).sum() < raw.size
    np.testing.assert_array_equal(model.predict(X, raw_score=True), raw)
    np.testing.assert_array_equal(np.array([model.predict_row(r, raw_score=True) for r in X]), raw)


@pytest.mark.parametrize("rounds", [1, 9, 10, 11, 15, 16, 17, 23, 33])
def test_tree_counts_around_the_lane_count_score_exactly(rounds: int, rng: np.random.Generator, tree_kernel: str) -> None:
    """Fewer trees than lanes, and counts that leave lanes one tree short, still add every tree in order."""
    X, z = cases.data(rng)
    for params, y in (({"objective": "regression"}, z), ({"objective": "multiclass", "num_class": 3},
                                                             np.searchsorted([-0.5, 0.5], z))):
        booster = cases.train(params, X, y, rounds=rounds)
        assert _assert_matches(booster, cases.probe(booster, rng)).row_kernel == kernel_name(tree_kernel)


# ----------------------------------------------------------------------------- input forms


@pytest.fixture(scope="module")
def binary_model() -> tuple[lgb.Booster, TreeEnsemble, np.ndarray]:
    rng = np.random.default_rng(5)
    X, z = cases.data(rng)
    booster = cases.train({"objective": "binary"}, X, z > 0, rounds=20)
    return booster, load_lightgbm(booster), cases.probe(booster, rng, 500)


def test_float32_and_fortran_order_input(binary_model) -> None:
    booster, model, X = binary_model
    with np.errstate(over="ignore"):  # 5e300 -> inf in float32, for both sides
        X32 = X.astype(np.float32)
    np.testing.assert_array_equal(model.predict(X32, raw_score=True), booster.predict(X32, raw_score=True))
    XF = np.asfortranarray(X)
    np.testing.assert_array_equal(model.predict(XF, raw_score=True), booster.predict(X, raw_score=True))
    np.testing.assert_array_equal(model.predict(X[:, ::1][::2]), model.predict(np.ascontiguousarray(X[::2])))


def test_list_and_one_dimensional_input(binary_model) -> None:
    booster, model, X = binary_model
    ref = booster.predict(X[:20])
    np.testing.assert_allclose(model.predict(X[:20].tolist()), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.predict(X[3]), ref[3:4], rtol=1e-12, atol=1e-12)
    assert model.predict(X[3]).shape == (1,)
    np.testing.assert_allclose(model.predict_row(X[3].tolist()), ref[3], rtol=1e-12, atol=1e-12)
    x32 = X[3:4].astype(np.float32)
    np.testing.assert_allclose(model.predict_row(x32[0]), booster.predict(x32)[0], rtol=1e-12, atol=1e-12)


def test_predict_row_equals_predict(binary_model) -> None:
    booster, model, X = binary_model
    rows = np.array([model.predict_row(r) for r in X])
    np.testing.assert_array_equal(rows, model.predict(X))
    raws = np.array([model.predict_row(r, raw_score=True) for r in X])
    np.testing.assert_array_equal(raws, booster.predict(X, raw_score=True))
    assert isinstance(model.predict_row(X[0]), float)


def test_out_buffer_is_filled_and_returned(binary_model) -> None:
    _booster, model, X = binary_model
    out = np.full(X.shape[0], -1.0)
    res = model.predict(X, out=out)
    assert res is out
    np.testing.assert_array_equal(out, model.predict(X))
    with pytest.raises(SchemaError, match="out must be"):
        model.predict(X, out=np.empty(X.shape[0] + 1))
    with pytest.raises(SchemaError, match="out must be"):
        model.predict(X, out=np.empty(X.shape[0], dtype=np.float32))


def test_empty_batch_gives_empty_result(binary_model) -> None:
    _, model, _ = binary_model
    assert model.predict(np.empty((0, N_FEATURES))).shape == (0,)


@pytest.mark.parametrize("n_given", [N_FEATURES - 1, N_FEATURES + 1])
def test_wrong_feature_count_is_a_schema_error(n_given: int, binary_model) -> None:
    _, model, _ = binary_model
    with pytest.raises(SchemaError, match=f"expected {N_FEATURES} features, got {n_given}"):
        model.predict(np.zeros((3, n_given)))
    with pytest.raises(SchemaError, match=f"expected {N_FEATURES} features, got {n_given}"):
        model.predict_row(np.zeros(n_given))


@pytest.mark.parametrize(
    "bad",
    [np.array([["a"] * N_FEATURES]), np.array([[object()] * N_FEATURES]), [["x"] * N_FEATURES],
     np.zeros((2, 2, N_FEATURES))],
)
def test_non_numeric_or_badly_shaped_input_is_a_schema_error(bad, binary_model) -> None:
    _, model, _ = binary_model
    with pytest.raises(SchemaError):
        model.predict(bad)


def test_integer_and_bool_input_is_converted(binary_model) -> None:
    booster, model, _ = binary_model
    Xi = np.arange(3 * N_FEATURES).reshape(3, N_FEATURES) - 5
    np.testing.assert_array_equal(model.predict(Xi, raw_score=True), booster.predict(Xi.astype(float), raw_score=True))
    np.testing.assert_array_equal(model.predict(Xi > 0), model.predict((Xi > 0).astype(float)))


# ----------------------------------------------------------------------------- loading, pickling, summary


def test_load_from_path_bytes_text_and_booster_agree(binary_model, tmp_path) -> None:
    booster, model, X = binary_model
    path = tmp_path / "m.txt"
    booster.save_model(str(path))
    text = path.read_text()
    loaded = [load_lightgbm(path), load_lightgbm(str(path)), load_lightgbm(text), load_lightgbm(text.encode()),
              nba.load_model(path), nba.load_model(booster)]
    for m in loaded:
        assert isinstance(m, TreeEnsemble)
        np.testing.assert_array_equal(m.predict(X, raw_score=True), model.predict(X, raw_score=True))
    assert len({m.version for m in loaded[:5]}) == 1


def test_pickle_round_trip(binary_model) -> None:
    _, model, X = binary_model
    clone = pickle.loads(pickle.dumps(model))
    assert clone.version == model.version
    assert clone.feature_names == model.feature_names
    np.testing.assert_array_equal(clone.predict(X), model.predict(X))
    np.testing.assert_array_equal(clone.predict_row(X[0]), model.predict_row(X[0]))


def test_attributes_and_summary(binary_model) -> None:
    booster, model, _ = binary_model
    assert model.num_features == N_FEATURES
    assert model.feature_names == tuple(booster.feature_name())
    assert model.num_iterations == booster.current_iteration()
    assert model.objective.startswith("binary")
    s = model.summary()
    assert (s.format, s.trees, s.classes, s.features) == ("lightgbm", booster.num_trees(), 1, N_FEATURES)
    assert s.leaves == sum(t["num_leaves"] for t in booster.dump_model()["tree_info"])
    text = str(s)
    assert "lightgbm" in text and "binary" in text and str(booster.num_trees()) in text
    assert s.row_kernel == model.row_kernel
    assert ["row_kernel", model.row_kernel] in [line.split() for line in text.splitlines()]


def test_concurrent_scoring_from_threads_gives_the_same_scores(mixed_models) -> None:
    from concurrent.futures import ThreadPoolExecutor

    booster = mixed_models[0]
    model = load_lightgbm(booster)
    X = cases.probe(booster, np.random.default_rng(1), 3000, cat=(4,))  # big enough to release the GIL
    ref = model.predict(X)

    def work(i: int) -> bool:
        rows_ok = all(model.predict_row(X[j]) == ref[j] for j in range(i, 3000, 97))
        return rows_ok and np.array_equal(model.predict(X), ref)

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(8)))


def test_version_changes_with_the_model(rng: np.random.Generator) -> None:
    X, z = cases.data(rng)
    a = load_lightgbm(cases.train({"objective": "regression"}, X, z, rounds=3))
    b = load_lightgbm(cases.train({"objective": "regression"}, X, z, rounds=4))
    assert a.version != b.version and len(a.version) == 12


def test_linear_trees_are_refused(rng: np.random.Generator) -> None:
    X, z = cases.data(rng, 300)
    booster = cases.train({"objective": "regression", "linear_tree": True}, X, z, rounds=2)
    with pytest.raises(ModelFormatError, match="linear"):
        load_lightgbm(booster)


# ----------------------------------------------------------------------------- malformed models


@pytest.fixture(scope="module")
def cat_text() -> str:
    rng = np.random.default_rng(11)
    X, z = cases.data(rng, 800)
    X[:, 4] = rng.integers(0, 20, 800)
    booster = cases.train({"objective": "regression", "max_cat_to_onehot": 2}, X, z + (X[:, 4] % 3), rounds=3,
                     categorical_feature=[4])
    text = booster.model_to_string()
    assert "cat_threshold=" in text
    return text


def _sub(text: str, pattern: str, repl: str, count: int = 1) -> str:
    new = re.sub(pattern, repl, text, count=count, flags=re.MULTILINE)
    assert new != text, pattern
    return new


BROKEN = {
    "empty": lambda t: "",
    "whitespace": lambda t: "  \n\n",
    "binary junk": lambda t: bytes(range(256)) * 4,
    "not utf8": lambda t: b"tree\nversion=v4\n\xff\xfe\n",
    "wrong magic": lambda t: "forest\n" + t[5:],
    "truncated header": lambda t: t[: t.index("max_feature_idx")],
    "truncated mid tree": lambda t: t[: t.index("left_child=") + 14],
    "truncated before end": lambda t: t[: t.index("end of trees")],
    "no num_class": lambda t: _sub(t, r"^num_class=.*\n", ""),
    "bad num_class": lambda t: _sub(t, r"^num_class=.*$", "num_class=x"),
    "tpi mismatch": lambda t: _sub(t, r"^num_tree_per_iteration=.*$", "num_tree_per_iteration=2"),
    "huge tree count": lambda t: _sub(t, r"^tree_sizes=(.*)$", r"tree_sizes=\1 " + " ".join(["9"] * 100)),
    "huge num_leaves": lambda t: _sub(t, r"^num_leaves=.*$", "num_leaves=1000000000000"),
    "zero leaves": lambda t: _sub(t, r"^num_leaves=.*$", "num_leaves=0"),
    "short leaf_value": lambda t: _sub(t, r"^(leaf_value=\S+) .*$", r"\1"),
    "missing threshold": lambda t: _sub(t, r"^threshold=.*\n", ""),
    "nan threshold": lambda t: _sub(t, r"^threshold=(\S+)", "threshold=nan"),
    "text threshold": lambda t: _sub(t, r"^threshold=(\S+)", "threshold=abc"),
    "feature out of range": lambda t: _sub(t, r"^split_feature=(\S+)", "split_feature=99"),
    "negative feature": lambda t: _sub(t, r"^split_feature=(\S+)", "split_feature=-1"),
    "child out of range": lambda t: _sub(t, r"^left_child=(\S+)", "left_child=9999"),
    "leaf out of range": lambda t: _sub(t, r"^right_child=(\S+)", "right_child=-9999"),
    "root as child": lambda t: _sub(t, r"^left_child=(\S+)", "left_child=0"),
    "cycle": lambda t: _sub(t, r"^left_child=(\S+) (\S+)", r"left_child=\1 1"),
    "bad decision type": lambda t: _sub(t, r"^decision_type=(\S+)", "decision_type=12"),
    "out-of-order tree": lambda t: _sub(t, r"^Tree=1$", "Tree=5"),
    "linear flag": lambda t: _sub(t, r"^is_linear=0$", "is_linear=1"),
    "few feature names": lambda t: _sub(t, r"^(feature_names=\S+) .*$", r"\1"),
    "unknown objective": lambda t: _sub(t, r"^objective=.*$", "objective=quadratic_weirdness"),
    "sigmoid missing": lambda t: _sub(t, r"^objective=.*$", "objective=binary"),
    "softmax class mismatch": lambda t: _sub(t, r"^objective=.*$", "objective=multiclass num_class:3"),
    "garbage line in tree": lambda t: _sub(t, r"^shrinkage=.*$", "shrinkage"),
    "no trees": lambda t: t[: t.index("Tree=0")] + "end of trees\n",
    "cat boundaries past end": lambda t: _sub(t, r"^cat_boundaries=(.*) (\S+)$", r"cat_boundaries=\1 999"),
    "cat boundaries decreasing": lambda t: _sub(t, r"^cat_boundaries=0 (\S+)", r"cat_boundaries=0 -1"),
    "cat index out of range": lambda t: _cat_threshold_edit(t),
    "cat word too big": lambda t: _sub(t, r"^cat_threshold=(\S+)", "cat_threshold=4294967296"),
    "num_cat too big": lambda t: _sub(t, r"^num_cat=.*$", "num_cat=999"),
}


def _cat_threshold_edit(text: str) -> str:
    """Point the first categorical split at a bitset that does not exist."""
    head, *trees = text.split("\nTree=")
    for i, block in enumerate(trees):
        kv = dict(re.findall(r"^(\w+)=(.*)$", block, flags=re.MULTILINE))
        if int(kv.get("num_cat", 0) or 0) > 0:
            dts = kv["decision_type"].split()
            thr = kv["threshold"].split()
            j = next(k for k, d in enumerate(dts) if int(d) & 1)
            thr[j] = "7"
            trees[i] = re.sub(r"^threshold=.*$", "threshold=" + " ".join(thr), block, flags=re.MULTILINE)
            return "\nTree=".join([head, *trees])
    raise AssertionError("no categorical split")


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_malformed_models_raise_model_format_error(case: str, cat_text: str) -> None:
    broken = BROKEN[case](cat_text)
    with pytest.raises(ModelFormatError) as info:
        load_lightgbm(broken)
    assert str(info.value)


def test_errors_name_the_line_and_tree(cat_text: str) -> None:
    broken = _sub(cat_text, r"^split_feature=(\S+)", "split_feature=99")
    line = broken[: broken.index("split_feature=99")].count("\n") + 1
    with pytest.raises(ModelFormatError, match=rf"line {line}: tree 0: split_feature 99"):
        load_lightgbm(broken)


def test_missing_file_is_a_model_format_error(tmp_path) -> None:
    with pytest.raises(ModelFormatError, match="cannot read"):
        load_lightgbm(tmp_path / "nope.txt")


@pytest.mark.parametrize("cut", [0.1, 0.3, 0.5, 0.7, 0.9, 0.97])
def test_any_truncation_is_a_model_format_error(cut: float, cat_text: str) -> None:
    end = cat_text.index("end of trees")
    with pytest.raises(ModelFormatError):
        load_lightgbm(cat_text[: int(end * cut)])


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "regression"},
        {"objective": "regression", "boost_from_average": False},
        {"objective": "huber"},
        {"objective": "binary"},
        {"objective": "poisson"},
        {"objective": "tweedie"},
        {"objective": "regression", "boosting": "rf", "bagging_fraction": 0.7, "bagging_freq": 1},
    ],
    ids=lambda p: "-".join(str(v) for v in p.values()),
)
def test_score_bounds_hold_every_lightgbm_prediction(params: dict) -> None:
    """score_bounds is what the Decider checks arbitration with: no prediction may fall outside it."""
    for seed in range(6):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(400, 5))
        y = X[:, 0] - 0.5 * X[:, 1] + rng.normal(size=400) * 0.3 + (seed - 3)
        if params["objective"] == "binary":
            y = (y > y.mean()).astype(float)
        elif params["objective"] in ("poisson", "tweedie"):
            y = np.abs(y)
        booster = cases.train({**params, "verbose": -1, "num_leaves": 7, "seed": seed}, X, y, rounds=10)
        lo, hi = load_lightgbm(booster).score_bounds
        pred = booster.predict(rng.normal(size=(2000, 5)) * 3)
        assert lo <= pred.min() and pred.max() <= hi, (lo, pred.min(), pred.max(), hi)
        if params["objective"] in ("binary", "poisson", "tweedie"):
            assert lo == 0.0  # a transform's range: arbitration by product is safe
