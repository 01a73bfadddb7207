"""Hostile rules (issue 8): typed against the schema and bounded in depth, they fail when the catalogue is built."""

from __future__ import annotations

import pytest

from nba import (
    AllOf,
    AnyOf,
    Arm,
    Catalog,
    ConfigError,
    Not,
    Rule,
    parse_rule,
)
from nba.rules import MAX_RULE_DEPTH
from tests.catalog_fixtures import BAND_SCHEMA as SCHEMA
from tests.catalog_fixtures import build

# --------------------------------------------------------------------------- rules typed against the schema


@pytest.mark.parametrize(
    "rule, match",
    [
        ("segment > 3", r"'segment' is categorical; ordering comparisons apply to numeric features only"),
        ("segment <= 'gold'", "'segment' is categorical; ordering"),
        (Rule("band", ">=", 2), "'band' is categorical; ordering"),
        ("member > 0", "'member' is boolean; ordering comparisons apply to numeric features only"),
        ("segment == 'platinum'", r"'platinum' is not a declared category of 'segment' \(declared: \['gold'"),
        ("segment != 'glod'", "'glod' is not a declared category"),
        ("segment in ['gold', 'platinum']", "'platinum' is not a declared category"),
        ("segment not in ['gold', 3]", "3 is not a declared category"),
        ("segment == 1", "1 is not a declared category"),
        ("band == '1'", "'1' is not a declared category of 'band'"),
        (Rule("band", "==", 1.0), "1.0 is not a declared category of 'band'"),
        (Rule("band", "in", (True,)), "True is not a declared category of 'band'"),
        ("member == 1", "'member' is boolean; compare it with true or false, not 1"),
        ("member in [0, 1]", "'member' is boolean; compare it with true or false"),
        ("member == 'yes'", "'member' is boolean; compare it with true or false, not 'yes'"),
        ("age == true", "'age' is numeric; compare it with numbers, not True"),
        (Rule("age", "in", (18, False)), "'age' is numeric; compare it with numbers, not False"),
    ],
)
def test_a_rule_the_features_kind_makes_meaningless_is_a_config_error_naming_arm_rule_and_feature(rule, match):
    with pytest.raises(ConfigError, match=match) as e:
        build(rule)
    assert str(e.value).startswith("arm 'ruled': rule ")


def test_ordering_on_a_categorical_no_longer_fails_every_request():
    # Before: the catalogue was built, then every well-formed request raised SchemaError.
    with pytest.raises(ConfigError):
        build("segment > 3")
    cat = build("age > 3 and segment == 'gold' and band in [1, 2] and member == true")
    assert cat.eligible({"age": 10, "segment": "gold", "band": 2, "member": True}).tolist() == [0, 1]
    assert cat.eligible({"age": 10, "segment": "platinum", "band": 2, "member": True}).tolist() == [1]


def test_well_typed_rules_are_accepted_as_before():
    conds = [
        "age >= 18", "age < 65.5", "age in [18, 19.5]", "hour != 3",
        "segment == 'gold'", "segment != 'silver'", "segment in ['gold', 'bronze']", "segment not in ['gold']",
        "band == 2", "band in [1, 3]", "member == true", "member != false", "member in [true]",
        "country == 'FR'", "country > 'A'", "country in [1, 'FR', true]",  # extra attributes are untyped
        "segment exists", "band exists", "member exists",
    ]
    assert len(Catalog([Arm(f"a{i}", eligibility=c) for i, c in enumerate(conds)], SCHEMA)) == len(conds)


# --------------------------------------------------------------------------- depth


_ADULT = Rule("age", ">=", 18)


def _nested(make, depth: int, leaf=_ADULT):
    c = leaf
    for _ in range(depth):
        c = make(c)
    return c


def _doubling(levels: int):
    c = Rule("age", ">=", 18)
    for _ in range(levels):
        c = AllOf((c, c))  # 2**levels leaves, each shared: a DAG that would compile in exponential time
    return c


def _self_containing() -> list:
    cond: list = [Rule("age", ">=", 18)]
    cond.append(cond)
    return cond


_TOO_DEEP = {
    "500 nested parentheses": "(" * 500 + "age > 1" + ")" * 500,
    "1000 chained not": "not " * 1000 + "age > 1",
    "65 chained not": "not " * (MAX_RULE_DEPTH + 1) + "age > 1",
    "500 nested and/or parentheses": "age > 1 and (" * 250 + "age > 2 or (" * 250 + "age > 3" + ")" * 500,
    "1000 nested Not": _nested(Not, 1000),
    "500 nested AllOf": _nested(lambda c: AllOf((c,)), 500),
    "500 alternating AnyOf/Not": _nested(lambda c: AnyOf((Not(c), Rule("age", "<", 3))), 250),
    "500 nested lists": _nested(lambda c: [c], 500),
    "65 nested Not": _nested(Not, MAX_RULE_DEPTH + 1),
    "deep Not around a deep text": _nested(Not, 40, "not " * 40 + "age > 1"),
    "a list that contains itself": _self_containing(),
    "a DAG doubling 60 times": _doubling(60),
}


@pytest.mark.parametrize("cond", list(_TOO_DEEP.values()), ids=list(_TOO_DEEP))
def test_deeply_nested_rules_are_a_config_error_never_a_recursion_error(cond):
    with pytest.raises(ConfigError, match=rf"arm 'ruled'.*({MAX_RULE_DEPTH} levels|contains itself|more than)|"
                                          rf"deeper than {MAX_RULE_DEPTH} levels"):
        build(cond)


@pytest.mark.parametrize("text", ["(" * 500 + "age > 1" + ")" * 500, "not " * 1000 + "age > 1"])
def test_parse_rule_refuses_nesting_beyond_the_depth_limit(text):
    with pytest.raises(ConfigError, match=f"deeper than {MAX_RULE_DEPTH} levels of 'not' and parentheses"):
        parse_rule(text)


def test_rules_at_the_depth_limit_compile_and_evaluate():
    cat = Catalog(
        [
            Arm("even", eligibility=_nested(Not, MAX_RULE_DEPTH)),  # 64 nots: age >= 18
            Arm("odd", eligibility="not " * (MAX_RULE_DEPTH - 1) + "age >= 18"),  # 63 nots: age < 18
            Arm("wide", eligibility=_doubling(12)),  # 4096 shared leaves, 8191 nodes: within the budget
        ],
        SCHEMA,
    )
    assert [cat.ids[i] for i in cat.eligible({"age": 30})] == ["even", "wide"]
    assert [cat.ids[i] for i in cat.eligible({"age": 10})] == ["odd"]
