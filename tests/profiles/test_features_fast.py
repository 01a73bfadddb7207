"""``Features.track`` (the compiled steps) changes a state exactly as the definitions' Python updaters do."""

from __future__ import annotations

import fractions

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nba._core import features as core
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
)

BASE = 1_700_000_000.0
TYPES = ["view", "buy", "click"]
PROPS = ["amount", "price", "category", "flag"]


def canon(x):
    """``x`` with every type and float bit made visible, so == means bit-identical (-0.0 is not 0.0, 1 is not 1.0)."""
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [canon(v) for v in x])
    if isinstance(x, set):
        return ("set", sorted(canon(v) for v in x))
    if type(x) is float:
        return ("float", x.hex())
    return (type(x).__name__, repr(x))


wheres = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["category", "flag"]), st.sampled_from(["a", "b", True, False, 1, 1.0, 0]),
                    min_size=1, max_size=2),
)


@st.composite
def windows(draw):
    """``(window, bucket)``: all-time, or 1-6 tiles of a bucket that puts tile edges on the event grid."""
    if draw(st.booleans()):
        return None, None
    bucket = draw(st.sampled_from([0.5, 1.25, 2.5, 10.0]))
    return draw(st.integers(1, 6)) * bucket, bucket


@st.composite
def definition(draw, name):
    kind = draw(st.sampled_from(["count", "sum", "decayed", "recency", "last", "channels", "first"]))
    etype = draw(st.sampled_from(TYPES))
    if kind in ("count", "sum"):
        window, bucket = draw(windows())
        where = draw(wheres)
        if kind == "count":
            return Count(name, etype, window=window, bucket=bucket, where=where)
        return Sum(name, etype, draw(st.sampled_from(PROPS)), window=window, bucket=bucket, where=where)
    if kind == "decayed":
        return Decayed(name, etype, half_life=draw(st.sampled_from([1.0, 7.5, 30.0])),
                       prop=draw(st.sampled_from([None, *PROPS])), where=draw(wheres))
    if kind == "recency":
        return Recency(name, etype)
    if kind == "last":
        return LastValue(name, etype, draw(st.sampled_from(PROPS)))
    event = draw(st.sampled_from([None, *TYPES]))
    return DistinctChannels(name, event) if kind == "channels" else FirstSeen(name, event)


@st.composite
def definitions(draw):
    return [draw(definition(f"d{i}")) for i in range(draw(st.integers(1, 8)))]


# What the updaters skip, add or decline on: NaN, infinities, bools, None, str, containers, -0.0, a
# float subclass and a Fraction (numbers the compiled step hands to the updater), ints past 64 bits.
values = st.one_of(
    st.integers(-5, 50),
    st.floats(-100, 100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["a", "b", True, False, None, [1], {"x": 1}, -0.0, 2**70, 1e308]),
    st.builds(np.float64, st.floats(-10, 10)),
    st.just(fractions.Fraction(1, 3)),
)
# Mostly on a half-second grid (tile edges, equal ts), some anywhere; a few far ahead or long before
# (so windows see events after the ring's head and before its tail).
offsets = st.one_of(
    st.integers(0, 60).map(lambda k: k * 0.5), st.integers(0, 60).map(lambda k: k * 0.5),
    st.floats(0, 30), st.sampled_from([-500.0, 5_000.0]),
)
events = st.builds(
    lambda t, ch, off, props, seq: Event(t, ch, BASE + off, props, seq),
    st.sampled_from([*TYPES, "other"]),
    st.sampled_from(["web", "app"]),
    offsets,
    st.dictionaries(st.sampled_from(PROPS), values, max_size=4),
    st.integers(0, 2),
)


def reference_track(defs, state, event):
    for d, s in zip(defs, state):
        d.update(s, event)


@settings(max_examples=300, deadline=None)
@given(definitions(), st.lists(events, max_size=40))
def test_compiled_steps_change_state_as_the_updaters_do(defs, evs):
    features = Features(defs)
    fast, many, ref = features.init(), features.init(), features.init()
    for e in evs:
        features.track(fast, e)
        reference_track(defs, ref, e)
        assert canon(fast) == canon(ref), e
    features.track_many(many, evs)
    assert canon(many) == canon(ref)


def test_every_kind_compiles_to_its_own_step():
    defs = [Count("c", "v"), Count("cw", "v", window=10), Sum("s", "v", "x"), Sum("sw", "v", "x", window=10),
            Decayed("d", "v", half_life=1.0), Recency("r", "v"), LastValue("l", "v", "x"),
            DistinctChannels("ch"), FirstSeen("f")]
    kinds = [core.KINDS[k] for k in ("count_total", "count_window", "sum_total", "sum_window", "decayed",
                                      "recency", "last_value", "channels", "first_seen")]
    plan = Features(defs)._plans["v"]
    assert [st.kind for st in plan] == kinds and [st.index for st in plan] == list(range(len(defs)))


def test_a_bucket_too_fine_for_int64_tiles_keeps_the_python_updater():
    d = Count("c", "v", window=1e-6, bucket=1e-7)
    features = Features([d])
    assert features._plans["v"][0].kind == core.KINDS["python"]
    state, ref = features.init(), features.init()
    for off in (0.0, 1e-7, 3e-7):
        e = Event("v", "web", BASE + off)
        features.track(state, e)
        d.update(ref[0], e)
    assert canon(state) == canon(ref) and state[0][2:] != [0] * 10


def test_a_state_of_other_containers_goes_to_the_updaters():
    """A tuple state, or entries that are not the lists init makes, decline to the updaters (which accept them)."""
    defs = [Count("c", "v"), Recency("r", "v"), DistinctChannels("ch")]
    features = Features(defs)
    state = ([0], [1.0], {"web"})  # a tuple of entries
    features.track(state, Event("v", "app", BASE))
    assert state == ([1], [BASE], {"web", "app"})
    weird = [[0.5], [True], frozenset()]  # a float count, a bool ts: the updaters' arithmetic, their errors
    with pytest.raises(AttributeError):  # frozenset has no add: the updater's error, unchanged
        features.track(weird, Event("v", "app", BASE))
    assert weird[:2] == [[1.5], [BASE]]


def test_a_last_value_tie_is_settled_by_the_updater():
    d = LastValue("l", "v", "x")
    features = Features([d])
    state = features.init()
    for x, seq in (("b", 0), ("a", 0), ("c", 1), ("a", 1)):  # same ts: seq, then the larger msgpack encoding
        features.track(state, Event("v", "web", BASE, {"x": x}, seq))
    assert state[0] == [BASE, 1, "c"]


def test_step_rejects_a_malformed_plan():
    with pytest.raises(ValueError, match="kind"):
        core.Step(0, 99, print)
    with pytest.raises(ValueError, match="window"):
        core.Step(0, core.KINDS["count_window"], print, n=0, bucket=1.0)
    with pytest.raises(ValueError, match="prop"):
        core.Step(0, core.KINDS["sum_total"], print)


def test_properties_that_are_not_a_dict_go_to_the_updaters():
    """A trusted event may carry another Mapping: the steps that read properties hand it to the updaters."""
    import types

    defs = [Sum("s", "v", "x", window=10.0), Count("c", "v", where={"k": "a"}), LastValue("l", "v", "x")]
    features = Features(defs)
    fast, ref = features.init(), features.init()
    for off, props in ((0.0, {"x": 2, "k": "a"}), (1.0, {"x": 2.5, "k": "b"})):
        e = Event("v", "web", BASE + off, types.MappingProxyType(props))
        features.track(fast, e)
        reference_track(defs, ref, e)
    assert canon(fast) == canon(ref) and fast[1] == [1] and fast[2][2] == 2.5
