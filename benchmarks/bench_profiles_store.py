"""The embedded profile store: what it adds to ``Features`` for ``track`` and ``profile``.

Workload: ``workloads.profile_definitions`` (8 features, two windowed) and
``workloads.profile_events`` (20,000 events over 2,000 ids). The reference is
``Features`` used directly, doing what the store must also do: ``check_event``, a
dict of states by id, ``Features.track`` / ``Features.values``. The store adds the
id check, its lock, identity resolution and consent. Groups (recorded, no floors
yet: the store wraps the reference, so the ratio is below 1 by construction):

* ``profiles-track-20k``: ``EmbeddedProfileStore.track`` per event vs the reference;
* ``profiles-track-many-20k``: ``track_many`` of the whole workload vs the reference;
* ``profiles-profile``: ``profile(id, now)`` vs ``Features.values`` of the id's state;
* ``profiles-profile-latency``: per-call p50/p99 of ``profile`` in ``extra_info``.
"""

from __future__ import annotations

import itertools
import os

import pytest

from benchmarks.latency import record_latency
from benchmarks.workloads import profile_definitions, profile_events
from nba.profiles import EmbeddedProfileStore, Features, check_event

N_EVENTS, N_IDS = 20_000, 2_000
NOW = 1_700_000_000.0 + N_EVENTS * 0.05
LATENCY_CALLS = int(os.environ.get("NBA_BENCH_LATENCY_CALLS", "20000"))


@pytest.fixture(scope="module")
def features() -> Features:
    return Features(profile_definitions())


@pytest.fixture(scope="module")
def events() -> list:
    return profile_events(N_EVENTS, N_IDS, seed=1)


def direct_track(features: Features, events: list) -> dict:
    states: dict = {}
    init, track = features.init, features.track
    for uid, ev in events:
        state = states.get(uid)
        if state is None:
            state = states[uid] = init()
        track(state, check_event(ev))
    return states


def test_store_agrees_with_features_used_directly(features, events):
    store = EmbeddedProfileStore(features)
    store.track_many(events)
    states = direct_track(features, events)
    for uid in list(states)[:200]:
        p = store.profile(uid, NOW)
        assert p is not None and p.values == features.values(states[uid], NOW)


def test_track_nba(benchmark, features, events):
    def run():
        store = EmbeddedProfileStore(features)
        track = store.track
        for uid, ev in events:
            track(uid, ev)

    benchmark.group = "profiles-track-20k"
    benchmark.extra_info.update(impl="nba", events=N_EVENTS)
    benchmark.pedantic(run, rounds=5, iterations=1)


def test_track_many_nba(benchmark, features, events):
    benchmark.group = "profiles-track-many-20k"
    benchmark.extra_info.update(impl="nba", events=N_EVENTS)
    benchmark.pedantic(lambda: EmbeddedProfileStore(features).track_many(events), rounds=5, iterations=1)


@pytest.mark.parametrize("group", ["profiles-track-20k", "profiles-track-many-20k"])
def test_track_features_direct(benchmark, features, events, group):
    benchmark.group = group
    benchmark.extra_info.update(impl="features-direct", events=N_EVENTS)
    benchmark.pedantic(lambda: direct_track(features, events), rounds=5, iterations=1)


def test_profile_nba(benchmark, features, events):
    store = EmbeddedProfileStore(features)
    store.track_many(events)
    ids = itertools.cycle(sorted({uid for uid, _ in events}))
    benchmark.group = "profiles-profile"
    benchmark.extra_info.update(impl="nba", features=len(features.names))
    benchmark(lambda: store.profile(next(ids), NOW))


def test_profile_features_direct(benchmark, features, events):
    states = direct_track(features, events)
    ids = itertools.cycle(sorted(states))
    values = features.values
    benchmark.group = "profiles-profile"
    benchmark.extra_info.update(impl="features-direct")
    benchmark(lambda: values(states[next(ids)], NOW))


def test_profile_latency(benchmark, features, events):
    store = EmbeddedProfileStore(features)
    store.track_many(events)
    ids = sorted({uid for uid, _ in events})
    calls = [lambda uid=uid: store.profile(uid, NOW) for uid in ids]
    record_latency(benchmark, "profiles-profile-latency", "nba", calls, LATENCY_CALLS)
