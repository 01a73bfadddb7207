"""LightGBM's native categorical features: models trained on pandas ``category`` columns score through nba
exactly as ``Booster.predict(df)`` on the same DataFrame (unseen categories and NaN included), fed by
``Categorical(..., encoding="code")``, and a schema whose categories disagree with the model is refused at bind."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nba
from nba import Arm, Catalog, Categorical, FeatureSchema, Numeric, SchemaError
from nba.models.lightgbm import load_lightgbm

lgb = pytest.importorskip("lightgbm")

# Every test here runs on each row kernel in turn (bitvector AVX-512, AVX2, lane chains): bit for bit on each.
pytestmark = pytest.mark.usefixtures("tree_kernel")
pd = pytest.importorskip("pandas")

_LABELS = ["gold", "silver", "bronze", "mass", "vip", "zé", "a b", "x:y"]


def _case(seed: int):
    """A random schema of code-encoded categories (labels in a random, unsorted order) and numbers,
    a training frame with those category columns, a booster trained on it, and a test frame with
    unseen categories, None and NaN."""
    rng = np.random.default_rng(seed)
    feats: list = []
    train: dict = {}
    test: dict = {}
    n, m = 400, 200
    for j in range(int(rng.integers(1, 4))):
        if rng.random() < 0.5:
            cats = [str(c) for c in rng.permutation(_LABELS)[: int(rng.integers(2, 7))]]
        else:
            cats = [int(c) for c in rng.permutation(20)[: int(rng.integers(2, 7))]]
        name = f"c{j}"
        feats.append(Categorical(name, cats, encoding="code", source="profile" if j % 2 == 0 else "context"))
        vals = [cats[int(k)] for k in rng.integers(0, len(cats), n)]
        for k in np.flatnonzero(rng.random(n) < 0.05):
            vals[k] = None
        train[name] = pd.Categorical(vals, categories=cats)
        unseen = ["unseen", "Gold"] if isinstance(cats[0], str) else [97, 98]
        pool = cats + unseen + [None]
        tvals = [pool[int(k)] for k in rng.integers(0, len(pool), m)]
        test[name] = pd.Categorical(tvals, categories=cats + unseen)  # different categories than training
    for j in range(int(rng.integers(0, 3))):
        name = f"n{j}"
        feats.append(Numeric(name, allow_missing=True))
        train[name] = rng.normal(size=n)
        t = rng.normal(size=m)
        t[rng.random(m) < 0.1] = np.nan
        test[name] = t
    schema = FeatureSchema(feats)
    df = pd.DataFrame(train)[list(schema.feature_names)]
    codes = np.column_stack([np.asarray(df[c].cat.codes) if isinstance(df[c].dtype, pd.CategoricalDtype)
                             else np.zeros(n) for c in df.columns])
    y = np.sin(codes.sum(axis=1) * 1.7) + rng.normal(0, 0.1, n)
    params = {"objective": rng.choice(["regression", "binary"]), "verbose": -1, "num_leaves": 8, "seed": seed,
              "min_data_per_group": 5, "cat_smooth": 1.0, "max_cat_to_onehot": int(rng.choice([1, 4])),
              "deterministic": True, "num_threads": 1}
    if params["objective"] == "binary":
        y = (y > np.median(y)).astype(float)
    booster = lgb.train(params, lgb.Dataset(df, y), num_boost_round=int(rng.integers(3, 15)))
    return schema, booster, pd.DataFrame(test)[list(schema.feature_names)]


@pytest.mark.parametrize("seed", range(30))
def test_native_categorical_models_score_like_booster_predict_on_the_same_frame(seed):
    schema, booster, test = _case(seed)
    model = load_lightgbm(booster)
    assert model.pandas_categorical is not None and model.categorical_features
    expected = booster.predict(test, raw_score=True)
    x = schema.vectorize_many(test, test)
    np.testing.assert_array_equal(model.predict(x, raw_score=True), expected)
    np.testing.assert_allclose(model.predict(x), booster.predict(test), rtol=1e-12, atol=1e-12)
    # Through the catalogue binding (the Decider's scorer) and the single-row path, one row at a time.
    catalog = Catalog([Arm("only")], schema)
    scorer = model.bind(catalog)
    buf = scorer.buffers(1)
    out = np.empty(1)
    scores = booster.predict(test)  # the scorer gives the model's output (a probability for binary)
    for i, row in enumerate(test.iloc[:40].to_dict("records")):
        row = {k: None if k.startswith("c") and isinstance(v, float) and math.isnan(v) else v
               for k, v in row.items()}
        scorer.score(schema.vectorize(row, row), np.array([0], dtype=np.intp), out, buf)
        assert out[0] == pytest.approx(scores[i], rel=1e-12, abs=1e-12)


def test_a_decider_over_a_native_categorical_model_scores_as_lightgbm():
    schema, booster, test = _case(3)
    catalog = Catalog([Arm("only")], schema)
    dec = nba.Decider(catalog, nba.load_model(booster))
    row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in test.iloc[0].to_dict().items()}
    d = dec.decide(row, row)
    assert d.scores[0] == pytest.approx(float(booster.predict(test.iloc[:1])[0]), rel=1e-12)


def _trained(cats, name="segment"):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({name: pd.Categorical([cats[k] for k in rng.integers(0, len(cats), 300)], categories=cats),
                       "age": rng.normal(size=300)})
    y = (np.asarray(df[name].cat.codes) % 2) + rng.normal(0, 0.1, 300)
    return load_lightgbm(lgb.train({"objective": "regression", "verbose": -1, "min_data_per_group": 5},
                                   lgb.Dataset(df, y), 5))


def test_a_schema_whose_categories_differ_from_the_model_is_refused_at_bind():
    model = _trained(["b", "a", "c"])
    good = Catalog([Arm("x")], FeatureSchema([Categorical("segment", ["b", "a", "c"], encoding="code"),
                                              Numeric("age")]))
    model.bind(good)
    reordered = Catalog([Arm("x")], FeatureSchema([Categorical("segment", ["a", "b", "c"], encoding="code"),
                                                   Numeric("age")]))
    with pytest.raises(SchemaError, match=r"trained with categories \['b', 'a', 'c'\].*declares \['a', 'b', 'c'\]"):
        model.bind(reordered)
    with pytest.raises(SchemaError, match="trained with categories"):
        nba.Decider(reordered, model)


def test_a_native_category_fed_by_a_number_and_codes_fed_to_a_numeric_split_are_refused():
    model = _trained(["b", "a"])
    numeric = Catalog([Arm("x")], FeatureSchema([Numeric("segment"), Numeric("age")]))
    with pytest.raises(SchemaError, match=r"native LightGBM category.*encoding='code'"):
        model.bind(numeric)
    plain = load_lightgbm(lgb.train({"objective": "regression", "verbose": -1},
                                    lgb.Dataset(np.random.default_rng(1).normal(size=(100, 2)),
                                                np.arange(100.0), feature_name=["segment", "age"]), 3))
    coded = Catalog([Arm("x")], FeatureSchema([Categorical("segment", ["b", "a"], encoding="code"), Numeric("age")]))
    with pytest.raises(SchemaError, match="does not split as a category"):
        plain.bind(coded)


def test_code_encoding_semantics():
    s = FeatureSchema([Categorical("seg", ["b", "a"], encoding="code"), Categorical("d", [1, 2], default=2,
                                                                                    encoding="code")])
    assert s.feature_names == ("seg", "d")
    assert s.columns[0].kind == "code"
    np.testing.assert_array_equal(s.vectorize({"seg": "a", "d": 1}), [1.0, 0.0])
    np.testing.assert_array_equal(s.vectorize({"seg": "zz"}), [math.nan, 1.0])  # unseen -> NaN, missing -> default
    assert s.used_features({"seg": "zz", "d": 1}) == {"User": {"seg": "zz", "d": 1}}
    assert s.used_features({"seg": "b"}) == {"User": {"seg": "b", "d": 2}}
    strict = FeatureSchema([Categorical("seg", ["b"], encoding="code", unknown="error")])
    with pytest.raises(SchemaError, match="unknown category 'zz'"):
        strict.vectorize({"seg": "zz"})
    with pytest.raises(nba.ConfigError, match="no 'other' column"):
        Categorical("seg", ["b"], encoding="code", unknown="other")
    with pytest.raises(nba.ConfigError, match="encoding must be"):
        Categorical("seg", ["b"], encoding="ordinal")  # type: ignore[arg-type]


def test_training_frame_gives_native_category_columns_lightgbm_trains_on_and_nba_accepts():
    schema = FeatureSchema([Categorical("seg", ["b", "a", "c"], encoding="code"), Numeric("age")])
    catalog = Catalog([Arm("x", features={"price": 1.0}), Arm("y", features={"price": 2.0})], schema)
    rng = np.random.default_rng(5)
    profiles = [{"seg": ["a", "b", "c", None, "new"][k], "age": float(a)}
                for k, a in zip(rng.integers(0, 5, 300), rng.normal(size=300))]
    df = catalog.training_frame(profiles, as_frame=True)
    assert list(df["seg"].cat.categories) == ["b", "a", "c"]
    y = rng.normal(size=len(df)) + df["seg"].cat.codes.to_numpy()
    booster = lgb.train({"objective": "regression", "verbose": -1, "min_data_per_group": 5}, lgb.Dataset(df, y), 5)
    model = load_lightgbm(booster)
    scorer = model.bind(catalog)  # categories agree by construction
    out = np.empty(2)
    scorer.score(schema.vectorize(profiles[0]), np.array([0, 1], dtype=np.intp), out, scorer.buffers(2))
    np.testing.assert_array_equal(out, booster.predict(df.iloc[:2], raw_score=True))
