"""GrowthBook's targeting conditions, compiled once into closures.

A condition is GrowthBook's MongoDB-style JSON, as its SDK payloads carry it:
``{"country": {"$in": ["NL", "BE"]}, "app.version": {"$vgte": "2.1.0"}}``. Keys are
attribute paths (dots read nested objects, array indices and ``length``) or the
logical operators ``$and $or $nor $not``; values are literals (strict, JSON-typed
equality) or operator objects: ``$eq $ne $in $nin $gt $gte $lt $lte $regex $exists
$type $size $all $elemMatch $not``, the version comparisons ``$veq $vne $vgt $vgte
$vlt $vlte`` (semver-aware: ``1.10.0 > 1.9.0``, ``1.0.0 > 1.0.0-beta``), and
GrowthBook's case-insensitive and negated forms ``$ini $nini $alli $regexi $notRegex
$notRegexi``.

Semantics are those of GrowthBook's Python SDK (``growthbook.core.evalCondition``,
which follows the JS SDK's JSON typing): values of different JSON types never
compare (``1`` is not ``"1"`` nor ``True``), ordering needs two numbers or two
strings, a missing attribute is ``None`` (``$exists: false`` and ``$ne`` match it,
``$regex`` and orderings do not), an unknown operator or a malformed part (a bad
regex, ``$in`` without a list, ``$or`` over a non-list) never matches, and an
evaluation error anywhere fails the whole condition, so ``$not`` cannot turn a
malformed condition into a match. Saved groups are not loaded: ``$inGroup`` and
``$savedGroup`` match nothing (``$notInGroup`` everything), as in an SDK without
them.

``check_condition`` lists what GrowthBook would silently treat as "no match" (an
unknown operator, a regex that does not compile, ``$in`` without a list, saved
groups nba does not load, ...): nba's own ``Experiment`` refuses such a condition,
where a payload loaded from GrowthBook keeps GrowthBook's lenient meaning.

``compile_condition`` does the parsing once: operators are resolved, regexes
compiled, ``$in`` lists turned into sets where that is exact, paths split, so an
evaluation is a few closure calls. A ``TargetingCondition`` keeps the source beside
its compiled form, for ``Experiment(condition=...)`` and messages.

Arm eligibility (``nba.rules``) stays its own language for now: it is typed
against the feature schema at catalogue build (a rule on an undeclared category is
a ``ConfigError``), where a GrowthBook condition is untyped and lenient by design.
A catalogue could accept a GrowthBook condition as one more eligibility node by
wrapping ``compile_condition`` over the profile and context attributes (the
closures take any mapping), keeping ``rules.py``'s checks for its own rules; that
change belongs to ``catalog.py``'s owner.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

__all__ = ["TargetingCondition", "compile_condition", "eval_condition", "check_condition", "MAX_CONDITION_DEPTH"]

#: How deeply a condition may nest before it counts as malformed (never matches): far beyond
#: any real targeting rule, and far below Python's recursion limit.
MAX_CONDITION_DEPTH = 64

_Result = bool | None  # True, False, or None: depends on an operator this SDK does not know
_Node = Callable[[Any], _Result]
_CONDITION_OPERATORS = ("$or", "$nor", "$and", "$savedGroup")


class _Malformed(Exception):
    """A part of a condition GrowthBook's SDK fails on when it reaches it: the condition fails."""


# Errors GrowthBook's SDK turns into "no match"; nba's closures raise _Malformed where the
# SDK would raise one of these, so only that is caught at the top.
_EVAL_ERRORS = (_Malformed, TypeError, ValueError, AttributeError, IndexError, RecursionError)


class TargetingCondition:
    """A GrowthBook condition compiled for repeated evaluation; call it with an attributes mapping.

    ``source`` is the condition as given (JSON-like dict). Evaluation never raises:
    a malformed condition simply does not match, as in GrowthBook's SDKs.
    """

    __slots__ = ("source", "_node")

    def __init__(self, condition: Any) -> None:
        self.source = condition
        self._node = _condition(condition, 0)

    def __call__(self, attributes: Mapping[str, Any]) -> bool:
        """Whether ``attributes`` satisfy the condition."""
        try:
            return self._node(attributes) is True
        except _EVAL_ERRORS:
            return False

    def __repr__(self) -> str:
        return f"TargetingCondition({self.source!r})"


def compile_condition(condition: Any) -> TargetingCondition:
    """Compile a GrowthBook condition (a dict) once; the result evaluates attribute mappings."""
    return TargetingCondition(condition)


def eval_condition(attributes: Mapping[str, Any], condition: Any) -> bool:
    """One-off evaluation, as GrowthBook's ``evalCondition``; compile once to evaluate many."""
    return TargetingCondition(condition)(attributes)


# --------------------------------------------------------------------------- JSON typing


def _is_numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, set)):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "unknown"


def _is_array_index(key: str, length: int) -> bool:
    """A canonical JS array index below ``length``: "0", "12", not "01" or "-0"."""
    return (
        len(key) <= 10 and key.isascii() and key.isdigit()
        and (key == "0" or key[0] != "0") and int(key) < length
    )


def _get_path(value: Any, segments: tuple[str, ...]) -> Any:
    for seg in segments:
        if isinstance(value, dict) and seg in value:
            value = value[seg]
        elif isinstance(value, list) and seg == "length":
            value = len(value)
        elif isinstance(value, list) and _is_array_index(seg, len(value)):
            value = value[int(seg)]
        else:
            return None
    return value


def _getter(path: str) -> Callable[[Any], Any]:
    segments = tuple(path.split("."))
    if len(segments) == 1:
        seg = segments[0]

        def get_one(a: Any) -> Any:
            if type(a) is dict:
                return a.get(seg)
            return _get_path(a, segments)

        return get_one
    return lambda a: _get_path(a, segments)


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _js_key_order(obj: dict[Any, Any]) -> list[Any]:
    keys = list(obj)
    idx = [k for k in keys if isinstance(k, str) and _is_array_index(k, 2**32 - 1)]
    rest = [k for k in keys if not (isinstance(k, str) and _is_array_index(k, 2**32 - 1))]
    return sorted(idx, key=int) + rest


def _deep_equal(a: Any, b: Any) -> bool:
    """Literal equality as JS compares ``JSON.stringify`` output: same JSON types all the way down."""
    ta = _json_type(a)
    if ta != _json_type(b):
        return False
    if ta == "array":
        return len(a) == len(b) and all(_deep_equal(_json_value(x), _json_value(y)) for x, y in zip(a, b))
    if ta == "object":
        return _js_key_order(a) == _js_key_order(b) and all(
            _deep_equal(_json_value(a[k]), _json_value(b[k])) for k in a
        )
    return bool(a == b)


def _strict_equal(a: Any, b: Any) -> bool:
    """JS ``===`` between two separately parsed JSON values: containers are never equal."""
    ta = _json_type(a)
    if ta != _json_type(b) or ta in ("array", "object"):
        return False
    return bool(a == b)


def _orderable(a: Any, b: Any) -> bool:
    return (_is_numeric(a) and _is_numeric(b)) or (isinstance(a, str) and isinstance(b, str))


def _compare(a: Any, b: Any) -> int | None:
    """-1/0/1 for two orderable values (strings by UTF-16 code units, as JS), None if NaN is involved."""
    if (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        return None
    if isinstance(a, str) and not (a.isascii() and b.isascii()):
        a = a.encode("utf-16-be", "surrogatepass")
        b = b.encode("utf-16-be", "surrogatepass")
    return (a > b) - (a < b)


def _js_number_to_string(value: float) -> str:
    """A number as JS ``String(number)`` writes it (shortest round-trip digits, JS exponent rules)."""
    try:
        x = float(value)
    except OverflowError:
        x = math.inf if value > 0 else -math.inf
    if math.isnan(x):
        return "NaN"
    if x == 0:
        return "0"
    if x < 0:
        return "-" + _js_number_to_string(-x)
    if math.isinf(x):
        return "Infinity"
    mantissa, _, exp = repr(x).partition("e")
    whole, _, fraction = mantissa.partition(".")
    padded = (whole + fraction).lstrip("0")
    digits = padded.rstrip("0")
    k = len(digits)
    n = int(exp or "0") - len(fraction) + len(padded)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    m = digits[0] + ("." + digits[1:] if k > 1 else "")
    return m + "e" + ("+" if n > 0 else "-") + str(abs(n - 1))


_VER_STRIP = re.compile(r"(^v|\+.*$)")
_VER_SPLIT = re.compile(r"[-.]")


@lru_cache(maxsize=1024)
def _padded_version_str(text: str) -> str:
    parts = _VER_SPLIT.split(_VER_STRIP.sub("", text))
    if len(parts) == 3:  # plain x.y.z sorts after its pre-releases ("~" is the largest ASCII)
        parts.append("~")
    return "-".join(p.rjust(5, " ") if p.isdigit() else p for p in parts)


def _padded_version(v: Any) -> str:
    """A version as a string that compares in version order: numeric parts left-padded."""
    if _is_numeric(v):
        v = _js_number_to_string(v)
    if not v or not isinstance(v, str):
        v = "0"
    return _padded_version_str(v)


# --------------------------------------------------------------------------- membership


def _contains_bool_or_number(values: list[Any], value: Any) -> bool:
    """0/1 or False/True in ``values`` without Python's bool/int aliasing."""
    vb = isinstance(value, bool)
    return any(x == value and isinstance(x, bool) == vb for x in values)


def _is_in(values: list[Any], av: Any, insensitive: bool = False) -> bool:
    if insensitive:
        def fold(x: Any) -> Any:
            return x.lower() if isinstance(x, str) else x

        if isinstance(av, list):
            return any(_strict_equal(fold(el), fold(x)) for el in av for x in values)
        return any(_strict_equal(fold(av), fold(x)) for x in values)
    if isinstance(av, list):
        try:
            matches = set(values) & set(av)
            if not matches or matches.difference((0, 1)):
                return bool(matches)
            return any(_contains_bool_or_number(values, v) for v in av if v == 0 or v == 1)
        except TypeError:  # unhashable members (objects, arrays): compare one by one
            pass
        return any(_strict_equal(v, x) for v in av for x in values)
    if isinstance(av, dict):  # JS includes() compares objects by reference
        return False
    if av == 0 or av == 1:
        return _contains_bool_or_number(values, av)
    return av in values


def _membership(values: list[Any], insensitive: bool) -> Callable[[Any], bool]:
    """``_is_in`` over fixed ``values``, with a set lookup for a str attribute (exact: only strs equal a str)."""
    if insensitive:
        return lambda av: _is_in(values, av, True)
    strs = frozenset(v for v in values if isinstance(v, str))

    def member(av: Any) -> bool:
        if type(av) is str:
            return av in strs
        return _is_in(values, av)

    return member


# --------------------------------------------------------------------------- compilation


def _fail(_: Any) -> _Result:
    raise _Malformed


def _true(_: Any) -> _Result:
    return True


def _false(_: Any) -> _Result:
    return False


def _unknown(_: Any) -> _Result:
    return None


def _is_operator_object(obj: Any) -> bool:
    return isinstance(obj, dict) and all(isinstance(k, str) and k.startswith("$") for k in obj)


def _all_of(nodes: list[_Node]) -> _Node:
    """Every node must hold; the first False decides, None (unknown) unless one fails."""
    if not nodes:
        return _true
    if len(nodes) == 1:
        return nodes[0]
    items = tuple(nodes)

    def all_of(x: Any) -> _Result:
        result: _Result = True
        for f in items:
            r = f(x)
            if r is False:
                return False
            if r is None:
                result = None
        return result

    return all_of


def _any_of(nodes: list[_Node]) -> _Node:
    """Some node must hold (an empty list holds, as in GrowthBook)."""
    if not nodes:
        return _true
    items = tuple(nodes)

    def any_of(x: Any) -> _Result:
        result: _Result = False
        for f in items:
            r = f(x)
            if r is True:
                return True
            if r is None:
                result = None
        return result

    return any_of


def _negate(f: _Node) -> _Node:
    def negate(x: Any) -> _Result:
        r = f(x)
        return None if r is None else not r

    return negate


def _condition_list(value: Any, depth: int) -> list[_Node] | None:
    """The sub-conditions of ``$and``/``$or``/``$nor``; None when iterating them fails in the SDK."""
    if isinstance(value, list):
        return [_condition(c, depth + 1) for c in value]
    if isinstance(value, (str, dict)):  # iterated as characters or keys: fine only when empty
        return [] if not value else [_fail]
    return None


def _condition(cond: Any, depth: int) -> _Node:
    """A condition over an attributes object (``_eval_condition``)."""
    if depth > MAX_CONDITION_DEPTH or not isinstance(cond, dict):
        return _fail
    nodes: list[_Node] = []
    for key, value in cond.items():
        if key in ("$or", "$nor", "$and"):
            subs = _condition_list(value, depth)
            if subs is None:
                nodes.append(_fail)
            elif key == "$and":
                nodes.append(_all_of(subs))
            elif key == "$or":
                nodes.append(_any_of(subs))
            else:
                nodes.append(_negate(_any_of(subs)))
        elif key == "$not":
            nodes.append(_negate(_condition(value, depth + 1)))
        elif key in ("$savedGroup", "$savedGroups"):  # no saved groups loaded: never matches
            nodes.append(_false)
        elif not isinstance(key, str):
            nodes.append(_fail)
        else:
            get = _getter(key)
            test = _value(value, depth + 1)

            def on_path(a: Any, get: Callable[[Any], Any] = get, test: _Node = test) -> _Result:
                return test(get(a))

            nodes.append(on_path)
    return _all_of(nodes)


def _value(cv: Any, depth: int, insensitive: bool = False) -> _Node:
    """A condition on one attribute value (``_eval_condition_value``)."""
    if depth > MAX_CONDITION_DEPTH:
        return _fail
    if _is_operator_object(cv):
        return _all_of([_operator(op, arg, depth) for op, arg in cv.items()])
    if insensitive and isinstance(cv, str):
        low = cv.lower()
        return lambda av: av.lower() == low if isinstance(av, str) else _deep_equal(cv, av)
    if _json_type(cv) not in ("array", "object"):
        t = _json_type(cv)
        return lambda av: _json_type(av) == t and bool(av == cv)
    return lambda av: _deep_equal(cv, av)


def _regex(pattern: Any, flags: int, negated: bool) -> _Node:
    try:
        rx = re.compile(pattern, flags)
    except Exception:  # a bad pattern, or not a str: no match (a match, negated)
        return _true if negated else _false
    if negated:
        return lambda av: not rx.search(av) if isinstance(av, str) else True
    return lambda av: bool(rx.search(av)) if isinstance(av, str) else False


_ORDER: dict[str, Callable[[int], bool]] = {
    "$lt": lambda c: c < 0, "$lte": lambda c: c <= 0, "$gt": lambda c: c > 0, "$gte": lambda c: c >= 0,
}
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "$lt": operator.lt, "$lte": operator.le, "$gt": operator.gt, "$gte": operator.ge,
}
_VERSION: dict[str, Callable[[str, str], bool]] = {
    "$veq": lambda a, b: a == b, "$vne": lambda a, b: a != b,
    "$vlt": lambda a, b: a < b, "$vlte": lambda a, b: a <= b,
    "$vgt": lambda a, b: a > b, "$vgte": lambda a, b: a >= b,
}


def _operator(op: str, arg: Any, depth: int) -> _Node:
    """One ``$operator: argument`` applied to an attribute value (``_eval_operator_condition``)."""
    if op in ("$eq", "$ne"):
        negated = op == "$ne"
        t = type(arg)
        if t is str or t is int or t is float or t is bool:
            # Fast path for the common scalar argument: same exact type, plain ==
            # (NaN != NaN as in JS); anything else takes the general rule.
            def scalar_eq(av: Any) -> _Result:
                if type(av) is t:
                    return (av != arg) if negated else (av == arg)
                return _strict_equal(av, arg) is not negated

            return scalar_eq
        return lambda av: _strict_equal(av, arg) is not negated
    if op in _ORDER:
        holds = _ORDER[op]
        cmp = _OPERATORS[op]

        def order(av: Any) -> _Result:
            if not _orderable(av, arg):
                return False
            c = _compare(av, arg)
            return c is not None and holds(c)

        if type(arg) in (int, float) or (type(arg) is str and arg.isascii()):
            fast = (int, float) if type(arg) is not str else (str,)

            def order_fast(av: Any) -> _Result:
                # Two numbers (a NaN fails every ordering, as in GrowthBook) or two ASCII
                # strings: Python's comparison is JS's; anything else takes the general rule.
                t = type(av)
                if t in fast and (t is not str or av.isascii()):
                    return cmp(av, arg)
                return order(av)

            return order_fast
        return order
    if op in _VERSION:
        vholds = _VERSION[op]
        if not isinstance(arg, str) and not _is_numeric(arg):
            return (lambda av: True) if op == "$vne" else _false
        expected = _padded_version(arg)

        def version(av: Any) -> _Result:
            if not _orderable(av, arg):
                return op == "$vne"  # $vne is $veq negated: a type mismatch matches
            return vholds(_padded_version(av), expected)

        return version
    if op in ("$regex", "$regexi", "$notRegex", "$notRegexi"):
        return _regex(arg, re.IGNORECASE if op.endswith("i") else 0, op.startswith("$not"))
    if op in ("$in", "$nin", "$ini", "$nini"):
        if not isinstance(arg, list):
            return _false
        member = _membership(arg, op.endswith("i"))
        if op.startswith("$n"):
            return lambda av: not member(av)
        return member
    if op == "$elemMatch":
        return _elem_match(arg, depth)
    if op == "$size":
        sized = _value(arg, depth + 1)
        return lambda av: sized(len(av)) if isinstance(av, list) else False
    if op in ("$all", "$alli"):
        if not isinstance(arg, list):
            return _false
        return _in_all([_value(c, depth + 1, op == "$alli") for c in arg])
    if op == "$exists":
        if not arg:
            return lambda av: av is None
        return lambda av: av is not None
    if op == "$type":
        return lambda av: bool(_json_type(av) == arg)
    if op == "$not":
        return _negate(_value(arg, depth + 1))
    if op in ("$inGroup", "$notInGroup"):  # no saved groups loaded: every group is empty
        return (lambda av: True) if op == "$notInGroup" and isinstance(arg, str) else _false
    if op in _CONDITION_OPERATORS:  # a condition key used on a value never matches
        return _false
    return _unknown


def _elem_match(arg: Any, depth: int) -> _Node:
    on_value = _is_operator_object(arg) and not any(k in _CONDITION_OPERATORS for k in arg)
    inner = _value(arg, depth + 1) if on_value else _condition(arg, depth + 1)

    def elem_match(av: Any) -> _Result:
        if not isinstance(av, list):
            return False
        result: _Result = False
        for item in av:
            if item is None:
                continue
            r = inner(item)
            if r is True:
                return True
            if r is None:
                result = None
        return result

    return elem_match


def _in_all(tests: list[_Node]) -> _Node:
    def in_all(av: Any) -> _Result:
        if not isinstance(av, list):
            return False
        result: _Result = True
        for test in tests:
            passed: _Result = False
            for item in av:
                r = test(item)
                if r is True:
                    passed = True
                    break
                if r is None:
                    passed = None
            if passed is False:
                return False
            if passed is None:
                result = None
        return result

    return in_all


# --------------------------------------------------------------------------- strict check

_VALUE_OPS = frozenset(
    ["$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$exists", "$type", "$size", "$elemMatch", "$not"]
    + list(_VERSION) + ["$regex", "$regexi", "$notRegex", "$notRegexi", "$in", "$nin", "$ini", "$nini", "$all", "$alli"]
)
_TYPES = ("string", "number", "boolean", "array", "object", "null", "undefined")


def check_condition(condition: Any) -> list[str]:
    """What in ``condition`` GrowthBook would quietly never match: one message per problem, [] if none."""
    problems: list[str] = []
    _check_cond(condition, "condition", 0, problems)
    return problems


def _check_cond(cond: Any, where: str, depth: int, out: list[str]) -> None:
    if depth > MAX_CONDITION_DEPTH:
        out.append(f"{where}: nested deeper than {MAX_CONDITION_DEPTH} levels")
        return
    if not isinstance(cond, dict):
        out.append(f"{where}: expected an object of attribute -> test, got {type(cond).__name__}")
        return
    for key, value in cond.items():
        at = f"{where}.{key}"
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, list):
                out.append(f"{at}: expected a list of conditions, got {type(value).__name__}")
                continue
            for i, c in enumerate(value):
                _check_cond(c, f"{at}[{i}]", depth + 1, out)
        elif key == "$not":
            _check_cond(value, at, depth + 1, out)
        elif key in ("$savedGroup", "$savedGroups"):
            out.append(f"{at}: saved groups are not loaded by nba; inline the group's condition or values")
        elif not isinstance(key, str):
            out.append(f"{where}: attribute paths must be strings, got {key!r}")
        else:
            _check_value(value, at, depth + 1, out)


def _check_value(cv: Any, where: str, depth: int, out: list[str]) -> None:
    if depth > MAX_CONDITION_DEPTH:
        out.append(f"{where}: nested deeper than {MAX_CONDITION_DEPTH} levels")
        return
    if not _is_operator_object(cv):
        return  # a literal: compared for equality
    for op, arg in cv.items():
        at = f"{where}.{op}"
        if op in ("$inGroup", "$notInGroup"):
            out.append(f"{at}: saved groups are not loaded by nba; use $in with the group's values")
        elif op not in _VALUE_OPS:
            out.append(f"{at}: unknown operator; GrowthBook's are {sorted(_VALUE_OPS)}")
        elif op.startswith(("$regex", "$notRegex")):
            try:
                re.compile(arg)
            except Exception as exc:
                out.append(f"{at}: {arg!r} is not a valid regular expression ({exc})")
        elif op in ("$in", "$nin", "$ini", "$nini", "$all", "$alli"):
            if not isinstance(arg, list):
                out.append(f"{at}: expected a list, got {type(arg).__name__}")
            elif op in ("$all", "$alli"):
                for i, c in enumerate(arg):
                    _check_value(c, f"{at}[{i}]", depth + 1, out)
        elif op in _VERSION and not (isinstance(arg, str) or _is_numeric(arg)):
            out.append(f"{at}: expected a version string, got {arg!r}")
        elif op == "$type" and arg not in _TYPES:
            out.append(f"{at}: expected one of {list(_TYPES)}, got {arg!r}")
        elif op in ("$size", "$not"):
            _check_value(arg, at, depth + 1, out)
        elif op == "$elemMatch":
            if _is_operator_object(arg) and not any(k in _CONDITION_OPERATORS for k in arg):
                _check_value(arg, at, depth + 1, out)
            else:
                _check_cond(arg, at, depth + 1, out)
