"""FeatureSchema: declare profile and context features once; turn inputs into model vectors.

A schema lists numeric, categorical and boolean features, each read from the
``profile`` or the ``context`` of a decision and tagged with a Vowpal Wabbit
namespace. Each operation has one fast path and one validating path:

* profile and context -> model vector (``vectorize``): plain dicts are read by the
  compiled ``nba._core.DictVectorizer``, which declines anything unusual; the
  validating path (``_vectorize_checked``) reads every input the contract allows,
  feature by feature, and words the errors.
* model vector -> features (``used_features``, the log's read-back, rules over a
  ready vector): ``log_layout`` says where each feature sits in the vector. A
  function generated from it reads the vectors ``vectorize`` writes
  (``_compile_reader``); ``read_vector`` reads any vector, as a log line or a caller
  holds it. ``log_raw`` is what a vector cannot hold (unknown categories).

Column names (``feature_names``) are what a LightGBM model trained on
``schema.feature_names`` stores:

* numeric and boolean features: the feature name;
* categorical features: one column per declared category, ``"<name>=<category>"``,
  plus ``"<name>=__other__"`` when ``unknown="other"``; with ``encoding="code"``, one
  column named for the feature holding LightGBM's category code.

Many rows at once (a list of inputs or a pandas DataFrame): ``vectorize_many``, in
``nba._batch``.

LightGBM rejects names containing the JSON characters ``" , : [ ] { }`` and turns a
space into ``_`` (any other whitespace breaks its model file), so every one of
those characters becomes ``_`` in a column name. The result is stored verbatim by
LightGBM; two features whose names collide after that are a ``ConfigError``. ``=``
is kept: LightGBM stores it unchanged.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import numbers
import re
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import msgspec
import numpy as np

from nba._core.vectorize import (
    EVENT_CLIPPED,
    EVENT_DEFAULTED,
    EVENT_MISSING,
    EVENT_UNKNOWN,
    DictVectorizer,
)
from nba._validate import text as _text
from nba.errors import ConfigError, SchemaError

__all__ = ["Numeric", "Categorical", "Boolean", "Feature", "Column", "FeatureSchema", "FeatureCount",
           "FeatureCounters", "STRICT_CHECKS"]

Source = Literal["profile", "context"]
_SOURCES = ("profile", "context")
_DEFAULT_NAMESPACE = {"profile": "User", "context": "Context"}
_UNKNOWN_POLICIES = ("zeros", "other", "error")
# What FeatureSchema(strict=...) can refuse: a key no feature or extra attribute declares, a category
# outside the declared ones, a missing value whose meaning the declaration does not state.
STRICT_CHECKS = ("keys", "categories", "missing")
OTHER = "__other__"

_F64 = np.dtype(np.float64)
_UNSAFE = re.compile(r'[\s",:\[\]{}]')


class _Missing:
    """Marker for a feature absent from the input (distinct from a present None)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def safe_column_name(name: str) -> str:
    """``name`` with every character LightGBM cannot store in a feature name replaced by ``_``."""
    return _UNSAFE.sub("_", name)


_VW_STRING = str.maketrans({" ": "_", "\t": "_", "|": "_", ":": "_"})


def _vw_string(value: str) -> str:
    # VW's JSON parser turns {"k": "a b"} into the feature "ka_b" (docs/contracts.md: ' ', tab, '|', ':' -> '_').
    return value.translate(_VW_STRING)


def _declared_text(value: str, what: str) -> None:
    """Raise ``ConfigError`` if a declared name or category cannot be written as UTF-8 (a lone surrogate)."""
    if not value.isascii():
        try:
            _text(value, what)
        except SchemaError as e:
            raise ConfigError(str(e)) from None


def _check_source(kind: str, name: str, source: str) -> None:
    if source not in _SOURCES:
        raise ConfigError(f"{kind}({name!r}): source must be 'profile' or 'context', got {source!r}")


# --------------------------------------------------------------------------- declarations


class Numeric(msgspec.Struct, frozen=True, tag="numeric"):
    """A number read from the profile or context.

    Missing (absent or None) -> ``default``. NaN -> ``SchemaError`` unless
    ``allow_missing``, in which case missing and NaN both become NaN in the vector
    (LightGBM's missing value) and ``default`` is unused (so it need not lie within
    ``bounds``). ``bounds=(lo, hi)`` (either may be None) clips the
    value, or raises ``SchemaError`` when ``clip=False``. Infinity is always an error.
    """

    name: str
    default: float = 0.0
    bounds: tuple[float | None, float | None] | None = None
    clip: bool = True
    allow_missing: bool = False
    source: Source = "profile"
    namespace: str | None = None

    def __post_init__(self) -> None:
        _check_source("Numeric", self.name, self.source)
        if isinstance(self.default, (str, bytes)) or not isinstance(self.default, numbers.Real):
            raise ConfigError(f"Numeric({self.name!r}): default must be a number, got {type(self.default).__name__}")
        if not math.isfinite(self.default):
            raise ConfigError(f"Numeric({self.name!r}): default must be finite, got {self.default!r}")
        if self.bounds is not None:
            try:
                lo, hi = self.bounds
            except (TypeError, ValueError):
                raise ConfigError(
                    f"Numeric({self.name!r}): bounds must be a pair (lo, hi), got {self.bounds!r}"
                ) from None
            lo = -math.inf if lo is None else float(lo)
            hi = math.inf if hi is None else float(hi)
            if math.isnan(lo) or math.isnan(hi) or lo > hi:
                raise ConfigError(f"Numeric({self.name!r}): bounds must satisfy lo <= hi, got {self.bounds!r}")
            # With allow_missing a missing value becomes NaN, so the default is never used: not checked.
            if not self.allow_missing and not lo <= self.default <= hi:
                raise ConfigError(
                    f"Numeric({self.name!r}): default {self.default!r} lies outside bounds {self.bounds!r}"
                )
            bounds = (None if lo == -math.inf else lo, None if hi == math.inf else hi)
            msgspec.structs.force_setattr(self, "bounds", bounds)


class Categorical(msgspec.Struct, frozen=True, tag="categorical"):
    """A category one-hot encoded over ``categories`` (one column each, in the declared order).

    ``encoding="code"`` instead gives one column named for the feature holding the
    category's index in ``categories`` (0, 1, ...), or NaN when missing or unknown:
    the codes LightGBM's native categorical splits read when a model is trained on a
    pandas ``category`` column with these categories (``pandas_categorical`` in the
    model file; checked when a model is bound). Unknown values are then NaN for
    ``unknown="zeros"`` (as LightGBM treats an unseen category) or an error for
    ``"error"``; ``"other"`` has no meaning there and is refused.

    A missing value (absent, None or NaN) gives all zeros, or the one-hot of
    ``default`` if set. A value outside ``categories``: ``unknown="zeros"`` (all
    zeros), ``"other"`` (an extra ``<name>=__other__`` column) or ``"error"``
    (``SchemaError``). ``categories`` may be any sequence (a list, a tuple) and is
    kept as a tuple; a set of categories is sorted so the column order is stable.
    """

    name: str
    categories: Sequence[str | int]
    default: str | int | None = None
    unknown: Literal["zeros", "other", "error"] = "zeros"
    source: Source = "profile"
    namespace: str | None = None
    encoding: Literal["onehot", "code"] = "onehot"

    def __post_init__(self) -> None:
        _check_source("Categorical", self.name, self.source)
        if self.encoding not in ("onehot", "code"):
            raise ConfigError(
                f"Categorical({self.name!r}): encoding must be 'onehot' or 'code', got {self.encoding!r}"
            )
        if self.encoding == "code" and self.unknown == "other":
            raise ConfigError(
                f"Categorical({self.name!r}): encoding='code' has no 'other' column; an unseen category is "
                "NaN (missing) with unknown='zeros', as LightGBM scores it, or an error with unknown='error'"
            )
        cats = self.categories
        if isinstance(cats, (str, bytes)) or not isinstance(cats, Iterable):
            raise ConfigError(f"Categorical({self.name!r}): categories must be a list of str or int, got {cats!r}")
        cats = sorted(cats, key=lambda c: (type(c).__name__, c)) if isinstance(cats, (set, frozenset)) else list(cats)
        if not cats:
            raise ConfigError(f"Categorical({self.name!r}): declare at least one category")
        for c in cats:
            if isinstance(c, bool) or not isinstance(c, (str, int)):
                raise ConfigError(f"Categorical({self.name!r}): categories must be str or int, got {c!r}")
            if isinstance(c, str):
                _declared_text(c, f"Categorical({self.name!r}): category")
        if len(set(cats)) != len(cats):
            dup = sorted({repr(c) for c in cats if cats.count(c) > 1})
            raise ConfigError(f"Categorical({self.name!r}): duplicate categories {', '.join(dup)}")
        msgspec.structs.force_setattr(self, "categories", tuple(cats))
        if self.unknown not in _UNKNOWN_POLICIES:
            raise ConfigError(
                f"Categorical({self.name!r}): unknown must be one of {', '.join(_UNKNOWN_POLICIES)}, "
                f"got {self.unknown!r}"
            )
        if self.default is not None and self.default not in cats:
            raise ConfigError(f"Categorical({self.name!r}): default {self.default!r} is not one of the categories")


class Boolean(msgspec.Struct, frozen=True, tag="boolean"):
    """A flag: True -> 1.0, False -> 0.0 (0 and 1 are accepted too).

    Missing -> ``default``, or NaN when ``allow_missing``.
    """

    name: str
    default: bool = False
    allow_missing: bool = False
    source: Source = "profile"
    namespace: str | None = None

    def __post_init__(self) -> None:
        _check_source("Boolean", self.name, self.source)
        if not isinstance(self.default, (bool, np.bool_)):
            raise ConfigError(f"Boolean({self.name!r}): default must be True or False, got {self.default!r}")


Feature = Numeric | Categorical | Boolean


class Column(msgspec.Struct, frozen=True):
    """One column of the model vector.

    ``vw_feature`` is the feature name Vowpal Wabbit's JSON parser gives this column
    inside ``namespace`` (``"segmentgold"`` for ``segment="gold"``), or None for an
    ``__other__`` column, which has no VW counterpart.
    """

    index: int
    name: str
    feature: str
    kind: Literal["numeric", "boolean", "onehot", "other", "code"]
    source: Source
    namespace: str
    category: str | int | None = None
    vw_feature: str | None = None


# --------------------------------------------------------------------------- per-feature plans


def _type_name(value: Any) -> str:
    return type(value).__name__


class _Plan:
    """One feature: its column(s) and how the validating path encodes and logs it."""

    __slots__ = ("feature", "name", "source", "namespace", "col", "where", "index", "strict_missing",
                 "strict_unknown")

    def __init__(self, feature: Feature, col: int, index: int, strict: frozenset[str]) -> None:
        self.feature = feature
        self.name = feature.name
        self.source = feature.source
        self.namespace = feature.namespace or _DEFAULT_NAMESPACE[feature.source]
        self.col = col
        self.where = f"feature {feature.name!r} ({feature.source})"
        self.index = index  # position among the schema's features: the compiled path's field, its counters' row
        # Strict mode refuses a missing value unless the declaration says what it means (allow_missing, or a
        # categorical's default: a number's and a flag's default is always there, so it says nothing).
        declared = getattr(feature, "allow_missing", False) or getattr(feature, "default", None) is not None \
            and isinstance(feature, Categorical)
        self.strict_missing = "missing" in strict and not declared
        self.strict_unknown = "categories" in strict

    def _refuse_missing(self) -> None:
        if self.strict_missing:
            how = ("declare a default" if isinstance(self.feature, Categorical)
                   else f"declare {type(self.feature).__name__}({self.name!r}, allow_missing=True)")
            raise SchemaError(
                f"{self.where} is missing (strict mode); pass it, {how} if missing is expected, "
                "or leave 'missing' out of FeatureSchema(strict=...)"
            )


class _NumericPlan(_Plan):
    __slots__ = ("default", "lo", "hi", "clip", "allow_missing")
    kind: ClassVar[Literal["numeric"]] = "numeric"
    feature: Numeric

    def __init__(self, feature: Numeric, col: int, index: int, strict: frozenset[str]) -> None:
        super().__init__(feature, col, index, strict)
        self.default = float(feature.default)
        lo, hi = feature.bounds if feature.bounds is not None else (None, None)
        self.lo = -math.inf if lo is None else lo
        self.hi = math.inf if hi is None else hi
        self.clip = feature.clip
        self.allow_missing = feature.allow_missing

    def encode(self, raw: Any, vals: list[float]) -> int:
        """Write the column value for ``raw`` (NaN only when missing values are allowed); returns what was
        seen (``EVENT_*`` bits)."""
        if raw is MISSING or raw is None:
            self._refuse_missing()
            if self.allow_missing:
                vals[self.col] = math.nan
                return EVENT_MISSING
            vals[self.col] = self.default
            return EVENT_MISSING | EVENT_DEFAULTED
        try:
            if isinstance(raw, (str, bytes)):
                raise TypeError
            v = float(raw)
        except OverflowError:
            raise SchemaError(f"{self.where} is too large for a float64; pass a finite number") from None
        except (TypeError, ValueError):
            raise SchemaError(
                f"{self.where}: expected a number, got {_type_name(raw)}; convert it to float or int, "
                "or leave it out to use the default"
            ) from None
        if v != v:
            if self.allow_missing:
                vals[self.col] = v
                return EVENT_MISSING
            raise SchemaError(
                f"{self.where} is NaN; pass a finite number, leave it out to use the default {self.default!r}, "
                f"or declare Numeric({self.name!r}, allow_missing=True) to let the model treat it as missing"
            )
        if v == math.inf or v == -math.inf:
            raise SchemaError(f"{self.where} is {v!r}; pass a finite number")
        if v < self.lo or v > self.hi:
            if not self.clip:
                raise SchemaError(
                    f"{self.where} = {v!r} lies outside its bounds {self.feature.bounds!r}; "
                    "pass a value within them or declare clip=True"
                )
            vals[self.col] = self.lo if v < self.lo else self.hi
            return EVENT_CLIPPED
        vals[self.col] = v
        return 0


class _BooleanPlan(_Plan):
    __slots__ = ("default", "allow_missing")
    kind: ClassVar[Literal["boolean"]] = "boolean"

    def __init__(self, feature: Boolean, col: int, index: int, strict: frozenset[str]) -> None:
        super().__init__(feature, col, index, strict)
        self.default = bool(feature.default)
        self.allow_missing = feature.allow_missing

    def flag(self, raw: Any) -> Any:
        """True/False, or MISSING when missing values are allowed and this one is missing."""
        if raw is MISSING or raw is None:
            return MISSING if self.allow_missing else self.default
        if isinstance(raw, (bool, np.bool_)):
            return bool(raw)
        if isinstance(raw, (int, float, np.integer, np.floating)) and not isinstance(raw, bool):
            if raw == 0 or raw == 1:
                return bool(raw)
            if raw != raw and self.allow_missing:
                return MISSING
        raise SchemaError(f"{self.where}: expected True or False (or 0/1), got {_type_name(raw)}")

    def encode(self, raw: Any, vals: list[float]) -> int:
        """Write the column value for ``raw``; returns what was seen (``EVENT_*`` bits)."""
        if raw is MISSING or raw is None:
            self._refuse_missing()
        f = self.flag(raw)  # raises unless raw is a flag, 0/1, missing or (allowed) NaN
        if raw is MISSING or raw is None:
            vals[self.col] = math.nan if f is MISSING else (1.0 if f else 0.0)
            return EVENT_MISSING if f is MISSING else EVENT_MISSING | EVENT_DEFAULTED
        vals[self.col] = float(raw)  # as the compiled path writes it, bit for bit (-0.0 and NaN payloads too)
        return EVENT_MISSING if f is MISSING else 0


class _CategoricalPlan(_Plan):
    __slots__ = ("cmap", "other_col", "unknown", "default", "categories", "code", "width")
    kind: ClassVar[Literal["categorical"]] = "categorical"

    def __init__(self, feature: Categorical, col: int, index: int, strict: frozenset[str]) -> None:
        super().__init__(feature, col, index, strict)
        self.code = feature.encoding == "code"  # one column of codes (cmap's columns less col), not one-hot
        self.width = 1 if self.code else len(feature.categories) + (feature.unknown == "other")
        self.categories = feature.categories
        self.cmap = {c: col + i for i, c in enumerate(feature.categories)}
        self.unknown = feature.unknown
        self.other_col = col + len(feature.categories) if feature.unknown == "other" else -1
        self.default = feature.default

    def _present(self, raw: Any) -> bool:
        if raw is MISSING or raw is None:
            return False
        if isinstance(raw, float) and raw != raw:
            return False
        if not isinstance(raw, (str, int, float, np.integer, np.bool_)):
            raise SchemaError(
                f"{self.where}: expected a category (str or int), got {_type_name(raw)}; "
                f"declared categories: {list(self.categories)!r}"
            )
        return True

    def column(self, raw: Any) -> int:
        """Index of the column set to 1 for ``raw``, or -1 for all zeros."""
        return self._column(raw)[0]

    def _column(self, raw: Any) -> tuple[int, int]:
        """``column(raw)`` and what was seen (``EVENT_*`` bits)."""
        if not self._present(raw):
            self._refuse_missing()
            if self.default is None:
                return -1, EVENT_MISSING
            return self.cmap[self.default], EVENT_MISSING | EVENT_DEFAULTED
        col = self.cmap.get(raw)
        if col is not None:
            return col, 0
        if isinstance(raw, str) and not raw.isascii():
            # An unknown category is logged as given (log_raw, used_features): it must be writable as UTF-8.
            _text(raw, f"{self.where}: category")
        if self.unknown == "error" or self.strict_unknown:
            shown = _shown(raw)
            how = ("or leave 'categories' out of FeatureSchema(strict=...)" if self.unknown != "error"
                   else "or declare unknown='zeros' or 'other'")
            raise SchemaError(
                f"{self.where}: unknown category {shown}{' (strict mode)' if self.unknown != 'error' else ''}; "
                f"declared: {list(self.categories)!r}. Add it to the categories {how}"
            )
        return (self.other_col if self.unknown == "other" else -1), EVENT_UNKNOWN

    def encode(self, raw: Any, vals: list[float]) -> int:
        """Write the block for ``raw``; returns what was seen (``EVENT_*`` bits)."""
        col, seen = self._column(raw)
        if self.code:
            vals[self.col] = math.nan if col < 0 else float(col - self.col)
        elif col >= 0:
            vals[col] = 1.0
        return seen

    def logged(self, raw: Any) -> Any:
        # The raw category, as VW's JSON parser would see it; unknown ones included.
        if not self._present(raw):
            return MISSING if self.default is None else self.default
        self.column(raw)  # raises for unknown="error" (and in strict mode)
        return raw.item() if isinstance(raw, np.generic) else raw

    def unheld(self, profile: Any, context: Any) -> Any:
        """The value ``log_raw`` keeps when none of the categories' columns is set: as given, or MISSING."""
        obj = profile if self.source == "profile" else context
        return MISSING if isinstance(obj, (np.ndarray, list, tuple)) else self.logged(_raw_values(obj, (self.name,))[0])


# A plan is one of these three; ``kind`` tells them apart (mypy narrows the union on it).
_AnyPlan = _NumericPlan | _BooleanPlan | _CategoricalPlan


def _kernel_field(p: _AnyPlan) -> tuple[object, ...]:
    """``p`` as ``DictVectorizer`` reads it: key, kind, column, missing value, NaN allowed, lo, hi, clip,
    and for a categorical its {category: column} (a code feature: {category: code}), its column when missing
    (or -1) and when unknown (-1 all zeros or NaN, the "other" column, -2 "error" or strict: declined), then
    whether it comes from the context and whether a missing value is refused (strict: declined)."""
    ctx = p.source == "context"
    if p.kind == "categorical":
        unknown = -2 if p.strict_unknown else {"zeros": -1, "other": p.other_col, "error": -2}[p.unknown]
        missing_col = -1 if p.default is None else p.cmap[p.default]
        if p.code:
            codes = {c: float(i) for i, c in enumerate(p.categories)}
            missing = math.nan if p.default is None else codes[p.default]
            # A code field's "missing column" only says whether a default is written (its own column, or -1).
            return (p.name, "code", p.col, missing, False, -math.inf, math.inf, False, codes,
                    -1 if p.default is None else p.col, min(unknown, -1), ctx, p.strict_missing)
        return (p.name, "category", p.col, 0.0, False, -math.inf, math.inf, False, dict(p.cmap), missing_col,
                unknown, ctx, p.strict_missing)
    missing = math.nan if p.allow_missing else float(p.default)
    if p.kind == "boolean":
        return (p.name, "bool", p.col, missing, p.allow_missing, -math.inf, math.inf, False, None, -1, -1, ctx,
                p.strict_missing)
    return (p.name, "number", p.col, missing, p.allow_missing, float(p.lo), float(p.hi), p.clip, None, -1, -1, ctx,
            p.strict_missing)


class _SourcePlan:
    """One source's features (declaration order) and columns: what a ready vector of that source holds."""

    def __init__(self, plans: list[_AnyPlan], columns: list[Column]) -> None:
        self.plans = plans
        self.names = [p.name for p in plans]
        self.columns = np.asarray([c.index for c in columns], dtype=np.intp)
        nan_ok = {p.name for p in plans if p.kind != "categorical" and p.allow_missing}
        nan_ok |= {p.name for p in plans if p.kind == "categorical" and p.code}
        self.nan_ok = np.asarray([c.feature in nan_ok for c in columns], dtype=bool)
        # encoding="code" columns of a ready vector: (position in it, number of categories), checked as codes.
        n_cats = {p.name: len(p.categories) for p in plans if p.kind == "categorical" and p.code}
        self.codes = [(k, n_cats[c.feature]) for k, c in enumerate(columns) if c.kind == "code"]


# --------------------------------------------------------------------------- the schema


class FeatureSchema:
    """The features a model reads, where each comes from, and how it becomes columns.

    ``features`` are ``Numeric``, ``Categorical`` and ``Boolean`` declarations;
    their order is the column order. ``extra_profile`` / ``extra_context`` name
    attributes that eligibility rules may read but that are not model features
    (they are never vectorized nor logged).

    Inputs to ``vectorize`` and ``used_features``: a dict (or any Mapping), a
    msgspec Struct or other object with attributes, None (everything missing), or
    a ready float vector of that source's columns (``profile_feature_names`` /
    ``context_feature_names``, in that order) checked for length and finiteness.

    ``strict`` (off by default) turns silent defaults into ``SchemaError``: True for
    every check in ``STRICT_CHECKS``, or a collection of them. ``"keys"``: a dict or
    Mapping input holding a key that no feature or extra attribute of its source
    declares (a typo such as ``Age`` for ``age``); Structs are not checked, their
    fields are their type's. ``"categories"``: a category outside the declared ones,
    whatever ``unknown`` says. ``"missing"``: an absent (or None) value, unless the
    declaration says what missing means (``allow_missing=True``, or a categorical's
    ``default``). Ready vectors are checked as always.

    ``counters()`` counts, per feature, the values vectorized calls found missing,
    filled with the default, unknown (categories) or clipped: metrics a service
    exports to see bad inputs that strict mode would refuse.

    A schema is immutable once built and safe to share between threads; pass each
    thread its own ``out`` buffer.
    """

    def __init__(
        self,
        features: Sequence[Feature],
        *,
        extra_profile: Iterable[str] = (),
        extra_context: Iterable[str] = (),
        strict: bool | Iterable[str] = False,
    ) -> None:
        features = tuple(features)
        if not features:
            raise ConfigError("FeatureSchema needs at least one feature")
        checks = _strict_checks(strict)
        plans: list[_AnyPlan] = []
        columns: list[Column] = []
        seen: dict[str, str] = {}
        for f in features:
            if not isinstance(f, (Numeric, Categorical, Boolean)):
                raise ConfigError(
                    f"FeatureSchema: expected nba.Numeric, nba.Categorical or nba.Boolean, got {type(f).__name__}"
                )
            if not isinstance(f.name, str) or not f.name:
                raise ConfigError(f"FeatureSchema: feature names must be non-empty strings, got {f.name!r}")
            _declared_text(f.name, "FeatureSchema: feature name")
            if f.name.startswith("_"):
                raise ConfigError(
                    f"FeatureSchema: feature {f.name!r} starts with '_', which Vowpal Wabbit reserves (it would "
                    "ignore the feature in exported logs); rename it"
                )
            if f.name in seen:
                raise ConfigError(
                    f"FeatureSchema: feature {f.name!r} is declared twice ({seen[f.name]} and {f.source}); "
                    "feature names must be unique so rules and logs can name them"
                )
            seen[f.name] = f.source
            col = len(columns)
            ns = f.namespace or _DEFAULT_NAMESPACE[f.source]
            if not isinstance(ns, str) or not ns.strip() or ns.startswith("_"):
                raise ConfigError(
                    f"FeatureSchema: feature {f.name!r} has namespace {ns!r}; namespaces must be non-empty "
                    "and must not start with '_' (reserved by Vowpal Wabbit)"
                )
            _declared_text(ns, f"FeatureSchema: feature {f.name!r} namespace")
            base = safe_column_name(f.name)
            index = len(plans)
            if isinstance(f, Numeric):
                plans.append(_NumericPlan(f, col, index, checks))
                columns.append(Column(col, base, f.name, "numeric", f.source, ns, None, f.name))
            elif isinstance(f, Boolean):
                plans.append(_BooleanPlan(f, col, index, checks))
                columns.append(Column(col, base, f.name, "boolean", f.source, ns, None, f.name))
            elif f.encoding == "code":
                plans.append(_CategoricalPlan(f, col, index, checks))
                columns.append(Column(col, base, f.name, "code", f.source, ns))
            else:
                plans.append(_CategoricalPlan(f, col, index, checks))
                for i, c in enumerate(f.categories):
                    columns.append(
                        Column(col + i, f"{base}={safe_column_name(str(c))}", f.name, "onehot", f.source, ns, c,
                               f.name + _vw_string(str(c)))
                    )
                if f.unknown == "other":
                    columns.append(Column(len(columns), f"{base}={OTHER}", f.name, "other", f.source, ns))
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(
                f"FeatureSchema: column names collide after making them safe for LightGBM: {dup}; "
                "rename the features or categories so they differ in more than whitespace or \",:[]{}\""
            )
        extras: dict[str, Source] = {}
        groups: tuple[tuple[Source, Iterable[str]], ...] = (("profile", extra_profile), ("context", extra_context))
        for source, group in groups:
            if isinstance(group, str):
                group = (group,)
            for name in group:
                if not isinstance(name, str) or not name:
                    raise ConfigError(f"FeatureSchema: extra {source} attribute names must be strings, got {name!r}")
                _declared_text(name, f"FeatureSchema: extra {source} attribute")
                if name in seen or name in extras:
                    raise ConfigError(f"FeatureSchema: {name!r} is declared twice (as a feature or extra attribute)")
                extras[name] = source

        self._features = features
        self._plans = tuple(plans)
        self._columns = tuple(columns)
        self._names = tuple(names)
        self._extras = extras
        self._n = len(columns)
        self._shape = (self._n,)
        self._src = {
            s: _SourcePlan([p for p in plans if p.source == s], [c for c in columns if c.source == s])
            for s in _SOURCES
        }
        self._codes = tuple(
            p for s in _SOURCES for p in plans if p.source == s and p.kind == "categorical" and p.code
        )
        self.strict: frozenset[str] = checks
        # Per source, the keys a dict input may hold in strict mode: its features and extra attributes.
        self._keys: dict[str, frozenset[str]] | None = None
        strict_keys: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        if "keys" in checks:
            self._keys = {s: frozenset(self._src[s].names) | {n for n, e in extras.items() if e == s}
                          for s in _SOURCES}
            strict_keys = (tuple(n for n, e in extras.items() if e == "profile"),
                           tuple(n for n, e in extras.items() if e == "context"))
        self._dv = DictVectorizer([_kernel_field(p) for p in plans], self._n, strict_keys)
        self._dict_fast = self._dv.vectorize
        # The validating path writes its values with one struct.pack_into: measured with callgrind
        # (25 columns) 4.9k instructions against 9.2k for out[:] = values. Typed as taking any
        # buffer: numpy's stubs give ndarray __buffer__ for Python 3.12+ only.
        self._pack_all: Callable[..., None] = struct.Struct(f"={self._n}d").pack_into
        # The decision log stores the vector itself; this says how to read features back from it:
        # per feature (namespace, name, kind, column, categories), namespaces in order of first use.
        by_ns: dict[str, list[_AnyPlan]] = {}
        for p in plans:
            by_ns.setdefault(p.namespace, []).append(p)
        self.log_layout: tuple[tuple[str, str, str, int, tuple[Any, ...]], ...] = tuple(
            (p.namespace, p.name, "code" if getattr(p, "code", False) else _LOG_KINDS[p.kind], p.col,
             tuple(getattr(p, "categories", ())))
            for group in by_ns.values() for p in group
        )
        self.schema_id = hashlib.sha256(msgspec.json.encode(self.log_layout)).hexdigest()[:16]
        self._read = _compile_reader(self.log_layout, {p.name for p in plans if getattr(p, "allow_missing", False)})
        self._log_cats = tuple(
            (p, p.namespace, slice(p.col, p.col + (1 if p.code else len(p.categories))))
            for group in by_ns.values() for p in group if isinstance(p, _CategoricalPlan)
        )

    # ------------------------------------------------------------------ introspection

    @property
    def features(self) -> tuple[Feature, ...]:
        """The declarations, in column order."""
        return self._features

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Column names in vector order (train LightGBM with ``feature_name=list(schema.feature_names)``)."""
        return self._names

    @property
    def columns(self) -> tuple[Column, ...]:
        """Every column with its feature, source, namespace and Vowpal Wabbit feature name."""
        return self._columns

    @property
    def n_columns(self) -> int:
        return self._n

    def __len__(self) -> int:
        return self._n

    @property
    def profile_feature_names(self) -> tuple[str, ...]:
        """Columns a ready profile vector must hold, in this order."""
        return tuple(self._names[i] for i in self._src["profile"].columns)

    @property
    def context_feature_names(self) -> tuple[str, ...]:
        """Columns a ready context vector must hold, in this order."""
        return tuple(self._names[i] for i in self._src["context"].columns)

    def field_source(self, name: str) -> Source | None:
        """Where a rule reading ``name`` finds it: "profile", "context", or None if undeclared."""
        for p in self._plans:
            if p.name == name:
                return p.source
        return self._extras.get(name)

    def field_kind(self, name: str) -> str | None:
        """"numeric", "boolean", "categorical", "extra", or None if undeclared."""
        for p in self._plans:
            if p.name == name:
                return str(p.kind)
        return "extra" if name in self._extras else None

    @property
    def fields(self) -> tuple[str, ...]:
        """Every name eligibility rules may reference: the features, then the extra attributes."""
        return tuple(p.name for p in self._plans) + tuple(self._extras)

    def __repr__(self) -> str:
        return f"FeatureSchema({len(self._plans)} features, {self._n} columns)"

    def __reduce__(self) -> tuple:
        # The compiled core and the generated reader do not pickle: pickle the declarations and build again
        # (counters are the process's own: a copy starts at zero).
        extra_p = tuple(n for n, s in self._extras.items() if s == "profile")
        extra_c = tuple(n for n, s in self._extras.items() if s == "context")
        return (_rebuild_schema, (self._features, extra_p, extra_c, tuple(sorted(self.strict))))

    def counters(self, reset: bool = False) -> FeatureCounters:
        """What this process's ``vectorize`` calls (and so ``decide``) saw, per feature, since the start or
        the last ``reset``: missing values, those filled with the declared default, unknown categories,
        clipped numbers; ``calls`` counts the calls that returned a vector (a refused call counts nothing).

        ``vectorize_many`` counts each row as one call. Each worker process keeps its own counts: export
        them per worker (as a Prometheus counter with a worker label, say) and sum. ``reset=True`` takes the
        counts and starts again from zero in one step.
        """
        calls, rows = self._dv.counts(reset)
        return FeatureCounters(
            calls=calls,
            features={p.name: FeatureCount(*row) for p, row in zip(self._plans, rows)},
        )

    def _count_rows(self, n_rows: int, counts: np.ndarray) -> None:
        """Count ``n_rows`` calls at once: ``counts[i]`` holds feature i's events (``vectorize_many``)."""
        self._dv.add(n_rows, counts)

    # ------------------------------------------------------------------ vectorize

    def vectorize(self, profile: Any, context: Any = None, out: np.ndarray | None = None) -> np.ndarray:
        """The model vector for ``profile`` and ``context``, written into ``out`` if given.

        ``out`` must be a C-contiguous float64 array of shape ``(n_columns,)``; it is
        returned. Raises ``SchemaError`` naming the feature for a wrong type, NaN
        (unless ``allow_missing``), infinity, an out-of-bounds value with
        ``clip=False`` or an unknown category with ``unknown="error"``.
        """
        if out is None:
            out = np.empty(self._shape)
        elif not isinstance(out, np.ndarray):
            self._check_out(out)  # raises
        if self._dict_fast(profile, context, out):
            return out
        return self._vectorize_checked(profile, context, out)

    def vectorize_many(self, profiles: Any, contexts: Any = None) -> np.ndarray:
        """The ``(n, n_columns)`` float64 matrix of many rows, each equal to ``vectorize`` of that row.

        ``profiles``: a list of inputs (dicts, Structs, ready vectors...) or a pandas
        DataFrame with a column per feature name (``category``, object, string,
        numeric, bool and nullable dtypes; an absent column is a missing feature).
        ``contexts``: None, one input for every row, a list (one per profile) or a
        DataFrame of the same length; ``vectorize_many(df, df)`` reads profile and
        context features from one frame. A frame is encoded a column at a time with
        numpy. A bad value raises the ``SchemaError`` ``vectorize`` raises for the
        first bad row, prefixed with ``row <i>:``.
        """
        from nba._batch import vectorize_many

        return vectorize_many(self, profiles, contexts)

    def _vectorize_checked(self, profile: Any, context: Any, out: Any) -> np.ndarray:
        """The validating path: every input the contract allows, feature by feature; errors name the feature."""
        self._check_out(out)
        vals: list[float] | None = None
        vectors = []
        events = []
        for source, obj in (("profile", profile), ("context", context)):
            plan = self._src[source]
            if self._keys is not None and isinstance(obj, Mapping):
                self._check_keys(obj, source, profile is context)
            if not plan.plans:
                continue
            _check_input(obj, source)
            if isinstance(obj, (np.ndarray, list, tuple)):
                vectors.append((plan.columns, self._check_vector(obj, source)))
            else:
                if vals is None:
                    vals = [0.0] * self._n
                for p, raw in zip(plan.plans, _raw_values(obj, plan.names)):
                    seen = p.encode(raw, vals)
                    if seen:
                        events.append((p.index, seen))
        if vals is not None:
            self._pack_all(out, 0, *vals)  # every column; a vector source's are overwritten below
        for cols, x in vectors:
            out[cols] = x
        self._dv.record(events)
        return out

    def _check_keys(self, obj: Mapping[Any, Any], source: str, both: bool) -> None:
        """Strict mode: raise ``SchemaError`` for a key of ``obj`` that ``source`` does not declare (nor the
        other source, when ``both``: one input passed as profile and context)."""
        assert self._keys is not None
        allowed = self._keys["profile"] | self._keys["context"] if both else self._keys[source]
        for key in obj:
            if key in allowed:
                continue
            shown = _shown(key)
            hint = "."
            if isinstance(key, str):
                near = [n for n in allowed if n.lower() == key.lower()] or difflib.get_close_matches(key, allowed, 1)
                hint = f"; did you mean {near[0]!r}?" if near else "."
            raise SchemaError(
                f"{source}: unknown key {shown} (strict mode){hint} The schema's {source} keys are "
                f"{sorted(allowed)!r}; remove it, declare it with extra_{source}=[...] if rules read it, "
                "or leave 'keys' out of FeatureSchema(strict=...)"
            )

    def _check_out(self, out: Any) -> None:
        if not isinstance(out, np.ndarray):
            raise SchemaError(f"vectorize: out must be a numpy array, got {type(out).__name__}")
        flags = out.flags
        if out.dtype != _F64 or out.shape != self._shape or not flags.c_contiguous or not flags.writeable:
            raise SchemaError(
                f"vectorize: out must be a writeable C-contiguous float64 array of shape {self._shape}, "
                f"got {out.dtype} {out.shape}{'' if flags.c_contiguous else ' non-contiguous'}"
                f"{'' if flags.writeable else ' read-only'}"
            )

    def _check_vector(self, obj: Any, source: str) -> np.ndarray:
        plan = self._src[source]
        try:
            x = np.asarray(obj, dtype=np.float64)
        except (TypeError, ValueError):
            raise SchemaError(
                f"{source} vector: expected numbers, got a {type(obj).__name__} that is not numeric"
            ) from None
        n = len(plan.columns)
        if x.shape != (n,):
            names = self.profile_feature_names if source == "profile" else self.context_feature_names
            raise SchemaError(
                f"{source} vector: expected {n} values (the columns {list(names)!r}), "
                f"got shape {x.shape}"
            )
        bad = ~np.isfinite(x) & ~(np.isnan(x) & plan.nan_ok)
        for k, n_cats in plan.codes:
            v = float(x[k])
            if v == v and not (v.is_integer() and 0 <= v < n_cats):
                name = self._names[int(plan.columns[k])]
                raise SchemaError(
                    f"{source} vector: column {k} ({name!r}) is {v!r}; a code column holds the index of a "
                    f"category (0 to {n_cats - 1}) or NaN for missing"
                )
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            name = self._names[int(plan.columns[k])]
            raise SchemaError(
                f"{source} vector: column {k} ({name!r}) is {float(x[k])!r}; values must be finite "
                "(NaN is allowed only for features declared allow_missing=True)"
            )
        return x

    # ------------------------------------------------------------------ logging and model checks

    def used_features(
        self, profile: Any, context: Any = None, x: np.ndarray | None = None
    ) -> dict[str, dict[str, Any]]:
        """``{namespace: {feature: value}}`` for the declared features only, as the decision used them.

        Nothing else from the profile or context appears (extra attributes included):
        a log must never hold more personal data than the decision used. Numbers are
        the values after defaults and clipping, booleans stay booleans, categories
        stay as given (as Vowpal Wabbit's JSON parser reads them, unknown ones
        included); values the model saw as missing (NaN), and missing categories
        without a default, are left out. Pass ``x``, the vector ``vectorize`` just
        returned for the same inputs, to skip vectorizing again.
        """
        if x is None:
            x = self.vectorize(profile, context)
        elif not (isinstance(x, np.ndarray) and x.shape == self._shape):
            raise SchemaError(f"used_features: x must be the vector vectorize returned, shape {self._shape}")
        xs = x.tolist()
        return self._read(xs, self.log_raw(xs, profile, context) or _NO_RAW)

    def log_raw(self, x: list[float], profile: Any, context: Any = None) -> dict[str, dict[str, Any]] | None:
        """The features ``log_layout`` cannot read from ``x`` (the vector as a list), as ``used_features`` logs them.

        Only categories whose one-hot block is all zeros (or on its "other" column)
        with a value to log, i.e. unknown categories: ``{namespace: {name: raw}}``,
        or None when there are none (the usual case).
        """
        out: Features | None = None
        for p, ns, block in self._log_cats:
            if (x[block.start] != x[block.start]) if p.code else (1.0 not in x[block]):  # missing or unknown
                v = p.unheld(profile, context)
                if v is not MISSING:
                    if out is None:
                        out = {}
                    out.setdefault(ns, {})[p.name] = v
        return out

    def check_model(self, feature_names: Sequence[str], arm_features: Sequence[str] = ()) -> None:
        """Raise ``SchemaError`` unless a model's feature names are exactly the schema's plus the arms' columns.

        Order may differ (``nba.Catalog.layout`` maps columns by name); names may not.
        The message lists the model features nothing provides (missing) and the
        schema or arm columns the model does not have (extra).
        """
        model = list(feature_names)
        dup = sorted({n for n in model if model.count(n) > 1})
        if dup:
            raise SchemaError(f"model feature names are not unique: {dup}")
        ours = list(self._names) + list(arm_features)
        ours_set, model_set = set(ours), set(model)
        missing = [n for n in model if n not in ours_set]
        extra = [n for n in ours if n not in model_set]
        if missing or extra:
            parts = []
            if missing:
                parts.append(
                    f"missing (the model reads them, but neither the schema nor the arms provide them): {missing}"
                )
            if extra:
                parts.append(f"extra (the schema or arms provide them, but the model does not read them): {extra}")
            raise SchemaError(
                "model features do not match the schema: " + "; ".join(parts)
                + ". Declare the missing features (or arm features), remove the extra ones, "
                "or retrain the model with feature_name=list(catalog.feature_names)"
            )

    def check_categorical(
        self, feature_names: Sequence[str], categorical: Sequence[str],
        pandas_categorical: Sequence[Sequence[Any]] | None,
    ) -> None:
        """Raise ``SchemaError`` unless ``encoding="code"`` features and a LightGBM model's categories agree.

        ``categorical``: the model features LightGBM splits natively as categories;
        ``pandas_categorical``: their category lists (a model trained on pandas
        ``category`` columns), or None. A code column must feed a categorical
        feature whose list is the declared ``categories`` in the same order (the codes
        are indices into it); a model feature with a category list must be fed by a
        code column (one-hot or numeric columns there would score as wrong codes).
        """
        cats = list(categorical)
        lists: dict[str, list[Any]] | None = None
        if pandas_categorical is not None and len(pandas_categorical) == len(cats):
            lists = {n: list(c) for n, c in zip(cats, pandas_categorical)}
        model = set(feature_names)
        codes = {safe_column_name(p.name): p for p in self._codes}
        for col, p in codes.items():
            decl = f"Categorical({p.name!r}, encoding='code')"
            if col not in model:
                continue  # check_model names it
            if col not in cats:
                raise SchemaError(
                    f"{decl} feeds model feature {col!r}, which the model does not split as a category; "
                    "train it on a pandas category column (Catalog.training_frame(..., as_frame=True)) or "
                    "declare the feature one-hot (encoding='onehot')"
                )
            if pandas_categorical is None:
                continue  # trained on integer codes without pandas: nothing to compare with
            if lists is None:
                raise SchemaError(
                    f"{decl}: the model's pandas_categorical holds {len(pandas_categorical)} category lists "
                    f"for {len(cats)} categorical features, so which list is {col!r}'s cannot be told; "
                    "train with categorical_feature='auto' on pandas category columns"
                )
            if lists[col] != list(p.categories):
                raise SchemaError(
                    f"{decl}: the model was trained with categories {_short(lists[col])} for {col!r} "
                    f"(pandas_categorical), the schema declares {_short(list(p.categories))}; codes are "
                    f"indices into that list, so declare categories={_short(lists[col])} in that order"
                )
        if lists is not None:
            for col in lists:
                if col in model and col not in codes:
                    raise SchemaError(
                        f"model feature {col!r} is a native LightGBM category (categories {_short(lists[col])}), "
                        f"but the schema gives it a numeric or one-hot column; declare "
                        f"Categorical({col!r}, {_short(lists[col])}, encoding='code')"
                    )


def _shown(value: Any) -> str:
    """``repr(value)`` for an error message, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _short(values: list[Any]) -> str:
    text = repr(values)
    return text if len(text) <= 80 else text[:77] + "...]"


_LOG_KINDS = {"numeric": "number", "boolean": "bool", "categorical": "category"}
_NO_RAW: dict[str, dict[str, Any]] = {}  # read only
Features = dict[str, dict[str, Any]]


def read_vector(layout: Iterable[Sequence[Any]], x: Sequence[Any], raw: Mapping[str, Any]) -> Features:
    """``{namespace: {name: value}}`` of vector ``x`` by ``layout`` (``FeatureSchema.log_layout``), as
    ``FeatureSchema.used_features`` gives it: the validating path, for any vector as a log line or a caller holds it.

    Numbers as they are, booleans as booleans, a category by its one-hot column;
    missing values (NaN, null in JSON, a column beyond the end of ``x``) are left
    out, and a category whose block is empty comes from ``raw`` (unknown) or is left
    out (missing). A malformed ``layout``, ``x`` or ``raw`` raises AttributeError,
    TypeError or IndexError.
    """
    out: Features = {}
    n = len(x)
    for ns, name, kind, col, cats in layout:
        if kind == "code":
            v = x[col] if col < n else None
            if v is None or v != v:
                value = raw.get(ns, _NO_RAW).get(name, MISSING)
                if value is MISSING:
                    continue
            elif float(v).is_integer() and 0 <= v < len(cats):
                value = cats[int(v)]
            else:
                raise IndexError(f"feature {name!r}: code {v!r} is not the index of one of its {len(cats)} categories")
        elif kind == "category":
            value = MISSING
            for j in range(len(cats)):
                if col + j < n and x[col + j] == 1.0:
                    value = cats[j]
                    break
            else:
                value = raw.get(ns, _NO_RAW).get(name, MISSING)
            if value is MISSING:
                continue
        else:
            v = x[col] if col < n else None
            if v is None or math.isnan(v):
                continue
            value = v != 0.0 if kind == "bool" else v
        out.setdefault(ns, {})[name] = value
    return out


def _compile_reader(layout: Sequence[Sequence[Any]], nan_ok: set[str]) -> Callable[[list, Any], Features]:
    """``read_vector`` specialised to one layout, for the vectors ``vectorize`` writes (``nan_ok``: the
    features that may be NaN there): one dict display per namespace, a category found by inline tests.

    Why generated (as dataclasses generate ``__init__``): a caller that logs features runs
    ``used_features`` per decision (bench_schema.py's used-features-20 times it). Measured
    with callgrind on that 20-feature schema, ``used_features`` costs 21k instructions with
    this reader, 47k with ``read_vector`` and 35k with an itemgetter + zip per namespace.
    """
    groups: dict[str, list[Sequence[Any]]] = {}
    for f in layout:
        groups.setdefault(f[0], []).append(f)
    lines = ["def read(xs, raw):", "    r = {}"]
    for k, (ns, feats) in enumerate(groups.items()):
        d = f"d{k}"
        items = []
        fixups = []
        for _, name, kind, col, cats in feats:
            key = repr(name)
            if kind == "code":
                items.append(f"{key}: {tuple(cats)!r}[int(xs[{col}])] if xs[{col}] == xs[{col}] "
                             f"else raw.get({ns!r}, _E).get({key}, MISSING)")
                fixups.append(f"    if {d}[{key}] is MISSING: del {d}[{key}]")
                continue
            if kind == "category":
                tests = "".join(f"{c!r} if xs[{col + j}] == 1.0 else " for j, c in enumerate(cats))
                items.append(f"{key}: {tests}raw.get({ns!r}, _E).get({key}, MISSING)")
                fixups.append(f"    if {d}[{key}] is MISSING: del {d}[{key}]")
                continue
            items.append(f"{key}: xs[{col}] != 0.0" if kind == "bool" else f"{key}: xs[{col}]")
            if name in nan_ok:
                fixups.append(f"    if xs[{col}] != xs[{col}]: del {d}[{key}]")
        lines.append(f"    {d} = {{{', '.join(items)}}}")
        lines.extend(fixups)
        lines.append(f"    if {d}: r[{ns!r}] = {d}")
    lines.append("    return r")
    env: dict[str, Any] = {"MISSING": MISSING, "_E": _NO_RAW}
    exec("\n".join(lines), env)  # noqa: S102 - names, keys and categories are repr()-quoted
    return env["read"]


def _rebuild_schema(features: tuple, extra_profile: tuple, extra_context: tuple, strict: tuple = ()) -> FeatureSchema:
    return FeatureSchema(features, extra_profile=extra_profile, extra_context=extra_context, strict=strict)


def _strict_checks(strict: bool | Iterable[str]) -> frozenset[str]:
    """``FeatureSchema(strict=...)`` as the set of checks it turns on."""
    if strict is True:
        return frozenset(STRICT_CHECKS)
    if strict is False or strict is None:
        return frozenset()
    if isinstance(strict, str) or not isinstance(strict, Iterable):
        raise ConfigError(
            f"FeatureSchema: strict must be True, False or a collection of {list(STRICT_CHECKS)!r}, got {strict!r}"
        )
    checks = frozenset(strict)
    bad = sorted(repr(c) for c in checks - set(STRICT_CHECKS))
    if bad:
        raise ConfigError(
            f"FeatureSchema: unknown strict check(s) {', '.join(bad)}; choose from {list(STRICT_CHECKS)!r}"
        )
    return checks


class FeatureCount(msgspec.Struct, frozen=True):
    """One feature's counts (``FeatureSchema.counters``): values found missing (absent, None, or NaN where
    NaN means missing), filled with the declared default (a share of the missing ones), categories outside
    the declared ones, numbers clipped to their bounds."""

    missing: int = 0
    defaulted: int = 0
    unknown: int = 0
    clipped: int = 0


class FeatureCounters(msgspec.Struct, frozen=True):
    """``FeatureSchema.counters()``: the vectorized calls counted and each feature's ``FeatureCount``."""

    calls: int
    features: dict[str, FeatureCount]

    def rows(self) -> list[tuple[str, str, int]]:
        """(feature, what, count) for every non-zero count, what being missing/defaulted/unknown/clipped:
        one line per metric sample."""
        return [(name, what, n) for name, c in self.features.items()
                for what, n in zip(FeatureCount.__struct_fields__, msgspec.structs.astuple(c)) if n]


def _check_input(obj: Any, source: str) -> None:
    if isinstance(obj, (str, bytes, int, float, complex, np.generic)):
        raise SchemaError(
            f"{source}: expected a dict, a msgspec Struct, an object with attributes, a float vector or None, "
            f"got {type(obj).__name__}"
        )


def _raw_values(obj: Any, names: Sequence[str]) -> list[Any]:
    """The raw value of each of ``names`` in a dict, Mapping, Struct, object or None; MISSING if absent, None
    or UNSET."""
    if obj is None:
        return [MISSING] * len(names)
    if isinstance(obj, Mapping):
        vals = [obj.get(name, MISSING) for name in names]  # .get: a defaultdict does not grow
    else:
        vals = [getattr(obj, name, MISSING) for name in names]
    return [MISSING if v is None or v is msgspec.UNSET else v for v in vals]
