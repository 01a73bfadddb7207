"""nba.growthbook: a loaded GrowthBook SDK payload assigns like the growthbook package evaluating it.

Payloads are generated with the rule shapes a GrowthBook server publishes (force
rules with rollouts, experiment rules with weights, coverage, seeds, hash
attributes and versions, namespaces, ranges, filters, conditions, passthrough
variations) and with GrowthBook's lenient edge cases (no ``hashVersion``, weights
that do not sum to 1, coverage outside [0, 1], missing hash attributes).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.workloads import unit_ids
from nba.errors import ConfigError
from nba.experiments import Allocator, Experiment, from_growthbook
from nba.growthbook import FeatureResult, load_payload

gb = pytest.importorskip("growthbook")


def random_rule(rng: np.random.Generator, i: int) -> dict:
    n = int(rng.integers(2, 5))
    rule: dict = {"key": f"exp-{i}", "variations": [f"v{i}-{k}" for k in range(n)]}
    w = rng.dirichlet(np.ones(n)).tolist()
    kind = rng.integers(0, 4)
    if kind == 1:
        w = [x * 1.2 for x in w]  # outside GrowthBook's tolerance: equal weights
    if kind != 3:
        rule["weights"] = w
    choice = rng.integers(0, 6)
    if choice == 0:
        rule["coverage"] = float(rng.uniform(0.1, 1.0))
    elif choice == 1:
        rule["coverage"] = float(rng.choice([1.5, -0.2, 0.0]))
    hv = rng.integers(0, 3)
    if hv:
        rule["hashVersion"] = int(hv)  # else GrowthBook's default, v1
    if rng.random() < 0.5:
        rule["seed"] = str(rng.choice(["", "seed-a", "sël", "用户"]))
    if rng.random() < 0.4:
        rule["hashAttribute"] = str(rng.choice(["id", "company", "deviceId"]))
    if rng.random() < 0.3:
        lo = float(np.round(rng.uniform(0, 0.5), 3))
        rule["namespace"] = [str(rng.choice(["ns1", "ns2"])), lo, float(np.round(lo + rng.uniform(0.1, 0.6), 3))]
    if rng.random() < 0.2:
        cuts = np.sort(rng.uniform(0, 1, 2 * n))
        rule["ranges"] = [[float(cuts[2 * k]), float(cuts[2 * k + 1])] for k in range(n)]
    if rng.random() < 0.2:
        rule["filters"] = [{"seed": "f-seed", "ranges": [[0.0, 0.6]], "hashVersion": 2, "attribute": "id"}]
    if rng.random() < 0.4:
        rule["condition"] = {"country": {"$in": ["NL", "BE"]}} if rng.random() < 0.5 else {"age": {"$gte": 21}}
    if rng.random() < 0.15:
        rule["meta"] = [{"key": str(k), "passthrough": k == 1} for k in range(n)]
    return rule


def random_payload(seed: int, features: int = 8) -> dict:
    rng = np.random.default_rng(seed)
    feats: dict = {}
    i = 0
    for f in range(features):
        rules = []
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.25:
                force = {"force": f"forced-{f}"}
                if rng.random() < 0.6:
                    force["coverage"] = float(rng.uniform(0, 1))
                    force["hashAttribute"] = "id"
                    if rng.random() < 0.5:
                        force["hashVersion"] = 2
                if rng.random() < 0.5:
                    force["condition"] = {"beta": True}
                rules.append(force)
            else:
                rules.append(random_rule(rng, i))
                i += 1
        feats[f"feature-{f}"] = {"defaultValue": f"default-{f}", "rules": rules}
    return {"features": feats}


def random_attributes(rng: np.random.Generator, units: list[str]) -> list[dict]:
    out = []
    for u in units:
        a: dict = {"id": u, "country": str(rng.choice(["NL", "BE", "US"])), "age": int(rng.integers(15, 40))}
        r = rng.random()
        if r < 0.6:
            a["company"] = f"co-{rng.integers(0, 50)}"
        elif r < 0.7:
            a["company"] = int(rng.integers(0, 3))  # 0 counts as missing; 1, 2 hash as "1", "2"
        if rng.random() < 0.5:
            a["deviceId"] = u[::-1]
        if rng.random() < 0.3:
            a["beta"] = True
        if rng.random() < 0.03:
            a["id"] = ""  # no hash value: in no experiment
        out.append(a)
    return out


def gb_result(client, key: str) -> FeatureResult:
    r = client.eval_feature(key)
    if r.source == "experiment":
        return FeatureResult(r.value, "experiment", r.experiment.key, r.experimentResult.variationId)
    return FeatureResult(r.value, r.source)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_loaded_payload_evaluates_like_growthbook_for_random_users(seed):
    payload = random_payload(seed)
    loaded = load_payload(json.dumps(payload))
    rng = np.random.default_rng(seed)
    units = unit_ids(1_500, seed=seed)
    sources = {"experiment": 0, "force": 0, "defaultValue": 0}
    for attrs in random_attributes(rng, units):
        client = gb.GrowthBook(attributes=attrs, features=payload["features"])
        got = loaded.evaluate(attrs)
        for key in payload["features"]:
            expected = gb_result(client, key)
            assert got[key] == expected, (key, attrs, payload["features"][key])
            sources[expected.source] += 1
    assert min(sources.values()) > 100  # every path exercised


def test_rule_without_hash_version_hashes_with_v1_like_growthbook():
    payload = {"features": {"f": {"defaultValue": 0, "rules": [{"key": "e", "variations": [0, 1, 2]}]}}}
    (exp,) = from_growthbook(payload)
    assert exp.hash_version == 1 and exp.variant_names == ("0", "1", "2")
    alloc = Allocator([exp])
    for u in unit_ids(2_000, seed=4):
        r = gb.GrowthBook(attributes={"id": u}, features=payload["features"]).eval_feature("f")
        assert int(alloc.assign(u).variants["e"]) == r.experimentResult.variationId


def test_lenient_edges_match_growthbook_and_nbas_own_constructor_stays_strict():
    rules = [
        {"key": "cov", "variations": ["a", "b"], "coverage": 1.7, "hashVersion": 2},
        {"key": "w", "variations": ["a", "b"], "weights": [0.9, 0.9], "hashVersion": 2},
        {"key": "hv", "variations": ["a", "b"], "hashVersion": 3},
    ]
    loaded = load_payload({"features": {f"f{i}": {"defaultValue": "d", "rules": [r]} for i, r in enumerate(rules)}})
    cov, w, hv = loaded.experiments
    assert cov.coverage == 1.0 and w.weights == (0.5, 0.5) and not hv.active
    assert loaded.evaluate({})["f0"] == FeatureResult("d", "defaultValue")  # no id: not in the experiment
    with pytest.raises(ConfigError, match="coverage must be a number in"):
        Experiment("cov", variants=["a", "b"], coverage=1.7)
    with pytest.raises(ConfigError, match="variant weights sum to 1.8"):
        Experiment("w", variants={"a": 0.9, "b": 0.9})


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ("{not json", "not valid JSON"),
        ({"encryptedFeatures": "abc"}, "encrypted"),
        ({"features": {"f": {"rules": [{"variations": [1, 2], "parentConditions": [{"id": "g"}]}]}}},
         "parentConditions is not supported"),
        ({"features": {"f": {"rules": "x"}}}, "rules must be a list"),
        ({"features": {"f": {"rules": [{"variations": [1, 2], "coverage": "half"}]}}}, "coverage must be a number"),
    ],
)
def test_payloads_nba_cannot_run_raise_config_error(payload, match):
    with pytest.raises(ConfigError, match=match):
        load_payload(payload)


def test_a_malformed_condition_in_a_payload_is_evaluated_as_growthbook_does():
    cond = {"$or": [{"country": "NL"}, {"email": {"$regex": "("}}]}  # the bad regex never matches
    payload = {"features": {"f": {"defaultValue": "d", "rules": [
        {"key": "m", "variations": ["a", "b"], "hashVersion": 2, "condition": cond},
    ]}}}
    loaded = load_payload(payload)
    assert loaded.experiments[0].condition is None and loaded.rules[0].lenient_condition is not None
    for i, country in enumerate(["NL", "BE"] * 50):
        attrs = {"id": f"u{i}", "country": country, "email": "("}
        expected = gb_result(gb.GrowthBook(attributes=attrs, features=payload["features"]), "f")
        assert loaded.evaluate(attrs)["f"] == expected
        assert (expected.source == "experiment") == (country == "NL")
