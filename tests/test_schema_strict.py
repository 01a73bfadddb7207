"""FeatureSchema(strict=...) and FeatureSchema.counters(): silent defaults refused, or counted."""

from __future__ import annotations

import collections
import math
import pickle
import types

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nba
from nba import Boolean, Categorical, ConfigError, FeatureSchema, Numeric, SchemaError
from nba.log import DecisionRecord, read_records
from nba.schema import STRICT_CHECKS, FeatureCount
from tests.schema_paths import assert_paths_agree, checked


def _features():
    return [
        Numeric("age", bounds=(0, 120)),
        Numeric("income", allow_missing=True),
        Boolean("member"),
        Boolean("opted", allow_missing=True),
        Categorical("city", ["paris", "lyon"]),
        Categorical("tier", ["gold", "silver"], unknown="other", default="silver"),
        Categorical("band", [1, 2, 3], encoding="code"),
        Numeric("hour", source="context", bounds=(0, 23)),
        Categorical("device", ["ios", "android"], source="context", encoding="code", default="ios"),
    ]


def schema(strict=False, **kw) -> FeatureSchema:
    return FeatureSchema(_features(), extra_profile=["user_id"], extra_context=["ip"], strict=strict, **kw)


FULL = {"user_id": "u1", "age": 30, "income": 10.0, "member": True, "opted": False, "city": "lyon",
        "tier": "gold", "band": 2}
CTX = {"hour": 9, "device": "android", "ip": "1.2.3.4"}


# --------------------------------------------------------------------------- strict mode


def test_a_typo_d_key_is_refused_with_the_key_it_meant():
    s = schema(strict=True)
    typo = {k: v for k, v in FULL.items() if k != "age"} | {"Age": 30}
    with pytest.raises(SchemaError, match=r"unknown key 'Age' \(strict mode\); did you mean 'age'\?"):
        s.vectorize(typo, CTX)
    with pytest.raises(SchemaError, match="unknown key 'Age'"):
        checked(s, typo, CTX)  # the validating path words it the same
    with pytest.raises(SchemaError, match="unknown key 'ua'.*extra_context"):
        s.vectorize(FULL, {**CTX, "ua": "firefox"})


def test_declared_extras_and_every_input_shape_pass_strict_mode():
    s = schema(strict=True)
    want = schema().vectorize(FULL, CTX)
    for wrap in (dict, collections.UserDict, types.MappingProxyType):
        np.testing.assert_array_equal(s.vectorize(wrap(FULL), wrap(CTX)), want)
    struct = msgspec.defstruct("P", [(k, object) for k in [*FULL, "Age"]])(**FULL, Age=1)
    np.testing.assert_array_equal(s.vectorize(struct, CTX), want)  # a Struct's fields are its type's: not checked


def test_one_input_for_both_sources_may_hold_either_source_s_keys():
    s = schema(strict=True)
    both = {**FULL, **CTX}
    np.testing.assert_array_equal(s.vectorize(both, both), schema().vectorize(FULL, CTX))
    with pytest.raises(SchemaError, match="unknown key 'hour'"):
        s.vectorize(both, CTX)  # a context key in a profile that is not also the context


def test_an_unknown_category_is_refused_whatever_unknown_says():
    s = schema(strict=True)
    for key, value in [("city", "berlin"), ("tier", "bronze"), ("band", 7)]:
        with pytest.raises(SchemaError, match=rf"feature '{key}' \(profile\): unknown category .*strict mode"):
            s.vectorize({**FULL, key: value}, CTX)
    with pytest.raises(SchemaError, match="'device' .*unknown category 'blackberry'"):
        s.vectorize(FULL, {**CTX, "device": "blackberry"})


def test_a_missing_value_is_refused_unless_the_declaration_says_what_it_means():
    s = schema(strict=True)
    for key in ("age", "member", "city"):
        with pytest.raises(SchemaError, match=rf"feature '{key}' \(profile\) is missing \(strict mode\)"):
            s.vectorize({k: v for k, v in FULL.items() if k != key}, CTX)
        with pytest.raises(SchemaError, match=rf"'{key}' .*is missing"):
            s.vectorize({**FULL, key: None}, CTX)
    # allow_missing (income, opted) and a categorical default (tier, device) say what missing means.
    declared = {k: v for k, v in FULL.items() if k not in ("income", "opted", "tier")}
    np.testing.assert_array_equal(
        s.vectorize(declared, {"hour": 9}), schema().vectorize(declared, {"hour": 9})
    )
    with pytest.raises(SchemaError, match="'hour' .*missing"):
        s.vectorize(FULL, None)


def test_each_check_can_be_chosen_alone():
    keys = schema(strict={"keys"})
    keys.vectorize({"city": "berlin"}, None)  # unknown category and missing values pass
    with pytest.raises(SchemaError, match="unknown key"):
        keys.vectorize({"Age": 1}, None)
    cats = schema(strict=["categories"])
    cats.vectorize({"Age": 1}, None)
    with pytest.raises(SchemaError, match="unknown category"):
        cats.vectorize({"city": "berlin"}, None)
    missing = schema(strict=("missing",))
    missing.vectorize({**FULL, "Age": 1, "city": "berlin"}, CTX)
    with pytest.raises(SchemaError, match="missing"):
        missing.vectorize({}, CTX)
    assert schema(strict=True).strict == frozenset(STRICT_CHECKS) and schema().strict == frozenset()


@pytest.mark.parametrize("bad", ["keys", ["key"], 1, {"missing", "typo"}])
def test_a_bad_strict_setting_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="strict"):
        schema(strict=bad)


def test_strict_mode_survives_pickling():
    s = pickle.loads(pickle.dumps(schema(strict={"keys", "missing"})))
    assert s.strict == {"keys", "missing"}
    with pytest.raises(SchemaError, match="unknown key"):
        s.vectorize({**FULL, "Age": 1}, CTX)


def test_strict_mode_refuses_in_batches_with_the_row_that_is_wrong():
    pd = pytest.importorskip("pandas")
    s = schema(strict=True)
    rows = [FULL, {**FULL, "Age": 3}]
    with pytest.raises(SchemaError, match="^row 1: profile: unknown key 'Age'"):
        s.vectorize_many(rows, CTX)
    frame = pd.DataFrame([{**FULL, **CTX}, {**FULL, **CTX, "city": "rome"}])
    with pytest.raises(SchemaError, match="^row 1: feature 'city' .*unknown category 'rome'"):
        s.vectorize_many(frame, frame)
    good = pd.DataFrame([{**FULL, **CTX}] * 3)
    np.testing.assert_array_equal(s.vectorize_many(good, good), schema().vectorize_many(good, good))
    with pytest.raises(SchemaError, match="^row 0: profile: unknown key 'hour'"):
        s.vectorize_many(good, CTX)  # the frame is the profile only: its context columns are unknown keys
    holes = pd.DataFrame({**{k: [v, v] for k, v in FULL.items()}, "age": pd.array([30, None], dtype="Int64")})
    with pytest.raises(SchemaError, match="^row 1: feature 'age' .*missing"):
        s.vectorize_many(holes, CTX)


def test_a_decision_refused_by_strict_mode_logs_nothing(tmp_path):
    cat = nba.Catalog([nba.Arm("a"), nba.Arm("b")], schema(strict=True))
    with nba.Decider(cat, nba.BetaThompson(2), log=nba.DecisionLog(tmp_path)) as dec:
        with pytest.raises(SchemaError, match="'Age'"):
            dec.decide({**FULL, "Age": 3}, CTX)
        dec.decide(FULL, CTX)
    assert sum(isinstance(r, DecisionRecord) for r in read_records(tmp_path)) == 1


# --------------------------------------------------------------------------- counters


def test_counters_count_missing_defaulted_unknown_and_clipped_values():
    s = schema()
    s.vectorize({"age": 300, "city": "berlin", "tier": "bronze", "band": 9, "income": math.nan}, {"hour": -4})
    s.vectorize(FULL, CTX)
    c = s.counters()
    assert c.calls == 2
    f = c.features
    assert f["age"] == FeatureCount(clipped=1)
    assert f["income"] == FeatureCount(missing=1)  # NaN where NaN means missing; no default written
    assert f["member"] == FeatureCount(missing=1, defaulted=1)
    assert f["opted"] == FeatureCount(missing=1)
    assert f["city"] == f["tier"] == f["band"] == FeatureCount(unknown=1)
    assert f["hour"] == FeatureCount(clipped=1)
    assert f["device"] == FeatureCount(missing=1, defaulted=1)
    assert ("age", "clipped", 1) in c.rows() and all(n > 0 for _, _, n in c.rows())


def test_a_refused_call_counts_nothing_and_reset_starts_again():
    s = schema(strict={"categories"})
    s.vectorize({"age": 5}, None)
    with pytest.raises(SchemaError):
        s.vectorize({"city": "berlin"}, None)
    with pytest.raises(SchemaError):
        s.vectorize({"age": "old"}, None)
    taken = s.counters(reset=True)
    assert taken.calls == 1 and taken.features["member"].missing == 1 and taken.features["age"].missing == 0
    after = s.counters()
    assert after.calls == 0 and all(v == FeatureCount() for v in after.features.values())
    assert pickle.loads(pickle.dumps(s)).counters().calls == 0  # another process's schema starts at zero


_ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=False),
    st.sampled_from([0.0, 1.0, 130.0, -3.0, 30, 25]),
    st.sampled_from(["paris", "lyon", "berlin", "gold", "silver", "bronze", "ios", "android", "x"]),
    st.sampled_from([1, 2, 3, 7]), st.just(msgspec.UNSET),
)
_PROFILE_KEYS = ["user_id", "age", "income", "member", "opted", "city", "tier", "band", "Age", "other"]
_CONTEXT_KEYS = ["hour", "device", "ip", "Hour"]
_WRAPS = st.sampled_from([dict, collections.UserDict, types.MappingProxyType])
_STRICT = st.sampled_from([False, True, {"keys"}, {"categories"}, {"missing"}, {"keys", "missing"}])


@settings(max_examples=400, deadline=None)
@given(
    profile=st.one_of(st.none(), st.dictionaries(st.sampled_from(_PROFILE_KEYS), _ANY)),
    context=st.one_of(st.none(), st.dictionaries(st.sampled_from(_CONTEXT_KEYS), _ANY)),
    wrap=_WRAPS, strict=_STRICT,
)
def test_compiled_and_validating_paths_give_the_same_vector_error_and_counts(profile, context, wrap, strict):
    """The compiled path's strict checks and counts equal the validating path's, for every input shape."""
    profile = None if profile is None else wrap(profile)
    context = None if context is None else wrap(context)
    assert_paths_agree(schema(strict), schema(strict), profile, context)


_FRAME_VALUES = {
    "age": st.one_of(st.none(), st.integers(-10, 200)),
    "income": st.one_of(st.none(), st.floats(-5, 5), st.just(math.nan)),
    "member": st.one_of(st.none(), st.booleans()),
    "city": st.one_of(st.none(), st.sampled_from(["paris", "lyon", "berlin"])),
    "tier": st.one_of(st.none(), st.sampled_from(["gold", "silver", "bronze"])),
    "band": st.one_of(st.none(), st.sampled_from([1, 2, 3, 9])),
    "hour": st.one_of(st.none(), st.integers(-3, 30)),
}


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.fixed_dictionaries({}, optional=_FRAME_VALUES), min_size=1, max_size=30),
       category=st.booleans())
def test_a_frame_counts_what_its_rows_would(rows, category):
    """vectorize_many of a DataFrame counts exactly what vectorize of each of its rows counts."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(rows)
    if category and "city" in frame:
        frame["city"] = frame["city"].astype("category")
    for col, dtype in (("age", "Int64"), ("hour", "Int64"), ("member", "boolean")):
        if col in frame:
            frame[col] = frame[col].astype(dtype)
    by_frame, by_rows = schema(), schema()
    try:
        got = by_frame.vectorize_many(frame, frame)
    except SchemaError:
        return  # NaN income with allow_missing is fine; nothing here should be refused, but if so, alike
    want = by_rows.vectorize_many([dict(r) for r in rows], [dict(r) for r in rows])
    np.testing.assert_array_equal(got, want)
    assert by_frame.counters() == by_rows.counters()
