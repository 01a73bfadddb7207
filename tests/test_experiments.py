"""nba.experiments against the growthbook package, the reference every SDK must agree with.

GrowthBook's own functions (``gbhash``, ``getBucketRanges``, ``chooseVariation``,
``inNamespace``, ``GrowthBook.run``) compute the expected variants; nba must put
every unit exactly where they do, ASCII or not.
"""

from __future__ import annotations

import threading

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from benchmarks.workloads import growthbook_experiment, unit_ids
from nba._core import hashing as hashing_core
from nba.errors import ConfigError, SchemaError
from nba.experiments import (
    OVERRIDE_KEYS,
    Allocator,
    Assignment,
    Experiment,
    Holdout,
    _buckets_below,
    _variant_table,
    bucket_ranges,
)

gb = pytest.importorskip("growthbook")
from growthbook.core import chooseVariation, fnv1a32, gbhash, getBucketRanges, inNamespace  # noqa: E402

# --------------------------------------------------------------------------- reference


def gb_variant(exp: Experiment, unit: str, ranges: list[tuple[float, float]] | None = None) -> int:
    """Variation index GrowthBook's bucketing gives ``unit`` (-1: not enrolled), from its own helpers."""
    if unit == "" or not exp.active:
        return -1
    if exp.namespace is not None and not inNamespace(unit, tuple(exp.namespace)):
        return -1
    n = gbhash(exp.seed, unit, exp.hash_version)
    if ranges is None:
        ranges = getBucketRanges(len(exp.variants), exp.coverage, list(exp.weights))
    return chooseVariation(n, ranges)


def gb_held_out(h: Holdout, unit: str) -> bool:
    """GrowthBook's rollout rule (``_isIncludedInRollout``: hash v2, ``n < coverage``)."""
    return unit != "" and gbhash(h.seed, unit, 2) < h.fraction


def random_weights(rng: np.random.Generator, k: int) -> dict[str, float]:
    w = rng.dirichlet(np.ones(k)).tolist()
    return {f"v{i}": float(x) for i, x in enumerate(w)}


def configurations(rng: np.random.Generator) -> list[tuple[list[Experiment], Holdout | None]]:
    """Varied experiment sets: weights, coverages, salts (some non-ASCII), namespaces, holdouts."""
    configs = []
    for c in range(6):
        hv = 1 if c >= 3 else 2  # configurations 3..5 bucket with hash v1 (one mixes both)
        cut = float(np.round(rng.uniform(0.2, 0.8), 3))
        exps = [
            Experiment(f"exp-{c}-a", variants=random_weights(rng, 2 + c % 3), coverage=float(rng.uniform(0.05, 1.0)),
                       hash_version=hv),
            Experiment(
                f"exp-{c}-b",
                variants=["control", "treatment"],
                salt="sël-" + str(c) if c % 2 else "",
                namespace=(f"layer{c}", 0.0, cut),
                hash_version=hv,
            ),
            Experiment(
                f"exp-{c}-c",
                variants=random_weights(rng, 3),
                coverage=float(np.round(rng.uniform(0.1, 1.0), 2)),
                namespace=(f"layer{c}", cut, 1.0),
                salt="用户" if c == 3 else None,
                hash_version=2 if c == 5 else hv,
            ),
        ]
        holdout = Holdout(f"hold-{c}", fraction=float(rng.uniform(0.01, 0.2))) if c % 2 == 0 else None
        configs.append((exps, holdout))
    return configs


# --------------------------------------------------------------------------- parity with GrowthBook


def test_variants_match_growthbook_for_100k_random_units():
    rng = np.random.default_rng(101)
    units = unit_ids(100_000, seed=101)
    configs = configurations(rng)
    part = np.array_split(np.arange(len(units)), len(configs))
    checked = 0
    for (exps, holdout), idx in zip(configs, part):
        alloc = Allocator(exps, holdout=holdout)
        mine = [units[i] for i in idx]
        variants, held = alloc.assign_many(mine)
        ranges = [getBucketRanges(len(e.variants), e.coverage, list(e.weights)) for e in exps]
        for row, unit in enumerate(mine):
            if holdout is not None and gb_held_out(holdout, unit):
                assert held[row], unit
                assert (variants[row] == -1).all(), unit
                continue
            assert not held[row], unit
            expected = [gb_variant(e, unit, r) for e, r in zip(exps, ranges)]
            assert variants[row].tolist() == expected, (unit, exps)
            checked += 1
        assert (variants >= 0).any(axis=0).all()  # every experiment enrolled someone
    assert checked > 80_000


def test_single_assign_agrees_with_bulk_assign():
    rng = np.random.default_rng(7)
    units = unit_ids(5_000, seed=7)
    exps, holdout = configurations(rng)[0]
    alloc = Allocator(exps, holdout=holdout)
    variants, held = alloc.assign_many(units)
    for row, unit in enumerate(units):
        a = alloc.assign(unit)
        assert a.holdout == held[row]
        expected = {e.name: e.variant_names[v] for e, v in zip(exps, variants[row].tolist()) if v >= 0}
        assert a.variants == expected


def test_growthbook_run_puts_each_unit_in_the_same_variant():
    units = unit_ids(1_500, seed=3)
    exps = [
        Experiment("gb-a", variants={"c": 0.25, "t1": 0.25, "t2": 0.5}, coverage=0.7, salt="salty"),
        Experiment("gb-b", variants=["c", "t"], namespace=("checkout", 0.2, 0.9)),
    ]
    gb_exps = [growthbook_experiment(e) for e in exps]
    alloc = Allocator(exps)
    for unit in units:
        client = gb.GrowthBook(attributes={"id": unit})
        a = alloc.assign(unit)
        for e, ge in zip(exps, gb_exps):
            r = client.run(ge)
            if r.inExperiment:
                assert a.variants.get(e.name) == e.variant_names[r.variationId], unit
            else:
                assert e.name not in a.variants, unit


def test_integer_and_empty_ids_hash_as_growthbook_formats_them():
    exp = Experiment("ints", variants=["a", "b", "c"])
    alloc = Allocator([exp])
    ge = gb.Experiment(key="ints", variations=[0, 1, 2], hashVersion=2)
    for uid in [1, 7, 123456789, -42, 2**53 - 1, 0, ""]:
        r = gb.GrowthBook(attributes={"id": uid}).run(ge)
        a = alloc.assign(uid)
        assert a.variants.get("ints") == (exp.variant_names[r.variationId] if r.inExperiment else None), uid
    assert alloc.assign(123).variants == alloc.assign("123").variants


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_string_hash_matches_growthbook_fnv1a32_on_any_text(s):
    assert hashing_core.fnv1a_32_str(s) == fnv1a32(s)


@pytest.mark.parametrize("s", ["\ud800", "a\udfffb", "\U0010ffff", "ÿ", "\u0100", "𝔘😀"])
def test_string_hash_matches_growthbook_on_surrogates_and_plane_edges(s):
    assert hashing_core.fnv1a_32_str(s) == fnv1a32(s)
    assert hashing_core.fnv1a_32_str(s, hashing_core.fnv1a_32_str("seed")) == fnv1a32("seed" + s)


weights_st = st.lists(st.integers(0, 1000), min_size=2, max_size=6).filter(lambda w: sum(w) > 0)


@settings(max_examples=60, deadline=None)
@given(weights_st, st.floats(0.0, 1.0))
def test_bucket_table_is_growthbooks_choice_for_every_bucket(raw, coverage):
    weights = [w / sum(raw) for w in raw]
    assert bucket_ranges(weights, coverage) == getBucketRanges(len(weights), coverage, weights)
    table = _variant_table(weights, coverage, True)
    ranges = getBucketRanges(len(weights), coverage, weights)
    expected = [chooseVariation(k / 10000, ranges) + 1 for k in range(10000)]
    assert table.tolist() == expected


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_namespace_bucket_bounds_equal_growthbooks_float_comparison(a, b):
    start, end = min(a, b), max(a, b)
    lo, hi = _buckets_below(start, 1000), _buckets_below(end, 1000)
    for k in range(1000):
        assert (lo <= k < hi) == (start <= k / 1000 < end)


# --------------------------------------------------------------------------- determinism and statistics


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_same_unit_always_gets_the_same_assignment(unit):
    exps = [Experiment("d1", variants=["a", "b"]), Experiment("d2", variants={"x": 0.1, "y": 0.9}, coverage=0.5)]
    first = Allocator(exps).assign(unit)
    rebuilt = Allocator([msgspec.json.decode(msgspec.json.encode(e), type=Experiment) for e in exps])
    assert rebuilt.assign(unit) == first
    assert Allocator(exps).assign(unit) == first


def test_split_over_a_million_units_matches_the_weights():
    units = [f"user-{i}" for i in range(1_000_000)]
    weights = {"control": 0.5, "t1": 0.2, "t2": 0.3}
    alloc = Allocator(
        [
            Experiment("split", variants=weights),
            Experiment("split-partial", variants=weights, coverage=0.4),
        ]
    )
    variants, _ = alloc.assign_many(units)
    n = len(units)
    counts = np.bincount(variants[:, 0], minlength=3)
    assert stats.chisquare(counts, n * np.array(list(weights.values()))).pvalue > 0.001
    # With 40% coverage the "not enrolled" cell must hold 60% of units.
    counts = np.bincount(variants[:, 1] + 1, minlength=4)
    expected = n * np.array([0.6] + [0.4 * w for w in weights.values()])
    assert stats.chisquare(counts, expected).pvalue > 0.001


def test_different_salts_are_independent_and_same_salt_is_not():
    units = [f"visitor-{i}" for i in range(200_000)]
    a = Experiment("ind-a", variants={"c": 0.5, "t": 0.5})
    b = Experiment("ind-b", variants={"c": 0.3, "t": 0.7})
    same = Experiment("ind-c", variants={"c": 0.5, "t": 0.5}, salt="ind-a")  # a's salt
    variants, _ = Allocator([a, b, same]).assign_many(units)

    def table(x, y):
        return np.histogram2d(x, y, bins=[np.arange(3) - 0.5, np.arange(3) - 0.5])[0]

    assert stats.chi2_contingency(table(variants[:, 0], variants[:, 1])).pvalue > 0.001
    # The check has power: one salt shared by two experiments makes them identical.
    assert stats.chi2_contingency(table(variants[:, 0], variants[:, 2])).pvalue < 1e-100


# --------------------------------------------------------------------------- coverage, namespaces, holdout


def test_raising_coverage_from_10_to_50_percent_keeps_every_enrolled_unit():
    units = [f"ramp-{i}" for i in range(100_000)]
    weights = {"control": 0.34, "a": 0.33, "b": 0.33}
    before, _ = Allocator([Experiment("ramp", variants=weights, coverage=0.1)]).assign_many(units)
    after, _ = Allocator([Experiment("ramp", variants=weights, coverage=0.5)]).assign_many(units)
    enrolled = before[:, 0] >= 0
    assert 0.09 < enrolled.mean() < 0.11 and 0.49 < (after[:, 0] >= 0).mean() < 0.51
    assert (after[enrolled, 0] == before[enrolled, 0]).all()


@settings(max_examples=60, deadline=None)
@given(weights_st, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_any_coverage_increase_never_moves_an_enrolled_bucket(raw, c1, c2):
    weights = [w / sum(raw) for w in raw]
    low, high = sorted((c1, c2))
    t_low, t_high = _variant_table(weights, low, True), _variant_table(weights, high, True)
    enrolled = t_low > 0
    assert (t_high[enrolled] == t_low[enrolled]).all()


def test_experiments_in_one_namespace_never_share_a_unit_and_cover_it_all():
    units = [f"layer-{i}" for i in range(100_000)]
    exps = [
        Experiment("l1", variants=["a", "b"], namespace=("ranking", 0.0, 0.3)),
        Experiment("l2", variants=["a", "b", "c"], namespace=("ranking", 0.3, 0.75)),
        Experiment("l3", variants=["a", "b"], namespace=("ranking", 0.75, 1.0)),
        Experiment("free", variants=["a", "b"]),
    ]
    variants, _ = Allocator(exps).assign_many(units)
    in_layer = (variants[:, :3] >= 0).sum(axis=1)
    assert (in_layer == 1).all()  # disjoint and, with full coverage, exhaustive
    share = (variants[:, :3] >= 0).mean(axis=0)
    assert np.allclose(share, [0.3, 0.45, 0.25], atol=0.01)
    assert (variants[:, 3] >= 0).all()  # an experiment outside the namespace is untouched


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 999), min_size=1, max_size=5, unique=True), st.integers(0, 2**32 - 1))
def test_disjoint_namespace_ranges_are_mutually_exclusive(cuts, seed):
    bounds = [0.0] + sorted(c / 1000 for c in cuts) + [1.0]
    exps = [
        Experiment(f"ns-{i}", variants=["a", "b"], namespace=("space", lo, hi), coverage=0.9)
        for i, (lo, hi) in enumerate(zip(bounds, bounds[1:]))
    ]
    units = [f"{seed}-{i}" for i in range(2_000)]
    variants, _ = Allocator(exps).assign_many(units)
    assert ((variants >= 0).sum(axis=1) <= 1).all()


def test_holdout_units_get_no_experiment_and_match_growthbooks_rollout_rule():
    units = unit_ids(20_000, seed=11)
    holdout = Holdout("global", fraction=0.1, salt="hold-2026")
    exps = [Experiment("h1", variants=["a", "b"]), Experiment("h2", variants=["a", "b"], namespace=("n", 0, 1))]
    alloc = Allocator(exps, holdout=holdout)
    variants, held = alloc.assign_many(units)
    expected = np.array([gb_held_out(holdout, u) for u in units])
    assert (held == expected).all()
    assert 0.09 < held.mean() < 0.11
    assert (variants[held] == -1).all() and (variants[~held] >= 0).all()
    a = alloc.assign(units[int(np.flatnonzero(held)[0])])
    assert a == Assignment(variants={}, overrides={}, holdout=True, forced=False)
    # Growing the holdout keeps everyone already in it.
    _, held_more = Allocator(exps, holdout=Holdout("global", fraction=0.3, salt="hold-2026")).assign_many(units)
    assert held_more[held].all() and held_more.mean() > 0.25


def test_forced_variant_wins_over_coverage_holdout_namespace_and_inactive():
    units = [f"member-{i}" for i in range(5_000)]
    holdout = Holdout("global", fraction=0.5)
    base = Allocator([Experiment("probe", variants=["a", "b"])], holdout=holdout)
    _, held = base.assign_many(units)
    held_unit = units[int(np.flatnonzero(held)[0])]
    exps = [
        Experiment("zero", variants=["a", "b"], coverage=0.0, forced={"qa-1": "b", held_unit: "b"}),
        Experiment("off", variants=["a", "b"], active=False, forced={"qa-2": "a"}),
        Experiment("left", variants=["a", "b"], namespace=("ui", 0.0, 0.5), forced={"qa-3": "b"}),
        Experiment("right", variants=["a", "b"], namespace=("ui", 0.5, 1.0)),
    ]
    alloc = Allocator(exps, holdout=holdout)
    a = alloc.assign(held_unit)
    assert a.holdout and a.forced and a.variants == {"zero": "b"}
    assert alloc.assign("qa-2").variants.get("off") == "a"
    qa3 = alloc.assign("qa-3")
    assert qa3.forced and "right" not in qa3.variants  # forced into the layer's other experiment
    if not qa3.holdout:
        assert qa3.variants["left"] == "b"
    # Nobody else is enrolled in a 0%-coverage or inactive experiment, and bulk agrees with assign.
    variants, _ = alloc.assign_many(units + ["qa-1", "qa-2", "qa-3"])
    forced_rows = {len(units) + i for i in range(3)} | {units.index(held_unit)}
    for row in range(len(units) + 3):
        unit = (units + ["qa-1", "qa-2", "qa-3"])[row]
        got = {e.name: e.variant_names[v] for e, v in zip(exps, variants[row].tolist()) if v >= 0}
        assert got == alloc.assign(unit).variants
        if row not in forced_rows:
            assert variants[row, 0] == -1 and variants[row, 1] == -1


def test_unit_forced_into_two_experiments_of_one_namespace_is_rejected():
    with pytest.raises(ConfigError, match="share namespace"):
        Allocator(
            [
                Experiment("p", variants=["a", "b"], namespace=("ui", 0.0, 0.5), forced={"qa": "a"}),
                Experiment("q", variants=["a", "b"], namespace=("ui", 0.5, 1.0), forced={"qa": "b"}),
            ]
        )


# --------------------------------------------------------------------------- overrides


def test_variant_overrides_reach_the_assignment():
    exps = [
        Experiment("ranker", variants={"control": 0.5, "treatment": 0.5}, overrides={"treatment": {"model": "v2"}}),
        Experiment("explore", variants=["greedy", "eps"], overrides={"eps": {"policy": "eps-0.1"}}),
    ]
    alloc = Allocator(exps)
    seen = set()
    for i in range(2_000):
        a = alloc.assign(f"o-{i}")
        assert a.model == ("v2" if a.variants["ranker"] == "treatment" else None)
        assert a.policy == ("eps-0.1" if a.variants["explore"] == "eps" else None)
        seen.add((a.model, a.policy))
    assert len(seen) == 4


def test_allocator_is_consistent_across_threads():
    exps, holdout = configurations(np.random.default_rng(5))[1]
    alloc = Allocator(exps, holdout=holdout)
    units = [f"t-{i}" for i in range(3_000)]
    expected = [alloc.assign(u) for u in units]
    errors = []

    def work():
        for u, e in zip(units, expected):
            if alloc.assign(u) != e:
                errors.append(u)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variants": {"a": 0.5, "b": 0.2}}, "sum to 0.7"),
        ({"variants": {"a": 1.2, "b": -0.2}}, "must be a finite number >= 0"),
        ({"variants": {"a": float("nan"), "b": 1.0}}, "finite number"),
        ({"variants": {"a": True, "b": 0.0}}, "finite number"),
        ({"variants": ["only"]}, "expected 2 to 255 variants"),
        ({"variants": ["a", "a"]}, "duplicate variant names"),
        ({"variants": "ab"}, "dict name -> weight or a list"),
        ({"variants": ["a", ""]}, "non-empty str"),
        ({"variants": ["a", "b"], "coverage": 1.5}, r"coverage must be a number in \[0, 1\]"),
        ({"variants": ["a", "b"], "coverage": -0.1}, "coverage"),
        ({"variants": ["a", "b"], "namespace": ("ns", 0.6, 0.4)}, "start < end"),
        ({"variants": ["a", "b"], "namespace": ("ns", 0.0, 1.5)}, "end <= 1"),
        ({"variants": ["a", "b"], "namespace": ("", 0.0, 0.5)}, "namespace id"),
        ({"variants": ["a", "b"], "namespace": ("ns", 0.5)}, r"\(namespace_id, start, end\)"),
        ({"variants": ["a", "b"], "overrides": {"c": {"model": "v2"}}}, "unknown variant 'c'"),
        ({"variants": ["a", "b"], "overrides": {"b": {"modle": "v2"}}}, "unknown key 'modle'"),
        ({"variants": ["a", "b"], "forced": {"qa": "z"}}, "unknown variant 'z'"),
        ({"variants": ["a", "b"], "salt": 5}, "salt must be a str"),
    ],
)
def test_bad_experiment_config_raises_config_error_saying_what_to_fix(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Experiment("bad", **kwargs)


def test_weights_within_growthbooks_tolerance_are_bucketed_as_given():
    exp = Experiment("loose", variants={"a": 0.33, "b": 0.33, "c": 0.33})
    units = [f"w-{i}" for i in range(3_000)]
    variants, _ = Allocator([exp]).assign_many(units)
    assert variants[:, 0].tolist() == [gb_variant(exp, u) for u in units]
    assert (variants[:, 0] == -1).any()  # the 1% GrowthBook leaves unassigned


def test_duplicate_experiment_names_are_rejected():
    with pytest.raises(ConfigError, match="duplicate experiment name 'x'"):
        Allocator([Experiment("x", variants=["a", "b"]), Experiment("x", variants=["c", "d"])])


def test_overlapping_ranges_in_one_namespace_are_rejected():
    with pytest.raises(ConfigError, match="overlap in namespace 'ui'"):
        Allocator(
            [
                Experiment("p", variants=["a", "b"], namespace=("ui", 0.0, 0.6)),
                Experiment("q", variants=["a", "b"], namespace=("ui", 0.5, 1.0)),
            ]
        )


def test_two_experiments_that_can_share_a_unit_cannot_override_the_same_key():
    p = Experiment("p", variants=["a", "b"], overrides={"b": {"model": "m1"}})
    q = Experiment("q", variants=["a", "b"], overrides={"a": {"model": "m2"}})
    with pytest.raises(ConfigError, match=r"both override \['model'\]"):
        Allocator([p, q])
    # As a layer (one namespace, disjoint ranges) they never share a unit: allowed.
    Allocator(
        [
            msgspec.structs.replace(p, namespace=("models", 0.0, 0.5)),
            msgspec.structs.replace(q, namespace=("models", 0.5, 1.0)),
        ]
    )
    # Different keys never clash.
    Allocator([p, Experiment("r", variants=["a", "b"], overrides={"b": {"policy": "ucb"}})])
    assert set(OVERRIDE_KEYS) == {"model", "policy"}


@pytest.mark.parametrize("fraction", [1.0, -0.1, float("inf")])
def test_bad_holdout_fraction_raises_config_error(fraction):
    with pytest.raises(ConfigError, match=r"fraction must be a number in \[0, 1\)"):
        Holdout("h", fraction=fraction)


def test_more_experiments_than_the_core_holds_are_rejected():
    with pytest.raises(ConfigError, match="at most 255 experiments"):
        Allocator([Experiment(f"e{i}", variants=["a", "b"]) for i in range(256)])


def test_allocator_rejects_things_that_are_not_experiments():
    with pytest.raises(ConfigError, match="expected Experiment objects"):
        Allocator([{"name": "x"}])  # type: ignore[list-item]


@pytest.mark.parametrize("uid", [1.5, None, b"bytes", True, 2**53])
def test_unit_ids_that_cannot_be_hashed_like_growthbook_raise_schema_error(uid):
    with pytest.raises(SchemaError):
        Allocator([Experiment("x", variants=["a", "b"])]).assign(uid)


# --------------------------------------------------------------------------- hash version 1


def test_hash_v1_matches_growthbook_for_100k_random_units():
    """Every unit, in v1-only experiments (weights, coverage, seeds, namespaces): where GrowthBook puts it."""
    rng = np.random.default_rng(202)
    units = unit_ids(100_000, seed=202)
    exps = [
        Experiment("v1-a", variants=random_weights(rng, 3), coverage=0.83, hash_version=1),
        Experiment("v1-b", variants=["c", "t"], salt="sël-v1", namespace=("v1layer", 0.0, 0.4), hash_version=1),
        Experiment("v1-c", variants=random_weights(rng, 4), salt="用户", namespace=("v1layer", 0.4, 1.0),
                   coverage=0.37, hash_version=1),
        Experiment("v2-d", variants=random_weights(rng, 2), coverage=0.6),  # v2 beside v1 in one table
    ]
    variants, _ = Allocator(exps).assign_many(units)
    ranges = [getBucketRanges(len(e.variants), e.coverage, list(e.weights)) for e in exps]
    expected = np.array([[gb_variant(e, u, r) for e, r in zip(exps, ranges)] for u in units])
    assert (variants == expected).all()
    assert (variants >= 0).any(axis=0).all()


def test_growthbook_run_default_is_hash_v1_and_nba_default_stays_v2():
    units = unit_ids(2_000, seed=5)
    gb_exp = gb.Experiment(key="inline", variations=[0, 1, 2], weights=[0.2, 0.3, 0.5], coverage=0.9)
    v1 = Experiment("inline", variants={"a": 0.2, "b": 0.3, "c": 0.5}, coverage=0.9, hash_version=1)
    v2 = msgspec.structs.replace(v1, hash_version=2)
    assert Experiment("x", variants=["a", "b"]).hash_version == 2
    a1, a2 = Allocator([v1]), Allocator([v2])
    differ = 0
    for u in units:
        r = gb.GrowthBook(attributes={"id": u}).run(gb_exp)
        expected = v1.variant_names[r.variationId] if r.inExperiment else None
        assert a1.assign(u).variants.get("inline") == expected, u
        differ += a2.assign(u).variants.get("inline") != expected
    assert differ > len(units) // 3  # the mistake hash_version=1 exists to avoid


@pytest.mark.parametrize("hv", [0, 3, "1", True, 1.0])
def test_unknown_hash_version_raises_config_error(hv):
    with pytest.raises(ConfigError, match="hash_version must be 1 or 2"):
        Experiment("hv", variants=["a", "b"], hash_version=hv)


@settings(max_examples=40, deadline=None)
@given(weights_st, st.floats(0.0, 1.0))
def test_v1_bucket_table_is_growthbooks_choice_for_every_bucket(raw, coverage):
    weights = [w / sum(raw) for w in raw]
    table = _variant_table(weights, coverage, True, 1)
    ranges = getBucketRanges(len(weights), coverage, weights)
    assert table[:1000].tolist() == [chooseVariation(k / 1000, ranges) + 1 for k in range(1000)]
    assert not table[1000:].any()


# --------------------------------------------------------------------------- conditions and explicit ranges


def test_condition_and_ranges_target_like_growthbook_run():
    rng = np.random.default_rng(9)
    units = unit_ids(3_000, seed=9)
    cond = {"country": {"$in": ["NL", "BE"]}, "age": {"$gte": 18}}
    exps = [
        Experiment("targeted", variants=["c", "t"], condition=cond, hash_version=1, coverage=0.8),
        Experiment("ranged", variants=["c", "t", "u"], ranges=((0.0, 0.2), (0.5, 0.6), (0.6, 1.0)), salt="r"),
    ]
    gb_exps = [
        gb.Experiment(key="targeted", variations=[0, 1], condition=cond, coverage=0.8),
        gb.Experiment(key="ranged", variations=[0, 1, 2], ranges=[(0.0, 0.2), (0.5, 0.6), (0.6, 1.0)], seed="r",
                      hashVersion=2),
    ]
    alloc = Allocator(exps)
    attrs = [{"id": u, "country": str(rng.choice(["NL", "BE", "US"])), "age": int(rng.integers(10, 40))}
             for u in units]
    variants, _ = alloc.assign_many(units, attrs)
    for row, (u, a) in enumerate(zip(units, attrs)):
        client = gb.GrowthBook(attributes=a)
        got = alloc.assign(u, a)
        for col, (e, ge) in enumerate(zip(exps, gb_exps)):
            r = client.run(ge)
            expected = e.variant_names[r.variationId] if r.inExperiment else None
            assert got.variants.get(e.name) == expected, (u, a, e.name)
            assert variants[row, col] == (r.variationId if r.inExperiment else -1)
    assert 0.3 < (variants[:, 0] >= 0).mean() < 0.5  # 2/3 of countries x ~73% adults x 80% coverage


def test_forced_variant_wins_over_a_failing_condition():
    e = Experiment("f", variants=["a", "b"], condition={"never": True}, forced={"qa": "b"})
    alloc = Allocator([e])
    assert alloc.assign("qa").variants == {"f": "b"}
    assert alloc.assign("someone", {"never": False}).variants == {}
    assert all(alloc.assign(f"u{i}", {"never": True}).variants for i in range(20))  # full coverage when it holds


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"condition": [1]}, "condition must be a GrowthBook condition dict"),
        ({"ranges": ((0.0, 0.5),)}, "one \\(start, end\\) per variant"),
        ({"ranges": ((0.0, 0.5), (0.6, 0.4))}, "0 <= start <= end <= 1"),
    ],
)
def test_bad_condition_or_ranges_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Experiment("bad", variants=["a", "b"], **kwargs)


def test_nbas_own_experiment_refuses_a_condition_growthbook_would_never_match():
    with pytest.raises(ConfigError, match="would never match as written.*not a valid regular expression"):
        Experiment("bad", variants=["a", "b"], condition={"email": {"$regex": "(unclosed"}})
