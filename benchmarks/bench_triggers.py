"""Triggers: ``observe_many`` throughput on both stores, and ``due()`` claims on Redis beside a raw ZPOPMIN.

Workload: ``workloads.trigger_rules`` (a failed payment, an abandoned cart, a lapse) and
``workloads.trigger_events`` (20,000 events over 2,000 ids); a real ``redis-server`` on
loopback (``tests/redis_server.py``). Groups:

* ``triggers-observe-many-20k``: ``Triggers.observe_many`` of the workload, embedded
  ("nba") vs Redis ("redis", one pipeline of a few scripts). Recorded, no floor: the
  Redis store runs the rules' state machine in Lua for each step, it is not meant to
  match memory; the events/s of each are in ``extra_info``.
* ``triggers-claim-5k``: ``due(now, limit=500)`` until 5,000 scheduled firings are all
  claimed (nba) vs the same members popped with ZPOPMIN 500 at a time in a pipeline
  ("zpopmin"): the floor of any sorted-set claim, which marks nothing fired and reads no
  hash. Floor: 0.1x (claiming reads and writes the profile's hash per firing and builds
  a ``Due``; well below that means a round trip per firing).
* ``triggers-observe-latency``: per-call p50/p99 of ``observe(key, event)`` (one event,
  three rules), embedded ("nba") and Redis ("redis": one script call, one round trip).
"""

from __future__ import annotations

import os
import secrets
import time

import pytest

pytest.importorskip("redis")

import redis

from benchmarks.latency import record_latency
from benchmarks.workloads import trigger_events, trigger_rules
from nba.profiles import EmbeddedTriggerStore, Event, RedisTriggerStore, Triggers
from tests import redis_server

if not redis_server.available():
    pytest.skip("redis-server is not installed (tools/test_services.sh)", allow_module_level=True)

N_EVENTS, N_IDS, N_CLAIM = 20_000, 2_000, 5_000
T = 1_700_000_000.0
OBSERVE = "triggers-observe-many-20k"
CLAIM = "triggers-claim-5k"
LATENCY = "triggers-observe-latency"
LATENCY_CALLS = int(os.environ.get("NBA_BENCH_LATENCY_CALLS", "5000"))


@pytest.fixture(scope="module")
def redis_url():
    with redis_server.redis_server() as server:
        yield server.url


@pytest.fixture(scope="module")
def events() -> list:
    return trigger_events(N_EVENTS, N_IDS, seed=1)


def _ns() -> str:
    return "bench-trg-" + secrets.token_hex(4)


def test_stores_agree_on_the_workload(redis_url, events) -> None:
    emb = Triggers(trigger_rules(), EmbeddedTriggerStore())
    red = Triggers(trigger_rules(), RedisTriggerStore(redis_url, namespace=_ns()))
    emb.observe_many(events)
    red.observe_many(events)
    now = T + N_EVENTS * 0.05 + 15 * 86400

    def got(t: Triggers) -> set:
        return {(d.key, d.trigger, d.due_at, d.cause_ts) for d in t.due(now, limit=100_000)}

    a = got(emb)
    assert a and a == got(red)


def _observe(benchmark, make, events, impl: str) -> None:
    rounds = []

    def run() -> None:
        trig = make()
        t0 = time.perf_counter()
        trig.observe_many(events)
        rounds.append(time.perf_counter() - t0)

    benchmark.group = OBSERVE
    benchmark.pedantic(run, rounds=3, iterations=1)
    best = min(rounds)
    benchmark.extra_info.update(impl=impl, events=len(events), events_per_s=len(events) / best)
    print(f"\n{OBSERVE} {impl}: {len(events) / best:,.0f} events/s")


def test_observe_many_embedded(benchmark, events) -> None:
    _observe(benchmark, lambda: Triggers(trigger_rules(), EmbeddedTriggerStore()), events, "nba")


def test_observe_many_redis(benchmark, redis_url, events) -> None:
    _observe(benchmark, lambda: Triggers(trigger_rules(), RedisTriggerStore(redis_url, namespace=_ns())), events,
             "redis")


def test_claim_nba(benchmark, redis_url) -> None:
    items = [(f"u{i}", Event("payment", "web", T + i * 0.01, {"status": "failed"})) for i in range(N_CLAIM)]

    def setup():
        trig = Triggers(trigger_rules(), RedisTriggerStore(redis_url, namespace=_ns()))
        trig.observe_many(items)
        return (trig,), {}

    def run(trig: Triggers) -> None:
        n = 0
        while batch := trig.due(T + 1e6, limit=500):
            n += len(batch)
        assert n == N_CLAIM

    benchmark.group = CLAIM
    benchmark.extra_info.update(impl="nba", firings=N_CLAIM, floors={"zpopmin": 0.1})
    benchmark.pedantic(run, setup=setup, rounds=5, iterations=1)
    benchmark.extra_info["firings_per_s"] = N_CLAIM / benchmark.stats.stats.median


def test_claim_zpopmin(benchmark, redis_url) -> None:
    client = redis.Redis.from_url(redis_url)

    def setup():
        key = "{" + _ns() + "}:z"
        client.zadd(key, {f"failed_payment:u{i}": T + 60 + i * 0.01 for i in range(N_CLAIM)})
        return (key,), {}

    def run(key: str) -> None:
        n = 0
        while batch := client.zpopmin(key, 500):
            n += len(batch)
        assert n == N_CLAIM

    benchmark.group = CLAIM
    benchmark.extra_info.update(impl="zpopmin", firings=N_CLAIM)
    benchmark.pedantic(run, setup=setup, rounds=5, iterations=1)


def _observe_calls(trig: Triggers, events: list) -> list:
    return [lambda k=k, e=e: trig.observe(k, e) for k, e in events[:2000]]


def test_observe_latency_embedded(benchmark, events) -> None:
    trig = Triggers(trigger_rules(), EmbeddedTriggerStore())
    record_latency(benchmark, LATENCY, "nba", _observe_calls(trig, events), LATENCY_CALLS)


def test_observe_latency_redis(benchmark, redis_url, events) -> None:
    trig = Triggers(trigger_rules(), RedisTriggerStore(redis_url, namespace=_ns()))
    record_latency(benchmark, LATENCY, "redis", _observe_calls(trig, events), LATENCY_CALLS)
