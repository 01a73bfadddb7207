"""``decide(profile_id)`` against ``decide(profile_dict)``: what reading the profile from a store adds.

Workload: ``workloads.profile_definitions`` (8 features, two windowed) over
``workloads.profile_events`` (20,000 events, 2,000 ids) in an ``EmbeddedProfileStore``
granting personalisation and logging; six of the features feed a 100-tree LightGBM
model over 10 arms; no log. The dict side gets, for the same ids, the very dicts the
store would return (``Profile.values`` read beforehand), so the difference is the
store's read: id check, lock, identity resolution, values and consent.

* ``decide-profile-id``: pytest-benchmark rounds of ``decide(id)`` ("nba") and of
  ``decide(dict)`` ("dict"), same ids, same contexts. Floor: the id path at >= 0.4x.
* The nba side records per-call percentiles of interleaved blocks of both and the
  difference, ``added_p50_us`` (goal <= 5 us).
"""

from __future__ import annotations

import os
import time

import lightgbm as lgb
import numpy as np
import pytest

import nba
from benchmarks.workloads import profile_definitions, profile_events
from nba.profiles import LOGGING, PERSONALISATION, EmbeddedProfileStore, Features

GROUP = "decide-profile-id"
FLOORS = {"dict": 0.4}
N_EVENTS, N_IDS = 20_000, 2_000
NOW = 1_700_000_000.0 + N_EVENTS * 0.05 + 1.0
BLOCKS = int(os.environ.get("NBA_BENCH_PROFILE_BLOCKS", "10"))
BLOCK = 1_000
SCHEMA = nba.FeatureSchema([nba.Numeric(n) for n in ("views", "views_1h", "spend", "spend_1h", "since_buy",
                                                     "first_seen")] + [nba.Numeric("hour", source="context")])


@pytest.fixture(scope="module")
def setup():
    store = EmbeddedProfileStore(Features(profile_definitions()),
                                 consent_default={PERSONALISATION: True, LOGGING: True})
    events = profile_events(N_EVENTS, N_IDS, seed=1)
    store.track_many(events)
    catalog = nba.Catalog([nba.Arm(f"a{i}", features={"fee": float(i)}) for i in range(10)], SCHEMA)
    rng = np.random.default_rng(5)
    names = list(catalog.feature_names)
    X = rng.normal(size=(2000, len(names))) * 20
    y = (X[:, 0] + X[:, 2] - X[:, -1] + rng.normal(size=2000) > 0).astype(float)
    model = nba.load_model(lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 15, "seed": 0},
                                     lgb.Dataset(X, y, feature_name=names), 100))
    dec = nba.Decider(catalog, model, profiles=store, seed=1)
    ids = sorted({uid for uid, _ in events})
    dicts = [store.profile(uid, NOW).values for uid in ids]  # type: ignore[union-attr]
    contexts = [{"hour": float(i % 24)} for i in range(len(ids))]
    return dec, ids, dicts, contexts


def _block(dec: nba.Decider, profiles: list, contexts: list, start: int) -> np.ndarray:
    ns = np.empty(BLOCK, dtype=np.int64)
    clock = time.perf_counter_ns
    decide = dec.decide
    k = len(profiles)
    for i in range(BLOCK):
        j = (start + i) % k
        p, c = profiles[j], contexts[j]
        t0 = clock()
        decide(p, c, now=NOW)
        ns[i] = clock() - t0
    return ns


def test_decide_by_id_equals_decide_by_dict(setup):
    dec, ids, dicts, contexts = setup
    for uid, d, c in list(zip(ids, dicts, contexts))[:300]:
        a = dec.decide(uid, c, event_id=f"x{uid}", now=NOW)
        b = dec.decide(d, c, event_id=f"x{uid}", now=NOW)
        assert (a.arm, a.pmf, a.scores) == (b.arm, b.pmf, b.scores)


def _rounds(benchmark, dec, profiles, contexts, impl: str) -> None:
    it = iter(range(1 << 62))
    k = len(profiles)

    def one() -> None:
        j = next(it) % k
        dec.decide(profiles[j], contexts[j], now=NOW)

    for j in range(200):
        dec.decide(profiles[j], contexts[j], now=NOW)
    benchmark.group = GROUP
    benchmark.extra_info.update(impl=impl)
    if impl == "nba":
        benchmark.extra_info["floors"] = FLOORS
    benchmark(one)


def test_decide_profile_id(benchmark, setup):
    dec, ids, dicts, contexts = setup
    by_id, by_dict = [], []
    for b in range(BLOCKS):  # interleaved, so both sides see the same machine
        by_id.append(_block(dec, ids, contexts, b * BLOCK))
        by_dict.append(_block(dec, dicts, contexts, b * BLOCK))
    i50, i99 = (float(np.percentile(np.concatenate(by_id), q)) / 1e3 for q in (50, 99))
    d50, d99 = (float(np.percentile(np.concatenate(by_dict), q)) / 1e3 for q in (50, 99))
    benchmark.extra_info.update(p50_us=i50, p99_us=i99, dict_p50_us=d50, dict_p99_us=d99, added_p50_us=i50 - d50,
                                added_p99_us=i99 - d99, goal_added_p50_us=5.0)
    _rounds(benchmark, dec, ids, contexts, "nba")


def test_decide_profile_dict(benchmark, setup):
    dec, ids, dicts, contexts = setup
    _rounds(benchmark, dec, dicts, contexts, "dict")
