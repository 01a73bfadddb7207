"""Checks of values at the API edge, shared by every module that takes them from a caller.

Each check returns the value in the form the log writes (a plain ``str``, ``int``
or ``float``) or raises ``SchemaError`` saying what was wrong and how to fix it.
They run before anything is learned or logged, so a bad value changes nothing.
``config_text`` and ``config_json_text`` check text in a configuration (a catalogue's
ids, payloads, rules) once, when it is built, and raise ``ConfigError`` instead.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from nba.errors import ConfigError, SchemaError

__all__ = ["MAX_TS", "text", "timestamp", "number", "unit_id", "config_text", "config_json_text"]

#: Latest timestamp nba accepts: 2100-01-01T00:00:00Z in unix seconds. A millisecond
#: timestamp passed as seconds (~1.7e12) lies far beyond it, and every accepted
#: timestamp converts to a calendar date (dsjson's ISO ``Timestamp``).
MAX_TS = 4102444800.0

_INT64 = 1 << 63


def text(value: Any, what: str) -> str:
    r"""``value`` as a str that UTF-8 can encode (no lone surrogates such as ``"\ud800"``)."""
    if value.__class__ is not str:
        if not isinstance(value, str):
            raise SchemaError(f"{what} must be a str, got {type(value).__name__} {value!r}")
        value = str(value)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise SchemaError(
                f"{what} {value!r} is not valid text: {e.reason} at position {e.start} "
                "(a lone surrogate cannot be written as UTF-8); decode input with errors='replace'"
            ) from None
    return value


def number(value: Any, what: str) -> float:
    """``value`` as a finite float; bools and non-numbers are refused."""
    if value.__class__ is float:
        if value - value == 0.0:  # finite: inf - inf and nan - nan are nan
            return value
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            f = float(value)
        except (OverflowError, ValueError):
            f = math.nan
        if math.isfinite(f):
            return f
    raise SchemaError(f"{what} must be a finite number, got {type(value).__name__} {value!r}")


def timestamp(value: Any, what: str) -> float:
    """``value`` as unix seconds in ``[0, MAX_TS)``; milliseconds and non-finite values are refused."""
    ts = number(value, what)
    if not 0.0 <= ts < MAX_TS:
        hint = " (it looks like milliseconds: divide by 1000)" if MAX_TS <= ts < MAX_TS * 1000 else ""
        raise SchemaError(f"{what}={value!r} is not unix seconds between 1970 and 2100{hint}")
    return ts


def unit_id(value: Any, what: str = "unit id") -> str | int:
    """An allocation unit (a customer id) as a str or a 64-bit int; None is handled by callers."""
    cls = value.__class__
    if cls is str:
        return text(value, what)
    if cls is int:
        if -_INT64 <= value < _INT64:
            return value
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        v = int(value)
        if -_INT64 <= v < _INT64:
            return v
    elif isinstance(value, str):
        return text(value, what)
    raise SchemaError(
        f"{what} must be a str or an int (64-bit), got {type(value).__name__} {value!r}; "
        "convert ids to str before passing them"
    )


def config_text(value: str, what: str) -> None:
    """Raise ``ConfigError`` if ``value`` cannot be written as UTF-8 (a lone surrogate): the log could not hold it."""
    if not value.isascii():
        try:
            text(value, what)
        except SchemaError as e:
            raise ConfigError(str(e)) from None


def config_json_text(value: Any, what: str) -> None:
    """``config_text`` on every str (keys included) of a JSON-like value; iterative, each container once."""
    stack = [value]
    seen: set[int] = set()
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            config_text(v, what)
        elif isinstance(v, (Mapping, list, tuple)):
            if id(v) in seen:
                continue  # shared, or a cycle: the JSON encoding refuses the latter
            seen.add(id(v))
            if isinstance(v, Mapping):
                for k, x in v.items():
                    if isinstance(k, str):
                        config_text(k, f"{what} key")
                    stack.append(x)
            else:
                stack.extend(v)
