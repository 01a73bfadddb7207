"""The eligibility rule language: operators, expressions, validation, compiled = naive evaluation."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nba import (
    AllOf,
    AnyOf,
    Arm,
    Catalog,
    ConfigError,
    Not,
    Rule,
    SchemaError,
    parse_rule,
)
from tests.catalog_fixtures import SCHEMA, eligible_ids, one_rule_catalog
from tests.rule_oracle import RULE_OPS

# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize("op", list(RULE_OPS))
@pytest.mark.parametrize("age", [17, 18, 19.5, None, math.nan, "absent"])
def test_each_comparison_operator_on_a_numeric_field(op, age):
    const = (18, 19.5) if op in ("in", "not_in") else 18
    cat = one_rule_catalog(Rule("age", op, const))
    profile = {} if age == "absent" else {"age": age}
    missing = age == "absent" or age is None or (isinstance(age, float) and math.isnan(age))
    expected = (not missing) and RULE_OPS[op](age, frozenset(const) if op in ("in", "not_in") else const)
    assert ("ruled" in eligible_ids(cat, profile)) is expected


@pytest.mark.parametrize("op", ["==", "!=", "in", "not_in"])
@pytest.mark.parametrize("segment", ["gold", "bronze", "platinum", None])
def test_each_equality_operator_on_a_categorical_field(op, segment):
    const = ("gold", "silver") if op in ("in", "not_in") else "gold"
    cat = one_rule_catalog(Rule("segment", op, const))
    expected = segment is not None and RULE_OPS[op](segment, frozenset(const) if op in ("in", "not_in") else const)
    assert ("ruled" in eligible_ids(cat, {"segment": segment})) is expected


@pytest.mark.parametrize("want", [True, False])
@pytest.mark.parametrize("country", ["FR", None, "absent"])
def test_exists_true_and_false(want, country):
    cat = one_rule_catalog(Rule("country", "exists", want))
    profile = {} if country == "absent" else {"country": country}
    assert ("ruled" in eligible_ids(cat, profile)) is (want == (country == "FR"))


def test_context_fields_and_extra_attributes_are_readable_by_rules():
    cat = one_rule_catalog([Rule("hour", "<", 20), Rule("device", "==", "ios")])
    assert eligible_ids(cat, {}, {"hour": 10, "device": "ios"}) == ["ruled", "free"]
    assert eligible_ids(cat, {}, {"hour": 21, "device": "ios"}) == ["free"]
    assert eligible_ids(cat, {}, None) == ["free"]


def test_all_any_not_combinations():
    adult = Rule("age", ">=", 18)
    gold = Rule("segment", "==", "gold")
    cases = {
        "all": AllOf((adult, gold)),
        "any": AnyOf((adult, gold)),
        "not": Not(adult),
        "nested": AnyOf((AllOf((adult, gold)), Not(Rule("member", "==", True)))),
        "list": [adult, gold],
        "empty_all": AllOf(()),
        "empty_any": AnyOf(()),
    }
    cat = Catalog([Arm(k, eligibility=v) for k, v in cases.items()], SCHEMA)
    for age in (10, 40):
        for seg in ("gold", "silver"):
            for member in (True, False):
                got = set(eligible_ids(cat, {"age": age, "segment": seg, "member": member}))
                a, g, m = age >= 18, seg == "gold", member
                want = {
                    "all": a and g,
                    "any": a or g,
                    "not": not a,
                    "nested": (a and g) or not m,
                    "list": a and g,
                    "empty_all": True,
                    "empty_any": False,
                }
                assert got == {k for k, v in want.items() if v}


# --------------------------------------------------------------------------- expression language


def test_expression_parses_into_the_same_conditions():
    text = "not (age >= 18 and segment in ['gold', \"silver\"]) or member == true or hour not in [1, 2.5] or country exists"
    assert parse_rule(text) == AnyOf(
        (
            Not(AllOf((Rule("age", ">=", 18), Rule("segment", "in", ("gold", "silver"))))),
            Rule("member", "==", True),
            Rule("hour", "not_in", (1, 2.5)),
            Rule("country", "exists", True),
        )
    )


def test_and_binds_tighter_than_or():
    assert parse_rule("age > 1 or age < 0 and member == false") == AnyOf(
        (Rule("age", ">", 1), AllOf((Rule("age", "<", 0), Rule("member", "==", False))))
    )


def test_expression_and_rules_select_the_same_arms():
    text = "age >= 18 and (segment == 'gold' or hour < 9)"
    cond = AllOf((Rule("age", ">=", 18), AnyOf((Rule("segment", "==", "gold"), Rule("hour", "<", 9)))))
    cat = Catalog([Arm("text", eligibility=text), Arm("rules", eligibility=cond)], SCHEMA)
    for age in (12, 30):
        for seg in ("gold", "bronze"):
            for hour in (8, 10):
                ids = eligible_ids(cat, {"age": age, "segment": seg}, {"hour": hour})
                assert ids in ([], ["text", "rules"])


@pytest.mark.parametrize(
    "text, match",
    [
        ("age >=", "expected a number"),
        ("age >= 18 and", "expected a field name"),
        ("(age >= 18", r"expected '\)'"),
        ("age between 1", "expected a comparison"),
        ("__import__('os').system('x')", "cannot read"),
        ("eval('1') == 1", "expected a comparison"),
        ("age >= 18; drop", "cannot read"),
        ("segment in ('gold')", r"expected '\['"),
        ("", "non-empty"),
    ],
)
def test_malformed_expressions_are_config_errors(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_rule(text)


# --------------------------------------------------------------------------- rule validation


@pytest.mark.parametrize(
    "cond, match",
    [
        (Rule("email", "==", "x"), r"references 'email', which the schema does not declare"),
        ("income > 3", r"references 'income'"),
        (Rule("age", "~", 3), "unknown operator"),
        (Rule("age", ">=", "18"), "compare it with a number"),
        (Rule("age", "in", "18"), "takes a list or set"),
        (Rule("age", "in", [1, None]), "cannot be listed"),
        (Rule("age", "in", ["1"]), "list numbers"),
        (Rule("age", "==", None), "use 'exists'"),
        (Rule("age", ">", True), "not a bool"),
        (Rule("age", "exists", "yes"), "exists takes True"),
        (42, "eligibility must be"),
    ],
)
def test_bad_rules_are_config_errors_at_construction(cond, match):
    with pytest.raises(ConfigError, match=match):
        Catalog([Arm("a", eligibility=cond)], SCHEMA)


def test_a_value_of_the_wrong_type_at_decision_time_names_the_field():
    cat = one_rule_catalog(Rule("age", ">=", 18))
    with pytest.raises(SchemaError, match=r"field 'age' \(profile\) is a str"):
        cat.eligible({"age": "eighteen"})


def test_a_value_a_rule_cannot_compare_names_the_field_and_the_rule():
    cat = one_rule_catalog([Rule("age", ">=", 18), Rule("country", "in", ("FR", "DE"))])
    with pytest.raises(SchemaError, match=r"field 'country' \(profile\) is a list, which the rule country in "):
        cat.eligible({"age": 30, "country": ["FR"]})  # unhashable: cannot be looked up in the set
    with pytest.raises(SchemaError, match=r"field 'hour' \(context\) is a str, which the rule hour < 20 "):
        one_rule_catalog(Rule("hour", "<", 20)).eligible({}, {"hour": "noon"})
    assert eligible_ids(cat, {"age": None, "country": None}) == ["free"]  # nulls are missing, not errors


def test_rules_read_structs_objects_and_ready_vectors():
    class Profile(msgspec.Struct):
        age: float
        segment: str
        country: str | msgspec.UnsetType = msgspec.UNSET

    cat = one_rule_catalog([Rule("age", ">=", 18), Rule("segment", "==", "gold"), Rule("country", "exists", False)])
    assert eligible_ids(cat, Profile(age=20, segment="gold")) == ["ruled", "free"]
    assert eligible_ids(cat, Profile(age=20, segment="gold", country="FR")) == ["free"]
    x = SCHEMA.vectorize({"age": 20, "segment": "gold"})
    pv = x[[SCHEMA.feature_names.index(n) for n in SCHEMA.profile_feature_names]]
    assert eligible_ids(cat, pv) == ["ruled", "free"]
    pv[1] = 0.0  # segment=gold off
    assert eligible_ids(cat, pv) == ["free"]


# --------------------------------------------------------------------------- property: compiled rules = naive evaluation

_ABSENT = object()
_field_values = {
    "age": st.one_of(st.just(_ABSENT), st.none(), st.just(math.nan), st.integers(0, 40), st.floats(0, 40)),
    "segment": st.one_of(st.just(_ABSENT), st.none(), st.sampled_from(["gold", "silver", "bronze", "other"])),
    "member": st.one_of(st.just(_ABSENT), st.none(), st.booleans()),
}
_rules = st.one_of(
    st.builds(Rule, st.just("age"), st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), st.integers(0, 40)),
    st.builds(Rule, st.just("age"), st.sampled_from(["in", "not_in"]), st.lists(st.integers(0, 40), max_size=3).map(tuple)),
    st.builds(Rule, st.just("segment"), st.sampled_from(["==", "!="]), st.sampled_from(["gold", "silver"])),
    st.builds(Rule, st.just("member"), st.just("=="), st.booleans()),
    st.builds(Rule, st.sampled_from(["age", "segment"]), st.just("exists"), st.booleans()),
)
_conditions = st.recursive(
    _rules,
    lambda inner: st.one_of(
        st.builds(AllOf, st.lists(inner, max_size=3).map(tuple)),
        st.builds(AnyOf, st.lists(inner, max_size=3).map(tuple)),
        st.builds(Not, inner),
    ),
    max_leaves=6,
)


def naive(cond, profile: dict) -> bool:
    if isinstance(cond, AllOf):
        return all(naive(c, profile) for c in cond.conditions)
    if isinstance(cond, AnyOf):
        return any(naive(c, profile) for c in cond.conditions)
    if isinstance(cond, Not):
        return not naive(cond.condition, profile)
    v = profile.get(cond.field)
    missing = v is None or v != v
    if cond.op == "exists":
        return (not missing) == cond.value
    if missing:
        return False
    return RULE_OPS[cond.op](v, cond.value)


@settings(max_examples=200, deadline=None)
@given(st.lists(_conditions, min_size=1, max_size=6), st.fixed_dictionaries(_field_values))
def test_compiled_eligibility_equals_naive_evaluation(conds, profile):
    profile = {k: v for k, v in profile.items() if v is not _ABSENT}
    cat = Catalog([Arm(f"a{i}", eligibility=c) for i, c in enumerate(conds)], SCHEMA)
    got = cat.eligible(profile).tolist()
    assert got == [i for i, c in enumerate(conds) if naive(c, profile)]
