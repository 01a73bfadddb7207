"""Feature definitions one by one: values, window edges, late and skewed events, merges, snapshots, errors."""

from __future__ import annotations

import math
import pickle

import msgspec
import numpy as np
import pytest

from nba import Categorical, FeatureSchema, Numeric
from nba.errors import ConfigError, SchemaError
from nba.profiles import (
    MAX_TILES,
    N_TILES,
    Count,
    Decayed,
    DistinctChannels,
    Event,
    Features,
    FirstSeen,
    LastValue,
    Recency,
    Sum,
)

T0 = 1_700_000_000.0  # a multiple of 10 s: T0 + 10 k starts the 10 s tile K0 + k
K0 = int(T0 // 10)


def ev(t: float, type: str = "view", channel: str = "web", seq: int = 0, **props) -> Event:
    return Event(type, channel, T0 + t, props, seq)


def run(defn, events, now):
    s = defn.init()
    for e in events:
        defn.update(s, e)
    return defn.value(s, T0 + now), s


# --------------------------------------------------------------------------- Count / Sum: all-time


def test_count_all_time_counts_every_event_of_its_type():
    c = Count("views", "view")
    v, _ = run(c, [ev(0), ev(5), ev(1e6), ev(3, type="buy")], now=1)
    assert v == 3  # all-time: whatever now, events after it included


def test_count_where_needs_every_property_equal_and_true_is_not_one():
    c = Count("shoes", "view", where={"category": "shoes", "new": True})
    evs = [
        ev(0, category="shoes", new=True),
        ev(1, category="shoes", new=1),  # 1 is not True
        ev(2, category="shoes"),  # missing
        ev(3, category="bags", new=True),
        ev(4, category="shoes", new=True, extra=3),
    ]
    assert run(c, evs, now=10)[0] == 2
    assert run(Count("one", "view", where={"n": 1}), [ev(0, n=1.0), ev(1, n=True), ev(2, n=1)], now=5)[0] == 2


def test_sum_skips_missing_and_non_numeric_properties():
    s = Sum("spend", "buy", "amount")
    evs = [ev(0, "buy", amount=3), ev(1, "buy", amount=2.5), ev(2, "buy", amount="9"), ev(3, "buy", amount=True),
           ev(4, "buy", amount=math.nan), ev(5, "buy", amount=None), ev(6, "buy"), ev(7, "buy", amount=np.float32(0.5))]
    v, state = run(s, evs, now=10)
    assert v == 6.0 and type(v) is float


# --------------------------------------------------------------------------- windows: edges


W = Count("w", "view", window=40, bucket=10)  # 4 tiles; at now in tile k: tiles k-3..k, i.e. [10(k-3), 10(k+1))


def test_default_bucket_is_window_over_n_tiles():
    assert Count("c", "view", window=3600).bucket == 3600 / N_TILES
    assert Count("c", "view", window=3600).n_tiles == N_TILES


def test_window_is_start_inclusive_at_tile_granularity():
    now = 145  # tile 14: window [110, 150)
    assert run(W, [ev(110)], now)[0] == 1  # exactly at the window's start
    assert run(W, [ev(109.999)], now)[0] == 0  # just before it
    assert run(W, [ev(100)], now)[0] == 0


def test_window_end_is_the_end_of_nows_tile_exclusive():
    now = 145
    assert run(W, [ev(149.999)], now)[0] == 1  # after now, but in now's tile
    assert run(W, [ev(150)], now)[0] == 0  # exactly at the end: the next tile
    assert run(W, [ev(150)], now=150)[0] == 1  # ... which counts once now reaches it


def test_an_event_exactly_at_a_tile_boundary_belongs_to_the_tile_it_starts():
    _, s = run(W, [ev(120)], now=120)
    assert s[0] == K0 + 12 and s[2 + (K0 + 12) % 4] == 1


def test_the_window_slides_tile_by_tile():
    evs = [ev(t) for t in (0, 10, 20, 30, 35)]
    assert [run(W, evs, now)[0] for now in (0, 9.9, 10, 30, 39.9, 40, 50, 60, 70)] == [1, 1, 2, 5, 5, 4, 3, 2, 0]


def test_now_before_the_events_counts_nothing_after_it():
    assert run(W, [ev(100), ev(105)], now=50)[0] == 0


def test_late_events_are_dropped_and_counted():
    evs = [ev(140), ev(100), ev(109.99), ev(110), ev(139)]  # head tile 14 keeps 11..14
    v, s = run(W, evs, now=145)
    assert v == 3  # 140, 110, 139
    assert s[1] == 2  # 100 and 109.99 (tile 10 = head - n): late


def test_out_of_order_events_inside_the_ring_count_as_in_order():
    evs = [ev(0), ev(30), ev(10), ev(5), ev(20)]
    in_order = sorted(evs, key=lambda e: e.ts)
    for now in (0, 15, 30, 45, 60):
        assert run(W, evs, now)[0] == run(W, in_order, now)[0]
    assert run(W, evs, 30)[1][1] == 0  # none late


def test_a_skewed_future_event_moves_the_head_and_expires_the_ring():
    evs = [ev(100), ev(110), ev(1_000_000)]  # the last: a clock far ahead
    v, s = run(W, evs, now=115)
    assert v == 0  # tiles 11..14 were cleared when the head moved to tile 100000
    assert s[0] == K0 + 100_000
    assert run(W, evs, now=1_000_001)[0] == 1
    W.update(s, ev(112))  # the real clock's events are now late
    assert s[1] == 1


def test_advancing_the_head_by_less_than_the_ring_clears_only_expired_tiles():
    _, s = run(W, [ev(0), ev(10), ev(20), ev(30), ev(50)], now=50)
    # head 5: kept tiles 2..5 -> 20, 30, (40: none), 50
    assert W.value(s, T0 + 50) == 3
    assert sorted(s[2:]) == [0, 1, 1, 1]


def test_windowed_sum():
    s = Sum("spend", "buy", "amount", window=20, bucket=10)
    evs = [ev(0, "buy", amount=5), ev(12, "buy", amount=2.5), ev(25, "buy", amount=1)]
    so_far = [[e for e in evs if e.ts <= T0 + now] for now in (5, 15, 25, 35, 45)]
    assert [run(s, es, now)[0] for es, now in zip(so_far, (5, 15, 25, 35, 45))] == [5.0, 7.5, 3.5, 1.0, 0.0]
    # read at a now before the head, the tiles the head pushed out are gone: tile 0 here
    assert run(s, evs, now=5)[0] == 0.0 and run(s, evs, now=15)[0] == 2.5


def test_windowed_merge_adds_tiles_by_index_and_keeps_the_newest():
    a, b = W.init(), W.init()
    for e in (ev(0), ev(10), ev(20)):
        W.update(a, e)
    for e in (ev(20), ev(50), ev(40)):
        W.update(b, e)
    m = W.merge(a, b)
    assert m[0] == K0 + 5  # head: tile 5, keeping tiles 2..5
    assert W.value(m, T0 + 55) == 4  # 20 (twice), 40, 50
    assert m == W.merge(b, a)
    assert a[2:] != m[2:] and W.value(a, T0 + 25) == 3  # inputs untouched


# --------------------------------------------------------------------------- Decayed


def test_decayed_count_halves_every_half_life():
    d = Decayed("clicks", "click", half_life=60)
    v, s = run(d, [ev(0, "click"), ev(60, "click")], now=120)
    assert v == pytest.approx(0.25 + 0.5, rel=1e-12)
    assert s == [1.5, T0 + 60]


def test_decayed_late_event_is_decayed_forward_to_t_ref():
    d = Decayed("clicks", "click", half_life=10)
    v1, _ = run(d, [ev(0, "click"), ev(30, "click"), ev(10, "click")], now=40)
    v2, _ = run(d, [ev(0, "click"), ev(10, "click"), ev(30, "click")], now=40)
    assert v1 == pytest.approx(v2, rel=1e-12) == pytest.approx(2**-4 + 2**-3 + 2**-1, rel=1e-12)


def test_decayed_before_the_latest_event_reads_its_value_there():
    d = Decayed("clicks", "click", half_life=10)
    assert run(d, [ev(0, "click"), ev(10, "click")], now=5)[0] == pytest.approx(1.5)
    assert run(d, [], now=5)[0] == 0.0


def test_decayed_sum_of_a_property():
    d = Decayed("spend", "buy", half_life=10, prop="amount")
    assert run(d, [ev(0, "buy", amount=8), ev(0, "buy", amount="x")], now=20)[0] == pytest.approx(2.0)


def test_decayed_merge_decays_to_the_later_reference():
    d = Decayed("clicks", "click", half_life=10)
    _, a = run(d, [ev(0, "click")], 0)
    _, b = run(d, [ev(10, "click")], 0)
    m = d.merge(a, b)
    assert m[1] == T0 + 10 and m[0] == pytest.approx(1.5) and d.merge(b, a) == m


# --------------------------------------------------------------------------- Recency, LastValue, DistinctChannels, FirstSeen


def test_recency():
    r = Recency("since", "buy")
    assert run(r, [], now=0)[0] is None
    assert run(r, [ev(10, "buy"), ev(4, "buy"), ev(100)], now=25)[0] == 15.0
    assert run(r, [ev(10, "buy")], now=5)[0] == 0.0  # an event after now: never negative


def test_last_value_is_the_latest_by_ts_then_seq():
    lv = LastValue("sku", "buy", "sku")
    evs = [ev(10.5, "buy", sku="b"), ev(10.25, "buy", sku="late")]  # arrives later, happened earlier
    assert run(lv, evs, 0)[0] == "b"
    evs = [ev(10, "buy", seq=2, sku="two"), ev(10, "buy", seq=1, sku="one")]
    assert run(lv, evs, 0)[0] == "two"
    assert run(lv, evs[::-1], 0)[0] == "two"


def test_last_value_keeps_sub_second_updates():
    lv = LastValue("sku", "buy", "sku")
    assert run(lv, [ev(0.1, "buy", sku="a"), ev(0.2, "buy", sku="b")], 1)[0] == "b"


def test_last_value_full_tie_goes_to_the_larger_encoding_in_any_order():
    lv = LastValue("sku", "buy", "sku")
    a, b = ev(5, "buy", sku="apple"), ev(5, "buy", sku="banana")
    want = max(["apple", "banana"], key=msgspec.msgpack.encode)
    assert run(lv, [a, b], 0)[0] == run(lv, [b, a], 0)[0] == want
    _, sa = run(lv, [a], 0)
    _, sb = run(lv, [b], 0)
    assert lv.value(lv.merge(sa, sb), 0) == lv.value(lv.merge(sb, sa), 0) == want


def test_last_value_ignores_missing_none_nan_and_containers():
    lv = LastValue("x", "buy", "x")
    evs = [ev(0, "buy", x=1), ev(1, "buy"), ev(2, "buy", x=None), ev(3, "buy", x=math.nan), ev(4, "buy", x=[1])]
    assert run(lv, evs, 10)[0] == 1
    assert run(lv, [], 10)[0] is None


def test_distinct_channels_and_first_seen_read_every_event():
    f = Features([DistinctChannels("channels"), FirstSeen("first"), DistinctChannels("buy_channels", "buy")])
    s = f.init()
    for e in (ev(5, channel="web"), ev(2, "buy", channel="app"), ev(9, "other", channel="web"), ev(1, "x", channel="sms")):
        f.track(s, e)
    assert f.values(s, T0 + 10) == {"channels": 3, "first": T0 + 1, "buy_channels": 1}
    assert f.values(f.init(), T0) == {"channels": 0, "first": None, "buy_channels": 0}


# --------------------------------------------------------------------------- Features


def make_features() -> Features:
    return Features(
        [
            Count("views_1h", "view", window=3600),
            Count("shoe_views_7d", "view", window=7 * 86400, bucket=3600, where={"category": "shoes"}),
            Sum("spend_30d", "purchase", "amount", window=30 * 86400, bucket=86400),
            Decayed("clicks", "click", half_life=86400),
            Recency("since_purchase", "purchase"),
            LastValue("last_category", "view", "category"),
            FirstSeen("first_seen"),
            DistinctChannels("channels"),
        ]
    )


def test_track_touches_only_the_definitions_of_the_events_type():
    f = make_features()
    s = f.init()
    before = f.to_bytes(s)
    f.track(s, ev(0, "unknown"))
    after = f.values(s, T0)
    assert after["first_seen"] == T0 and after["channels"] == 1 and after["views_1h"] == 0
    s2 = f.from_bytes(before)
    f.track(s2, ev(0, "purchase", amount=4))
    assert f.values(s2, T0)["views_1h"] == 0 and f.values(s2, T0)["spend_30d"] == 4.0


def test_track_refuses_a_bad_ts_before_changing_anything():
    f = make_features()
    s = f.init()
    f.track(s, ev(0, category="shoes"))
    snapshot = f.to_bytes(s)
    for bad in (math.nan, math.inf, -5.0, 1.7e12, "now"):
        with pytest.raises(SchemaError, match="ts"):
            f.track(s, Event("view", "web", bad))  # type: ignore[arg-type]
    assert f.to_bytes(s) == snapshot


def test_track_accepts_an_int_ts():
    f = make_features()
    s = f.init()
    f.track(s, Event("view", "web", 1_700_000_000))  # type: ignore[arg-type]
    assert f.values(s, T0)["views_1h"] == 1


def test_values_feed_a_feature_schema():
    f = make_features()
    s = f.init()
    f.track_many(s, [ev(0, category="shoes", channel="app"), ev(10, "purchase", amount=20.0), ev(20, "click")])
    values = f.values(s, T0 + 60)
    schema = FeatureSchema(
        [
            Numeric("views_1h"),
            Numeric("shoe_views_7d"),
            Numeric("spend_30d"),
            Numeric("clicks"),
            Numeric("since_purchase", default=1e9),
            Categorical("last_category", ["shoes", "bags"]),
            Numeric("channels"),
        ],
        extra_profile=["first_seen"],
    )
    x = schema.vectorize(values)
    assert x[schema.feature_names.index("since_purchase")] == 50.0
    assert x[schema.feature_names.index("last_category=shoes")] == 1.0
    empty = schema.vectorize(f.values(f.init(), T0))  # None -> missing -> default
    assert empty[schema.feature_names.index("since_purchase")] == 1e9


def test_values_refuse_a_bad_now():
    with pytest.raises(SchemaError, match="now"):
        make_features().values(make_features().init(), math.nan)


def test_merge_and_values_refuse_a_state_of_another_features():
    f = make_features()
    with pytest.raises(SchemaError, match="pass a state made by this Features"):
        f.merge(f.init(), [[0]])
    with pytest.raises(SchemaError, match="pass a state made by this Features"):
        f.values([[0]], T0)


def test_merge_leaves_its_inputs_unchanged():
    f = make_features()
    a, b = f.init(), f.init()
    f.track(a, ev(0, channel="web", category="shoes"))
    f.track(b, ev(5, channel="app", category="bags"))
    ba, bb = f.to_bytes(a), f.to_bytes(b)
    m = f.merge(a, b)
    assert f.to_bytes(a) == ba and f.to_bytes(b) == bb
    assert f.values(m, T0 + 5)["channels"] == 2 and f.values(m, T0 + 5)["views_1h"] == 2
    f.track(m, ev(6, channel="sms"))
    assert f.to_bytes(a) == ba and f.to_bytes(b) == bb  # nothing shared


def test_features_pickle_and_json_round_trip():
    f = make_features()
    assert pickle.loads(pickle.dumps(f)).definitions == f.definitions
    assert Features.from_json(f.to_json()).definitions == f.definitions
    assert f.names[0] == "views_1h"


# --------------------------------------------------------------------------- snapshots


def test_snapshot_bytes_do_not_depend_on_set_order():
    f = Features([DistinctChannels("channels")])
    a, b = f.init(), f.init()
    for ch in ("web", "app", "sms", "email"):
        f.track(a, ev(0, channel=ch))
    for ch in ("email", "sms", "app", "web"):
        f.track(b, ev(0, channel=ch))
    assert f.to_bytes(a) == f.to_bytes(b)


def test_a_snapshot_survives_adding_and_changing_definitions():
    old = Features([Count("views", "view"), Count("views_1h", "view", window=3600), Recency("since", "view")])
    s = old.init()
    old.track_many(s, [ev(0), ev(10)])
    new = Features([Recency("since", "view"), Count("views_1h", "view", window=7200), Count("views", "view"), FirstSeen("f")])
    s2 = new.from_bytes(old.to_bytes(s))
    assert new.values(s2, T0 + 20) == {"since": 10.0, "views_1h": 0, "views": 2, "f": None}  # changed or new: empty


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "pass bytes written by Features.to_bytes"),
        (b"\x93\x02\x90\x90", "version 2"),
        (msgspec.msgpack.encode([1, [b"12345678"], []]), "do not pair up"),
        (msgspec.msgpack.encode([1, [b"x", b"x"], [1, 2]]), "do not pair up"),
    ],
)
def test_bad_snapshots_are_refused(data, message):
    with pytest.raises(SchemaError, match=message):
        make_features().from_bytes(data)


def test_a_corrupted_state_in_a_snapshot_is_refused():
    f = Features([Count("w", "view", window=40, bucket=10)])
    s = f.init()
    version, keys, states = msgspec.msgpack.decode(f.to_bytes(s))
    for bad, message in [([-1, 0, 0], "has 3 numbers, expected 6"), ([-1, 0, 0, 0, 0, 0.5], "Expected `int`, got `float`"),
                         ([-2, 0, 0, 0, 0, 0], "head=-2"), ("x", "does not decode")]:
        with pytest.raises(SchemaError, match=message):
            f.from_bytes(msgspec.msgpack.encode([version, keys, [bad]]))


# --------------------------------------------------------------------------- bad definitions


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Count("c", "view", window=-60), "window must be a finite number of seconds > 0"),
        (lambda: Count("c", "view", window=0), "window must be a finite number of seconds > 0"),
        (lambda: Count("c", "view", window=math.inf), "window must be a finite number"),
        (lambda: Count("c", "view", window=100, bucket=30), "must be a whole number of buckets"),
        (lambda: Count("c", "view", window=100, bucket=200), "must be a whole number of buckets"),
        (lambda: Count("c", "view", window=100, bucket=-10), "bucket must be a finite number"),
        (lambda: Count("c", "view", bucket=10), "needs a window"),
        (lambda: Count("c", "view", window=MAX_TILES + 1, bucket=1), "more than MAX_TILES"),
        (lambda: Count("", "view"), "name must be a non-empty str"),
        (lambda: Count("c", ""), "event must be a non-empty str"),
        (lambda: Count("c", None), "event must be a non-empty str"),  # type: ignore[arg-type]
        (lambda: Count("c\ud800", "view"), "lone surrogate"),
        (lambda: Count("c", "view", where={}), "at least one property"),
        (lambda: Count("c", "view", where={"a": [1]}), "must be a str, int, float or bool"),
        (lambda: Count("c", "view", where={"a": math.nan}), "must be finite"),
        (lambda: Count("c", "view", where={1: "a"}), "where keys must be non-empty str"),  # type: ignore[dict-item]
        (lambda: Sum("s", "buy", ""), "prop must be a non-empty str"),
        (lambda: Decayed("d", "click", half_life=0), "half_life must be a finite number of seconds > 0"),
        (lambda: Decayed("d", "click", half_life=-1), "half_life must be"),
        (lambda: Decayed("d", "click", half_life=True), "half_life must be"),
        (lambda: LastValue("l", "buy", None), "prop must be"),  # type: ignore[arg-type]
        (lambda: Recency("r", None), "event must be a non-empty str"),  # type: ignore[arg-type]
    ],
)
def test_bad_definitions_say_what_to_fix(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_a_window_that_is_a_whole_number_of_float_buckets_is_accepted():
    assert Count("c", "view", window=0.3, bucket=0.1).n_tiles == 3


def test_duplicate_names_are_refused():
    with pytest.raises(ConfigError, match="two definitions are named 'n' .at 0 and 2."):
        Features([Count("n", "view"), Recency("r", "view"), Sum("n", "buy", "amount")])


def test_unknown_kinds_are_refused():
    with pytest.raises(ConfigError, match="definition 0 is a Numeric .* not a feature kind; use one of Count, Sum"):
        Features([Numeric("n")])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="kind must be one of 'count', 'sum'"):
        Features.from_json(b'[{"kind": "median", "name": "m", "event": "view"}]')
    with pytest.raises(ConfigError, match="window must be a finite number"):
        Features.from_json(b'[{"kind": "count", "name": "m", "event": "view", "window": -1}]')
    with pytest.raises(ConfigError, match="not JSON"):
        Features.from_json(b"[{")
    with pytest.raises(ConfigError, match="at least one"):
        Features([])


def test_equal_filters_give_equal_definitions():
    a = Count("c", "view", where={"a": 1, "b": "x"})
    b = Count("c", "view", where={"b": "x", "a": 1})
    assert a == b and msgspec.msgpack.encode(a) == msgspec.msgpack.encode(b)
