"""The catalogue: channels, dates, payloads, arbitration, validation, layout, identity (rules: test_rules.py)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import msgspec
import numpy as np
import pytest

import nba
from nba import (
    AllOf,
    Arm,
    Catalog,
    ConfigError,
    Not,
    Rule,
    SchemaError,
)
from tests.catalog_fixtures import SCHEMA, eligible_ids, one_rule_catalog

# --------------------------------------------------------------------------- channels and dates


def test_channels_restrict_arms_and_star_means_any_channel():
    cat = Catalog(
        [
            Arm("everywhere"),
            Arm("web_only", channels={"web": {"banner": "w.png"}}),
            Arm("web_email", channels={"web": "hi", "email": "<p>hi</p>"}),
            Arm("star", channels={"*": "generic", "sms": "short"}),
        ],
        SCHEMA,
    )
    assert eligible_ids(cat, {}, channel="web") == ["everywhere", "web_only", "web_email", "star"]
    assert eligible_ids(cat, {}, channel="email") == ["everywhere", "web_email", "star"]
    assert eligible_ids(cat, {}, channel="push") == ["everywhere", "star"]
    assert eligible_ids(cat, {}, channel=None) == ["everywhere", "web_only", "web_email", "star"]
    assert cat.payload("web_only", "web") == {"banner": "w.png"}
    assert cat.payload("star", "sms") == "short"
    assert cat.payload("star", "push") == "generic"
    assert cat.payload(0, "web") is None
    with pytest.raises(ConfigError, match="no payload for channel 'email'"):
        cat.payload("web_only", "email")


def test_time_window_is_start_inclusive_end_exclusive():
    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    cat = Catalog(
        [
            Arm("spring", start=t0, end=t0 + timedelta(days=30)),
            Arm("later", start=t0 + timedelta(days=30)),
            Arm("until", end=t0),
            Arm("naive_utc", start=datetime(2026, 3, 1), end=datetime(2026, 3, 2)),
        ],
        SCHEMA,
    )
    assert eligible_ids(cat, {}, now=t0 - timedelta(seconds=1)) == ["until"]
    assert eligible_ids(cat, {}, now=t0) == ["spring", "naive_utc"]
    assert eligible_ids(cat, {}, now=(t0 + timedelta(days=30)).timestamp()) == ["later"]
    paris = timezone(timedelta(hours=1))
    assert eligible_ids(cat, {}, now=datetime(2026, 3, 1, 1, 0, tzinfo=paris)) == ["spring", "naive_utc"]


def test_now_of_the_wrong_type_is_a_schema_error():
    cat = Catalog([Arm("a", end=datetime(2030, 1, 1))], SCHEMA)
    with pytest.raises(SchemaError, match="now must be"):
        cat.eligible({}, now="2026-01-01")


def test_eligible_defaults_now_to_the_current_time():
    now = datetime.now(timezone.utc)
    cat = Catalog([Arm("past", end=now - timedelta(days=1)), Arm("current", start=now - timedelta(days=1))], SCHEMA)
    assert eligible_ids(cat, {}) == ["current"]


def test_eligible_writes_into_a_reusable_buffer():
    cat = one_rule_catalog(Rule("age", ">=", 18))
    out = np.full(len(cat), -1, dtype=np.intp)
    res = cat.eligible({"age": 20}, out=out)
    assert res.base is out and res.tolist() == [0, 1]
    res = cat.eligible({"age": 10}, out=out)
    assert res.tolist() == [1]
    with pytest.raises(SchemaError, match="out must be"):
        cat.eligible({}, out=np.empty(1, dtype=np.intp))
    with pytest.raises(SchemaError, match="out must be"):
        cat.eligible({}, out=np.empty(2, dtype=np.int32))
    ro = np.empty(2, dtype=np.intp)
    ro.setflags(write=False)
    with pytest.raises(SchemaError, match="read-only"):
        cat.eligible({}, out=ro)


# --------------------------------------------------------------------------- arbitration


def test_higher_value_times_weight_wins_when_scores_tie():
    arms = [Arm("low", value=10.0, weight=1.0), Arm("high", value=5.0, weight=3.0), Arm("mid", value=12.0)]
    cat = Catalog(arms, SCHEMA)
    prio = cat.priorities(np.full(3, 0.2))
    assert cat.ids[int(np.argmax(prio))] == "high"
    np.testing.assert_allclose(prio, [0.2 * 10.0, 0.2 * 15.0, 0.2 * 12.0])


def test_priorities_of_a_subset_use_that_subsets_values():
    cat = Catalog([Arm("a", value=1.0), Arm("b", value=2.0), Arm("c", value=4.0)], SCHEMA)
    idx = np.array([2, 0])
    out = np.empty(3)
    res = cat.priorities(np.array([0.5, 0.5]), idx, out=out)
    assert res.base is out and res.tolist() == [2.0, 0.5]


def test_score_arbitration_ignores_value_and_weight():
    cat = Catalog([Arm("a", value=100.0), Arm("b", weight=0.0)], SCHEMA, arbitration="score")
    np.testing.assert_array_equal(cat.priorities(np.array([0.1, 0.7])), [0.1, 0.7])


def test_custom_arbitration_callable_is_used():
    def add_value(scores, values, weights, out):
        np.add(scores, values, out=out)
        return out

    cat = Catalog([Arm("a", value=1.0), Arm("b", value=0.0)], SCHEMA, arbitration=add_value)
    np.testing.assert_array_equal(cat.priorities(np.array([-0.5, 0.9])), [0.5, 0.9])
    assert cat.arbitration == "add_value"

    def returns_new(scores, values, weights, out):
        return scores - weights

    cat = Catalog([Arm("a", weight=2.0), Arm("b")], SCHEMA, arbitration=returns_new)
    np.testing.assert_array_equal(cat.priorities(np.array([1.0, 1.0])), [-1.0, 0.0])


@pytest.mark.parametrize(
    "arb, match",
    [
        ("max", "not a built-in"),
        (3, "must be a name or a callable"),
        (lambda s: s, "failed on a probe call"),
        (lambda s, v, w, o: np.zeros(5), "one priority per arm"),
    ],
)
def test_bad_arbitration_is_a_config_error(arb, match):
    with pytest.raises(ConfigError, match=match):
        Catalog([Arm("a")], SCHEMA, arbitration=arb)


def test_priorities_reject_a_score_vector_of_the_wrong_length():
    cat = Catalog([Arm("a"), Arm("b")], SCHEMA)
    with pytest.raises(SchemaError, match="expected 2 scores"):
        cat.priorities(np.ones(3))


# --------------------------------------------------------------------------- catalogue validation


@pytest.mark.parametrize(
    "arms, match",
    [
        ([], "at least one arm"),
        ([Arm("a"), Arm("a")], "used twice"),
        ([Arm("")], "non-empty strings"),
        (["a"], "expected nba.Arm"),
        ([Arm("a", features={"fee": 1.0}), Arm("b", features={"apr": 2.0})], r"arm 'b' has features \['apr'\]"),
        ([Arm("a", features={"fee": 1.0}), Arm("b", features={"fee": "x"})], "mixes strings and numbers"),
        ([Arm("a", features={"fee": math.nan})], "finite numbers"),
        ([Arm("a", features={"fee": [1, 2]})], "finite numbers"),
        ([Arm("a", features={"_fee": 1.0})], "reserved"),
        ([Arm("a", features={"age": 1.0})], "collide with schema columns"),
        ([Arm("a", value=-1.0)], "value must be a finite number >= 0"),
        ([Arm("a", weight=math.inf)], "weight must be a finite number >= 0"),
        ([Arm("a", channels={"web": object()})], "cannot be encoded as JSON"),
        ([Arm("a", channels={"": 1})], "channel names"),
        ([Arm("a", start=datetime(2026, 2, 1), end=datetime(2026, 1, 1))], "is not before end"),
        ([Arm("a", start="2026-01-01")], "must be a datetime"),
        ([Arm("a", namespace="_x")], "namespace"),
    ],
)
def test_invalid_catalogues_are_config_errors(arms, match):
    with pytest.raises(ConfigError, match=match):
        Catalog(arms, SCHEMA)


def test_catalog_needs_a_schema():
    with pytest.raises(ConfigError, match="FeatureSchema"):
        Catalog([Arm("a")], {"age": 1})


# --------------------------------------------------------------------------- arm features and rows


ARMS = [
    Arm("gold_card", features={"fee": 95.0, "kind": "card", "premium": True}, value=40.0),
    Arm("loan", features={"fee": 0.0, "kind": "loan", "premium": False}, value=120.0),
    Arm("basic_card", features={"fee": 0.0, "kind": "card", "premium": False}, value=5.0, namespace="Offer"),
]


def test_arm_matrix_has_numeric_and_one_hot_columns():
    cat = Catalog(ARMS, SCHEMA)
    assert cat.arm_feature_names == ("fee", "kind=card", "kind=loan", "premium")
    np.testing.assert_array_equal(cat.arm_matrix, [[95.0, 1, 0, 1], [0.0, 0, 1, 0], [0.0, 1, 0, 0]])
    assert cat.feature_names == SCHEMA.feature_names + cat.arm_feature_names
    assert not cat.arm_matrix.flags.writeable


def test_action_features_are_namespaced_per_arm():
    cat = Catalog(ARMS, SCHEMA)
    assert cat.action_features[0] == {"Action": {"fee": 95.0, "kind": "card", "premium": True}}
    assert cat.action_features[2] == {"Offer": {"fee": 0.0, "kind": "card", "premium": False}}
    assert cat.features_by_arm["loan"] == {"Action": {"fee": 0.0, "kind": "loan", "premium": False}}


def test_layout_rejects_a_vector_of_the_wrong_shape():
    cat = Catalog(ARMS, SCHEMA)
    with pytest.raises(SchemaError, match="x must be the schema's vector"):
        cat.layout().fill(np.zeros(3))


def test_layout_rows_are_shared_vector_plus_arm_features():
    cat = Catalog(ARMS, SCHEMA)
    x = SCHEMA.vectorize({"age": 44, "segment": "gold"}, {"hour": 7})
    rows = cat.layout().fill(x, np.array([2, 0]))
    np.testing.assert_array_equal(rows, np.hstack([np.vstack([x, x]), cat.arm_matrix[[2, 0]]]))


def test_layout_follows_a_models_own_column_order():
    cat = Catalog(ARMS, SCHEMA)
    names = list(reversed(cat.feature_names))
    x = SCHEMA.vectorize({"age": 44, "segment": "silver"}, {"hour": 7})
    out = np.empty((5, len(names)))
    rows = cat.layout(names).fill(x, None, out=out)
    default = cat.layout().fill(x)
    np.testing.assert_array_equal(rows, default[:, ::-1])
    assert rows.base is out


def test_layout_checks_the_models_feature_names():
    cat = Catalog(ARMS, SCHEMA)
    with pytest.raises(SchemaError, match=r"missing .*'apr'.*extra .*'fee'"):
        cat.layout([n for n in cat.feature_names if n != "fee"] + ["apr"])
    cat.check_model(cat.feature_names)


def test_layout_matches_lightgbm_on_rows_built_for_its_feature_names():
    lgb = pytest.importorskip("lightgbm")
    cat = Catalog(ARMS, SCHEMA)
    rng = np.random.default_rng(1)
    X = rng.random((300, len(cat.feature_names)))
    y = X[:, 0] + 2 * X[:, -1]
    booster = lgb.train(
        {"verbose": -1, "num_leaves": 4},
        lgb.Dataset(X, y, feature_name=list(cat.feature_names)),
        num_boost_round=3,
    )
    cat.check_model(booster.feature_name())
    x = SCHEMA.vectorize({"age": 50}, {"hour": 3})
    rows = cat.layout(booster.feature_name()).fill(x)
    assert rows.shape == (3, booster.num_feature())


# --------------------------------------------------------------------------- identity and serialization


def test_catalog_id_is_stable_and_content_addressed():
    f = ARMS[0].features
    a = Catalog(ARMS + [Arm("r", f, eligibility=Rule("segment", "in", {"gold", "silver", "bronze"}))], SCHEMA)
    b = Catalog(ARMS + [Arm("r", f, eligibility=Rule("segment", "in", {"bronze", "silver", "gold"}))], SCHEMA)
    assert a.catalog_id == b.catalog_id
    changed = Catalog([ARMS[0], ARMS[1], Arm("basic_card", features=ARMS[2].features, value=6.0, namespace="Offer")], SCHEMA)
    assert changed.catalog_id != Catalog(ARMS, SCHEMA).catalog_id


def test_catalog_id_does_not_depend_on_the_process_hash_seed():
    code = (
        "import nba\n"
        "s = nba.FeatureSchema([nba.Categorical('segment', ['gold', 'silver', 'bronze'])])\n"
        "arms = [nba.Arm('a', eligibility=nba.Rule('segment', 'in', {'gold', 'silver', 'bronze'}))]\n"
        "print(nba.Catalog(arms, s).catalog_id)\n"
    )
    ids = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        ids.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert len(ids) == 1


def test_arms_round_trip_through_json():
    arm = Arm(
        "gold_card",
        features={"fee": 95.0},
        value=40.0,
        channels={"web": {"title": "Gold", "url": "https://example.com/g"}, "email": "tmpl-7"},
        eligibility=[AllOf((Rule("age", ">=", 18), Not(Rule("segment", "in", ("bronze",))))), "member == true"],
        start=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    back = msgspec.json.decode(msgspec.json.encode(arm), type=Arm)
    assert back == Arm(**{**msgspec.structs.asdict(arm), "eligibility": [
        AllOf((Rule("age", ">=", 18), Not(Rule("segment", "in", ["bronze"])))), "member == true"]})
    assert Catalog([back], SCHEMA).eligible({"age": 20, "segment": "gold", "member": True}).tolist() == [0]


def test_catalog_pickles_with_the_same_id_and_rules():
    import pickle

    cat = Catalog(ARMS + [Arm("r", ARMS[0].features, eligibility="age >= 18")], SCHEMA, arbitration="score")
    back = pickle.loads(pickle.dumps(cat))
    assert back.catalog_id == cat.catalog_id and back.arbitration == "score"
    for age in (10, 30):
        assert back.eligible({"age": age}).tolist() == cat.eligible({"age": age}).tolist()


def test_catalogue_api_is_exported_from_nba():
    for name in ("Arm", "Catalog", "Rule", "AllOf", "AnyOf", "Not", "parse_rule"):
        assert name in nba.__all__


def test_static_eligible_is_what_eligible_returns_when_nothing_can_change_it():
    arms = [Arm("web", channels={"web": {}}), Arm("any"), Arm("app", channels={"app": {}, "*": {}})]
    cat = Catalog(arms, SCHEMA)
    for channel in (None, "web", "app", "sms"):
        static = cat.static_eligible(channel)
        assert static is not None and not static.flags.writeable
        assert static.tolist() == cat.eligible({"age": 30}, channel=channel).tolist()
    ruled = Catalog([*arms, Arm("adult", eligibility="age >= 18", channels={"sms": {}})], SCHEMA)
    assert ruled.static_eligible(None) is None  # a rule: per decision
    assert ruled.static_eligible("sms") is None
    assert ruled.static_eligible("web").tolist() == [0, 1, 2]  # the arms on "web" carry no rule
    soon = datetime.now(timezone.utc) + timedelta(days=1)
    assert Catalog([Arm("later", start=soon), Arm("now")], SCHEMA).static_eligible(None) is None
    empty = Catalog([Arm("all", eligibility=AllOf(())), Arm("list", eligibility=[])], SCHEMA)
    assert empty.static_eligible(None).tolist() == [0, 1]  # conditions that always hold are none
