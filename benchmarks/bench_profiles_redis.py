"""The Redis profile store: what ``RedisProfileStore`` costs beside redis-py doing the raw work.

Workload: ``workloads.profile_definitions`` (8 features, two windowed) and
``workloads.profile_events`` (10,000 events over 1,000 ids); a real ``redis-server``
on loopback (``tests/redis_server.py``), default settings. Groups:

* ``profiles-redis-track-many-10k``: ``track_many`` of the workload into a fresh
  namespace ("nba": batches of 256, a read script and a compare-and-set commit per
  batch, the feature math in Python) vs a raw redis-py pipeline of one HINCRBY per
  event (the view count, or the amount of a buy, into the id's hash), executed every
  256 events ("redis-py-pipeline"): the same round trips, none of the work. Also
  ``cache_size=1000`` ("nba-cached": a profile this process wrote is not decoded
  again). Events/s of each in ``extra_info``.
* ``profiles-redis-profile``: ``profile(id, now)`` (one script: resolve the id, fetch
  state and consent; then decode and ``Features.values``) vs a raw ``HGETALL`` of the
  same profile's hash (the bytes, nothing resolved or decoded). Per-call p50/p99 of
  both in ``extra_info``; the ratio is of the totals of the same number of calls. The
  nba side also times both in alternating blocks (``interleaved_*``, ``added_p50_us``),
  so a burst of load on the box does not fall on one side only.

Floors are loose guards only: against a round trip per event (track_many would fall to
about 0.01x of the pipeline, as 256 round trips replace one), or per feature. On a
loaded 2-core box the ratios measured 0.1x-0.3x (track_many) and 0.4x-0.9x (profile).
"""

from __future__ import annotations

import itertools
import os
import time

import numpy as np
import pytest

pytest.importorskip("redis")

from benchmarks.latency import record_latency
from benchmarks.workloads import profile_definitions, profile_events
from nba.profiles import Features, RedisProfileStore
from tests import redis_server

if not redis_server.available():
    pytest.skip("redis-server is not installed (tools/test_services.sh)", allow_module_level=True)

N_EVENTS, N_IDS = 10_000, 1_000
BATCH = 256  # RedisProfileStore's track_many batch
NOW = 1_700_000_000.0 + N_EVENTS * 0.05
LATENCY_CALLS = int(os.environ.get("NBA_BENCH_LATENCY_CALLS", "5000"))
TRACK_GROUP = "profiles-redis-track-many-10k"
PROFILE_GROUP = "profiles-redis-profile"
FLOORS = {"redis-py-pipeline": 0.05}
PROFILE_FLOORS = {"redis-py-hgetall": 0.1}
_namespaces = itertools.count()


@pytest.fixture(scope="module")
def client():
    import redis

    with redis_server.redis_server() as server:
        c = redis.Redis.from_url(server.url)
        yield c
        c.close()


@pytest.fixture(scope="module")
def features() -> Features:
    return Features(profile_definitions())


@pytest.fixture(scope="module")
def events() -> list:
    return profile_events(N_EVENTS, N_IDS, seed=1)


def _fresh(features: Features, client) -> RedisProfileStore:
    return RedisProfileStore(features, client, namespace=f"bench-{next(_namespaces)}")


def test_redis_store_agrees_with_features_used_directly(features, events, client) -> None:
    store = _fresh(features, client)
    assert store.track_many(events) == N_EVENTS
    states: dict = {}
    for uid, ev in events:
        features.track(states.setdefault(uid, features.init()), ev)
    for uid in list(states)[:100]:
        p = store.profile(uid, NOW)
        assert p is not None and p.values == features.values(states[uid], NOW)


def test_track_many_redis_store(benchmark, features, events, client) -> None:
    stores = iter([_fresh(features, client) for _ in range(3)])
    _fresh(features, client).track_many(events[:BATCH])  # load the scripts outside the timing

    def run() -> None:
        next(stores).track_many(events)

    benchmark.group = TRACK_GROUP
    benchmark.pedantic(run, rounds=3, iterations=1)
    rate = N_EVENTS / benchmark.stats.stats.median
    benchmark.extra_info.update(impl="nba", floors=FLOORS, events=N_EVENTS, events_per_s=rate,
                                call=f"RedisProfileStore.track_many ({BATCH} a batch: read script + CAS script)")
    print(f"\n{TRACK_GROUP}: RedisProfileStore.track_many {rate:,.0f} events/s")


def test_track_many_redis_store_cached(benchmark, features, events, client) -> None:
    stores = iter([RedisProfileStore(features, client, namespace=f"bench-{next(_namespaces)}", cache_size=N_IDS)
                   for _ in range(3)])

    def run() -> None:
        next(stores).track_many(events)

    benchmark.group = TRACK_GROUP
    benchmark.pedantic(run, rounds=3, iterations=1)
    rate = N_EVENTS / benchmark.stats.stats.median
    benchmark.extra_info.update(impl="nba-cached", events=N_EVENTS, events_per_s=rate,
                                call=f"RedisProfileStore(cache_size={N_IDS}).track_many")
    print(f"\n{TRACK_GROUP}: RedisProfileStore(cache_size={N_IDS}).track_many {rate:,.0f} events/s")


def test_track_many_raw_pipeline(benchmark, events, client) -> None:
    keys = {uid: f"{{raw-{next(_namespaces)}}}:{uid}" for uid, _ in events}
    ops = [(keys[uid], "views", 1) if ev.type == "view" else (keys[uid], "spend", ev.properties["amount"])
           for uid, ev in events]

    def run() -> None:
        pipe = client.pipeline(transaction=False)
        for k, (key, field, n) in enumerate(ops, 1):
            pipe.hincrby(key, field, n)
            if k % BATCH == 0:
                pipe.execute()
        pipe.execute()

    benchmark.group = TRACK_GROUP
    benchmark.pedantic(run, rounds=3, iterations=1)
    rate = N_EVENTS / benchmark.stats.stats.median
    benchmark.extra_info.update(impl="redis-py-pipeline", events=N_EVENTS, events_per_s=rate,
                                call=f"redis-py pipeline, one HINCRBY an event, executed every {BATCH}")
    print(f"\n{TRACK_GROUP}: raw redis-py pipeline {rate:,.0f} events/s")


@pytest.fixture(scope="module")
def loaded(features, events, client) -> RedisProfileStore:
    store = _fresh(features, client)
    store.track_many(events)
    return store


def _timed(calls: list, n: int, start: int) -> np.ndarray:
    ns = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(n):
        f = calls[(start + i) % len(calls)]
        t0 = clock()
        f()
        ns[i] = clock() - t0
    return ns


def _interleaved(ours: list, raw: list) -> tuple[np.ndarray, np.ndarray]:
    """Per-call microseconds of both, timed in alternating blocks of 250, so the box's load falls on both alike."""
    a, b = [], []
    block = 250
    for k in range(max(1, LATENCY_CALLS // block)):
        a.append(_timed(ours, block, k * block))
        b.append(_timed(raw, block, k * block))
    return np.concatenate(a) / 1e3, np.concatenate(b) / 1e3


def _calls(store: RedisProfileStore, client) -> tuple[list, list]:
    ids = sorted({uid for uid, _ in profile_events(N_EVENTS, N_IDS, seed=1)})
    prefix = "{" + store.namespace + "}:p:"
    assert client.hgetall(prefix + ids[0])  # the profile's own hash: state, consent, version
    return ([lambda uid=uid: store.profile(uid, NOW) for uid in ids],
            [lambda key=prefix + uid: client.hgetall(key) for uid in ids])


def test_profile_redis_store(benchmark, loaded, client) -> None:
    ours, raw = _calls(loaded, client)
    record_latency(benchmark, PROFILE_GROUP, "nba", ours, LATENCY_CALLS)
    a, b = _interleaved(ours, raw)
    p50, p99, r50, r99 = (float(np.percentile(x, q)) for x in (a, b) for q in (50, 99))
    benchmark.extra_info.update(floors=PROFILE_FLOORS, call="RedisProfileStore.profile (one script call)",
                                interleaved_p50_us=p50, interleaved_p99_us=p99, hgetall_interleaved_p50_us=r50,
                                hgetall_interleaved_p99_us=r99, added_p50_us=p50 - r50)
    x = benchmark.extra_info
    print(f"\n{PROFILE_GROUP}: RedisProfileStore.profile p50 {x['p50_us']:.1f} us, p99 {x['p99_us']:.1f} us; "
          f"in blocks interleaved with HGETALL: profile p50 {p50:.1f} us, p99 {p99:.1f} us, "
          f"HGETALL p50 {r50:.1f} us, p99 {r99:.1f} us")


def test_profile_raw_hgetall(benchmark, loaded, client) -> None:
    _, raw = _calls(loaded, client)
    record_latency(benchmark, PROFILE_GROUP, "redis-py-hgetall", raw, LATENCY_CALLS)
    x = benchmark.extra_info
    print(f"\n{PROFILE_GROUP}: raw HGETALL p50 {x['p50_us']:.1f} us, p99 {x['p99_us']:.1f} us")
