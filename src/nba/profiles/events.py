"""Event: one thing a customer did, on one channel, at one time; and the check it passes at the edge.

Events are what profiles are built from (``nba.profiles.features``). ``Event`` is a
plain frozen Struct, so decoding a stream of them with msgspec is cheap;
``check_event`` is the validating path, run where events enter (an API, a queue
consumer) so the feature updates can trust every field.
"""

from __future__ import annotations

import numbers
from typing import Any

import msgspec

from nba._validate import MAX_TS, text, timestamp
from nba.errors import SchemaError

__all__ = ["Event", "check_event"]

_INT64 = 1 << 63
_UINT64 = 1 << 64


class Event(msgspec.Struct, frozen=True):
    """One event: ``type`` ("purchase"), ``channel`` ("web"), ``ts`` in unix seconds (sub-second allowed).

    ``seq`` orders events that share a ``ts``: of two such events the one with the
    higher ``seq`` is the later (``LastValue`` keeps its property). ``properties``
    hold JSON-like values: str keys; str, int, float, bool, None, lists and dicts.
    """

    type: str
    channel: str
    ts: float
    properties: dict[str, Any] = {}
    seq: int = 0


def check_event(event: Event) -> Event:
    """``event`` with every field checked; ``ts`` and ``seq`` in their canonical types (float, int).

    Raises ``SchemaError`` naming the field: an empty or non-str ``type`` or
    ``channel``, a ``ts`` that is not finite unix seconds in [1970, 2100), a ``seq``
    that is not a 64-bit int, a property key that is not a str, or any text (keys,
    values) that UTF-8 cannot encode. Returns ``event`` itself when nothing changed.
    """
    # The fast path: the usual event (ASCII names, a float ts, flat ASCII or numeric properties)
    # is already canonical. Anything else goes the validating way, which words the error.
    if event.__class__ is Event:
        t, c, ts, seq, props = event.type, event.channel, event.ts, event.seq, event.properties
        if (t.__class__ is str and t and t.isascii() and c.__class__ is str and c and c.isascii()
                and ts.__class__ is float and 0.0 <= ts < MAX_TS and seq.__class__ is int
                and -_INT64 <= seq < _INT64 and props.__class__ is dict):
            for k, v in props.items():
                if k.__class__ is not str or not k.isascii():
                    break
                cls = v.__class__
                if cls is str:
                    if not v.isascii():
                        break
                elif cls is int:
                    if not -_INT64 <= v < _UINT64:
                        break
                elif cls is not float and cls is not bool and v is not None:
                    break
            else:
                return event
    return _check_event(event)


def _check_event(event: Event) -> Event:
    """``check_event``'s validating path: every field, with a message naming the first bad one."""
    if not isinstance(event, Event):
        raise SchemaError(f"expected an nba.profiles.Event, got {type(event).__name__} {event!r}")
    etype = _name(event.type, "event type")
    channel = _name(event.channel, f"event {etype!r}: channel")
    ts = timestamp(event.ts, f"event {etype!r}: ts")
    seq = event.seq
    if seq.__class__ is not int:
        if isinstance(seq, bool) or not isinstance(seq, numbers.Integral):
            raise SchemaError(f"event {etype!r}: seq must be an int, got {type(seq).__name__} {seq!r}")
        seq = int(seq)
    if not -_INT64 <= seq < _INT64:
        raise SchemaError(f"event {etype!r}: seq={seq} does not fit in 64 bits")
    props = event.properties
    if not isinstance(props, dict):
        raise SchemaError(
            f"event {etype!r}: properties must be a dict with str keys, got {type(props).__name__} {props!r}"
        )
    _check_properties(props, f"event {etype!r}: properties")
    if etype is event.type and channel is event.channel and ts is event.ts and seq is event.seq:
        return event
    return Event(etype, channel, ts, props, seq)


def _name(value: Any, what: str) -> str:
    name = text(value, what)
    if not name:
        raise SchemaError(f"{what} must not be empty")
    return name


def _check_properties(props: dict[str, Any], what: str) -> None:
    """Check keys and values of a JSON-like tree, iteratively, each container once."""
    stack: list[tuple[Any, str]] = [(props, what)]
    seen: set[int] = set()
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            text(value, where)
        elif isinstance(value, (dict, list, tuple)):
            if id(value) in seen:
                continue  # shared: checked once; a cycle ends here too
            seen.add(id(value))
            if isinstance(value, dict):
                for k, v in value.items():
                    if not isinstance(k, str):
                        raise SchemaError(
                            f"{where}: keys must be str, got {type(k).__name__} {k!r}; convert keys to str"
                        )
                    text(k, f"{where} key")
                    stack.append((v, f"{where}[{k!r}]"))
            else:
                stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))
        elif isinstance(value, bool) or isinstance(value, float) or value is None:
            pass
        elif isinstance(value, numbers.Integral):
            if not -_INT64 <= int(value) < _UINT64:
                raise SchemaError(f"{where}={value} does not fit in 64 bits (msgpack cannot hold it)")
        else:
            raise SchemaError(
                f"{where} must be JSON-like (str, int, float, bool, None, list, dict), got {type(value).__name__}"
            )
