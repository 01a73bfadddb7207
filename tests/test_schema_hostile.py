"""FeatureSchema against hostile declarations and inputs (issue 8): build-time errors, path agreement, bad text."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nba import Boolean, Categorical, ConfigError, FeatureSchema, Numeric, SchemaError
from nba.schema import read_vector

LONE = "\ud800"  # a lone surrogate: a str Python holds but UTF-8 (the log) cannot write


# --------------------------------------------------------------------------- declarations


def test_unused_default_outside_bounds_is_accepted_when_missing_values_are_allowed():
    s = FeatureSchema([Numeric("age", allow_missing=True, bounds=(18, 100))])
    assert math.isnan(s.vectorize({})[0])  # missing -> NaN: the default 0.0 is never used
    assert s.vectorize({"age": 5})[0] == 18.0
    with pytest.raises(ConfigError, match="outside bounds"):
        Numeric("age", bounds=(18, 100))  # here the default 0.0 would be used


@pytest.mark.parametrize(
    "features",
    [
        [Numeric("income", allow_missing=True), Categorical("segment", ["mass"])],
        [Numeric("income", allow_missing=True)],
        [Boolean("vip", allow_missing=True), Numeric("income", allow_missing=True, source="context")],
        [Categorical("segment", ["mass"]), Categorical("device", ["ios"], source="context")],
    ],
    ids=["allow-missing-and-categorical", "allow-missing-only", "all-allow-missing", "categorical-only"],
)
def test_schema_whose_plain_columns_all_allow_missing_builds_and_vectorizes(features):
    s = FeatureSchema(features)
    assert s.vectorize({}, {}).shape == (s.n_columns,)
    assert s.vectorize({"income": 2.0, "segment": "mass", "vip": True}, {"device": "ios"}).shape == (s.n_columns,)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: FeatureSchema([Numeric("a" + LONE)]), "feature name"),
        (lambda: FeatureSchema([Numeric("age", namespace="U" + LONE)]), "namespace"),
        (lambda: FeatureSchema([Categorical("seg", ["gold", "x" + LONE])]), "category"),
        (lambda: FeatureSchema([Categorical("seg", [LONE], default=LONE)]), "category"),
        (lambda: FeatureSchema([Numeric("age")], extra_profile=["c" + LONE]), "extra profile attribute"),
        (lambda: FeatureSchema([Numeric("age")], extra_context=[LONE]), "extra context attribute"),
    ],
    ids=["name", "namespace", "category", "category-default", "extra-profile", "extra-context"],
)
def test_lone_surrogates_in_declarations_are_config_errors(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_non_ascii_declarations_that_are_valid_text_are_accepted():
    s = FeatureSchema([Numeric("âge", namespace="Über"), Categorical("ville", ["paris", "zürich", "東京"])])
    assert s.vectorize({"âge": 3, "ville": "東京"}).tolist() == [3.0, 0.0, 0.0, 1.0]


# --------------------------------------------------------------------------- request-time text


_CATS = FeatureSchema([
    Numeric("age"),
    Categorical("city", ["paris", "zürich"], unknown="zeros"),
    Categorical("tier", ["gold"], unknown="other", source="context"),
])


@pytest.mark.parametrize(
    "profile, context",
    [
        ({"city": LONE}, None),
        ({"city": "par" + LONE + "is"}, {}),
        ({"city": "paris"}, {"tier": "g\udfff"}),
        ({"city": "zürich" + LONE}, {"tier": "gold"}),
    ],
)
def test_a_category_that_is_not_valid_text_is_a_schema_error_before_anything_is_logged(profile, context):
    for path in ("compiled", "checked"):
        with pytest.raises(SchemaError, match="not valid text"):
            _vectorize(_CATS, profile, context, path)
    x = np.zeros(_CATS.n_columns)  # the vector of an all-unknown input, as log_raw would get it
    with pytest.raises(SchemaError, match="not valid text"):
        _CATS.log_raw(x.tolist(), profile, context)
    with pytest.raises(SchemaError, match="not valid text"):
        _CATS.used_features(profile, context, x=x)


@pytest.mark.parametrize("value", ["東京", "zürich2", "Ωmega", "emoji \U0001f600"])
def test_a_valid_non_ascii_unknown_category_stays_on_the_compiled_path(value):
    out = np.empty(_CATS.n_columns)
    assert _CATS._dict_fast({"city": value, "age": 1}, {"tier": value}, out) is True
    assert out.tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]  # all zeros for city, "other" for tier
    assert not _CATS._dict_fast({"city": value + LONE, "age": 1}, None, out)  # declined: the validating path refuses it


def test_unknown_categories_that_are_valid_text_are_still_logged_as_given():
    p, c = {"city": "東京", "age": 1}, {"tier": "platinum"}
    x = _CATS.vectorize(p, c)
    assert _CATS.log_raw(x.tolist(), p, c) == {"User": {"city": "東京"}, "Context": {"tier": "platinum"}}
    assert msgspec.json.encode(_CATS.used_features(p, c, x=x))


# --------------------------------------------------------------------------- property: every path agrees


def _vectorize(schema: FeatureSchema, profile, context, path: str) -> np.ndarray:
    """One of vectorize's two paths: the compiled dict path (the default) or the validating path."""
    out = np.empty(schema.n_columns)
    if path == "checked":
        return schema._vectorize_checked(profile, context, out)
    return schema.vectorize(profile, context, out=out)


_NAMES = [f"f{i}" for i in range(6)]
_STR_CATS = ["a", "b", "c", "zé"]
_INT_CATS = [1, 2, 3]


@st.composite
def _feature(draw, name: str):
    kind = draw(st.sampled_from(["numeric", "boolean", "categorical"]))
    source = draw(st.sampled_from(["profile", "context"]))
    if kind == "numeric":
        bounds = draw(st.sampled_from([None, (0, 10), (None, 5.5), (-3, None)]))
        allow = draw(st.booleans())
        lo, hi = bounds or (None, None)
        default = draw(st.sampled_from([0.0, 1.0, -2.0, 7.5]))
        if not allow and not ((lo is None or lo <= default) and (hi is None or default <= hi)):
            default = float(lo if lo is not None else hi)
        return Numeric(name, default=default, bounds=bounds, clip=draw(st.booleans()), allow_missing=allow,
                       source=source)
    if kind == "boolean":
        return Boolean(name, default=draw(st.booleans()), allow_missing=draw(st.booleans()), source=source)
    cats = draw(st.sampled_from([_STR_CATS, _INT_CATS, ["a"]]))
    default = draw(st.sampled_from([None, cats[0]]))
    encoding = draw(st.sampled_from(["onehot", "code"]))
    unknown = draw(st.sampled_from(["zeros", "error"] if encoding == "code" else ["zeros", "other", "error"]))
    return Categorical(name, cats, default=default, unknown=unknown, source=source, encoding=encoding)


@st.composite
def _schemas(draw):
    n = draw(st.integers(1, len(_NAMES)))
    return FeatureSchema([draw(_feature(name)) for name in _NAMES[:n]])


_HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 15), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, -0.0, 0.5, 2.0, 1e308, -1e308, math.nan, -math.nan, math.inf]),
    st.sampled_from(["a", "b", "zé", "x", "", "1", LONE, "a" + LONE, "é" + LONE]),
    st.sampled_from([1, 2, 3, 7, 1.0, 2.5]),
    st.sampled_from([np.float64(1.5), np.int64(2), np.bool_(True), np.float32(math.nan)]),
    st.just([1]), st.just({"a": 1}), st.just(b"a"), st.just(object()), st.just(msgspec.UNSET),
)
_inputs = st.one_of(st.none(), st.dictionaries(st.sampled_from(_NAMES + ["other"]), _HOSTILE, max_size=7))


@settings(max_examples=600, deadline=None)
@given(_schemas(), _inputs, _inputs)
def test_compiled_fast_and_validating_paths_agree_on_random_schemas_and_inputs(schema, profile, context):
    """Each path gives the same vector bit for bit, or the same error, for any schema shape and input."""
    profile = {} if profile is None else profile
    results = {}
    for path in ("compiled", "checked"):
        try:
            results[path] = ("ok", _vectorize(schema, profile, context, path).tobytes())
        except SchemaError as e:
            results[path] = ("error", str(e))
    assert results["compiled"] == results["checked"], (schema.features, results)


@settings(max_examples=300, deadline=None)
@given(_schemas(), _inputs, _inputs)
def test_the_generated_reader_and_read_vector_read_a_vector_alike(schema, profile, context):
    """used_features (the reader generated per schema) = read_vector over log_layout, as JSON (types and order)."""
    profile = {} if profile is None else profile
    try:
        x = schema.vectorize(profile, context)
        xs = x.tolist()
        raw = schema.log_raw(xs, profile, context) or {}
    except SchemaError:
        return
    want = read_vector(schema.log_layout, xs, raw)
    assert msgspec.json.encode(schema.used_features(profile, context, x=x)) == msgspec.json.encode(want)
    logged = [None if v != v else v for v in xs]  # as a log line holds it: NaN is null
    assert msgspec.json.encode(read_vector(schema.log_layout, logged, raw)) == msgspec.json.encode(want)
