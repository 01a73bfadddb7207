"""Properties of nba's LightGBM scorer against ``lightgbm.Booster`` itself.

Hypothesis draws small models (objective, boosting type, num_leaves, categorical
columns, missing-value handling, num_class) trained on random data, and rows full
of edge cases: NaN, +-inf, +-0.0, every split threshold of the model and its
floating-point neighbours, unseen, negative and non-integer categories. nba's
raw scores must equal ``Booster.predict(raw_score=True)`` exactly (same trees,
same summation order), and transformed scores must agree within 1e-12.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import nba

lgb = pytest.importorskip("lightgbm")

# Every test here runs on each row kernel in turn (bitvector AVX-512, AVX2, lane chains): bit for bit on each.
pytestmark = pytest.mark.usefixtures("tree_kernel")

TRANSFORM_RTOL = 1e-12
TRANSFORM_ATOL = 1e-12

OBJECTIVES = [
    "regression",
    "regression_sqrt",  # regression with reg_sqrt: the output transform squares with sign
    "regression_l1",
    "huber",
    "fair",
    "quantile",
    "mape",
    "poisson",
    "gamma",
    "tweedie",
    "binary",
    "cross_entropy",
    "cross_entropy_lambda",
    "multiclass",
    "multiclassova",
    "lambdarank",
]


# --------------------------------------------------------------------------- models


@st.composite
def model_specs(draw) -> dict:
    objective = draw(st.sampled_from(OBJECTIVES))
    n_features = draw(st.integers(1, 6))
    return {
        "objective": objective,
        "num_class": draw(st.integers(3, 4)) if objective.startswith("multiclass") else 1,
        "n_features": n_features,
        "categorical": sorted(draw(st.sets(st.integers(0, n_features - 1), max_size=min(2, n_features)))),
        "n_categories": draw(st.integers(2, 40)),
        "num_leaves": draw(st.integers(2, 24)),
        "n_trees": draw(st.integers(1, 6)),
        "boosting": draw(st.sampled_from(["gbdt", "gbdt", "gbdt", "dart", "rf"])),
        "min_data_in_leaf": draw(st.sampled_from([1, 3, 10, 40])),
        "n_rows": draw(st.sampled_from([25, 120, 400])),
        "nan_fraction": draw(st.sampled_from([0.0, 0.0, 0.1, 0.5])),
        "zero_fraction": draw(st.sampled_from([0.0, 0.3])),
        "use_missing": draw(st.booleans()),
        "zero_as_missing": draw(st.booleans()),
        "max_cat_to_onehot": draw(st.sampled_from([1, 4, 64])),
        "sigmoid": draw(st.sampled_from([1.0, 0.5, 2.5])),
        # The last column matters only through its missingness: LightGBM then splits
        # NaN from everything else with threshold=inf.
        "nan_signal": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


def _labels(spec: dict, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    obj = spec["objective"]
    n = len(z)
    if obj in ("binary", "cross_entropy_lambda"):
        return (z > np.median(z)).astype(float)
    if obj == "cross_entropy":
        return 1.0 / (1.0 + np.exp(-z))
    if obj.startswith("multiclass"):
        return np.searchsorted(np.quantile(z, np.linspace(0, 1, spec["num_class"] + 1)[1:-1]), z).astype(float)
    if obj in ("poisson", "tweedie"):
        return rng.poisson(np.exp(np.clip(z, -2, 2))).astype(float)
    if obj == "gamma":
        return rng.gamma(2.0, np.exp(np.clip(z, -2, 2)))
    if obj == "lambdarank":
        return np.clip(np.round(z + 1.5), 0, 3)
    if obj == "mape":
        return z + np.sign(z) * 0.5 + (z == 0)
    return z + 0.1 * rng.standard_normal(n)


def train(spec: dict):
    """Train the model ``spec`` describes; returns (booster, training X)."""
    rng = np.random.default_rng(spec["seed"])
    n, f = spec["n_rows"], spec["n_features"]
    X = rng.standard_normal((n, f))
    for c in spec["categorical"]:
        X[:, c] = rng.integers(0, spec["n_categories"], n)
    w = rng.standard_normal(f)
    nan_signal = spec.get("nan_signal", False) and spec["nan_fraction"] > 0 and f > 1
    if nan_signal:
        w[-1] = 0.0
    z = X @ w + np.sin(3 * X[:, 0])
    X[rng.random((n, f)) < spec["zero_fraction"]] = 0.0
    nan_mask = rng.random((n, f)) < spec["nan_fraction"]
    X[nan_mask] = np.nan
    z = z + np.where(nan_mask[:, 0], 1.5, 0.0)  # make missingness informative
    if nan_signal:
        z = z + np.where(nan_mask[:, -1], 3.0, 0.0)
    y = _labels(spec, z, rng)
    objective = spec["objective"]
    params = {
        "objective": "regression" if objective == "regression_sqrt" else objective,
        "boosting": spec["boosting"],
        "num_leaves": spec["num_leaves"],
        "min_data_in_leaf": spec["min_data_in_leaf"],
        "min_data_per_group": 1,
        # LightGBM's default; with 0, near-zero hessians (gamma, lambdarank) make LightGBM 4.7 abort
        # training on a split with an empty side
        "min_sum_hessian_in_leaf": 1e-3,
        "cat_smooth": 1.0,
        "cat_l2": 1.0,
        "max_cat_to_onehot": spec["max_cat_to_onehot"],
        "use_missing": spec["use_missing"],
        "zero_as_missing": spec["zero_as_missing"],
        "learning_rate": 0.3,
        "num_threads": 1,
        "deterministic": True,
        "seed": spec["seed"],
        "verbose": -1,
    }
    if objective == "regression_sqrt":
        params["reg_sqrt"] = True
    if objective == "binary":
        params["sigmoid"] = spec["sigmoid"]
    if spec["num_class"] > 1:
        params["num_class"] = spec["num_class"]
    if spec["boosting"] == "rf":
        params.update(bagging_fraction=0.7, bagging_freq=1)
    group = None
    if objective == "lambdarank":
        sizes = [10] * (n // 10) + ([n % 10] if n % 10 else [])
        group = sizes
    ds = lgb.Dataset(X, y, group=group, categorical_feature=spec["categorical"] or "auto", free_raw_data=False)
    return lgb.train(params, ds, num_boost_round=spec["n_trees"]), X


# --------------------------------------------------------------------------- rows


_SPLIT = re.compile(r"^(split_feature|threshold|decision_type)=(.*)$", re.MULTILINE)


def numerical_thresholds(model_text: str, n_features: int) -> list[list[float]]:
    """Per feature, the thresholds of its numerical splits in the model text."""
    out: list[list[float]] = [[] for _ in range(n_features)]
    fields: dict[str, list[str]] = {}
    for key, value in _SPLIT.findall(model_text):
        fields[key] = value.split()
        if key == "decision_type":
            for feat, thr, dt in zip(fields["split_feature"], fields["threshold"], fields["decision_type"]):
                if int(dt) & 1 == 0:
                    out[int(feat)].append(float(thr))
    return out


SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-35, -1e-35, 1e300, -1e300, 5e-324]
CATEGORY_EDGES = [-1.0, -0.5, 0.5, 1.5, 2.0, 1e10, 2.0**31, 2.0**31 - 1, 2.0**32, 1000.0, 31.0, 32.0, 33.0]


def edge_rows(booster, X_train: np.ndarray, categorical: list[int], seed: int, n: int = 96) -> np.ndarray:
    """Rows mixing training-like values, special floats, thresholds and their neighbours, odd categories."""
    rng = np.random.default_rng(seed)
    f = X_train.shape[1]
    thresholds = numerical_thresholds(booster.model_to_string(), f)
    X = X_train[rng.integers(0, len(X_train), n)].copy()
    for j in range(f):
        pool = list(SPECIAL)
        for t in thresholds[j]:
            pool += [t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)]
        if j in categorical:
            pool += CATEGORY_EDGES
        pool_arr = np.array(pool)
        mask = rng.random(n) < 0.45
        X[mask, j] = pool_arr[rng.integers(0, len(pool_arr), int(mask.sum()))]
    return np.ascontiguousarray(X)


# --------------------------------------------------------------------------- properties


def _assert_matches(model, booster, X: np.ndarray, *, start: int = 0, num: int | None = None) -> None:
    kw = {"start_iteration": start, "num_iteration": num if num is not None else -1}
    ref_raw = booster.predict(X, raw_score=True, **kw)
    ours_raw = model.predict(X, raw_score=True, start_iteration=start, num_iteration=num)
    np.testing.assert_array_equal(np.asarray(ours_raw), ref_raw, err_msg="raw scores differ from Booster.predict")
    ref = booster.predict(X, **kw)
    ours = model.predict(X, start_iteration=start, num_iteration=num)
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=TRANSFORM_RTOL, atol=TRANSFORM_ATOL)


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=model_specs(), row_seed=st.integers(0, 2**16))
def test_scores_match_lightgbm_on_random_models_and_edge_rows(spec, row_seed):
    booster, X_train = train(spec)
    model = nba.load_model(booster.model_to_string())
    assert model.num_features == spec["n_features"]
    assert model.num_trees == booster.num_trees()
    X = edge_rows(booster, X_train, spec["categorical"], row_seed)
    _assert_matches(model, booster, X)
    # The single-row path agrees with the batch path.
    batch = np.asarray(model.predict(X[:8]))
    for i in range(8):
        np.testing.assert_array_equal(np.asarray(model.predict_row(X[i]), dtype=np.float64).reshape(-1), batch[i].reshape(-1))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=model_specs(), data=st.data())
def test_iteration_ranges_match_lightgbm(spec, data):
    spec = {**spec, "n_trees": max(spec["n_trees"], 3)}
    booster, X_train = train(spec)
    n_iter = booster.current_iteration()
    assume(n_iter >= 2)
    model = nba.load_model(booster.model_to_string())
    start = data.draw(st.integers(0, n_iter - 1), label="start_iteration")
    num = data.draw(st.one_of(st.none(), st.integers(1, n_iter)), label="num_iteration")
    X = edge_rows(booster, X_train, spec["categorical"], spec["seed"] + 1, n=32)
    _assert_matches(model, booster, X, start=start, num=num)


# --------------------------------------------------------------------------- arbitrary rows on fixed models


@pytest.fixture(scope="module")
def categorical_missing_model():
    """A binary model with two categorical columns and NaN-aware numerical splits."""
    spec = {
        "objective": "binary",
        "num_class": 1,
        "n_features": 5,
        "categorical": [1, 3],
        "n_categories": 12,
        "num_leaves": 16,
        "n_trees": 8,
        "boosting": "gbdt",
        "min_data_in_leaf": 3,
        "n_rows": 600,
        "nan_fraction": 0.2,
        "zero_fraction": 0.2,
        "use_missing": True,
        "zero_as_missing": False,
        "max_cat_to_onehot": 4,
        "sigmoid": 1.0,
        "seed": 77,
    }
    booster, _ = train(spec)
    return booster, nba.load_model(booster.model_to_string())


any_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(SPECIAL + CATEGORY_EDGES),
    st.integers(-3, 40).map(float),
)


@settings(max_examples=300, deadline=None)
@given(row=st.lists(any_float, min_size=5, max_size=5))
def test_any_float_row_scores_like_lightgbm(categorical_missing_model, row):
    booster, model = categorical_missing_model
    X = np.array([row], dtype=np.float64)
    np.testing.assert_array_equal(np.asarray(model.predict(X, raw_score=True)), booster.predict(X, raw_score=True))
    np.testing.assert_allclose(
        np.asarray(model.predict_row(X[0]), dtype=np.float64).reshape(-1),
        booster.predict(X).reshape(-1),
        rtol=TRANSFORM_RTOL,
        atol=TRANSFORM_ATOL,
    )


# --------------------------------------------------------------------------- LightGBM's zero band

# LightGBM declares ``const double kZeroThreshold = 1e-35f``: a float literal widened
# to double, i.e. 1.0000000180025095e-35, a hair above the double 1e-35. Dense rows
# drop every |x| <= kZeroThreshold (the predictor reads them as 0.0), and the
# trainer puts thresholds at exactly +-kZeroThreshold, so rows holding that value
# are ordinary input (a float32 pipeline that stored 1e-35 produces it, too).
K_ZERO = float(np.float32(1e-35))
ZERO_BAND = [
    K_ZERO,
    -K_ZERO,
    np.nextafter(K_ZERO, 0.0),
    np.nextafter(-K_ZERO, 0.0),
    np.nextafter(K_ZERO, 1.0),
    np.nextafter(-K_ZERO, -1.0),
    1e-35,
    -1e-35,
    5e-324,
    0.0,
    -0.0,
    np.nan,
    1.0,
    -1.0,
]


@pytest.fixture(scope="module")
def one_split_model_text() -> str:
    """A one-split regression model; the tests below rewrite its threshold and decision type."""
    booster, _ = train(
        {
            "objective": "regression", "num_class": 1, "n_features": 1, "categorical": [], "n_categories": 2,
            "num_leaves": 2, "n_trees": 1, "boosting": "gbdt", "min_data_in_leaf": 1, "n_rows": 25,
            "nan_fraction": 0.1, "zero_fraction": 0.0, "use_missing": False, "zero_as_missing": False,
            "max_cat_to_onehot": 1, "sigmoid": 1.0, "seed": 0,
        }
    )  # fmt: skip
    return booster.model_to_string()


@pytest.mark.parametrize("threshold", [-K_ZERO, K_ZERO, -1e-35, 1e-35, 0.0, 0.5])
@pytest.mark.parametrize("decision_type", [0, 2, 4, 6, 8, 10])
def test_values_in_lightgbm_zero_band_read_as_zero(one_split_model_text, threshold, decision_type):
    """Rows at +-kZeroThreshold (float32(1e-35)) split like LightGBM's 0.0, for every missing-value mode."""
    text = re.sub(r"^threshold=.*$", f"threshold={threshold!r}", one_split_model_text, count=1, flags=re.MULTILINE)
    text = re.sub(r"^decision_type=.*$", f"decision_type={decision_type}", text, count=1, flags=re.MULTILINE)
    reference = lgb.Booster(model_str=text)
    model = nba.load_model(text)
    X = np.array(ZERO_BAND).reshape(-1, 1)
    expected = reference.predict(X, raw_score=True)
    got = np.asarray(model.predict(X, raw_score=True))
    wrong = [f"x={x!r}: nba {g!r}, lightgbm {e!r}" for x, g, e in zip(X[:, 0], got, expected) if g != e]
    assert not wrong, wrong


def test_nan_only_split_with_infinite_threshold_scores_like_lightgbm():
    """LightGBM writes ``threshold=inf`` for a split that separates NaN from every number; that is a valid model."""
    rng = np.random.default_rng(3)
    n = 400
    X = rng.standard_normal((n, 2))
    X[rng.random((n, 2)) < 0.2] = np.nan
    y = np.nan_to_num(X[:, 0]) - 2.0 * np.isnan(X[:, 1])  # column 1 matters only through missingness
    params = {"objective": "regression", "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(X, y), 3)
    text = booster.model_to_string()
    assert numerical_thresholds(text, 2)[1].count(np.inf) > 0, "precondition: LightGBM wrote an infinite threshold"
    model = nba.load_model(text)
    R = np.array([[0.0, 0.0], [0.0, np.nan], [0.0, np.inf], [0.0, -np.inf], [0.0, 1e308], [np.nan, np.nan]])
    _assert_matches(model, booster, np.vstack([R, X[:50]]))
