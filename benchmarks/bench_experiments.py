"""Experiment allocation: nba's ``Allocator.assign`` against the growthbook package.

Workload: five experiments (two plain, one at 30% coverage, two sharing a
namespace) under a 5% global holdout, over ``workloads.unit_ids`` (a third of
them non-ASCII). References, both giving the same answers (checked first):

* ``growthbook``: one ``GrowthBook(attributes={"id": unit})`` client per unit, as a
  server builds per request, then ``run`` for each experiment;
* ``growthbook-helpers``: GrowthBook's own ``gbhash`` / ``inNamespace`` /
  ``chooseVariation`` with bucket ranges precomputed, the cheapest path in Python.

Groups: ``experiments-assign-5exp`` (a batch of units per round; the median is
per batch) and ``experiments-assign-latency-5exp`` (one ``perf_counter_ns`` pair per
call; p50/p99 in ``extra_info``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

import pytest

from benchmarks.latency import record_latency
from benchmarks.workloads import growthbook_experiment, unit_ids
from nba.experiments import Allocator, Experiment, Holdout

gb = pytest.importorskip("growthbook")
from growthbook.core import chooseVariation, gbhash, getBucketRanges, inNamespace  # noqa: E402

BATCH_UNITS = 200
LATENCY_CALLS = int(os.environ.get("NBA_BENCH_LATENCY_CALLS", "5000"))
FLOORS = {"growthbook": 100.0, "growthbook-helpers": 40.0}

EXPERIMENTS = [
    Experiment("ranker", variants={"control": 0.5, "treatment": 0.5}, overrides={"treatment": {"model": "v2"}}),
    Experiment("explore", variants=["greedy", "eps", "softmax"], overrides={"eps": {"policy": "eps-0.05"}}),
    Experiment("banner", variants={"a": 0.2, "b": 0.8}, coverage=0.3, salt="banner-2026"),
    Experiment("checkout-1", variants=["a", "b"], namespace=("checkout", 0.0, 0.5)),
    Experiment("checkout-2", variants=["a", "b"], namespace=("checkout", 0.5, 1.0)),
]
HOLDOUT = Holdout("global", fraction=0.05, salt="global-holdout")


class GrowthBookRun:
    """GrowthBook's full path: a client per unit, ``run`` per experiment."""

    def __init__(self) -> None:
        self.experiments = [growthbook_experiment(e) for e in EXPERIMENTS]

    def __call__(self, unit: str) -> dict[str, int]:
        if gbhash(HOLDOUT.seed, unit, 2) < HOLDOUT.fraction:
            return {}
        client = gb.GrowthBook(attributes={"id": unit})
        out = {}
        for e in self.experiments:
            r = client.run(e)
            if r.inExperiment:
                out[e.key] = r.variationId
        return out


class GrowthBookHelpers:
    """GrowthBook's hashing helpers with ranges precomputed: no client, no result objects."""

    def __init__(self) -> None:
        self.plan = [
            (e.name, e.seed, tuple(e.namespace) if e.namespace else None,
             getBucketRanges(len(e.variants), e.coverage, list(e.weights)))
            for e in EXPERIMENTS
        ]

    def __call__(self, unit: str) -> dict[str, int]:
        if gbhash(HOLDOUT.seed, unit, 2) < HOLDOUT.fraction:
            return {}
        out = {}
        for name, seed, ns, ranges in self.plan:
            if ns is not None and not inNamespace(unit, ns):
                continue
            v = chooseVariation(gbhash(seed, unit, 2), ranges)
            if v >= 0:
                out[name] = v
        return out


@pytest.fixture(scope="module")
def impls() -> dict[str, Callable[[str], object]]:
    alloc = Allocator(EXPERIMENTS, holdout=HOLDOUT)
    run, helpers = GrowthBookRun(), GrowthBookHelpers()
    names = {e.name: e.variant_names for e in EXPERIMENTS}
    for unit in unit_ids(500, seed=1):  # a fast wrong answer must never show up as a win
        expected = {k: names[k][v] for k, v in run(unit).items()}
        assert alloc.assign(unit).variants == expected == {k: names[k][v] for k, v in helpers(unit).items()}
    return {"nba": alloc.assign, "growthbook": run, "growthbook-helpers": helpers}


@pytest.fixture(scope="module")
def units() -> list[str]:
    return unit_ids(BATCH_UNITS, seed=2)


@pytest.mark.parametrize("impl", ["nba", "growthbook", "growthbook-helpers"])
def test_assign_batch(benchmark, impls, units, impl):
    f = impls[impl]

    def batch() -> None:
        for u in units:
            f(u)

    benchmark.group = "experiments-assign-5exp"
    benchmark.extra_info.update(impl=impl, units_per_round=BATCH_UNITS)
    if impl == "nba":
        benchmark.extra_info["floors"] = FLOORS
    benchmark(batch)


@pytest.mark.parametrize("impl", ["nba", "growthbook", "growthbook-helpers"])
def test_assign_latency(benchmark, impls, impl):
    f = impls[impl]
    calls = [partial(f, u) for u in unit_ids(1024, seed=3)]  # the same count for every impl
    record_latency(benchmark, "experiments-assign-latency-5exp", impl, calls, LATENCY_CALLS)
