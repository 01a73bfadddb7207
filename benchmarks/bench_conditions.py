"""GrowthBook targeting conditions: nba's compiled conditions against the growthbook package's ``evalCondition``.

Workload: ``workloads.targeting_conditions`` (six rules shaped like real
targeting: lists, versions, ranges, a regex, arrays, logic) over
``workloads.targeting_attributes``. References: ``growthbook`` is
``growthbook.core.evalCondition(attributes, condition)`` for each condition,
as GrowthBook's SDK evaluates a rule; both give the same answers (checked first).

Groups: ``conditions-eval-6`` (a batch of users per round, every condition per
user; the median is per batch) and ``conditions-eval-latency-6`` (one
``perf_counter_ns`` pair per user's six evaluations; p50/p99 in ``extra_info``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

import pytest

from benchmarks.latency import record_latency
from benchmarks.workloads import growthbook_payload, targeting_attributes, targeting_conditions
from nba.conditions import compile_condition

gb = pytest.importorskip("growthbook")
from growthbook.core import evalCondition  # noqa: E402

BATCH_USERS = 200
LATENCY_CALLS = int(os.environ.get("NBA_BENCH_LATENCY_CALLS", "5000"))
FLOORS = {"growthbook": 2.0}  # medians 6.7x, mins 2.7x on a noisy 2-core box


def nba_eval() -> Callable[[dict], list[bool]]:
    compiled = [compile_condition(c) for c in targeting_conditions()]
    return lambda attrs: [c(attrs) for c in compiled]


def growthbook_eval() -> Callable[[dict], list[bool]]:
    conds = targeting_conditions()
    return lambda attrs: [evalCondition(attrs, c) for c in conds]


@pytest.fixture(scope="module")
def impls() -> dict[str, Callable[[dict], list[bool]]]:
    mine, ref = nba_eval(), growthbook_eval()
    matched = 0
    for attrs in targeting_attributes(2_000, seed=1):  # a fast wrong answer must never show up as a win
        got = mine(attrs)
        assert got == ref(attrs), attrs
        matched += sum(got)
    assert matched > 1_000  # the conditions do match users, not only reject them
    return {"nba": mine, "growthbook": ref}


@pytest.fixture(scope="module")
def users() -> list[dict]:
    return targeting_attributes(BATCH_USERS, seed=2)


@pytest.mark.parametrize("impl", ["nba", "growthbook"])
def test_conditions_batch(benchmark, impls, users, impl):
    f = impls[impl]

    def batch() -> None:
        for a in users:
            f(a)

    benchmark.group = "conditions-eval-6"
    benchmark.extra_info.update(impl=impl, users_per_round=BATCH_USERS, conditions=6)
    if impl == "nba":
        benchmark.extra_info["floors"] = FLOORS
    benchmark(batch)


@pytest.mark.parametrize("impl", ["nba", "growthbook"])
def test_conditions_latency(benchmark, impls, impl):
    f = impls[impl]
    calls = [partial(f, a) for a in targeting_attributes(1024, seed=3)]
    record_latency(benchmark, "conditions-eval-latency-6", impl, calls, LATENCY_CALLS)


# --------------------------------------------------------------------------- a whole SDK payload

PAYLOAD_FLOORS = {"growthbook": 2.0}


@pytest.fixture(scope="module")
def payload_impls() -> dict[str, Callable[[dict], object]]:
    from nba.growthbook import load_payload

    payload = growthbook_payload()
    loaded = load_payload(payload)
    keys = list(payload["features"])

    def reference(attrs: dict) -> dict:
        client = gb.GrowthBook(attributes=attrs, features=payload["features"])
        return {k: client.eval_feature(k).value for k in keys}

    def mine(attrs: dict) -> dict:
        return {k: r.value for k, r in loaded.evaluate(attrs).items()}

    for attrs in targeting_attributes(1_000, seed=4):
        assert mine(attrs) == reference(attrs), attrs
    return {"nba": mine, "growthbook": reference}


@pytest.mark.parametrize("impl", ["nba", "growthbook"])
def test_payload_batch(benchmark, payload_impls, users, impl):
    f = payload_impls[impl]

    def batch() -> None:
        for a in users:
            f(a)

    benchmark.group = "growthbook-payload-6features"
    benchmark.extra_info.update(impl=impl, users_per_round=BATCH_USERS, features=6)
    if impl == "nba":
        benchmark.extra_info["floors"] = PAYLOAD_FLOORS
    benchmark(batch)


@pytest.mark.parametrize("impl", ["nba", "growthbook"])
def test_payload_latency(benchmark, payload_impls, impl):
    f = payload_impls[impl]
    calls = [partial(f, a) for a in targeting_attributes(1024, seed=5)]
    record_latency(benchmark, "growthbook-payload-latency-6features", impl, calls, LATENCY_CALLS)
