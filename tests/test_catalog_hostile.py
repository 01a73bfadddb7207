"""The catalogue against hostile arms (issue 8): text UTF-8 cannot write, inverting arbitration, missing payloads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nba import (
    Arm,
    Catalog,
    ConfigError,
    Rule,
    SchemaError,
)
from tests.catalog_fixtures import BAND_SCHEMA as SCHEMA
from tests.catalog_fixtures import LONE

# --------------------------------------------------------------------------- text UTF-8 cannot write


_BAD_TEXT = {
    "arm id": lambda: Arm("a" + LONE),
    "channel name": lambda: Arm("a", channels={"web" + LONE: {}}),
    "payload key": lambda: Arm("a", channels={"web": {"title" + LONE: "x"}}),
    "nested payload value": lambda: Arm("a", channels={"*": {"items": [{"t": ["ok", LONE]}]}}),
    "feature name": lambda: Arm("a", features={"fee" + LONE: 1.0}),
    "feature value": lambda: Arm("a", features={"kind": "card" + LONE}),
    "namespace": lambda: Arm("a", namespace="Act" + LONE),
    "rule text constant": lambda: Arm("a", eligibility="country == 'F" + LONE + "'"),
    "rule value": lambda: Arm("a", eligibility=Rule("country", "in", ("FR", LONE))),
    "rule field": lambda: Arm("a", eligibility=Rule("c" + LONE, "==", 1)),
}


@pytest.mark.parametrize("make", list(_BAD_TEXT.values()), ids=list(_BAD_TEXT))
def test_lone_surrogates_anywhere_in_an_arm_are_a_config_error_at_build(make):
    with pytest.raises(ConfigError, match="not valid text"):
        Catalog([make()], SCHEMA)


def test_valid_non_ascii_text_in_arms_is_accepted():
    cat = Catalog([Arm("café", channels={"web": {"titre": "offre spéciale 東京"}}, features={"genre": "carte"},
                       eligibility="country == 'Zürich'")], SCHEMA)
    assert cat.payload("café", "web") == {"titre": "offre spéciale 東京"}


def test_a_category_that_is_not_valid_text_matches_no_rule_and_vectorize_refuses_it():
    # eligible neither logs nor hashes values: a bad category is an unknown one to it (rules name only
    # declared categories); vectorize, which the Decider runs first, refuses it before anything is logged.
    cat = Catalog([Arm("gold", eligibility="segment == 'gold'"), Arm("not_gold", eligibility="segment != 'gold'")],
                  SCHEMA)
    assert cat.eligible({"segment": "g" + LONE}).tolist() == [1]
    with pytest.raises(SchemaError, match="not valid text"):
        SCHEMA.vectorize({"segment": "g" + LONE})


# --------------------------------------------------------------------------- arbitration


def _valued(arbitration="product") -> Catalog:
    return Catalog([Arm("big", value=300.0), Arm("small", value=5.0)], SCHEMA, arbitration=arbitration)


def test_product_arbitration_inverts_the_ranking_of_negative_scores():
    # The failure "probability" and check_arbitration exist for: the same score, the value-300 offer last.
    pri = _valued("product").priorities(np.array([-0.1, -0.1]))
    assert pri[0] < pri[1]


def test_probability_arbitration_is_value_times_weight_times_the_clipped_score():
    cat = Catalog([Arm("big", value=300.0, weight=0.5), Arm("small", value=5.0), Arm("mid", value=50.0)], SCHEMA,
                  arbitration="probability")
    scores = np.array([-0.3, 0.9, 1.7])  # a VW estimate of a 0/1 reward can leave [0, 1]
    np.testing.assert_array_equal(cat.priorities(scores), [0.0, 4.5, 50.0])
    assert cat.priorities(np.array([0.2, 0.2, 0.2])).argmax() == 0  # same success probability: the value decides
    assert cat.priorities(np.array([-0.1, -0.1, -0.1])).tolist() == [0.0, 0.0, 0.0]  # never inverted
    assert math.isnan(cat.priorities(np.array([math.nan, 0.5, 0.5]))[0])  # a broken score stays refusable
    np.testing.assert_array_equal(cat.priorities(np.array([0.5, 0.4]), idx=np.array([2, 1])), [25.0, 2.0])
    assert cat.arbitration == "probability" and cat.arbitration_factors is None  # the step-by-step path


@pytest.mark.parametrize("min_score", [-math.inf, -1e-9, math.nan])
def test_check_arbitration_refuses_product_when_scores_can_be_negative_and_values_differ(min_score):
    with pytest.raises(ConfigError, match=r"inverts the ranking for model 'vw'.*'big'.*'small'.*"
                                          r"'probability'.*'score'.*callable"):
        _valued().check_arbitration(min_score, "vw")


@pytest.mark.parametrize(
    "catalog, min_score",
    [
        (_valued(), 0.0),  # non-negative scores: product is expected value
        (_valued("probability"), -math.inf),
        (_valued("score"), -math.inf),
        (_valued(lambda s, v, w, out: np.subtract(s, v, out=out)), -math.inf),  # the user's own formula
        (Catalog([Arm("a", value=2.0), Arm("b", weight=2.0)], SCHEMA), -math.inf),  # equal value x weight
    ],
    ids=["non-negative", "probability", "score", "callable", "equal-scale"],
)
def test_check_arbitration_accepts_combinations_that_keep_the_ranking(catalog, min_score):
    catalog.check_arbitration(min_score, "model")


# --------------------------------------------------------------------------- payloads


def test_check_payloads_names_the_arm_and_the_channels_it_lacks():
    arms = [Arm("web_only", channels={"web": 1}), Arm("mail", channels={"email": 2, "sms": 3}),
            Arm("star", channels={"web": 4, "*": 5}), Arm("plain")]
    cat = Catalog(arms, SCHEMA)
    with pytest.raises(ConfigError, match=r"arm 'web_only' has no payload for channels 'email', 'sms'.*'\*'"):
        cat.check_payloads("web_only")
    with pytest.raises(ConfigError, match=r"arm 'mail' has no payload for channel 'web',"):
        cat.check_payloads("mail")
    cat.check_payloads("star")  # "*" serves every channel
    cat.check_payloads("plain")  # no channels: eligible everywhere, no payload
    with pytest.raises(ConfigError, match="no arm 'nope'"):
        cat.check_payloads("nope")
