"""The checks at the log's append edge: one fast path and one validating path per operation.

``_decision_ok`` answers with C-speed bulk tests only and declines anything
unusual; ``_decision_checked`` then converts what it can (tuples, numpy values)
or raises ``SchemaError`` naming the field and the fix. ``_readable_fast`` and
``_unreadable_reason`` are the same pair for ``DecisionLog.append`` of a prebuilt
record: what a reader could not read back.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from nba import _validate
from nba.errors import SchemaError
from nba.log.records import ActivationRecord, DecisionRecord, OutcomeRecord, SwitchRecord


def _event_id(value: Any, what: str) -> str:
    """A non-empty str that UTF-8 can encode."""
    if value.__class__ is not str or not value.isascii():
        value = _validate.text(value, what)
    if not value:
        raise SchemaError(f"{what} is empty; pass the decision's event id")
    return value


def _listed(value: Any, what: str) -> list[Any]:
    """A sequence (list, tuple, numpy array) as a list of plain Python values."""
    if value.__class__ is list:
        return value
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise SchemaError(f"{what} must be a sequence, got {type(value).__name__} {value!r}")
    tolist = getattr(value, "tolist", None)
    return tolist() if tolist is not None else list(value)


def _txt(value: Any, where: str, field: str) -> Any:
    """``value`` if it is text UTF-8 can encode (``_validate.text``); the message is built only on failure."""
    if value.__class__ is str and value.isascii():
        return value
    return _validate.text(value, f"{where}: {field}")


def _bad_key(key: Any, where: str, what: str) -> None:
    """Raise unless ``key`` (a namespace or feature name that failed the fast check) is a valid name."""
    _validate.text(key, f"{where}: {what}")
    if key[:1] == "_":
        raise SchemaError(
            f"{where}: {what} {key!r} starts with '_', which VW's JSON parser treats as a reserved key "
            "(labels, _multi, _text...); rename it"
        )


def _names_ok(names: Any) -> bool:
    """Every key of a dict is an ASCII str not starting with "_": one C-speed join and two scans."""
    try:
        joined = "\x00".join(names)
    except TypeError:
        return False
    return joined.isascii() and joined[:1] != "_" and "\x00_" not in joined


def _features_ok(features: Any) -> bool:
    """The fast path of ``_check_features``: a plain dict of dicts whose names pass ``_names_ok``."""
    if features.__class__ is not dict or not _names_ok(features):
        return False
    for feats in features.values():
        if feats.__class__ is dict:
            joined = "\x00".join(feats)
            if not (joined.isascii() and joined[:1] != "_" and "\x00_" not in joined):
                return False
    return True


def _check_features(features: Any, where: str) -> None:
    """``{namespace: {name: value}}`` (or a bare value in the default namespace) with VW-safe names.

    Values are left to the encoder (anything JSON can hold; a lone surrogate or
    an unencodable object is refused there). Names are checked a dict at a time;
    a dict that fails the quick check is walked for the message.
    """
    if features.__class__ is not dict and not isinstance(features, Mapping):
        raise SchemaError(
            f"{where}: features must be a dict {{namespace: {{name: value}}}}, got {type(features).__name__}"
        )
    if not _names_ok(features):
        for ns in features:
            _bad_key(ns, where, "namespace")
    for ns, feats in features.items():
        if (feats.__class__ is dict or isinstance(feats, Mapping)) and not _names_ok(feats):
            for name in feats:
                _bad_key(name, where, f"feature {ns!r}/")


def _flag(value: Any, what: str) -> bool:
    if value.__class__ is bool:
        return value
    if getattr(getattr(value, "dtype", None), "kind", "") == "b":  # numpy.bool_
        return bool(value)
    raise SchemaError(f"{what} must be True or False, got {type(value).__name__} {value!r}")


_FLOAT = {float}
_INT = {int}
_FLOAT_OR_NONE = {float, int, type(None)}
_INT64 = 1 << 63
_MAX_TS = _validate.MAX_TS


def _decision_ok(
    event_id: Any,
    actions: Any,
    pmf: Any,
    chosen: Any,
    probability: Any,
    scores: Any,
    ts: Any,
    features: Any,
    model_version: Any,
    variants: Any,
    policy: Any,
    channel: Any,
    unit: Any,
    deferred: Any,
    fallback: Any,
    catalog_id: Any,
) -> bool:
    """The fast path of ``append_decision``'s checks: True when every value is plainly fine.

    Only C-speed bulk tests (joins, sets, min/max/fsum over lists) and no
    messages; anything unusual (a tuple, numpy values, non-ASCII text, a bad
    value) declines, and ``_decision_checked`` then converts it or says what is
    wrong. Both give the same answer (tests/test_log_hostile.py). Measured with
    callgrind on bench_log's records: ``append_decision`` costs 109k instructions a
    call with this check first, 127k with ``_decision_checked`` alone.
    """
    try:
        n = len(actions)
        return bool(
            event_id.__class__ is str
            and event_id
            and event_id.isascii()
            and actions.__class__ is list
            and n
            and "\x00".join(actions).isascii()
            and len(set(actions)) == n
            and "" not in actions
            and pmf.__class__ is list
            and len(pmf) == n
            and set(map(type, pmf)) == _FLOAT
            and min(pmf) >= 0.0
            and max(pmf) <= 1.0
            and abs(sum(pmf) - 1.0) <= 1e-6  # rounding of a few terms is ~1e-16, far inside the tolerance
            and chosen.__class__ is list
            and (
                (len(chosen) == 1 and chosen[0].__class__ is int and 0 <= chosen[0] < n)
                or (
                    len(chosen) > 1
                    and set(map(type, chosen)) == _INT
                    and min(chosen) >= 0
                    and max(chosen) < n
                    and len(set(chosen)) == len(chosen)
                )
            )
            and (probability is None or (probability.__class__ is float and abs(probability - pmf[chosen[0]]) <= 1e-9))
            and (
                scores is None
                or (scores.__class__ is list and len(scores) == n and set(map(type, scores)) <= _FLOAT_OR_NONE)
            )
            and (ts is None or (ts.__class__ is float and 0.0 <= ts < _MAX_TS))
            and (features is None or _features_ok(features))
            and model_version.__class__ is str
            and model_version.isascii()
            and policy.__class__ is str
            and policy.isascii()
            and (channel is None or (channel.__class__ is str and channel.isascii()))
            and (catalog_id is None or (catalog_id.__class__ is str and catalog_id.isascii()))
            and (
                unit is None
                or (unit.__class__ is str and unit.isascii())
                or (unit.__class__ is int and -_INT64 <= unit < _INT64)
            )
            and deferred.__class__ is bool
            and fallback.__class__ is bool
            and (
                variants is None
                or (
                    variants.__class__ is dict
                    and "\x00".join(variants).isascii()
                    and "\x00".join(variants.values()).isascii()
                )
            )
        )
    except (TypeError, ValueError, OverflowError):  # non-str in a join, unhashable in a set, inf - inf in fsum
        return False


def _decision_checked(
    event_id: Any,
    actions: Any,
    pmf: Any,
    chosen: Any,
    probability: Any,
    scores: Any,
    ts: Any,
    features: Any,
    model_version: Any,
    variants: Any,
    policy: Any,
    channel: Any,
    unit: Any,
    deferred: Any,
    fallback: Any,
    catalog_id: Any,
) -> tuple[Any, ...]:
    """The validating path of ``append_decision``: the values as the log writes them, or ``SchemaError``.

    Sequences become lists, numpy values plain numbers; every refusal names the
    field and the fix.
    """
    eid = _event_id(event_id, "decision event_id")
    where = f"decision {eid!r}"
    acts = _listed(actions, f"{where}: actions")
    n = len(acts)
    if n == 0:
        raise SchemaError(f"{where}: actions is empty; log the arms that were offered")
    try:
        joined = "\x00".join(acts)
        distinct = set(acts) if joined.isascii() else None
    except TypeError:
        distinct = None
    if distinct is None or len(distinct) != n or "" in distinct:
        for i, a in enumerate(acts):
            _validate.text(a, f"{where}: actions[{i}]")
            if not a:
                raise SchemaError(f"{where}: actions[{i}] is an empty arm id")
            if a in acts[:i]:
                raise SchemaError(f"{where}: action {a!r} appears twice in actions; each arm is offered once")

    p = _listed(pmf, f"{where}: pmf")
    if set(map(type, p)) != _FLOAT:
        p = [_validate.number(v, f"{where}: pmf[{i}]") for i, v in enumerate(p)]
    if len(p) != n:
        raise SchemaError(f"{where}: pmf has {len(p)} entries for {n} actions; give one probability per action")
    try:
        total = math.fsum(p)
    except (ValueError, OverflowError):
        total = math.nan
    if not (min(p) >= 0.0 and max(p) <= 1.0 and abs(total - 1.0) <= 1e-6):
        for i, v in enumerate(p):
            if not 0.0 <= v <= 1.0:
                raise SchemaError(f"{where}: pmf[{i}]={v!r} is not a probability in [0, 1]")
        raise SchemaError(
            f"{where}: pmf sums to {total!r}, not 1 (within 1e-6); log the full distribution over the actions"
        )

    ch = _listed(chosen, f"{where}: chosen")
    if not ch:
        raise SchemaError(f"{where}: chosen is empty; chosen[0] is the index of the action taken")
    for i, c in enumerate(ch):
        if c.__class__ is not int:
            if isinstance(c, bool) or not isinstance(c, numbers.Integral):
                raise SchemaError(f"{where}: chosen[{i}]={c!r} is not an index into actions (an int)")
            ch = [int(x) for x in ch]
            break
    if min(ch) < 0 or max(ch) >= n:
        bad = next(c for c in ch if not 0 <= c < n)
        raise SchemaError(f"{where}: chosen index {bad} is outside actions (0..{n - 1})")
    if len(set(ch)) != len(ch):
        raise SchemaError(f"{where}: chosen={ch!r} repeats an index; rank each action once")

    taken = p[ch[0]]
    if probability is None:
        prob = taken
    else:
        prob = _validate.number(probability, f"{where}: probability")
        if abs(prob - taken) > 1e-9:
            raise SchemaError(
                f"{where}: probability={prob!r} is not pmf[chosen[0]]={taken!r}; "
                "it must be the probability of the action taken (or leave it out)"
            )

    sc = None
    if scores is not None:
        sc = _listed(scores, f"{where}: scores")
        if len(sc) != n:
            raise SchemaError(f"{where}: scores has {len(sc)} entries for {n} actions")
        if not set(map(type, sc)) <= _FLOAT_OR_NONE:
            for i, v in enumerate(sc):
                if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
                    raise SchemaError(f"{where}: scores[{i}]={v!r} is not a number (or None)")

    when = None if ts is None else _validate.timestamp(ts, f"{where}: now")
    feats = None
    if features is not None:
        _check_features(features, where)
        feats = features
    var = None
    if variants is not None:
        if not isinstance(variants, Mapping):
            raise SchemaError(f"{where}: variants must be a dict {{experiment: variant}}")
        var = {_txt(k, where, "variants key"): _txt(v, where, f"variants[{k!r}]") for k, v in variants.items()}
    return (
        eid,
        acts,
        p,
        ch,
        prob,
        sc,
        when,
        feats,
        _txt(model_version, where, "model_version"),
        var,
        _txt(policy, where, "policy"),
        None if channel is None else _txt(channel, where, "channel"),
        None if unit is None else _validate.unit_id(unit, f"{where}: unit"),
        _flag(deferred, f"{where}: deferred"),
        _flag(fallback, f"{where}: fallback"),
        None if catalog_id is None else _txt(catalog_id, where, "catalog_id"),
    )


def _readable_fast(record: Any) -> bool:
    """The numbers a reader needs as numbers (JSON has no NaN: they would be null) are finite.

    A few additions per record: ``append(record)`` is the Decider's fast path. Measured
    with callgrind on bench_log's records: ``append(record)`` costs 48k instructions a
    call with this check first, 128k with ``_unreadable_reason`` alone.
    """
    cls = record.__class__
    try:
        if cls is DecisionRecord:
            t = record.ts + record.probability + sum(record.pmf)
        elif cls is OutcomeRecord:
            t = record.ts + record.value
        elif cls is ActivationRecord:
            t = record.ts + 0.0
        elif cls is SwitchRecord:  # no event id
            t = record.ts + record.threshold
            return t - t == 0.0
        else:
            return True
        return t - t == 0.0 and record.event_id.__class__ is str  # inf - inf and nan - nan are nan
    except TypeError:
        return False


def _unreadable_reason(record: Any) -> str | None:
    """What in ``record`` a reader could not read back, or None (the fast check was a false alarm)."""
    if record.__class__ is not SwitchRecord and record.event_id.__class__ is not str:
        return f"event_id={record.event_id!r} is not a str"
    fields: list[tuple[str, Any]] = [("ts", record.ts)]
    if record.__class__ is SwitchRecord:
        fields.append(("threshold", record.threshold))
    if record.__class__ is DecisionRecord:
        fields.append(("probability", record.probability))
        fields.extend((f"pmf[{i}]", v) for i, v in enumerate(record.pmf))
    elif record.__class__ is OutcomeRecord:
        fields.append(("value", record.value))
    for name, v in fields:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            return f"{name}={v!r} is not a finite number (JSON has no NaN or inf)"
    return None
