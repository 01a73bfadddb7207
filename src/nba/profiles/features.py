"""Feature definitions over events, and ``Features``: a compiled set of them tracking one profile's state.

Each definition (``Count``, ``Sum``, ``Decayed``, ``Recency``, ``LastValue``,
``DistinctChannels``, ``FirstSeen``) is a frozen Struct that says what to compute;
its state is plain data (lists of numbers, a set of str) so a profile snapshot is a
small msgpack document. Every definition has:

* ``init()``: a new, empty state;
* ``update(state, event)``: adds one event to ``state`` **in place** (the hot path:
  no new containers per event); returns None;
* ``merge(a, b)``: a **new** state holding both (``a`` and ``b`` are left as they are);
* ``value(state, now)``: the feature value at unix time ``now``.

Merge rules (each is associative and commutative, so profiles merged in any order
and grouping agree, and tracking events into several states then merging equals
tracking them all into one, in any order; the one exception is a window's ``late``
counter, a diagnostic of arrival order that merging adds up):

* counts and sums add; windowed ones add tile by tile, aligned by tile index,
  keeping the newest ``n`` tiles (so for windows the equality holds at the same ``now``);
* a decayed value is decayed to the later reference time, then the two add;
* recency and last value keep the latest event by ``(ts, seq)`` (last value breaks
  a full tie by the larger msgpack encoding of the value);
* first seen keeps the earliest ts; channel sets take the union.

Merging is not idempotent (a state merged with itself counts twice): merging the
same two profiles once is the identity layer's job. Sums of floats, and decayed
values, are equal up to float rounding (the order of additions differs); counts
and the other kinds are equal exactly.

``Features`` compiles a list of definitions: ``track`` runs only the definitions
for the event's type (and those that see every event), ``values`` gives the dict a
``FeatureSchema`` vectorizes as a profile, ``to_bytes``/``from_bytes`` snapshot a
state for a store.

Two paths update a state, one fast and one reference: ``Features.track`` applies the
compiled steps of every definition an event touches in one call (``nba._core.features``;
``Definition._step``), and ``Definition.update`` runs the definition's Python updater
(``_updater``). They change a state identically (``tests/profiles/test_features_fast.py``);
a step hands anything unusual to its updater.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from nba._core import features as _core
from nba._validate import MAX_TS, config_text, timestamp
from nba.errors import ConfigError, SchemaError
from nba.profiles.events import Event, check_event

__all__ = [
    "N_TILES",
    "MAX_TILES",
    "Definition",
    "Count",
    "Sum",
    "Decayed",
    "Recency",
    "LastValue",
    "DistinctChannels",
    "FirstSeen",
    "AnyDefinition",
    "Features",
]

#: Tiles in a window when ``bucket`` is not given: ``bucket = window / N_TILES``. 24 makes
#: a day's window hourly tiles and an hour's 150 s tiles; the window's edge is exact to a
#: tile, so a value may count up to one tile (1/24 of the window) more than [now - window, now].
N_TILES = 24

#: Most tiles a window may have (``window / bucket``): a windowed state holds one number per tile.
MAX_TILES = 10_000

#: Latest ts of a state that has seen no event (every accepted ts is >= 0).
_NEVER = -1.0

Value = float | str | None
Updater = Callable[[Any, Event], None]
_Scalar = str | int | float | bool


class Definition(msgspec.Struct, frozen=True, tag_field="kind"):
    """Base of the feature definitions: a ``name`` (the key in ``Features.values``) and the four state operations."""

    name: str

    if TYPE_CHECKING:  # a field of each kind, declared there in its place among the kind's fields
        #: The event type this definition reads; None: every event.
        event: str | None

    def __post_init__(self) -> None:
        what = f"{type(self).__name__}({self.name!r})"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"{type(self).__name__}: name must be a non-empty str, got {self.name!r}")
        config_text(self.name, f"{type(self).__name__}: name")
        event = self.event
        if event is not None or not self._any_event:
            if not isinstance(event, str) or not event:
                raise ConfigError(f"{what}: event must be a non-empty str (an event type), got {event!r}")
            config_text(event, f"{what}: event")
        self._check(what)

    #: Whether ``event=None`` (every event) is allowed.
    _any_event: ClassVar[bool] = False

    def _check(self, what: str) -> None:
        """Check and normalize the kind's own fields; raise ``ConfigError`` saying what to fix."""

    def init(self) -> Any:
        """A new state that has seen no event."""
        raise NotImplementedError

    def update(self, state: Any, event: Event) -> None:
        """Add ``event`` to ``state`` in place; an event of another type is ignored.

        ``Features.track`` calls the same updater, built once (``_updater``); here it
        is built per call, which is fine for tests and one-off use.
        """
        if self.event is None or event.type == self.event:
            self._updater()(state, event)

    def merge(self, a: Any, b: Any) -> Any:
        """A new state holding the events of ``a`` and of ``b``; both are left unchanged."""
        raise NotImplementedError

    def value(self, state: Any, now: float) -> Value:
        """The feature at unix time ``now``; None when it has no value (no event yet)."""
        raise NotImplementedError

    def _valuer(self) -> Callable[[Any, float], Value]:
        """``value`` with every constant of the definition bound (what ``Features.values`` calls)."""
        return self.value

    def _updater(self) -> Updater:
        """The in-place update, with every constant of the definition bound: the reference ``update`` runs,
        and what the compiled step (``_step``) falls back to on anything unusual."""
        raise NotImplementedError

    def _step(self, index: int, update: Updater) -> _core.Step:
        """The compiled update of the definition at ``index`` of a state (``Features.track``'s fast path):
        the same change to the state as ``update`` (its ``_updater``), which it calls when it declines."""
        return _core.Step(index, _KIND_CODES["python"], update)

    def _state_type(self) -> Any:
        """The msgspec type a snapshot decodes this state with."""
        raise NotImplementedError

    def _dump(self, state: Any) -> Any:
        """``state`` as msgpack writes it (deterministically: sets sorted)."""
        return state

    def _load(self, obj: Any) -> Any:
        """A decoded snapshot as a state; raise ``SchemaError`` when it cannot be one."""
        return obj


# --------------------------------------------------------------------------- shared checks and helpers


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _check_prop(self: Definition, prop: Any, what: str) -> None:
    if not isinstance(prop, str) or not prop:
        raise ConfigError(f"{what}: prop must be a non-empty str (a property name), got {prop!r}")
    config_text(prop, f"{what}: prop")


def _check_where(self: Definition, where: Any, what: str) -> None:
    """``where`` as a dict sorted by key (so equal filters give equal definitions), or None."""
    if where is None:
        return
    if not isinstance(where, Mapping):
        raise ConfigError(f"{what}: where must be a dict of property -> value, got {where!r}")
    if not where:
        raise ConfigError(f"{what}: where must name at least one property; leave it None to count every event")
    for k, v in where.items():
        if not isinstance(k, str) or not k:
            raise ConfigError(f"{what}: where keys must be non-empty str (property names), got {k!r}")
        config_text(k, f"{what}: where key")
        if not isinstance(v, (str, int, float)):  # bool is an int
            raise ConfigError(
                f"{what}: where[{k!r}] must be a str, int, float or bool to compare with, got {type(v).__name__}"
            )
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{what}: where[{k!r}] must be finite, got {v!r}")
        if isinstance(v, str):
            config_text(v, f"{what}: where[{k!r}]")
    msgspec.structs.force_setattr(self, "where", dict(sorted(where.items())))


def _where_items(where: dict[str, _Scalar] | None) -> tuple[tuple[str, _Scalar, bool], ...]:
    return tuple((k, v, v.__class__ is bool) for k, v in where.items()) if where else ()


def _matches(props: dict[str, Any], items: tuple[tuple[str, _Scalar, bool], ...]) -> bool:
    """Whether every ``where`` property is present and equal (True does not equal 1; 1 equals 1.0)."""
    for k, v, is_bool in items:
        x = props.get(k)
        if x is None or x != v or (x.__class__ is bool) is not is_bool:
            return False
    return True


def _weight(x: Any) -> float | None:
    """A property as a finite float to add, or None (missing, not a number, a bool, NaN, infinite)."""
    if x.__class__ is float:
        return x if x - x == 0.0 else None
    if x.__class__ is int:
        return float(x)
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        try:
            f = float(x)
        except (OverflowError, ValueError):
            return None
        return f if math.isfinite(f) else None
    return None


_KIND_CODES = _core.KINDS

#: The finest bucket the compiled window step takes: its tile index ``ts // bucket`` stays below
#: 2**53 (exact as a double and an int64); a finer one keeps the Python updater.
_MIN_STEP_BUCKET = MAX_TS / 2.0**53


def _total(state: list[Any], now: float) -> Value:
    """The value of an all-time count or sum."""
    return state[0]


def _bad_state(defn: Definition, why: str) -> SchemaError:
    return SchemaError(
        f"profile snapshot: the state of {type(defn).__name__}({defn.name!r}) {why}; "
        "it was not written by Features.to_bytes (or it was corrupted)"
    )


# --------------------------------------------------------------------------- tiled windows


class _Windowed(Definition, frozen=True):
    """Shared by ``Count`` and ``Sum``: all-time, or a ring of tiles over a sliding window."""

    def _span(self) -> tuple[float | None, float | None]:
        """``(window, bucket)``: fields of each kind, declared there in their places among its fields."""
        raise NotImplementedError

    def _check_window(self, what: str) -> None:
        window_in, bucket_in = self._span()
        if window_in is None:
            if bucket_in is not None:
                raise ConfigError(f"{what}: bucket={bucket_in!r} needs a window; set window, or drop bucket")
            return
        window = _positive(window_in, f"{what}: window")
        bucket = window / N_TILES if bucket_in is None else _positive(bucket_in, f"{what}: bucket")
        n = round(window / bucket)
        if n < 1 or not math.isclose(n * bucket, window, rel_tol=1e-9):
            raise ConfigError(
                f"{what}: window={window_in!r} must be a whole number of buckets (bucket={bucket!r}); "
                f"for example bucket={window / max(n, 1)!r}"
            )
        if n > MAX_TILES:
            raise ConfigError(
                f"{what}: window / bucket = {n} tiles, more than MAX_TILES={MAX_TILES}; use a wider bucket"
            )
        msgspec.structs.force_setattr(self, "window", window)
        msgspec.structs.force_setattr(self, "bucket", bucket)

    @property
    def n_tiles(self) -> int:
        """Tiles in the window (``window / bucket``); 0 when all-time."""
        window, bucket = self._span()
        return 0 if window is None or bucket is None else round(window / bucket)

    _zero: ClassVar[int | float] = 0

    def init(self) -> list[Any]:
        """All-time: ``[total]``. Windowed: ``[head, late, tile_0, ..., tile_{n-1}]``.

        ``head`` is the newest tile index seen (-1: none), ``late`` the events dropped
        as older than the ring, and tile ``k`` is kept at position ``2 + k % n``.
        """
        n = self.n_tiles
        return [self._zero] if n == 0 else [-1, 0] + [self._zero] * n

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        n = self.n_tiles
        if n == 0:
            return [a[0] + b[0]]
        head = max(a[0], b[0])
        out = [head, a[1] + b[1]] + [self._zero] * n
        lo = max(head - n + 1, 0)
        for s in (a, b):
            for k in range(lo, s[0] + 1):  # the tiles of s that the merged ring keeps
                j = 2 + k % n
                out[j] += s[j]
        return out

    def value(self, state: list[Any], now: float) -> float:
        return self._valuer()(state, now)  # type: ignore[return-value]

    def _valuer(self) -> Callable[[Any, float], Value]:
        n = self.n_tiles
        zero = self._zero
        if n == 0:
            return _total
        bucket = self._span()[1]
        assert bucket is not None

        def value(state: list[Any], now: float) -> Value:
            h = int(now // bucket)
            head = state[0]
            lo = (h if h > head else head) - n + 1
            if lo < 0:
                lo = 0
            hi = h if h < head else head
            if hi < lo:
                return zero
            # Tiles lo..hi sit at ring positions lo % n onwards, wrapping at most once. sum() with a
            # start adds in that same order, tile by tile (so float sums are what a loop gives), at C
            # speed: ~3x faster than the loop for 24 tiles.
            a, count = lo % n, hi - lo + 1
            if a + count <= n:
                return sum(state[2 + a:2 + a + count], zero)
            return sum(state[2:2 + a + count - n], sum(state[2 + a:2 + n], zero))

        return value

    def _state_type(self) -> Any:
        return list[int | float]

    def _load(self, obj: Any) -> Any:
        n = self.n_tiles
        if len(obj) != (1 if n == 0 else n + 2):
            raise _bad_state(self, f"has {len(obj)} numbers, expected {1 if n == 0 else n + 2}")
        tiles = obj if n == 0 else obj[2:]
        if n and (obj[0].__class__ is not int or obj[0] < -1 or obj[1].__class__ is not int or obj[1] < 0):
            raise _bad_state(self, f"has head={obj[0]!r} and late={obj[1]!r}, expected ints >= -1 and >= 0")
        if any(x.__class__ is not self._zero.__class__ for x in tiles):
            raise _bad_state(self, f"holds a number that is not a {self._zero.__class__.__name__}")
        return obj


def _window_step(defn: _Windowed, index: int, update: Updater, prop: str | None) -> _core.Step:
    """The compiled step of a count (``prop`` None) or a sum, all-time or windowed."""
    where = _where_items(defn.where)  # type: ignore[attr-defined]
    kind = "count" if prop is None else "sum"
    n = defn.n_tiles
    if n == 0:
        return _core.Step(index, _KIND_CODES[f"{kind}_total"], update, prop=prop, where=where)
    bucket = defn._span()[1]
    assert bucket is not None
    if bucket < _MIN_STEP_BUCKET:
        return _core.Step(index, _KIND_CODES["python"], update)
    return _core.Step(index, _KIND_CODES[f"{kind}_window"], update, n=n, bucket=bucket, prop=prop, where=where,
                      zero=defn._zero)


def _advance(s: list[Any], t: int, n: int, zeros: list[Any]) -> None:
    """Move the ring's head to tile ``t`` (> head), clearing the tiles that fall out of it."""
    head = s[0]
    if t - head >= n:
        s[2:] = zeros
    else:
        zero = zeros[0]
        for k in range(head + 1, t + 1):
            s[2 + k % n] = zero
    s[0] = t


class Count(_Windowed, frozen=True, tag="count"):
    """Number of ``event`` events (whose properties match ``where``), all-time or over a sliding window.

    ``where={"category": "shoes"}`` counts only events whose property equals the
    value (present and ``==``: 1 matches 1.0, True does not match 1). With ``window`` (seconds) the
    count is over a ring of ``window / bucket`` tiles of ``bucket`` seconds
    (default ``window / N_TILES``), tile ``k`` covering ``[k * bucket, (k + 1) * bucket)``
    since the epoch (tile(t) = ``t // bucket``). At ``now`` the value sums the tiles
    ``[tile(now) - n + 1, tile(now)]``: events with ts in ``[end - window, end)`` where
    ``end = (tile(now) + 1) * bucket``, the end of now's tile. An event in a tile
    after now's is not counted at ``now``.

    The ring keeps the ``n`` tiles up to the newest tile seen (its head). An event
    in a tile at or before ``head - n`` is late: dropped, and counted in the
    state's ``late`` (``state[1]``), a diagnostic that is not part of the value
    (merging adds the two counts; being about arrival order, it is the one part of
    the state that another order or split of the same events may change). An
    event after the head moves the head (clearing the tiles that expire), so after
    a clock-skewed event far in the future the value at ``now`` counts only tiles in
    ``[max(tile(now), head) - n + 1, tile(now)]``. Events out of order within the
    ring count as if they had come in order. All-time (``window=None``) counts every
    event, whatever ``now``.
    """

    event: str
    window: float | None = None
    bucket: float | None = None
    where: dict[str, _Scalar] | None = None

    def _check(self, what: str) -> None:
        self._check_window(what)
        _check_where(self, self.where, what)

    def _span(self) -> tuple[float | None, float | None]:
        return self.window, self.bucket

    def _step(self, index: int, update: Updater) -> _core.Step:
        return _window_step(self, index, update, None)

    def _updater(self) -> Updater:
        items = _where_items(self.where)
        n = self.n_tiles
        if n == 0:

            def update_total(s: list[Any], ev: Event) -> None:
                if items and not _matches(ev.properties, items):
                    return
                s[0] += 1

            return update_total
        bucket = self.bucket
        assert bucket is not None
        zeros = [0] * n

        def update(s: list[Any], ev: Event) -> None:
            if items and not _matches(ev.properties, items):
                return
            t = int(ev.ts // bucket)
            if t > s[0]:
                _advance(s, t, n, zeros)
            elif t <= s[0] - n:
                s[1] += 1
                return
            s[2 + t % n] += 1

        return update

    def _state_type(self) -> Any:
        return list[int]


class Sum(_Windowed, frozen=True, tag="sum"):
    """Sum of the number ``prop`` over ``event`` events, all-time or over a sliding window (as ``Count``).

    The sum is a float. An event whose ``prop`` is missing, None, not a number, a
    bool, NaN or infinite adds nothing and leaves the state as it was (it is not
    counted as late either). The window, ``where`` and late-event rules are ``Count``'s.
    """

    event: str
    prop: str
    window: float | None = None
    bucket: float | None = None
    where: dict[str, _Scalar] | None = None

    _zero: ClassVar[int | float] = 0.0

    def _check(self, what: str) -> None:
        _check_prop(self, self.prop, what)
        self._check_window(what)
        _check_where(self, self.where, what)

    def _span(self) -> tuple[float | None, float | None]:
        return self.window, self.bucket

    def _step(self, index: int, update: Updater) -> _core.Step:
        return _window_step(self, index, update, self.prop)

    def _updater(self) -> Updater:
        items = _where_items(self.where)
        prop = self.prop
        n = self.n_tiles
        if n == 0:

            def update_total(s: list[Any], ev: Event) -> None:
                props = ev.properties
                if items and not _matches(props, items):
                    return
                w = props.get(prop)
                if w.__class__ is not float or w - w != 0.0:
                    w = _weight(w)
                    if w is None:
                        return
                s[0] += w

            return update_total
        bucket = self.bucket
        assert bucket is not None
        zeros = [0.0] * n

        def update(s: list[Any], ev: Event) -> None:
            props = ev.properties
            if items and not _matches(props, items):
                return
            w = props.get(prop)
            if w.__class__ is not float or w - w != 0.0:
                w = _weight(w)
                if w is None:
                    return
            t = int(ev.ts // bucket)
            if t > s[0]:
                _advance(s, t, n, zeros)
            elif t <= s[0] - n:
                s[1] += 1
                return
            s[2 + t % n] += w

        return update


# --------------------------------------------------------------------------- decayed, recency, last value


class Decayed(Definition, frozen=True, tag="decayed"):
    """Exponentially decayed count of ``event`` events (or sum of ``prop``), halving every ``half_life`` seconds.

    At ``now`` the value is ``sum(w_i * 2 ** (-(max(now, T) - ts_i) / half_life))``
    over the events, with ``w_i`` 1 (or the event's ``prop``, skipped as in ``Sum``)
    and ``T`` the latest event's ts: a ``now`` before the latest event reads the value
    at that event, so a clock-skewed future event is not weighted above 1. The state
    is ``[value, t_ref]``, the value at ``t_ref`` (the latest ts seen, -1 for none);
    an older event arriving late is decayed forward to ``t_ref``, so the result does
    not depend on the order of arrival (up to float rounding).
    """

    event: str
    half_life: float
    prop: str | None = None
    where: dict[str, _Scalar] | None = None

    def _check(self, what: str) -> None:
        msgspec.structs.force_setattr(self, "half_life", _positive(self.half_life, f"{what}: half_life"))
        if self.prop is not None:
            _check_prop(self, self.prop, what)
        _check_where(self, self.where, what)

    def init(self) -> list[float]:
        return [0.0, _NEVER]

    def merge(self, a: list[float], b: list[float]) -> list[float]:
        k = math.log(2.0) / self.half_life
        t = max(a[1], b[1])
        return [a[0] * math.exp((a[1] - t) * k) + b[0] * math.exp((b[1] - t) * k), t]

    def value(self, state: list[float], now: float) -> float:
        v, t = state
        if now <= t:
            return v
        return v * math.exp((t - now) * (math.log(2.0) / self.half_life))

    def _step(self, index: int, update: Updater) -> _core.Step:
        return _core.Step(index, _KIND_CODES["decayed"], update, k=math.log(2.0) / self.half_life, prop=self.prop,
                          where=_where_items(self.where))

    def _updater(self) -> Updater:
        items = _where_items(self.where)
        prop = self.prop
        k = math.log(2.0) / self.half_life
        exp = math.exp

        def update(s: list[float], ev: Event) -> None:
            if items and not _matches(ev.properties, items):
                return
            if prop is None:
                w = 1.0
            else:
                x = ev.properties.get(prop)
                if x.__class__ is float and x - x == 0.0:
                    w = x
                else:
                    y = _weight(x)
                    if y is None:
                        return
                    w = y
            ts = ev.ts
            t = s[1]
            if ts >= t:
                s[0] = s[0] * exp((t - ts) * k) + w
                s[1] = ts
            else:
                s[0] += w * exp((ts - t) * k)

        return update

    def _state_type(self) -> Any:
        return tuple[float, float]

    def _load(self, obj: Any) -> Any:
        if not (obj[1] == _NEVER or 0.0 <= obj[1] < MAX_TS) or not math.isfinite(obj[0]):
            raise _bad_state(self, f"is {list(obj)!r}, expected [finite value, t_ref in [0, MAX_TS) or -1]")
        return list(obj)


class Recency(Definition, frozen=True, tag="recency"):
    """Seconds from the latest ``event`` event to ``now`` (0 when that event is after ``now``); None before any.

    The state is ``[latest ts]`` (-1 for none).
    """

    event: str

    def init(self) -> list[float]:
        return [_NEVER]

    def merge(self, a: list[float], b: list[float]) -> list[float]:
        return [max(a[0], b[0])]

    def value(self, state: list[float], now: float) -> float | None:
        t = state[0]
        if t < 0.0:
            return None
        return now - t if now > t else 0.0

    def _step(self, index: int, update: Updater) -> _core.Step:
        return _core.Step(index, _KIND_CODES["recency"], update)

    def _updater(self) -> Updater:
        def update(s: list[float], ev: Event) -> None:
            if ev.ts > s[0]:
                s[0] = ev.ts

        return update

    def _state_type(self) -> Any:
        return tuple[float]

    def _load(self, obj: Any) -> Any:
        if not (obj[0] == _NEVER or 0.0 <= obj[0] < MAX_TS):
            raise _bad_state(self, f"has ts {obj[0]!r}, expected unix seconds or -1")
        return list(obj)


_encode = msgspec.msgpack.encode


def _later(ts: float, seq: int, v: Any, s: list[Any]) -> bool:
    """Whether ``(ts, seq, v)`` comes after the state's ``(ts, seq, value)``; a full tie goes to the larger encoding."""
    t = s[0]
    if ts != t:
        return ts > t
    if seq != s[1]:
        return seq > s[1]
    return _encode(v) > _encode(s[2])


class LastValue(Definition, frozen=True, tag="last_value"):
    """The ``prop`` of the latest ``event`` event by ``(ts, seq)``; None before any.

    A later-arriving event with an older ``(ts, seq)`` does not overwrite (events a
    fraction of a second apart are ordered by their ts; seq breaks equal ts). Two
    events with equal ``(ts, seq)`` keep the value whose msgpack encoding is the
    larger bytes, so the result does not depend on arrival or merge order. Events
    whose ``prop`` is missing, None, NaN or infinite, or not a str, int, float or
    bool (a list, a dict) are ignored. The state is ``[ts, seq, value]`` (ts -1 for none).
    """

    event: str
    prop: str

    def _check(self, what: str) -> None:
        _check_prop(self, self.prop, what)

    def init(self) -> list[Any]:
        return [_NEVER, 0, None]

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return list(b if _later(b[0], b[1], b[2], a) else a)

    def value(self, state: list[Any], now: float) -> Value:
        return state[2]

    def _step(self, index: int, update: Updater) -> _core.Step:
        return _core.Step(index, _KIND_CODES["last_value"], update, prop=self.prop)

    def _updater(self) -> Updater:
        prop = self.prop

        def update(s: list[Any], ev: Event) -> None:
            v = ev.properties.get(prop)
            if v is None:
                return
            cls = v.__class__
            if cls is float:
                if v - v != 0.0:
                    return  # NaN reads as missing, infinity as an error, in a FeatureSchema
            elif cls is not str and cls is not int and cls is not bool:
                return
            ts = ev.ts
            if ts > s[0] or (ts == s[0] and _later(ts, ev.seq, v, s)):
                s[0] = ts
                s[1] = ev.seq
                s[2] = v

        return update

    def _state_type(self) -> Any:
        return tuple[float, int, str | int | float | bool | None]

    def _load(self, obj: Any) -> Any:
        if not (obj[0] == _NEVER or 0.0 <= obj[0] < MAX_TS) or (obj[2] is None) is not (obj[0] == _NEVER):
            raise _bad_state(self, f"is {list(obj)!r}, expected [ts, seq, value], or [-1, 0, None] before any event")
        return list(obj)


# --------------------------------------------------------------------------- every event


class DistinctChannels(Definition, frozen=True, tag="distinct_channels"):
    """Number of distinct channels seen (in ``event`` events; None: in every event).

    The state is the set of channels itself (so merges are exact unions); a snapshot
    writes it sorted.
    """

    event: str | None = None
    _any_event: ClassVar[bool] = True

    def init(self) -> set[str]:
        return set()

    def merge(self, a: set[str], b: set[str]) -> set[str]:
        return a | b

    def value(self, state: set[str], now: float) -> float:
        return len(state)

    def _step(self, index: int, update: Updater) -> _core.Step:
        return _core.Step(index, _KIND_CODES["channels"], update)

    def _updater(self) -> Updater:
        def update(s: set[str], ev: Event) -> None:
            s.add(ev.channel)

        return update

    def _state_type(self) -> Any:
        return list[str]

    def _dump(self, state: set[str]) -> Any:
        return sorted(state)

    def _load(self, obj: Any) -> Any:
        return set(obj)


class FirstSeen(Definition, frozen=True, tag="first_seen"):
    """Unix ts of the earliest event (of ``event``; None: of any type); None before any.

    The state is ``[earliest ts]``, ``MAX_TS`` for none (later than any accepted ts).
    """

    event: str | None = None
    _any_event: ClassVar[bool] = True

    def init(self) -> list[float]:
        return [MAX_TS]

    def merge(self, a: list[float], b: list[float]) -> list[float]:
        return [min(a[0], b[0])]

    def value(self, state: list[float], now: float) -> float | None:
        return None if state[0] >= MAX_TS else state[0]

    def _step(self, index: int, update: Updater) -> _core.Step:
        return _core.Step(index, _KIND_CODES["first_seen"], update)

    def _updater(self) -> Updater:
        def update(s: list[float], ev: Event) -> None:
            if ev.ts < s[0]:
                s[0] = ev.ts

        return update

    def _state_type(self) -> Any:
        return tuple[float]

    def _load(self, obj: Any) -> Any:
        if not 0.0 <= obj[0] <= MAX_TS:
            raise _bad_state(self, f"has ts {obj[0]!r}, expected unix seconds or MAX_TS")
        return list(obj)


AnyDefinition = Count | Sum | Decayed | Recency | LastValue | DistinctChannels | FirstSeen
_KINDS = (Count, Sum, Decayed, Recency, LastValue, DistinctChannels, FirstSeen)


# --------------------------------------------------------------------------- the compiled set


class _Snapshot(msgspec.Struct, array_like=True):
    """A profile state as stored: one key per definition (a digest of it) beside its state."""

    version: int
    keys: list[bytes]
    states: list[msgspec.Raw]


_SNAPSHOT_VERSION = 1
_snapshot_decoder = msgspec.msgpack.Decoder(_Snapshot)
_definitions_decoder = msgspec.json.Decoder(list[AnyDefinition])


def _key(defn: Definition) -> bytes:
    """8 bytes that change with any field of ``defn``: a snapshot's state is reused only by the same definition."""
    return hashlib.blake2b(msgspec.msgpack.encode(defn), digest_size=8).digest()


class Features:
    """A compiled set of feature definitions: track events into one profile's state, read its values.

    A state is an opaque list (one entry per definition, in order) made by
    ``init``, ``merge`` or ``from_bytes``. ``track`` updates it in place; ``merge``
    returns a new one. Names must be unique. ``track`` touches only the
    definitions of the event's type, plus those that read every event.
    """

    __slots__ = ("definitions", "_plans", "_every", "_tracker", "_values", "_merges", "_keys", "_decoders", "_live",
                 "_buckets")

    def __init__(self, definitions: Iterable[Definition]) -> None:
        defs = tuple(definitions)
        if not defs:
            raise ConfigError("Features: declare at least one feature definition")
        names: dict[str, int] = {}
        for i, d in enumerate(defs):
            if not isinstance(d, _KINDS):
                kinds = ", ".join(k.__name__ for k in _KINDS)
                raise ConfigError(
                    f"Features: definition {i} is a {type(d).__name__} ({d!r}), not a feature kind; use one of {kinds}"
                )
            if d.name in names:
                raise ConfigError(
                    f"Features: two definitions are named {d.name!r} (at {names[d.name]} and {i}); names must be unique"
                )
            names[d.name] = i
        self.definitions: tuple[Definition, ...] = defs
        # The plan of each event type: the compiled steps of its definitions and of those reading every
        # event, in declaration order; each step holds its definition's updater to fall back on.
        steps = [d._step(i, d._updater()) for i, d in enumerate(defs)]
        every = tuple(st for st, d in zip(steps, defs) if d.event is None)
        by_type: dict[str, list[_core.Step]] = {}
        for st, d in zip(steps, defs):
            if d.event is not None:
                by_type.setdefault(d.event, []).append(st)
        self._every = every
        self._plans = {t: tuple(sorted(sts + list(every), key=lambda st: st.index)) for t, sts in by_type.items()}
        self._tracker = _core.Tracker(self._plans, every, check_event, MAX_TS)
        self._values = tuple((d.name, i, d._valuer()) for i, d in enumerate(defs))
        # What makes values change with time alone: the live kinds at every instant, the windows at
        # their tile boundaries (a window's value is a function of the state and floor(now / bucket)).
        self._live = tuple(v for v, d in zip(self._values, defs) if isinstance(d, (Recency, Decayed)))
        self._buckets = tuple(sorted({b for d in defs if isinstance(d, _Windowed) and (b := d._span()[1]) is not None}))
        self._merges = tuple(d.merge for d in defs)
        self._keys = [_key(d) for d in defs]
        self._decoders = tuple(msgspec.msgpack.Decoder(d._state_type()) for d in defs)

    @classmethod
    def from_json(cls, data: bytes | str) -> Features:
        """Features from a JSON list of definitions, each tagged with its ``kind`` (``{"kind": "count", ...}``)."""
        try:
            defs = _definitions_decoder.decode(data)
        except msgspec.ValidationError as e:
            kinds = ", ".join(repr(k.__struct_config__.tag) for k in _KINDS)
            raise ConfigError(f"Features.from_json: {e} (kind must be one of {kinds})") from None
        except msgspec.DecodeError as e:
            raise ConfigError(f"Features.from_json: not JSON: {e}") from None
        return cls(defs)

    def to_json(self) -> bytes:
        """The definitions as the JSON ``from_json`` reads."""
        return msgspec.json.encode(list(self.definitions))

    @property
    def names(self) -> tuple[str, ...]:
        """The feature names, in declaration order (the keys of ``values``)."""
        return tuple(d.name for d in self.definitions)

    def __repr__(self) -> str:
        return f"Features({list(self.definitions)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Features, (self.definitions,))

    def init(self) -> list[Any]:
        """A new state that has seen no event."""
        return [d.init() for d in self.definitions]

    def track(self, state: list[Any], event: Event) -> None:
        """Add ``event`` to ``state`` in place.

        Events should come through ``check_event`` (or be trusted); one whose ``ts``
        is not a float in range is checked here first, so it raises ``SchemaError``
        before the state changes.
        """
        self._tracker.track(state, event)

    def track_many(self, state: list[Any], events: Iterable[Event]) -> None:
        """``track`` each event in turn."""
        self._tracker.track_many(state, events)

    def values(self, state: Sequence[Any], now: float) -> dict[str, Value]:
        """Every feature at unix time ``now``: the profile dict ``FeatureSchema.vectorize`` reads (None: missing)."""
        now = timestamp(now, "now")
        self._check_len(state, "state")
        return self.values_unchecked(state, now)

    def values_unchecked(self, state: Sequence[Any], now: float) -> dict[str, Value]:
        """``values`` of a state this Features made, at a checked ``now`` (a store's fast path)."""
        return {name: value(state[i], now) for name, i, value in self._values}

    def epoch(self, now: float) -> tuple[float, ...]:
        """The tile of ``now`` of each window bucket: while it and a state stay the same, so do the
        state's values but the live ones (``refresh``). A store memoises ``values`` by it."""
        return tuple([now // b for b in self._buckets])

    def refresh(self, values: dict[str, Value], state: Sequence[Any], now: float) -> None:
        """Recompute in ``values`` the features that change at every instant (recency, decayed scores)."""
        for name, i, value in self._live:
            values[name] = value(state[i], now)

    def merge(self, a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
        """A new state holding the events of ``a`` and ``b`` (both unchanged); see the module's merge rules."""
        self._check_len(a, "a")
        self._check_len(b, "b")
        return [m(x, y) for m, x, y in zip(self._merges, a, b)]

    def to_bytes(self, state: Sequence[Any]) -> bytes:
        """``state`` as msgpack; ``from_bytes`` gives back an equal state. The same state gives the same bytes."""
        self._check_len(state, "state")
        dumped = [d._dump(s) for d, s in zip(self.definitions, state)]
        return msgspec.msgpack.encode([_SNAPSHOT_VERSION, self._keys, dumped])

    def from_bytes(self, data: bytes) -> list[Any]:
        """A state from ``to_bytes``; raises ``SchemaError`` when ``data`` is not a snapshot.

        A snapshot written by another set of definitions is read by key: a definition
        whose exact declaration (kind, name and every field) is in the snapshot gets
        its state back, any other starts empty, and the snapshot's other states are dropped.
        """
        try:
            snap = _snapshot_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise SchemaError(f"profile snapshot: {e}; pass bytes written by Features.to_bytes") from None
        if snap.version != _SNAPSHOT_VERSION:
            raise SchemaError(f"profile snapshot: version {snap.version}, this nba reads version {_SNAPSHOT_VERSION}")
        if len(snap.keys) != len(snap.states) or len(set(snap.keys)) != len(snap.keys):
            raise SchemaError("profile snapshot: keys and states do not pair up; it was corrupted")
        found = dict(zip(snap.keys, snap.states))
        state: list[Any] = []
        for d, key, decoder in zip(self.definitions, self._keys, self._decoders):
            raw = found.get(key)
            if raw is None:
                state.append(d.init())
                continue
            try:
                obj = decoder.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                raise _bad_state(d, f"does not decode ({e})") from None
            state.append(d._load(obj))
        return state

    def _check_len(self, state: Sequence[Any], what: str) -> None:
        if len(state) != len(self.definitions):
            raise SchemaError(
                f"Features: {what} has {len(state)} entries, this Features has {len(self.definitions)} "
                "definitions; pass a state made by this Features (init, merge or from_bytes)"
            )
