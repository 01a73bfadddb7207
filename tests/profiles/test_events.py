"""check_event: what an event must be, and the messages that say what to fix."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nba.errors import NbaError, SchemaError
from nba.profiles import Event, check_event

TS = 1_700_000_000.5


def test_a_good_event_comes_back_unchanged():
    e = Event("purchase", "web", TS, {"amount": 3, "items": [{"sku": "a"}], "note": None}, seq=2)
    assert check_event(e) is e


def test_int_ts_becomes_float():
    e = check_event(Event("view", "app", 1_700_000_000))
    assert e.ts == 1_700_000_000.0 and type(e.ts) is float


def test_events_decode_from_json():
    e = msgspec.json.decode(b'{"type": "view", "channel": "web", "ts": 1700000000.25, "properties": {"a": 1}}', type=Event)
    assert check_event(e) == Event("view", "web", 1700000000.25, {"a": 1})


@pytest.mark.parametrize(
    "event, message",
    [
        (Event("", "web", TS), "event type must not be empty"),
        (Event("view", "", TS), "channel must not be empty"),
        (Event(3, "web", TS), "event type must be a str"),  # type: ignore[arg-type]
        (Event("view", None, TS), "channel must be a str"),  # type: ignore[arg-type]
        (Event("view", "web", math.nan), "ts must be a finite number"),
        (Event("view", "web", math.inf), "ts must be a finite number"),
        (Event("view", "web", -1.0), "not unix seconds"),
        (Event("view", "web", 1.7e12), "it looks like milliseconds"),
        (Event("view", "web", "soon"), "ts must be a finite number"),  # type: ignore[arg-type]
        (Event("view", "web", True), "ts must be a finite number"),  # type: ignore[arg-type]
        (Event("vi\ud800ew", "web", TS), "lone surrogate"),
        (Event("view", "w\udfffeb", TS), "lone surrogate"),
        (Event("view", "web", TS, {"k\ud800": 1}), "lone surrogate"),
        (Event("view", "web", TS, {"k": "v\ud800"}), "lone surrogate"),
        (Event("view", "web", TS, {"k": [{"x": "\ud800"}]}), "lone surrogate"),
        (Event("view", "web", TS, {1: "a"}), "keys must be str"),  # type: ignore[dict-item]
        (Event("view", "web", TS, {"nested": {2: "a"}}), "keys must be str"),
        (Event("view", "web", TS, {"obj": object()}), "must be JSON-like"),
        (Event("view", "web", TS, {"big": 1 << 70}), "does not fit in 64 bits"),
        (Event("view", "web", TS, ["a"]), "properties must be a dict"),  # type: ignore[arg-type]
        (Event("view", "web", TS, seq=True), "seq must be an int"),
        (Event("view", "web", TS, seq=1.5), "seq must be an int"),  # type: ignore[arg-type]
        (Event("view", "web", TS, seq=1 << 63), "does not fit in 64 bits"),
    ],
)
def test_bad_events_say_what_is_wrong(event, message):
    with pytest.raises(SchemaError, match=message) as info:
        check_event(event)
    assert isinstance(info.value, (NbaError, ValueError))


def test_the_message_names_the_field():
    with pytest.raises(SchemaError, match=r"event 'view': properties\['items'\]\[1\] key"):
        check_event(Event("view", "web", TS, {"items": [{}, {"\ud800": 1}]}))


def test_not_an_event_is_refused():
    with pytest.raises(SchemaError, match="expected an nba.profiles.Event, got dict"):
        check_event({"type": "view"})  # type: ignore[arg-type]


def test_shared_containers_are_checked_once_and_accepted():
    shared = {"a": 1}
    e = Event("view", "web", TS, {"x": shared, "y": shared})
    assert check_event(e) is e


_values = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
    st.integers(-(2**65), 2**65), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(),
                                                                                        max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(
    etype=st.one_of(st.text(max_size=5), st.integers()),
    channel=st.one_of(st.sampled_from(["web", "app", "\ud800", "é"]), st.text(max_size=3)),
    ts=st.one_of(st.floats(-10, 5e9), st.just(math.nan), st.integers(-5, 5_000_000_000)),
    seq=st.one_of(st.integers(-(2**64), 2**64), st.booleans()),
    props=st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), _values, max_size=4),
)
def test_the_fast_path_accepts_only_what_the_validating_path_returns_unchanged(etype, channel, ts, seq, props):
    from nba.profiles.events import _check_event

    ev = Event(etype, channel, ts, props, seq)  # type: ignore[arg-type]  # msgspec does not check at construction
    try:
        want: object = _check_event(ev)
    except SchemaError as e:
        want = type(e)
    try:
        got: object = check_event(ev)
    except SchemaError as e:
        got = type(e)
    assert got == want
    if got is ev:
        assert want is ev  # the fast path returns an event itself only when it is canonical
