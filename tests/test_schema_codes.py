"""Categorical(encoding="code") beside the rest of nba: rules, ready vectors, the log read-back and VW."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nba
from nba import Arm, Catalog, Categorical, ConfigError, FeatureSchema, Numeric, SchemaError
from nba.schema import read_vector

SCHEMA = FeatureSchema([Numeric("age"), Categorical("segment", ["gold", "silver", "bronze"], encoding="code")])


def test_rules_over_a_code_category_read_it_from_dicts_and_ready_vectors():
    cat = Catalog([Arm("a", eligibility="segment == 'silver'"), Arm("b", eligibility="segment in ['gold']"),
                   Arm("c")], SCHEMA)
    assert cat.eligible({"segment": "silver"}, now=0).tolist() == [0, 2]
    assert cat.eligible({"segment": "gold"}, now=0).tolist() == [1, 2]
    assert cat.eligible(np.array([30.0, 1.0]), now=0).tolist() == [0, 2]  # code 1 is silver
    assert cat.eligible(np.array([30.0, math.nan]), now=0).tolist() == [2]


@pytest.mark.parametrize("code", [3.0, -1.0, 0.5, math.inf])
def test_a_ready_vector_with_a_code_that_is_no_category_is_a_schema_error(code):
    with pytest.raises(SchemaError, match="segment"):
        SCHEMA.vectorize(np.array([30.0, code]))


def test_a_ready_vector_keeps_its_codes_and_nan():
    np.testing.assert_array_equal(SCHEMA.vectorize(np.array([30.0, 2.0])), [30.0, 2.0])
    np.testing.assert_array_equal(SCHEMA.vectorize(np.array([30.0, math.nan])), [30.0, math.nan])


def test_the_log_reads_codes_back_as_categories_and_refuses_a_code_out_of_range():
    x = SCHEMA.vectorize({"age": 3, "segment": "bronze"}).tolist()
    assert read_vector(SCHEMA.log_layout, x, {}) == {"User": {"age": 3.0, "segment": "bronze"}}
    assert SCHEMA.used_features({"age": 3, "segment": "bronze"}) == {"User": {"age": 3.0, "segment": "bronze"}}
    unseen = SCHEMA.vectorize({"age": 3, "segment": "platinum"})
    assert SCHEMA.used_features({"age": 3, "segment": "platinum"}, x=unseen) == {
        "User": {"age": 3.0, "segment": "platinum"}
    }
    with pytest.raises(IndexError, match="segment"):
        read_vector(SCHEMA.log_layout, [3.0, -1.0], {})


def test_a_vw_model_refuses_code_columns(tmp_path):
    vw = pytest.importorskip("vowpalwabbit")
    ws = vw.Workspace("--cb_adf --quiet")
    ex = ws.parse(["shared |User age:3", "0:1:0.5 |Action ida0", "|Action ida1"])
    ws.learn(ex)
    ws.finish_example(ex)
    path = tmp_path / "m.vw"
    ws.save(str(path))
    ws.finish()
    with pytest.raises(ConfigError, match="encoding='code'"):
        nba.Decider(Catalog([Arm("a0"), Arm("a1")], SCHEMA), nba.load_model(path))
