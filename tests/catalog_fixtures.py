"""Schemas and small builders shared by the catalogue and rule tests (a helper module, not a test module)."""

from __future__ import annotations

from typing import Any

from nba import Arm, Boolean, Catalog, Categorical, FeatureSchema, Numeric

LONE = "\ud800"  # a lone surrogate: a str Python holds but UTF-8 (the log) cannot write

SCHEMA = FeatureSchema(
    [
        Numeric("age", default=30.0),
        Categorical("segment", ["gold", "silver", "bronze"]),
        Boolean("member"),
        Numeric("hour", source="context"),
    ],
    extra_profile=["country"],
    extra_context=["device"],
)

#: SCHEMA with an int-valued categorical, for rules typed against both kinds of category.
BAND_SCHEMA = FeatureSchema(
    [
        Numeric("age", default=30.0),
        Categorical("segment", ["gold", "silver", "bronze"]),
        Categorical("band", [1, 2, 3]),
        Boolean("member"),
        Numeric("hour", source="context"),
    ],
    extra_profile=["country"],
)


def eligible_ids(catalog: Catalog, profile: Any, context: Any = None, **kw: Any) -> list[str]:
    return [catalog.ids[i] for i in catalog.eligible(profile, context, **kw)]


def one_rule_catalog(cond: Any) -> Catalog:
    return Catalog([Arm("ruled", eligibility=cond), Arm("free")], SCHEMA)


def build(eligibility: Any, **arm: Any) -> Catalog:
    """A catalogue of one ruled arm (with ``arm``'s fields) and one free arm over BAND_SCHEMA."""
    return Catalog([Arm("ruled", eligibility=eligibility, **arm), Arm("free")], BAND_SCHEMA)
