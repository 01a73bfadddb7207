"""Every feature, tracked incrementally (in any order, split and merged in any grouping), equals the oracle."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nba.profiles import (
    Count,
    Decayed,
    DistinctChannels,
    Event,
    Features,
    FirstSeen,
    LastValue,
    Recency,
    Sum,
    check_event,
)
from tests.profiles.feature_oracle import matching, oracle_value, tolerance

BASE = 1_700_000_000.0  # a multiple of every bucket below; ts within a factor 2 of it subtract exactly

DEFINITIONS = [
    Count("views", "view"),
    Count("views_40s", "view", window=40, bucket=10),
    Count("views_60s", "view", window=60),  # default bucket: 60 / 24 = 2.5 s
    Count("shoe_views_30s", "view", window=30, bucket=5, where={"category": "shoes"}),
    Count("flagged", "view", where={"flag": True}),
    Count("one", "view", where={"flag": 1}),
    Sum("spend", "buy", "amount"),
    Sum("spend_20s", "buy", "amount", window=20, bucket=10),
    Sum("float_spend_50s", "buy", "price", window=50, bucket=2.5),
    Sum("items_20s", "buy", "qty", window=20, bucket=10),
    Decayed("clicks", "click", half_life=30.0),
    Decayed("spend_decayed", "buy", half_life=7.5, prop="price"),
    Recency("since_buy", "buy"),
    LastValue("last_sku", "buy", "sku"),
    LastValue("last_category", "view", "category"),
    DistinctChannels("channels"),
    DistinctChannels("buy_channels", "buy"),
    FirstSeen("first_seen"),
    FirstSeen("first_click", "click"),
]
FEATURES = Features(DEFINITIONS)

values = st.one_of(
    st.sampled_from(["shoes", "bags", "a", "b"]),
    st.integers(-5, 50),
    st.floats(-100, 100, allow_nan=False),
    st.booleans(),
    st.none(),
    st.just([1, 2]),
    st.just(float("nan")),
)
properties = st.builds(
    lambda p, qty: {**p, "qty": qty} if qty is not None else p,
    st.dictionaries(st.sampled_from(["category", "flag", "amount", "price", "sku"]), values, max_size=5),
    st.one_of(st.none(), st.integers(-10, 10**6)),
)


def event_at(offsets):
    return st.builds(
        lambda t, ch, off, props, seq: check_event(Event(t, ch, BASE + off, props, seq)),
        st.sampled_from(["view", "buy", "click", "other"]),
        st.sampled_from(["web", "app", "email"]),
        offsets,
        properties,
        st.integers(0, 2),
    )


@st.composite
def streams(draw, max_size=60):
    """Events over a span of 5 to 200 s, mostly on a grid (tile edges, equal ts), some anywhere, a few far ahead
    (clock skew), some sharing an existing event's (ts, seq) with other properties; and a ``now`` near one of
    the events (just before, at, after it), else anywhere (before the first, inside, far ahead)."""
    span = draw(st.sampled_from([5.0, 40.0, 200.0]))
    grid = draw(st.sampled_from([0.625, 1.25, 2.5, 10.0]))
    on_grid = st.integers(0, int(span / grid)).map(lambda k: k * grid)
    anywhere = st.floats(0, span, allow_nan=False)
    skew = st.integers(1_000, 5_000).map(float)
    offsets = st.one_of(on_grid, on_grid, on_grid, on_grid, anywhere, anywhere, skew)
    evs = draw(st.lists(event_at(offsets), max_size=max_size))
    if evs:
        for i, props in draw(st.lists(st.tuples(st.integers(0, len(evs) - 1), properties), max_size=max_size // 4)):
            e = evs[i]
            evs.append(Event(e.type, e.channel, e.ts, props, e.seq))
    near = [e.ts for e in evs] or [BASE]
    at = st.sampled_from(near)
    now = draw(
        st.one_of(
            st.tuples(at, st.integers(-16, 80)).map(lambda p: p[0] + p[1] * grid / 2),
            st.tuples(at, st.floats(-2, 2)).map(lambda p: max(p[0] + p[1], 0.0)),
            st.one_of(on_grid, anywhere, skew, st.integers(-20, 0).map(float)).map(lambda off: BASE + off),
        )
    )
    return evs, now


def assert_matches_oracle(state, evs, now):
    got = FEATURES.values(state, now)
    for d in DEFINITIONS:
        want = oracle_value(d, evs, now)
        v = got[d.name]
        if isinstance(d, Sum) and all(w.is_integer() for _, w in matching(d, evs)):
            assert v == want and type(v) is float, (d, v, want)  # sums of whole numbers are exact
        elif isinstance(want, float) and isinstance(v, float):
            assert v == pytest.approx(want, rel=1e-9, abs=tolerance(d, evs, now)), d
        else:
            assert v == want and type(v) is type(want), (d, v, want)


def merge_randomly(states, rnd):
    """Merge ``states`` in a random binary tree: pick two at random, merge in random order, put back."""
    states = list(states)
    while len(states) > 1:
        a = states.pop(rnd.randrange(len(states)))
        b = states.pop(rnd.randrange(len(states)))
        states.append(FEATURES.merge(a, b) if rnd.random() < 0.5 else FEATURES.merge(b, a))
    return states[0]


@settings(max_examples=300, deadline=None)
@given(streams(), st.randoms(use_true_random=False))
def test_one_state_in_any_order_equals_oracle(stream, rnd):
    evs, now = stream
    rnd.shuffle(evs)
    state = FEATURES.init()
    for e in evs:
        FEATURES.track(state, e)
    assert_matches_oracle(state, evs, now)


@settings(max_examples=300, deadline=None)
@given(streams(), st.integers(1, 6), st.randoms(use_true_random=False))
def test_partitions_merged_in_any_grouping_equal_oracle(stream, k, rnd):
    evs, now = stream
    parts = [FEATURES.init() for _ in range(k)]
    order = list(evs)
    rnd.shuffle(order)
    for e in order:
        FEATURES.track(parts[rnd.randrange(k)], e)
    assert_matches_oracle(merge_randomly(parts, rnd), evs, now)


@settings(max_examples=200, deadline=None)
@given(streams(max_size=40), st.randoms(use_true_random=False))
def test_each_definition_alone_equals_oracle(stream, rnd):
    """The per-definition API (init, update, merge, value) agrees too, and ignores other event types."""
    evs, now = stream
    for d in DEFINITIONS:
        a, b = d.init(), d.init()
        for e in evs:
            d.update(a if rnd.random() < 0.5 else b, e)
        v = d.value(d.merge(a, b), now)
        want = oracle_value(d, evs, now)
        if isinstance(want, float):
            assert v == pytest.approx(want, rel=1e-9, abs=tolerance(d, evs, now)), d
        else:
            assert v == want, d


def comparable(state):
    """A state with floats rounded to 9 significant digits, for equality up to float rounding."""

    def r(x):
        if isinstance(x, float):
            return float(f"{x:.9g}")
        if isinstance(x, list):
            return [r(y) for y in x]
        return x

    return [r(s) if isinstance(s, list) else s for s in state]


@settings(max_examples=200, deadline=None)
@given(streams(), st.integers(1, 6), st.randoms(use_true_random=False))
def test_merge_is_associative_and_commutative(stream, k, rnd):
    """The same states merged in two random orders and groupings give the same state (late counts included)."""
    evs, _ = stream
    states = []
    for chunk in (evs[i::k] for i in range(k)):
        s = FEATURES.init()
        FEATURES.track_many(s, chunk)
        states.append(s)
    before = [FEATURES.to_bytes(s) for s in states]
    one = merge_randomly(states, rnd)
    two = merge_randomly(list(reversed(states)), random.Random(rnd.random()))
    assert comparable(one) == comparable(two)
    assert [FEATURES.to_bytes(s) for s in states] == before  # merging leaves its inputs unchanged
    assert comparable(FEATURES.merge(one, FEATURES.init())) == comparable(one)  # an empty state is the identity


@settings(max_examples=200, deadline=None)
@given(streams(max_size=40), st.randoms(use_true_random=False))
def test_windows_keep_the_same_tiles_whatever_the_order(stream, rnd):
    """Counts' rings hold exactly the same tiles in one state, shuffled, or split and merged (only late differs)."""
    evs, _ = stream
    one = FEATURES.init()
    FEATURES.track_many(one, evs)
    shuffled = list(evs)
    rnd.shuffle(shuffled)
    parts = [FEATURES.init() for _ in range(3)]
    for e in shuffled:
        FEATURES.track(parts[rnd.randrange(3)], e)
    merged = merge_randomly(parts, rnd)
    for i, d in enumerate(DEFINITIONS):
        if isinstance(d, Count) and d.window is not None:
            assert merged[i][0] == one[i][0]
            assert merged[i][2:] == one[i][2:]


@settings(max_examples=200, deadline=None)
@given(streams(max_size=40))
def test_snapshot_round_trips_exactly(stream):
    evs, _ = stream
    state = FEATURES.init()
    FEATURES.track_many(state, evs)
    data = FEATURES.to_bytes(state)
    back = FEATURES.from_bytes(data)
    assert back == state
    assert [type(x) for s in back if isinstance(s, list) for x in s] == [
        type(x) for s in state if isinstance(s, list) for x in s
    ]
    assert FEATURES.to_bytes(back) == data


@pytest.mark.parametrize("seed, skew", [(1, 0.0), (2, 0.0), (3, 0.01)])
def test_long_seeded_streams_equal_oracle(seed, skew):
    """Hundreds of events, out of order, tied, late and skewed, split over states merged in a random tree."""
    rnd = random.Random(seed)
    evs = []
    for _ in range(600):
        off = rnd.choice([rnd.randrange(0, 300) * 1.25, rnd.uniform(0, 400), rnd.uniform(0, 400)])
        if rnd.random() < skew:
            off += rnd.uniform(500, 3000)
        props = {
            "category": rnd.choice(["shoes", "bags", None]),
            "flag": rnd.choice([True, 1, 0, False]),
            "amount": rnd.choice([rnd.randrange(-3, 40), None, "x"]),
            "price": rnd.uniform(-5, 100),
            "sku": rnd.choice(["a", "b", 3, 2.5, True]),
            "qty": rnd.randrange(0, 5),
        }
        evs.append(check_event(Event(rnd.choice(["view", "buy", "click"]), rnd.choice(["web", "app"]), BASE + off, props, rnd.randrange(3))))
    order = list(evs)
    rnd.shuffle(order)
    parts = [FEATURES.init() for _ in range(5)]
    for e in order:
        FEATURES.track(parts[rnd.randrange(5)], e)
    merged = merge_randomly(parts, rnd)
    latest = max(e.ts for e in evs)
    for now in [BASE + rnd.uniform(-10, 3500) for _ in range(10)] + [latest + rnd.uniform(-20, 20) for _ in range(10)]:
        assert_matches_oracle(merged, evs, now)
