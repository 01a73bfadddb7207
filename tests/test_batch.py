"""FeatureSchema.vectorize_many: lists and pandas DataFrames, equal row for row to vectorize (values and errors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nba import Boolean, Categorical, FeatureSchema, Numeric, SchemaError
from tests.test_schema_hostile import _HOSTILE, _NAMES, _inputs, _schemas

pd = pytest.importorskip("pandas")


def _cell(v):
    """A frame cell as a dict would hold it for vectorize: pandas' missing markers are None."""
    return None if v is None or v is pd.NA or v is pd.NaT else v


def _row(df, i):
    """Row ``i`` as ``DataFrame.to_dict("records")`` gives it (Python scalars), missing markers as None."""
    return {c: _cell(v) for c, v in df.iloc[i : i + 1].to_dict("records")[0].items()}


def _expected(schema, profiles, contexts, n):
    """Row by row through vectorize: the matrix, or ("error", first bad row's message)."""
    out = np.empty((n, schema.n_columns))
    for i in range(n):
        p = _row(profiles, i) if isinstance(profiles, pd.DataFrame) else profiles[i]
        if contexts is None or isinstance(contexts, dict):
            c = contexts
        else:
            c = _row(contexts, i) if isinstance(contexts, pd.DataFrame) else contexts[i]
        try:
            schema.vectorize(p, c, out[i])
        except SchemaError as e:
            return ("error", f"row {i}: {e}")
    return ("ok", out.tobytes())


def _got(schema, profiles, contexts):
    try:
        return ("ok", schema.vectorize_many(profiles, contexts).tobytes())
    except SchemaError as e:
        return ("error", str(e))


_F = st.floats(allow_nan=True, allow_infinity=True)
_NICE_F = st.one_of(st.sampled_from([0.0, 1.0, -0.0, 0.5, 2.0, 11.0, -4.0, math.nan]), st.floats(-20, 20))


@st.composite
def _column(draw, n: int):
    """One frame column of ``n`` values in one of the dtypes a data scientist's frame holds."""
    kind = draw(st.sampled_from(
        ["float", "nicefloat", "int", "bool", "Int64", "Float64", "boolean", "category", "catint", "object", "str",
         "flag01"]
    ))
    if kind == "float":
        return pd.Series(draw(st.lists(_F, min_size=n, max_size=n)), dtype="float64")
    if kind == "nicefloat":
        return pd.Series(draw(st.lists(_NICE_F, min_size=n, max_size=n)), dtype="float64")
    if kind == "flag01":
        return pd.Series(draw(st.lists(st.sampled_from([0.0, 1.0, -0.0, math.nan]), min_size=n, max_size=n)))
    if kind == "int":
        return pd.Series(draw(st.lists(st.integers(-5, 15), min_size=n, max_size=n)), dtype="int64")
    if kind == "bool":
        return pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype="bool")
    if kind == "Int64":
        return pd.Series(draw(st.lists(st.one_of(st.none(), st.integers(-5, 15)), min_size=n, max_size=n)),
                         dtype="Int64")
    if kind == "Float64":
        return pd.Series(draw(st.lists(st.one_of(st.none(), st.floats(-20, 20)), min_size=n, max_size=n)),
                         dtype="Float64")
    if kind == "boolean":
        return pd.Series(draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n)),
                         dtype="boolean")
    if kind == "category":
        cats = draw(st.lists(st.sampled_from(["a", "b", "c", "zé", "x", ""]), unique=True, min_size=1))
        vals = draw(st.lists(st.one_of(st.none(), st.sampled_from(cats)), min_size=n, max_size=n))
        return pd.Series(pd.Categorical(vals, categories=cats))
    if kind == "catint":
        cats = draw(st.lists(st.integers(0, 7), unique=True, min_size=1))
        vals = draw(st.lists(st.one_of(st.none(), st.sampled_from(cats)), min_size=n, max_size=n))
        return pd.Series(pd.Categorical(vals, categories=cats))
    if kind == "str":
        vals = draw(st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "zé", "x", "1"])), min_size=n,
                             max_size=n))
        return pd.Series(vals, dtype="str")
    return pd.Series(draw(st.lists(_HOSTILE, min_size=n, max_size=n)), dtype=object)


@st.composite
def _frames(draw, n: int):
    names = draw(st.lists(st.sampled_from(_NAMES + ["other"]), unique=True, max_size=7))
    index = draw(st.permutations(list(range(10, 10 + n))))  # rows are positional, whatever the index
    df = pd.DataFrame({name: draw(_column(n)) for name in names}, index=range(n))
    df.index = index
    return df


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_frame_vectorizes_row_for_row_as_vectorize_does(data):
    """Random schema x random frame (every dtype, NaN, NA, missing columns, unknown categories): same bytes or error."""
    schema = data.draw(_schemas())
    n = data.draw(st.integers(0, 6))
    df = data.draw(_frames(n))
    how = data.draw(st.sampled_from(["none", "same", "frame", "dicts", "one"]))
    ctx = {"none": None, "same": df, "one": {"f1": 1.0, "f2": "a"}}.get(how)
    if how == "frame":
        ctx = data.draw(_frames(n))
    elif how == "dicts":
        ctx = [data.draw(_inputs) or {} for _ in range(n)]
    assert _got(schema, df, ctx) == _expected(schema, df, ctx, n), (schema.features, df.dtypes.to_dict())


@settings(max_examples=300, deadline=None)
@given(_schemas(), st.lists(st.tuples(_inputs, _inputs), max_size=5))
def test_a_list_of_dicts_vectorizes_row_for_row_as_vectorize_does(schema, rows):
    profiles = [p or {} for p, _ in rows]
    contexts = [c for _, c in rows]
    assert _got(schema, profiles, contexts) == _expected(schema, profiles, contexts, len(rows))


def test_a_typical_frame_with_category_columns_is_encoded_without_a_python_loop_per_row():
    schema = FeatureSchema([
        Numeric("age", default=30.0, bounds=(0, 120)),
        Categorical("segment", ["gold", "silver"], unknown="other"),
        Boolean("member", allow_missing=True),
        Numeric("hour", source="context"),
    ])
    df = pd.DataFrame({
        "age": [20.0, 130.0, 40.0],
        "segment": pd.Categorical(["gold", "bronze", None]),
        "member": pd.array([True, None, False], dtype="boolean"),
        "hour": [1, 2, 3],
    })
    x = schema.vectorize_many(df, df)
    assert x.shape == (3, schema.n_columns)
    np.testing.assert_array_equal(x[1], [120.0, 0.0, 0.0, 1.0, math.nan, 2.0])
    np.testing.assert_array_equal(x[2], [40.0, 0.0, 0.0, 0.0, 0.0, 3.0])


def test_the_error_names_the_first_bad_row_and_feature():
    schema = FeatureSchema([Numeric("age"), Categorical("segment", ["a"], unknown="error")])
    df = pd.DataFrame({"age": [1.0, 2.0, 3.0], "segment": ["a", "a", "b"]})
    with pytest.raises(SchemaError, match=r"^row 2: feature 'segment' \(profile\): unknown category 'b'"):
        schema.vectorize_many(df)
    with pytest.raises(SchemaError, match="row 1: feature 'age'.* is NaN"):
        schema.vectorize_many([{"age": 1}, {"age": math.nan}])


def test_bad_batch_arguments_are_schema_errors():
    schema = FeatureSchema([Numeric("age")])
    with pytest.raises(SchemaError, match="one context per profile"):
        schema.vectorize_many([{}, {}], [{}])
    with pytest.raises(SchemaError, match="use vectorize for one row"):
        schema.vectorize_many({"age": 1})
    with pytest.raises(SchemaError, match="must be a list"):
        schema.vectorize_many([{}], "abc")
    assert schema.vectorize_many([]).shape == (0, 1)


def test_a_frame_of_usual_dtypes_never_goes_row_by_row(monkeypatch):
    """The numpy path encodes numeric, bool, nullable, category and string columns itself."""
    import nba._batch

    def no_rows(df):
        raise AssertionError("went row by row")

    monkeypatch.setattr(nba._batch, "frame_rows", no_rows)
    schema = FeatureSchema([
        Numeric("a", bounds=(0, 1)), Numeric("b", allow_missing=True), Boolean("c"), Boolean("d", allow_missing=True),
        Categorical("e", ["x", "y"]), Categorical("f", [1, 2], unknown="other"), Numeric("g", default=3.0),
    ])
    df = pd.DataFrame({
        "a": [0.5, 2.0], "b": pd.array([1.5, None], dtype="Float64"), "c": [True, False],
        "d": pd.array([None, True], dtype="boolean"), "e": pd.Series(["x", None], dtype="str"),
        "f": pd.Categorical([2, 5]), "g": pd.array([None, 4], dtype="Int64"),
    })
    np.testing.assert_array_equal(
        schema.vectorize_many(df),
        [[0.5, 1.5, 1.0, math.nan, 1.0, 0.0, 0.0, 1.0, 0.0, 3.0], [1.0, math.nan, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 4.0]],
    )


def _catalog():
    from nba import Arm, Catalog

    schema = FeatureSchema([
        Numeric("age", default=30.0), Categorical("segment", ["gold", "silver"]), Numeric("hour", source="context"),
    ])
    arms = [Arm("a", features={"price": 1.0, "kind": "x"}), Arm("b", features={"price": 2.0, "kind": "y"}),
            Arm("c", features={"price": 3.0, "kind": "x"})]
    return Catalog(arms, schema)


def test_training_rows_are_the_rows_a_decision_scores():
    """Each training row equals RowLayout.fill of the served vector for that profile and arm."""
    cat = _catalog()
    profiles = [{"age": 20, "segment": "gold"}, {"age": 50, "segment": "bronze"}]
    contexts = [{"hour": 3}, {"hour": 9}]
    rows = cat.training_frame(profiles, contexts)
    assert rows.shape == (6, len(cat.feature_names))
    lay = cat.layout()
    for i, (p, c) in enumerate(zip(profiles, contexts)):
        np.testing.assert_array_equal(rows[3 * i : 3 * i + 3], lay.fill(cat.schema.vectorize(p, c)))
    some = cat.training_frame(profiles, contexts, arms=["c", "a"])
    np.testing.assert_array_equal(some, rows[[2, 0, 5, 3]])
    one = cat.training_frame(profiles, contexts, chosen=["b", "c"])
    np.testing.assert_array_equal(one, rows[[1, 5]])
    df = cat.training_frame(pd.DataFrame(profiles), pd.DataFrame(contexts), as_frame=True)
    assert list(df.columns) == list(cat.feature_names)
    np.testing.assert_array_equal(df.to_numpy(), rows)


def test_training_rows_refuse_unknown_arms_and_mismatched_lengths():
    cat = _catalog()
    with pytest.raises(SchemaError, match="'z', which is not an arm"):
        cat.training_frame([{}], arms=["z"])
    with pytest.raises(SchemaError, match="one arm id per profile"):
        cat.training_frame([{}, {}], chosen=["a"])
    with pytest.raises(SchemaError, match="not both"):
        cat.training_frame([{}], arms=["a"], chosen=["a"])


def test_nba_batches_without_pandas():
    """pandas is optional: with it unimportable, nba imports and vectorize_many / training_frame work on lists."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['pandas'] = None\n"
        "import nba\n"
        "s = nba.FeatureSchema([nba.Numeric('a'), nba.Categorical('c', ['x'])])\n"
        "assert s.vectorize_many([{'a': 2, 'c': 'x'}]).tolist() == [[2.0, 1.0]]\n"
        "cat = nba.Catalog([nba.Arm('k')], s)\n"
        "assert cat.training_frame([{'a': 1}]).tolist() == [[1.0, 0.0]]\n"
        "try:\n"
        "    cat.training_frame([{}], as_frame=True)\n"
        "except nba.SchemaError as e:\n"
        "    assert 'needs pandas' in str(e)\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
