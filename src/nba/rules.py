"""The eligibility rule language: conditions, their expressions, checks and compilation.

A condition is a ``Rule`` (one comparison of a field with a constant), ``AllOf``,
``AnyOf``, ``Not``, or the same as a small expression (``"age >= 18 and segment in
['gold', 'silver']"``), parsed by ``parse_rule`` without ``eval``. A rule reads the
value as given in the profile or context; a missing value (absent, None, NaN) makes
every comparison false, ``!=`` and ``not_in`` included, and only ``exists`` with
False true.

Rules are type-checked against the schema when a catalogue is built: ordering
comparisons (``< <= > >=``) only on numeric features, a numeric feature against
numbers, a boolean against true/false, a categorical against its declared
categories only (a value outside them reaches a rule as given and matches no such
constant, so naming an undeclared one is almost always a typo); extra attributes
are untyped. Conditions may nest at most ``MAX_RULE_DEPTH`` levels.

What ``nba.catalog`` builds on: ``check_conditions`` (depth, size, cycles and text,
before anything recursive reads a condition), ``collect_fields``, ``RuleCompiler``
(checks against the schema, closures over one fetched tuple of field values) and
``Incomparable``, which a closure raises for a value its rule cannot compare.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from nba._validate import config_json_text, config_text
from nba.errors import ConfigError
from nba.schema import Categorical, FeatureSchema

__all__ = [
    "Rule",
    "AllOf",
    "AnyOf",
    "Not",
    "Condition",
    "parse_rule",
    "MAX_RULE_DEPTH",
    "check_conditions",
    "collect_fields",
    "RuleCompiler",
    "Incomparable",
]

# --------------------------------------------------------------------------- conditions

_OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in", "exists")
_ORDER_OPS = ("<", "<=", ">", ">=")

#: How deeply conditions may nest (``not``, parentheses, ``Not``, ``AllOf``, ``AnyOf``):
#: far beyond any real rule, and far below Python's recursion limit, which the compiler
#: and the evaluation of a rule use one frame of per level.
MAX_RULE_DEPTH = 64


class Rule(msgspec.Struct, frozen=True, tag="rule"):
    """One comparison of a declared feature or extra attribute with a constant.

    ``op`` is one of ``== != < <= > >= in not_in exists``. ``in`` / ``not_in`` take a
    collection; ``exists`` takes True (present, the default) or False (missing).
    """

    field: str
    op: str
    value: Any = None


class AllOf(msgspec.Struct, frozen=True, tag="all"):
    """True when every condition is (an empty AllOf is true)."""

    conditions: tuple[Condition, ...]


class AnyOf(msgspec.Struct, frozen=True, tag="any"):
    """True when at least one condition is (an empty AnyOf is false)."""

    conditions: tuple[Condition, ...]


class Not(msgspec.Struct, frozen=True, tag="not"):
    """True when the condition is false."""

    condition: Condition


Condition = Rule | AllOf | AnyOf | Not
_CONDITION_TYPES = (Rule, AllOf, AnyOf, Not)


# --------------------------------------------------------------------------- expression language

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
      | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "exists", "true", "false", "True", "False"}
_ESCAPE = re.compile(r"\\(.)")


def _tokenize(text: str) -> list[tuple[str, Any, int]]:
    tokens: list[tuple[str, Any, int]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ConfigError(f"rule {text!r}: cannot read {text[pos:].strip()[:20]!r} at character {pos}")
        kind = m.lastgroup
        assert kind is not None  # every alternative of _TOKEN is a named group
        raw = m.group(kind)
        start = m.start(kind)
        if kind == "num":
            value: Any = float(raw) if any(ch in raw for ch in ".eE") else int(raw)
        elif kind == "str":
            value = _ESCAPE.sub(r"\1", raw[1:-1])
        else:
            value = raw
        if kind == "name" and raw in _KEYWORDS:
            kind = "kw"
        tokens.append((kind, value, start))
        pos = m.end()
    tokens.append(("end", None, len(text)))
    return tokens


class _Parser:
    """Recursive descent over: or_expr := and_expr ('or' and_expr)*; and_expr := not_expr ('and' not_expr)*;
    not_expr := 'not' not_expr | '(' or_expr ')' | comparison."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0  # 'not's and open parentheses around the current token

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_RULE_DEPTH:
            _, _, pos = self.tokens[self.i - 1]
            raise ConfigError(
                f"rule {_short(self.text)}: nests deeper than {MAX_RULE_DEPTH} levels of 'not' and parentheses "
                f"(at character {pos}); write it flatter"
            )

    def fail(self, what: str) -> ConfigError:
        kind, value, pos = self.tokens[self.i]
        got = "the end" if kind == "end" else repr(value)
        return ConfigError(f"rule {self.text!r}: expected {what} at character {pos}, got {got}")

    def peek(self, kind: str, value: Any = None) -> bool:
        k, v, _ = self.tokens[self.i]
        return k == kind and (value is None or v == value)

    def take(self, kind: str, value: Any = None, what: str = "") -> Any:
        if not self.peek(kind, value):
            raise self.fail(what or repr(value) if value is not None else what or kind)
        v = self.tokens[self.i][1]
        self.i += 1
        return v

    def parse(self) -> Condition:
        cond = self.or_expr()
        if not self.peek("end"):
            raise self.fail("'and', 'or' or the end")
        return cond

    def or_expr(self) -> Condition:
        parts = [self.and_expr()]
        while self.peek("kw", "or"):
            self.i += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def and_expr(self) -> Condition:
        parts = [self.not_expr()]
        while self.peek("kw", "and"):
            self.i += 1
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def not_expr(self) -> Condition:
        nots = 0
        while self.peek("kw", "not"):  # a loop, not recursion: 'not not ... not' cannot exhaust the stack
            self.i += 1
            nots += 1
            self.enter()
        if self.peek("op", "("):
            self.i += 1
            self.enter()
            cond = self.or_expr()
            self.take("op", ")", "')'")
            self.depth -= 1
        else:
            cond = self.comparison()
        for _ in range(nots):
            cond = Not(cond)
        self.depth -= nots
        return cond

    def literal(self) -> Any:
        kind, value, _ = self.tokens[self.i]
        if kind in ("num", "str"):
            self.i += 1
            return value
        if kind == "kw" and value in ("true", "True", "false", "False"):
            self.i += 1
            return value in ("true", "True")
        raise self.fail("a number, a quoted string, true or false")

    def comparison(self) -> Condition:
        field = self.take("name", what="a field name")
        if self.peek("kw", "exists"):
            self.i += 1
            return Rule(field, "exists", True)
        negate = False
        if self.peek("kw", "not"):
            self.i += 1
            negate = True
            if not self.peek("kw", "in"):
                raise self.fail("'in' after 'not'")
        if self.peek("kw", "in"):
            self.i += 1
            self.take("op", "[", "'['")
            items = [self.literal()]
            while self.peek("op", ","):
                self.i += 1
                items.append(self.literal())
            self.take("op", "]", "']'")
            return Rule(field, "not_in" if negate else "in", tuple(items))
        kind, op, _ = self.tokens[self.i]
        if kind != "op" or op not in ("==", "!=", "<", "<=", ">", ">="):
            raise self.fail("a comparison (== != < <= > >=), 'in', 'not in' or 'exists'")
        self.i += 1
        return Rule(field, op, self.literal())


def _short(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:77] + "...")


def parse_rule(text: str) -> Condition:
    """Parse ``"age >= 18 and (segment in ['gold', 'silver'] or vip == true)"`` into conditions.

    Grammar: comparisons ``field OP literal`` (OP one of ``== != < <= > >=``),
    ``field in [...]``, ``field not in [...]``, ``field exists``; combined with
    ``not``, ``and``, ``or`` (in that precedence) and parentheses. Literals are
    numbers, quoted strings, true and false. No Python is evaluated. At most
    ``MAX_RULE_DEPTH`` nested ``not``s and parentheses (``ConfigError`` beyond).
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"a rule expression must be a non-empty string, got {text!r}")
    return _Parser(text).parse()



# --------------------------------------------------------------------------- compiling


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


class Incomparable(Exception):
    """A rule met a value it cannot compare (``"eighteen" >= 18``, an unhashable value ``in`` a set).

    ``pos`` is the field's position in the fetched values, ``op`` and ``const`` the rule's.
    """

    def __init__(self, pos: int, op: str, const: Any) -> None:
        super().__init__(pos, op, const)
        self.pos, self.op, self.const = pos, op, const


def _atom(pos: int, op: str, c: Any) -> Callable[[tuple], bool]:
    """A closure evaluating one rule over the fetched field values (None or NaN = missing).

    A value the rule cannot compare raises ``Incomparable`` (``==``, ``!=`` and
    ``exists`` compare anything).
    """
    if op == "==":
        return lambda vals: vals[pos] == c  # None and NaN never equal a declared constant
    if op == "!=":
        def ne(vals: tuple) -> bool:
            v = vals[pos]
            return v is not None and v == v and v != c
        return ne
    if op == "<":
        def lt(vals: tuple) -> bool:
            v = vals[pos]
            try:
                return v is not None and v < c
            except TypeError:
                raise Incomparable(pos, op, c) from None
        return lt
    if op == "<=":
        def le(vals: tuple) -> bool:
            v = vals[pos]
            try:
                return v is not None and v <= c
            except TypeError:
                raise Incomparable(pos, op, c) from None
        return le
    if op == ">":
        def gt(vals: tuple) -> bool:
            v = vals[pos]
            try:
                return v is not None and v > c
            except TypeError:
                raise Incomparable(pos, op, c) from None
        return gt
    if op == ">=":
        def ge(vals: tuple) -> bool:
            v = vals[pos]
            try:
                return v is not None and v >= c
            except TypeError:
                raise Incomparable(pos, op, c) from None
        return ge
    if op == "in":
        def in_(vals: tuple) -> bool:
            try:
                return vals[pos] in c  # c is a frozenset without None
            except TypeError:
                raise Incomparable(pos, op, c) from None
        return in_
    if op == "not_in":
        def not_in(vals: tuple) -> bool:
            v = vals[pos]
            try:
                return v is not None and v == v and v not in c
            except TypeError:
                raise Incomparable(pos, op, c) from None
        return not_in
    if c:  # exists
        def exists(vals: tuple) -> bool:
            v = vals[pos]
            return v is not None and v == v
        return exists
    return lambda vals: _missing(vals[pos])


def _always(vals: tuple) -> bool:
    return True


# _all and _any join one or two conditions (most arms) without all()/any() over a generator:
# measured with callgrind on bench_schema's eligible-10x2 (10 arms of 2 rules), 41.9k
# instructions a call against 79.7k with the generator for every size.
def _all(fs: tuple[Callable[[tuple], bool], ...]) -> Callable[[tuple], bool]:
    fs = tuple(f for f in fs if f is not _always)  # an empty AllOf holds
    if not fs:
        return _always
    if len(fs) == 1:
        return fs[0]
    if len(fs) == 2:
        f, g = fs
        return lambda vals: f(vals) and g(vals)
    return lambda vals: all(f(vals) for f in fs)


def _any(fs: tuple[Callable[[tuple], bool], ...]) -> Callable[[tuple], bool]:
    if len(fs) == 1:
        return fs[0]
    if len(fs) == 2:
        f, g = fs
        return lambda vals: f(vals) or g(vals)
    return lambda vals: any(f(vals) for f in fs)


class RuleCompiler:
    """Checks conditions against the schema and turns them into closures over one fetched tuple."""

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        self.categories = {f.name: f.categories for f in schema.features if isinstance(f, Categorical)}
        self.fields: dict[str, int] = {}  # field -> position in the fetched tuple (first seen order)
        self.atoms: dict[tuple, Callable[[tuple], bool]] = {}  # shared between arms

    def compile(self, cond: Any, where: str) -> Callable[[tuple], bool] | None:
        """The closure of ``cond`` (a condition, an expression, or a list: all must hold); None if it always holds."""
        if cond is None:
            return None
        fs = tuple(self._compile(c, where) for c in cond) if isinstance(cond, (list, tuple)) else (
            self._compile(cond, where),)
        f = _all(fs)
        return None if f is _always else f

    def _compile(self, cond: Any, where: str) -> Callable[[tuple], bool]:
        if isinstance(cond, str):
            cond = parse_rule(cond)
        if isinstance(cond, Rule):
            return self._rule(cond, where)
        if isinstance(cond, AllOf):
            return _all(tuple(self._compile(c, where) for c in cond.conditions))
        if isinstance(cond, AnyOf):
            fs = tuple(self._compile(c, where) for c in cond.conditions)
            return _any(fs) if fs else (lambda vals: False)
        if isinstance(cond, Not):
            f = self._compile(cond.condition, where)
            return lambda vals: not f(vals)
        raise ConfigError(
            f"{where}: eligibility must be nba.Rule, AllOf, AnyOf, Not, an expression string or a list of them, "
            f"got {type(cond).__name__}"
        )

    def _rule(self, rule: Rule, where: str) -> Callable[[tuple], bool]:
        key = self._validate(rule, where)
        f = self.atoms.get(key)
        if f is None:
            f = self.atoms[key] = _atom(*key)
        return f

    def _validate(self, rule: Rule, where: str) -> tuple[int, str, Any]:
        field, op, value = rule.field, rule.op, rule.value
        op = {"not in": "not_in", "=": "=="}.get(op, op)
        if op not in _OPS:
            raise ConfigError(
                f"{where}: rule on {field!r} has unknown operator {rule.op!r}; use one of {' '.join(_OPS)}"
            )
        kind = self.schema.field_kind(field)
        if kind is None:
            raise ConfigError(
                f"{where}: rule references {field!r}, which the schema does not declare; declare it as a feature "
                f"or in extra_profile / extra_context. Declared: {list(self.schema.fields)}"
            )
        bad = f"{where}: rule {field!r} {op} {value!r}:"
        if op in ("in", "not_in"):
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
                raise ConfigError(f"{bad} {op} takes a list or set of values")
            try:
                const: Any = frozenset(value)
            except TypeError:
                raise ConfigError(f"{bad} the values must be hashable (str, int, float, bool)") from None
            if any(_missing(v) for v in const):
                raise ConfigError(f"{bad} None/NaN cannot be listed; use 'exists' to test for a missing value")
            if kind == "numeric" and any(isinstance(v, str) for v in const):
                raise ConfigError(f"{bad} {field!r} is {kind}; list numbers, not strings")
        elif op == "exists":
            if value is None:
                value = True
            if not isinstance(value, bool):
                raise ConfigError(f"{bad} exists takes True (present) or False (missing)")
            const = value
        else:
            if _missing(value) or not isinstance(value, (str, int, float, bool)):
                raise ConfigError(f"{bad} compare with a number, string or bool (use 'exists' for missing values)")
            if op in _ORDER_OPS and isinstance(value, bool):
                raise ConfigError(f"{bad} ordering comparisons take a number or string, not a bool")
            if kind == "numeric" and isinstance(value, str):
                raise ConfigError(f"{bad} {field!r} is {kind}; compare it with a number")
            const = value
        if kind != "extra":
            self._check_kind(field, kind, op, const, bad)
        return (self.fields.setdefault(field, len(self.fields)), op, const)


    def _check_kind(self, field: str, kind: str, op: str, const: Any, bad: str) -> None:
        """Refuse a rule that the feature's declared kind makes meaningless.

        Such a rule would fail, or pass wrongly, per request.
        """
        if op == "exists":
            return
        if op in _ORDER_OPS and kind != "numeric":
            use = "== true / == false" if kind == "boolean" else "==, != or in [...] with its categories"
            raise ConfigError(
                f"{bad} {field!r} is {kind}; ordering comparisons apply to numeric features only: use {use}"
            )
        items = const if op in ("in", "not_in") else (const,)
        if kind == "numeric":
            for c in items:
                if isinstance(c, bool) or not isinstance(c, (int, float)):
                    raise ConfigError(f"{bad} {field!r} is numeric; compare it with numbers, not {c!r}")
        elif kind == "boolean":
            for c in items:
                if not isinstance(c, bool):
                    raise ConfigError(f"{bad} {field!r} is boolean; compare it with true or false, not {c!r}")
        else:
            cats = self.categories[field]
            for c in items:
                # str or int, as declared: 1.0 or True would equal the category 1 but is not a category.
                if isinstance(c, bool) or not isinstance(c, (str, int)) or c not in cats:
                    raise ConfigError(
                        f"{bad} {c!r} is not a declared category of {field!r} (declared: {list(cats)!r}); "
                        "a rule may name declared categories only: add it to the Categorical or fix the rule"
                    )



# --------------------------------------------------------------------------- checks before compiling


def collect_fields(cond: Any, names: dict[str, None]) -> None:
    """Add the fields ``cond`` reads to ``names`` (in order); what does not parse is left to the compiler."""
    if isinstance(cond, (list, tuple)):
        for c in cond:
            collect_fields(c, names)
    elif isinstance(cond, str):
        try:
            collect_fields(parse_rule(cond), names)
        except ConfigError:
            pass
    elif isinstance(cond, Rule):
        if isinstance(cond.field, str):
            names.setdefault(cond.field, None)
    elif isinstance(cond, (AllOf, AnyOf)):
        collect_fields(cond.conditions, names)
    elif isinstance(cond, Not):
        collect_fields(cond.condition, names)


#: Condition nodes one arm's eligibility may expand to (shared sub-conditions count each time
#: they are used, as the compiled closures do); guards against a DAG that doubles per level.
_MAX_RULE_NODES = 10_000


def _rule_children(node: Any, parsed: dict[int, Any]) -> list[Any]:
    if isinstance(node, str):
        return [parsed[id(node)]]
    if isinstance(node, (list, tuple)):
        return list(node)
    if isinstance(node, (AllOf, AnyOf)):
        return list(node.conditions) if isinstance(node.conditions, (list, tuple)) else []
    if isinstance(node, Not):
        return [node.condition]
    return []


def check_conditions(cond: Any, where: str) -> None:
    """Refuse, before anything recursive reads them, conditions nested deeper than ``MAX_RULE_DEPTH``,
    expanding to more than ``_MAX_RULE_NODES`` nodes or containing themselves, and strings UTF-8 cannot write.

    Iterative (an explicit stack), so a hostile depth gives a ``ConfigError``, never a ``RecursionError``.
    Expression strings are parsed here, with the parser's own depth limit.
    """
    if cond is None:
        return
    parsed: dict[int, Any] = {}  # id(expression string) -> its conditions
    height: dict[int, tuple[int, int]] = {}  # id(node) -> (levels of nesting in it, nodes it expands to)
    open_: set[int] = set()  # nodes whose subtree is being walked: meeting one again is a cycle
    stack: list[tuple[Any, int, bool]] = [(cond, 0, False)]  # (node, levels above it, leaving)

    def too_deep() -> ConfigError:
        return ConfigError(
            f"{where}: eligibility nests deeper than {MAX_RULE_DEPTH} levels (MAX_RULE_DEPTH) of Not, AllOf, "
            "AnyOf and lists; write it flatter (a list or AllOf of rules is one level)"
        )

    while stack:
        node, above, leaving = stack.pop()
        key = id(node)
        level = 1 if isinstance(node, (list, tuple, AllOf, AnyOf, Not)) else 0
        if leaving:
            open_.discard(key)
            kids = _rule_children(node, parsed)
            below = level + max((height[id(c)][0] for c in kids), default=0)
            nodes = 1 + sum(height[id(c)][1] for c in kids)
            if nodes > _MAX_RULE_NODES:
                raise ConfigError(
                    f"{where}: eligibility expands to more than {_MAX_RULE_NODES} conditions (shared ones count "
                    "each time they are used); simplify it"
                )
            height[key] = (below, nodes)
            continue
        if key in height:
            if above + height[key][0] > MAX_RULE_DEPTH:
                raise too_deep()
            continue
        if key in open_:
            raise ConfigError(f"{where}: eligibility contains itself (a condition that is its own sub-condition)")
        if above + level > MAX_RULE_DEPTH:
            raise too_deep()
        if isinstance(node, str):
            config_text(node, f"{where}: rule")
            parsed[key] = parse_rule(node)
        elif isinstance(node, Rule):
            if isinstance(node.field, str):
                config_text(node.field, f"{where}: rule field")
            config_json_text(node.value, f"{where}: rule on {node.field!r}: value")
        open_.add(key)
        stack.append((node, above, True))
        stack.extend((c, above + level, False) for c in _rule_children(node, parsed))
