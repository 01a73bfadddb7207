"""FeatureSchema: vectorize (dict, Struct, object, vector), defaults, one-hot, errors, used_features, model check."""

from __future__ import annotations

import collections
import json
import math
import types

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nba
from nba import Boolean, Categorical, ConfigError, FeatureSchema, Numeric, SchemaError
from tests.schema_paths import assert_paths_agree, checked

SEGMENTS = ["gold", "silver", "bronze"]
DEVICES = ["ios", "android"]


def make_schema(**overrides) -> FeatureSchema:
    """Profile and context features interleaved on purpose (exercises the column permutation)."""
    return FeatureSchema(
        [
            Numeric("age", default=30.0, bounds=(0, 120)),
            Categorical("segment", SEGMENTS, unknown=overrides.get("unknown", "zeros")),
            Numeric("hour", default=12.0, source="context"),
            Boolean("member"),
            Numeric("income", allow_missing=True),
            Categorical("device", DEVICES, default="ios", source="context"),
            Boolean("push_ok", default=True, source="context", namespace="Prefs"),
        ],
        extra_profile=["country"],
    )


def reference_vector(schema: FeatureSchema, profile: dict, context: dict) -> np.ndarray:
    """An independent, naive encoder written from the documented semantics."""
    x = []
    for f in schema.features:
        src = profile if f.source == "profile" else context
        v = src.get(f.name)
        if isinstance(f, Numeric):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                x.append(math.nan if f.allow_missing else f.default)
            else:
                lo, hi = f.bounds or (None, None)
                v = float(v)
                v = max(v, lo) if lo is not None else v
                v = min(v, hi) if hi is not None else v
                x.append(v)
        elif isinstance(f, Boolean):
            x.append(float(f.default if v is None else bool(v)))
        else:
            if v is None:
                v = f.default
            x.extend(1.0 if v == c else 0.0 for c in f.categories)
            if f.unknown == "other":
                x.append(1.0 if v is not None and v not in f.categories else 0.0)
    return np.array(x)


def full_profile(**kw):
    p = {"age": 41, "segment": "silver", "member": True, "income": 52000.5, "country": "FR"}
    p.update(kw)
    return p


CONTEXT = {"hour": 9, "device": "android", "push_ok": False}


# --------------------------------------------------------------------------- columns


def test_feature_names_follow_declaration_order_with_one_hot_columns():
    s = make_schema()
    assert s.feature_names == (
        "age",
        "segment=gold",
        "segment=silver",
        "segment=bronze",
        "hour",
        "member",
        "income",
        "device=ios",
        "device=android",
        "push_ok",
    )
    assert len(s) == s.n_columns == 10


def test_unknown_other_adds_an_other_column():
    s = FeatureSchema([Categorical("segment", SEGMENTS, unknown="other")])
    assert s.feature_names == ("segment=gold", "segment=silver", "segment=bronze", "segment=__other__")


def test_column_names_are_stored_verbatim_by_lightgbm():
    lgb = pytest.importorskip("lightgbm")
    s = FeatureSchema(
        [
            Numeric("days since signup"),
            Numeric("ratio:a,b"),
            Categorical("plan type", ["pro plan", "x[1]", "{y}"]),
            Numeric('q"uote'),
        ]
    )
    rng = np.random.default_rng(0)
    X = rng.random((100, len(s)))
    booster = lgb.train(
        {"verbose": -1, "num_leaves": 4, "min_data_in_leaf": 5},
        lgb.Dataset(X, X[:, 0], feature_name=list(s.feature_names)),
        num_boost_round=2,
    )
    assert booster.feature_name() == list(s.feature_names)
    assert "plan_type=pro_plan" in s.feature_names
    s.check_model(booster.feature_name())


def test_column_name_collision_after_sanitizing_is_a_config_error():
    with pytest.raises(ConfigError, match="collide"):
        FeatureSchema([Numeric("a b"), Numeric("a_b")])


def test_columns_carry_vw_feature_names_as_vw_json_parses_them():
    s = FeatureSchema([Numeric("age"), Categorical("city", ["new york", "a|b:c"]), Boolean("vip", source="context")])
    cols = {c.name: c for c in s.columns}
    assert cols["age"].vw_feature == "age" and cols["age"].namespace == "User"
    assert cols["city=new_york"].vw_feature == "citynew_york"
    assert cols["city=a|b_c"].vw_feature == "citya_b_c"
    assert cols["vip"].namespace == "Context" and cols["vip"].kind == "boolean"


# --------------------------------------------------------------------------- vectorize


def test_vectorize_dict_matches_reference_encoder():
    s = make_schema()
    p = full_profile()
    np.testing.assert_array_equal(s.vectorize(p, CONTEXT), reference_vector(s, p, CONTEXT))


def test_vectorize_writes_into_the_callers_buffer():
    s = make_schema()
    out = np.full(len(s), -7.0)
    res = s.vectorize(full_profile(), CONTEXT, out=out)
    assert res is out
    np.testing.assert_array_equal(out, reference_vector(s, full_profile(), CONTEXT))


def test_vectorize_struct_and_object_match_dict():
    class Profile(msgspec.Struct):
        age: float
        segment: str
        member: bool
        income: float
        country: str
        email: str = "someone@example.com"

    s = make_schema()
    p = full_profile()
    expected = s.vectorize(p, CONTEXT)
    prof = Profile(age=41, segment="silver", member=True, income=52000.5, country="FR")
    np.testing.assert_array_equal(s.vectorize(prof, CONTEXT), expected)
    np.testing.assert_array_equal(s.vectorize(types.SimpleNamespace(**p), types.SimpleNamespace(**CONTEXT)), expected)


def test_vectorize_struct_missing_fields_use_defaults():
    class Partial(msgspec.Struct):
        age: float
        segment: str | None = None

    s = make_schema()
    x = s.vectorize(Partial(age=50.0), CONTEXT)
    np.testing.assert_array_equal(x, reference_vector(s, {"age": 50.0}, CONTEXT))


def test_vectorize_mapping_uses_get_and_never_grows_a_defaultdict():
    s = make_schema()
    p = collections.defaultdict(lambda: "oops", {"age": 20})
    x = s.vectorize(p, CONTEXT)
    assert set(p) == {"age"}
    np.testing.assert_array_equal(x, reference_vector(s, {"age": 20}, CONTEXT))


def test_missing_features_take_their_defaults():
    s = make_schema()
    x = s.vectorize({}, None)
    names = s.feature_names
    assert x[names.index("age")] == 30.0
    assert x[names.index("hour")] == 12.0
    assert x[names.index("member")] == 0.0
    assert math.isnan(x[names.index("income")])  # allow_missing: NaN, LightGBM's missing value
    assert x[names.index("device=ios")] == 1.0  # declared default category
    assert x[names.index("push_ok")] == 1.0
    assert x[[names.index(f"segment={c}") for c in SEGMENTS]].sum() == 0.0


def test_none_values_count_as_missing():
    s = make_schema()
    p = full_profile(age=None, segment=None, member=None, income=None)
    np.testing.assert_array_equal(
        s.vectorize(p, {**CONTEXT, "hour": None}), s.vectorize({"country": "FR"}, {**CONTEXT, "hour": None})
    )


def test_one_hot_sets_exactly_the_declared_category():
    s = make_schema()
    for seg in SEGMENTS:
        x = s.vectorize(full_profile(segment=seg), CONTEXT)
        block = {c: x[s.feature_names.index(f"segment={c}")] for c in SEGMENTS}
        assert block == {c: (1.0 if c == seg else 0.0) for c in SEGMENTS}


def test_unknown_category_gives_zeros_other_or_an_error():
    p = full_profile(segment="platinum")
    zeros = make_schema(unknown="zeros").vectorize(p, CONTEXT)
    assert zeros[1:4].tolist() == [0.0, 0.0, 0.0]
    s_other = make_schema(unknown="other")
    other = s_other.vectorize(p, CONTEXT)
    assert other[s_other.feature_names.index("segment=__other__")] == 1.0
    assert other[1:4].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(SchemaError, match=r"'segment'.*unknown category 'platinum'"):
        make_schema(unknown="error").vectorize(p, CONTEXT)


def test_bounds_clip_or_raise():
    s = make_schema()
    assert s.vectorize(full_profile(age=150), CONTEXT)[0] == 120.0
    assert s.vectorize(full_profile(age=-3), CONTEXT)[0] == 0.0
    strict = FeatureSchema([Numeric("age", bounds=(0, 120), clip=False)])
    with pytest.raises(SchemaError, match="'age'.*outside its bounds"):
        strict.vectorize({"age": 121})


@pytest.mark.parametrize(
    "profile, match",
    [
        (full_profile(age=math.nan), r"feature 'age' \(profile\) is NaN.*allow_missing=True"),
        (full_profile(age=math.inf), r"feature 'age' \(profile\) is inf"),
        (full_profile(income=-math.inf), r"feature 'income' \(profile\) is -inf"),
        (full_profile(age="41"), r"feature 'age' \(profile\): expected a number, got str"),
        (full_profile(income=10**400), r"feature 'income' \(profile\) is too large"),
        (full_profile(member="yes"), r"feature 'member' \(profile\): expected True or False"),
        (full_profile(member=0.5), r"feature 'member' \(profile\): expected True or False"),
        (full_profile(segment=["gold"]), r"feature 'segment' \(profile\): expected a category"),
    ],
)
def test_bad_values_raise_schema_error_naming_the_feature(profile, match):
    with pytest.raises(SchemaError, match=match):
        make_schema().vectorize(profile, CONTEXT)


def test_bad_context_value_names_the_context_feature():
    with pytest.raises(SchemaError, match=r"feature 'hour' \(context\) is NaN"):
        make_schema().vectorize(full_profile(), {**CONTEXT, "hour": math.nan})


def test_nan_is_allowed_where_declared():
    s = make_schema()
    x = s.vectorize(full_profile(income=math.nan), CONTEXT)
    assert math.isnan(x[s.feature_names.index("income")])


def test_wrong_input_type_is_a_schema_error():
    with pytest.raises(SchemaError, match="profile: expected a dict"):
        make_schema().vectorize("age=3", CONTEXT)


@pytest.mark.parametrize(
    "out",
    [np.empty(9), np.empty(10, dtype=np.float32), np.empty((10, 1)), np.empty(20)[::2], [0.0] * 10],
    ids=["short", "float32", "2d", "strided", "list"],
)
def test_bad_out_buffer_is_rejected(out):
    with pytest.raises(SchemaError, match="out must be"):
        make_schema().vectorize(full_profile(), CONTEXT, out=out)


def test_read_only_out_buffer_is_rejected():
    out = np.empty(10)
    out.setflags(write=False)
    with pytest.raises(SchemaError, match="read-only"):
        make_schema().vectorize(full_profile(), CONTEXT, out=out)


# --------------------------------------------------------------------------- ready vectors


def test_ready_vectors_are_placed_in_their_sources_columns():
    s = make_schema()
    expected = s.vectorize(full_profile(), CONTEXT)
    pcols = [s.feature_names.index(n) for n in s.profile_feature_names]
    ccols = [s.feature_names.index(n) for n in s.context_feature_names]
    np.testing.assert_array_equal(s.vectorize(expected[pcols], CONTEXT), expected)
    np.testing.assert_array_equal(s.vectorize(full_profile(), list(expected[ccols])), expected)
    np.testing.assert_array_equal(s.vectorize(expected[pcols], expected[ccols]), expected)


def test_ready_vector_of_wrong_length_is_rejected():
    s = make_schema()
    with pytest.raises(SchemaError, match=r"profile vector: expected 6 values"):
        s.vectorize(np.zeros(5), CONTEXT)


def test_ready_vector_with_nan_names_the_column_unless_missing_is_allowed():
    s = make_schema()
    v = s.vectorize(full_profile(), CONTEXT)[[s.feature_names.index(n) for n in s.profile_feature_names]]
    v_income = v.copy()
    v_income[list(s.profile_feature_names).index("income")] = math.nan
    assert math.isnan(s.vectorize(v_income, CONTEXT)[s.feature_names.index("income")])
    v[0] = math.inf
    with pytest.raises(SchemaError, match=r"column 0 \('age'\) is inf"):
        s.vectorize(v, CONTEXT)


# --------------------------------------------------------------------------- used_features


def test_used_features_holds_only_declared_features():
    s = make_schema()
    personal = {
        "email": "jane.doe@example.com",
        "phone": "+33 6 12 34 56 78",
        "name": "Jane Doe",
        "address": "1 rue de la Paix",
    }
    p = {**full_profile(), **personal}
    used = s.used_features(p, {**CONTEXT, "ip": "203.0.113.9"})
    assert used == {
        "User": {"age": 41.0, "segment": "silver", "member": True, "income": 52000.5},
        "Context": {"hour": 9.0, "device": "android"},
        "Prefs": {"push_ok": False},
    }
    text = json.dumps(used)
    for secret in [*personal.values(), "203.0.113.9", "FR"]:  # "FR": an extra attribute, for rules only
        assert secret not in text


def test_used_features_reports_values_as_the_model_saw_them():
    s = make_schema(unknown="other")
    used = s.used_features({"age": 500, "segment": "platinum"}, None)
    assert used["User"]["age"] == 120.0  # clipped
    assert used["User"]["member"] is False  # default
    assert used["User"]["segment"] == "platinum"  # as given, as VW's JSON parser reads it
    assert "income" not in used["User"]  # missing, seen as NaN: left out
    assert used["Context"] == {"hour": 12.0, "device": "ios"}
    assert used["Prefs"] == {"push_ok": True}


def test_used_features_reuses_a_given_vector():
    s = make_schema()
    p = full_profile()
    x = s.vectorize(p, CONTEXT)
    assert s.used_features(p, CONTEXT, x=x) == s.used_features(p, CONTEXT)


def test_used_features_from_ready_vectors_decodes_categories():
    s = make_schema()
    x = s.vectorize(full_profile(), CONTEXT)
    pv = x[[s.feature_names.index(n) for n in s.profile_feature_names]]
    assert s.used_features(pv, CONTEXT) == s.used_features(full_profile(), CONTEXT)


def test_used_features_raises_like_vectorize():
    with pytest.raises(SchemaError, match="'age'"):
        make_schema().used_features(full_profile(age="x"), CONTEXT)


# --------------------------------------------------------------------------- model check


def test_check_model_accepts_the_same_names_in_any_order():
    s = make_schema()
    s.check_model(s.feature_names)
    s.check_model(tuple(reversed(s.feature_names)))
    s.check_model(s.feature_names + ("fee",), arm_features=("fee",))


def test_check_model_names_missing_and_extra_features():
    s = make_schema()
    model = [n for n in s.feature_names if n != "hour"] + ["tenure", "fee"]
    with pytest.raises(SchemaError) as e:
        s.check_model(model, arm_features=("fee",))
    msg = str(e.value)
    assert "missing" in msg and "'tenure'" in msg
    assert "extra" in msg and "'hour'" in msg
    assert "'fee'" not in msg


def test_check_model_rejects_duplicate_model_names():
    with pytest.raises(SchemaError, match="not unique"):
        make_schema().check_model(["age", "age"])


# --------------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: FeatureSchema([]), "at least one feature"),
        (lambda: FeatureSchema([Numeric("a"), Boolean("a", source="context")]), "declared twice"),
        (lambda: FeatureSchema([Numeric("a")], extra_profile=["a"]), "declared twice"),
        (lambda: FeatureSchema(["age"]), "expected nba.Numeric"),
        (lambda: FeatureSchema([Numeric("_a")]), "reserves"),
        (lambda: FeatureSchema([Numeric("a", namespace="_ns")]), "namespace"),
        (lambda: Numeric("a", source="session"), "source must be"),
        (lambda: Numeric("a", default=math.nan), "finite"),
        (lambda: Numeric("a", default=200, bounds=(0, 100)), "outside bounds"),
        (lambda: Numeric("a", bounds=(5, 1)), "lo <= hi"),
        (lambda: Categorical("c", []), "at least one category"),
        (lambda: Categorical("c", ["x", "x"]), "duplicate"),
        (lambda: Categorical("c", ["x"], default="y"), "not one of the categories"),
        (lambda: Categorical("c", ["x"], unknown="drop"), "unknown must be"),
        (lambda: Categorical("c", "xyz"), "list of str"),
        (lambda: Boolean("b", default=1), "True or False"),
    ],
)
def test_bad_declarations_are_config_errors(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_set_of_categories_is_sorted_for_a_stable_column_order():
    assert Categorical("c", {"b", "a", "c"}).categories == ("a", "b", "c")


def test_declarations_round_trip_through_json():
    feats = [Numeric("age", 3.0, bounds=(0, None)), Categorical("s", ["a"], unknown="other"), Boolean("b")]
    data = msgspec.json.encode(feats)
    back = msgspec.json.decode(data, type=list[Numeric | Categorical | Boolean])
    assert back == feats
    assert FeatureSchema(back).feature_names == FeatureSchema(feats).feature_names


def test_schema_pickles_and_vectorizes_the_same():
    import pickle

    s = make_schema(unknown="other")
    back = pickle.loads(pickle.dumps(s))
    assert back.feature_names == s.feature_names
    p = full_profile(segment="platinum")
    np.testing.assert_array_equal(back.vectorize(p, CONTEXT), s.vectorize(p, CONTEXT))
    assert back.field_source("country") == "profile"


def test_schema_is_exported_from_nba():
    assert nba.FeatureSchema is FeatureSchema and "FeatureSchema" in nba.__all__


# --------------------------------------------------------------------------- properties

_numbers = st.one_of(
    st.none(),
    st.integers(-(10**6), 10**6),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)
_maybe = lambda s: st.one_of(st.just(msgspec.UNSET), s)  # noqa: E731 - UNSET: leave the key out

_profiles = st.fixed_dictionaries(
    {
        "age": _maybe(_numbers),
        "segment": _maybe(st.one_of(st.none(), st.sampled_from(SEGMENTS + ["platinum", "x"]))),
        "member": _maybe(st.one_of(st.none(), st.booleans())),
        "income": _maybe(st.one_of(_numbers, st.just(math.nan))),
        "email": st.text(max_size=5),
    }
)
_contexts = st.fixed_dictionaries(
    {
        "hour": _maybe(_numbers),
        "device": _maybe(st.one_of(st.none(), st.sampled_from(DEVICES + ["web"]))),
        "push_ok": _maybe(st.one_of(st.none(), st.booleans())),
    }
)


def _drop_unset(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not msgspec.UNSET}


@settings(max_examples=150, deadline=None)
@given(_profiles, _contexts, st.sampled_from(["zeros", "other"]))
def test_vectorize_is_deterministic_finite_and_matches_the_reference(profile, context, unknown):
    s = make_schema(unknown=unknown)
    p, c = _drop_unset(profile), _drop_unset(context)
    a = s.vectorize(p, c)
    b = s.vectorize(p, c, out=np.full(len(s), 3.0))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, reference_vector(s, p, c))
    income = s.feature_names.index("income")
    assert np.isfinite(np.delete(a, income)).all()
    used = s.used_features(p, c, x=a)
    assert set(used["User"]) <= {"age", "segment", "member", "income"}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e300, 1e300), min_size=7, max_size=7))
def test_huge_finite_values_are_accepted_even_if_their_sum_overflows(values):
    s = FeatureSchema([Numeric(f"v{i}") for i in range(7)])
    p = {f"v{i}": v for i, v in enumerate(values)}
    np.testing.assert_array_equal(s.vectorize(p), np.array(values))


# --------------------------------------------------------------------------- the compiled dict path

_FAST_SCHEMA = FeatureSchema([
    Numeric("age", bounds=(0, 120), clip=True, default=30.0),
    Numeric("income", bounds=(0, 1e6)),
    Numeric("score", allow_missing=True),
    Numeric("visits"),
    Boolean("member"),
    Boolean("opted", allow_missing=True),
    Categorical("city", ["paris", "lyon"], unknown="zeros"),
    Categorical("tier", ["gold", "silver"], unknown="other", default="silver"),
    Categorical("band", [1, 2, 3], unknown="error"),
    Numeric("hour", source="context"),
    Categorical("device", ["ios", "android"], source="context", unknown="other"),
])
_ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, -0.0, 1.5, 2.0, 130.0, -3.0]),
    st.sampled_from(["paris", "lyon", "berlin", "gold", "silver", "bronze", "ios", "x"]),
    st.sampled_from([1, 2, 3, 7, 1.0, 2.5]), st.just([1]), st.just({"a": 1}),
)


def _as_struct(d: dict):
    return msgspec.defstruct("Input", [(k, object) for k in d])(**d)


# The shapes of input the compiled path reads: a dict, a Struct, other Mappings.
_WRAPS = st.sampled_from([dict, _as_struct, collections.UserDict, types.MappingProxyType])


@settings(max_examples=600, deadline=None)
@given(
    profile=st.dictionaries(st.sampled_from(["age", "income", "score", "visits", "member", "opted", "city",
                                              "tier", "band", "other"]), st.one_of(_ANY, st.just(msgspec.UNSET))),
    context=st.one_of(st.none(), st.dictionaries(st.sampled_from(["hour", "device", "ip"]), _ANY)),
    wrap_profile=_WRAPS,
    wrap_context=_WRAPS,
)
def test_compiled_path_agrees_with_the_validating_path(profile, context, wrap_profile, wrap_context):
    """Same vector bit for bit, or the same error, whichever path reads a dict, Struct or Mapping."""
    profile = wrap_profile(profile)
    if context is not None:
        context = wrap_context(context)
    assert_paths_agree(_FAST_SCHEMA, _FAST_SCHEMA, profile, context)


@pytest.mark.parametrize("wrap", [dict, _as_struct, collections.UserDict, types.MappingProxyType, collections.OrderedDict])
def test_compiled_path_reads_dicts_structs_and_mappings(wrap):
    """A Struct or Mapping profile is not sent to the validating path (4x the instructions) when it is valid."""
    profile = wrap({"age": 40, "income": 10.0, "visits": 2, "member": True, "city": "paris", "band": 2})
    out = np.empty(_FAST_SCHEMA.n_columns)
    assert _FAST_SCHEMA._dict_fast(profile, wrap({"hour": 3.0}), out) is True
    assert out.tobytes() == checked(_FAST_SCHEMA, profile, {"hour": 3.0}).tobytes()


def test_compiled_path_does_not_grow_a_defaultdict():
    profile = collections.defaultdict(int, {"age": 40, "band": 2})
    _FAST_SCHEMA.vectorize(profile)
    assert set(profile) == {"age", "band"}
