"""Profile features: ``Features.track`` and ``Features.values`` against a hand-written plain-dict baseline.

Workload: ``workloads.event_stream`` (one customer's events in sessions: ~70% "view",
20% "click", 10% "purchase" over "web", "app" and "email", with price and category
properties, timestamps slightly out of order) and eight definitions over them
(``DEFINITIONS``): views in 7 days, purchases and spend in 30 days (tiled windows of
24 tiles), clicks decayed with a half-life of a day, seconds since the last
purchase, the last viewed category, distinct channels and first seen.

The reference ("plain-dict") is what one writes by hand for exactly these eight
features: one dict per profile holding a ``{tile: count}`` dict per window (tiles
out of the window pruned when the newest tile moves, late events dropped), the
decayed value and its time, the latest purchase ts, the last view's
``(ts, seq, category)``, a set of channels, the first ts; one ``if``/``elif`` on the
event type. It computes the same values as nba on the stream (checked before
timing). It reads only the properties this stream has and checks nothing, where
nba dispatches to generic definitions and checks each event's ts and property types.

* ``profiles-track``: a batch of ``BATCH`` events tracked into a new state, per call
  (nba ``Features.track`` per event vs the baseline's ``track`` per event); events/s
  in ``extra_info["events_per_s"]``. Goal: nba >= 200,000 events/s in process
  (measured 3.3-4.2 M, the compiled steps of ``nba._core.features``; 1.1-1.2 M with
  the per-definition Python updaters); nba measured at 2.2-3.2x the baseline's speed
  (floor 1.0x).
* ``profiles-values``: ``Features.values(state, now)`` of a profile holding 200-400
  events, vs the baseline's values of the same profile: nba measured at 0.5x (floor 0.3x).
"""

from __future__ import annotations

import itertools
import math

import pytest

from benchmarks.workloads import event_stream
from nba.profiles import Count, Decayed, DistinctChannels, Features, FirstSeen, LastValue, Recency, Sum

DAY = 86_400.0
BATCH = 1_000
N_BATCHES = 20
N_PROFILES = 32
GOAL_EVENTS_PER_S = 200_000
# Measured on a shared 2-core machine (load ~2). track: 2.2-3.2x over five runs, nba at
# 3.3-4.2 M events/s (every definition an event touches applied in one compiled call),
# the baseline at 1.1-1.7 M; with the per-definition Python updaters it was 0.6-1.1x, so
# the floor of 1.0x catches a return to them. values 0.5x in every run (8.3-12.9 us vs
# 3.9-6.9 us: each windowed value walks all 24 tiles, the baseline only the pruned
# dict's few): nba is SLOWER there, the floor catches a regression and claims no win.
# The two sides run one after the other, so a burst of load on one side moves the ratio.
TRACK_FLOORS = {"plain-dict": 1.0}
VALUES_FLOORS = {"plain-dict": 0.3}

DEFINITIONS = [
    Count("views_7d", event="view", window=7 * DAY),
    Count("purchases_30d", event="purchase", window=30 * DAY),
    Sum("spend_30d", event="purchase", prop="price", window=30 * DAY),
    Decayed("clicks_decayed_1d", event="click", half_life=DAY),
    Recency("since_purchase_s", event="purchase"),
    LastValue("last_viewed_category", event="view", prop="category"),
    DistinctChannels("channels"),
    FirstSeen("first_seen"),
]
FEATURES = Features(DEFINITIONS)
FLOAT_FEATURES = ("spend_30d", "clicks_decayed_1d")  # sums: equal up to the order of the additions


# --------------------------------------------------------------------------- the plain-dict baseline

N_TILES = 24
B7 = 7 * DAY / N_TILES
B30 = 30 * DAY / N_TILES
K_CLICKS = math.log(2.0) / DAY


def dict_init() -> dict:
    return {
        "views": {}, "views_head": -1,
        "purchases": {}, "spend": {}, "purchases_head": -1,
        "clicks": 0.0, "clicks_t": -1.0,
        "last_purchase": None, "last_view": None,
        "channels": set(), "first_seen": None,
    }


def _prune(tiles: dict, oldest: int) -> None:
    for k in [k for k in tiles if k < oldest]:
        del tiles[k]


def dict_track(s: dict, ev) -> None:
    ts = ev.ts
    s["channels"].add(ev.channel)
    first = s["first_seen"]
    if first is None or ts < first:
        s["first_seen"] = ts
    etype = ev.type
    if etype == "view":
        t = int(ts // B7)
        head = s["views_head"]
        tiles = s["views"]
        if t > head:
            s["views_head"] = t
            _prune(tiles, t - N_TILES + 1)
        elif t <= head - N_TILES:
            t = None  # late: older than the window
        if t is not None:
            tiles[t] = tiles.get(t, 0) + 1
        cat = ev.properties.get("category")
        if cat is not None:
            last = s["last_view"]
            if last is None or ts > last[0] or (ts == last[0] and ev.seq > last[1]):
                s["last_view"] = (ts, ev.seq, cat)
    elif etype == "click":
        t_ref = s["clicks_t"]
        if ts >= t_ref:
            s["clicks"] = s["clicks"] * math.exp((t_ref - ts) * K_CLICKS) + 1.0
            s["clicks_t"] = ts
        else:
            s["clicks"] += math.exp((ts - t_ref) * K_CLICKS)
    elif etype == "purchase":
        t = int(ts // B30)
        head = s["purchases_head"]
        counts = s["purchases"]
        spend = s["spend"]
        if t > head:
            s["purchases_head"] = t
            _prune(counts, t - N_TILES + 1)
            _prune(spend, t - N_TILES + 1)
        elif t <= head - N_TILES:
            t = None
        if t is not None:
            counts[t] = counts.get(t, 0) + 1
            spend[t] = spend.get(t, 0.0) + ev.properties["price"]
        last = s["last_purchase"]
        if last is None or ts > last:
            s["last_purchase"] = ts


def dict_values(s: dict, now: float) -> dict:
    h7 = int(now // B7)
    lo7 = max(h7, s["views_head"]) - N_TILES + 1
    h30 = int(now // B30)
    lo30 = max(h30, s["purchases_head"]) - N_TILES + 1
    v, t = s["clicks"], s["clicks_t"]
    last_purchase = s["last_purchase"]
    last_view = s["last_view"]
    return {
        "views_7d": sum(c for k, c in s["views"].items() if lo7 <= k <= h7),
        "purchases_30d": sum(c for k, c in s["purchases"].items() if lo30 <= k <= h30),
        "spend_30d": sum((x for k, x in s["spend"].items() if lo30 <= k <= h30), 0.0),
        "clicks_decayed_1d": v if now <= t else v * math.exp((t - now) * K_CLICKS),
        "since_purchase_s": None if last_purchase is None else max(now - last_purchase, 0.0),
        "last_viewed_category": None if last_view is None else last_view[2],
        "channels": len(s["channels"]),
        "first_seen": s["first_seen"],
    }


def assert_same_values(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for name, x in ours.items():
        if name in FLOAT_FEATURES:
            assert math.isclose(x, theirs[name], rel_tol=1e-12, abs_tol=1e-12), (name, x, theirs[name])
        else:
            assert x == theirs[name] and type(x) is type(theirs[name]), (name, x, theirs[name])


# --------------------------------------------------------------------------- workloads


@pytest.fixture(scope="module")
def batches() -> list[list]:
    stream = event_stream(BATCH * N_BATCHES, seed=7)
    return [stream[i : i + BATCH] for i in range(0, len(stream), BATCH)]


@pytest.fixture(scope="module")
def tracked() -> list[tuple[list, dict, float]]:
    """``N_PROFILES`` profiles of 200-400 events: (nba state, baseline state, now)."""
    out = []
    for k in range(N_PROFILES):
        events = event_stream(200 + (k * 37) % 201, seed=100 + k)
        state, ref = FEATURES.init(), dict_init()
        for ev in events:
            FEATURES.track(state, ev)
            dict_track(ref, ev)
        now = max(ev.ts for ev in events) + (k % 8) * 0.25 * DAY  # from the last event to 1.75 days after
        out.append((state, ref, now))
    return out


def _record_rate(benchmark) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        rate = BATCH / stats.stats.median
        benchmark.extra_info.update(events_per_s=round(rate), goal_events_per_s=GOAL_EVENTS_PER_S)


# --------------------------------------------------------------------------- agreement


def test_plain_dict_reference_agrees_with_nba(batches):
    stream = [ev for b in batches[:5] for ev in b]
    state, ref = FEATURES.init(), dict_init()
    for i, ev in enumerate(stream):
        FEATURES.track(state, ev)
        dict_track(ref, ev)
        if i % 97 == 0:
            for dt in (-3600.0, 0.0, 0.3 * DAY, 5 * DAY, 40 * DAY):  # before the latest event up to past every window
                now = ev.ts + dt
                assert_same_values(FEATURES.values(state, now), dict_values(ref, now))


def test_plain_dict_values_agree_with_nba(tracked):
    for state, ref, now in tracked:
        assert_same_values(FEATURES.values(state, now), dict_values(ref, now))


# --------------------------------------------------------------------------- track


def test_track_nba(benchmark, batches):
    it = itertools.cycle(batches)
    init, track = FEATURES.init, FEATURES.track

    def run():
        state = init()
        for ev in next(it):
            track(state, ev)
        return state

    benchmark.group = "profiles-track"
    benchmark.extra_info.update(impl="nba", floors=TRACK_FLOORS, batch=BATCH, definitions=len(DEFINITIONS))
    benchmark(run)
    _record_rate(benchmark)


def test_track_plain_dict(benchmark, batches):
    it = itertools.cycle(batches)

    def run():
        state = dict_init()
        for ev in next(it):
            dict_track(state, ev)
        return state

    benchmark.group = "profiles-track"
    benchmark.extra_info.update(impl="plain-dict", batch=BATCH)
    benchmark(run)
    _record_rate(benchmark)


# --------------------------------------------------------------------------- values


def test_values_nba(benchmark, tracked):
    it = itertools.cycle([(state, now) for state, _, now in tracked])
    values = FEATURES.values
    benchmark.group = "profiles-values"
    benchmark.extra_info.update(impl="nba", floors=VALUES_FLOORS, profiles=N_PROFILES)
    benchmark(lambda: values(*next(it)))


def test_values_plain_dict(benchmark, tracked):
    it = itertools.cycle([(ref, now) for _, ref, now in tracked])
    benchmark.group = "profiles-values"
    benchmark.extra_info.update(impl="plain-dict", profiles=N_PROFILES)
    benchmark(lambda: dict_values(*next(it)))
