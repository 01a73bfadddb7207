"""Arms, the catalogue, eligibility and arbitration.

An ``Arm`` is one action nba can recommend: its id, the features a model sees
for it, its business value and weight, one payload per channel, declarative
eligibility rules and an optional time window. A ``Catalog`` validates a list of
arms against a ``FeatureSchema`` once and compiles everything a decision needs:
the arm-feature matrix for tree models, the action features for Vowpal Wabbit,
per-channel candidate lists and the eligibility rules as small closures.

Eligibility, per decision, in this order:

* **channel**: an arm with no ``channels`` is eligible on every channel; otherwise
  only on the channels it lists, where the key ``"*"`` stands for any channel (its
  payload serves the channels not listed by name). ``channel=None`` skips the
  channel filter.
* **time window**: ``start <= now < end`` (either bound may be None). Naive
  datetimes are taken as UTC.
* **rules**: ``Rule``, ``AllOf``, ``AnyOf``, ``Not``, or the same as a small
  expression (``"age >= 18 and segment in ['gold', 'silver']"``), parsed without
  ``eval``. A rule reads the value as given in the profile or context; a missing
  value (absent, None, NaN) makes every comparison false, ``!=`` and ``not_in``
  included, and only ``exists`` with False true. The rule language, its checks
  against the schema and its compilation live in ``nba.rules``.

Arbitration turns raw model scores into priorities before the exploration policy
sees them: by default ``priority = score x value x weight`` ("product");
"probability" is ``value x weight x clip(score, 0, 1)``; "score" ignores value and
weight; any callable ``f(scores, values, weights, out)`` works. The policy turns
the priorities of the eligible arms into a pmf over those arms; the decision log
records the raw model scores (not the priorities) and that pmf.

"product" assumes non-negative scores (probabilities, expected values): with
signed scores (negated VW costs, raw margins) a larger value makes a negative
score worse and inverts the business ranking; ``Catalog.check_arbitration``
refuses that combination. "probability" is right for a score that estimates a
success probability: a LightGBM binary model's output, or a Vowpal Wabbit cb model
trained on nba's dsjson export, whose cost is -reward, so the Decider's negated
cost is the estimated reward, for 0/1 rewards the success probability (clipping
makes an estimate outside [0, 1] one). Use "score" or a formula of your own for
other signed scores.
"""

from __future__ import annotations

import hashlib
import math
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from itertools import repeat
from operator import itemgetter
from typing import Any, Literal

import msgspec
import numpy as np

from nba._validate import config_json_text, config_text
from nba.errors import ConfigError, SchemaError
from nba.rules import Condition, Incomparable, RuleCompiler, check_conditions, collect_fields
from nba.schema import FeatureSchema, read_vector, safe_column_name

__all__ = [
    "Arm",
    "Catalog",
    "RowLayout",
    "ARBITRATIONS",
]

# --------------------------------------------------------------------------- arms


class Arm(msgspec.Struct, frozen=True):
    """One action: what a model sees of it, what it is worth, where and when it may be shown.

    ``features``: arm features ({"fee": 95.0}); numbers and booleans become columns
    for tree models, strings are one-hot encoded over the catalogue's values, and
    all are the Vowpal Wabbit action features in ``namespace``. ``value`` and
    ``weight`` (>= 0) scale the score in arbitration. ``channels`` maps a channel
    name (or ``"*"``) to its payload, any JSON value. ``eligibility``: a condition,
    an expression string, or a list of them (all must hold). ``start`` / ``end``:
    the time window, end excluded.
    """

    id: str
    features: dict[str, Any] = {}
    value: float = 1.0
    weight: float = 1.0
    channels: dict[str, Any] = {}
    eligibility: Condition | str | list[Condition | str] | None = None
    start: datetime | None = None
    end: datetime | None = None
    namespace: str = "Action"


# --------------------------------------------------------------------------- arbitration


def _product(scores: np.ndarray, values: np.ndarray, weights: np.ndarray, out: np.ndarray) -> np.ndarray:
    """priority = score x value x weight: expected business value when scores are probabilities."""
    np.multiply(scores, values, out=out)
    np.multiply(out, weights, out=out)
    return out


def _probability(scores: np.ndarray, values: np.ndarray, weights: np.ndarray, out: np.ndarray) -> np.ndarray:
    """priority = clip(score, 0, 1) x value x weight: expected business value of a success-probability score.

    The clip keeps a negative estimate from inverting the ranking (and makes any
    estimate a probability); NaN stays NaN, so a broken score is still refused.
    """
    np.clip(scores, 0.0, 1.0, out=out)
    np.multiply(out, values, out=out)
    np.multiply(out, weights, out=out)
    return out


def _score_only(scores: np.ndarray, values: np.ndarray, weights: np.ndarray, out: np.ndarray) -> np.ndarray:
    """priority = score: value and weight ignored."""
    np.copyto(out, scores)
    return out


ARBITRATIONS: dict[str, Callable[..., np.ndarray]] = {
    "product": _product,
    "probability": _probability,
    "score": _score_only,
}

Arbitration = (
    Literal["product", "probability", "score"] | Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Any]
)


def _resolve_arbitration(spec: Any) -> Callable[..., Any]:
    if isinstance(spec, str):
        try:
            return ARBITRATIONS[spec]
        except KeyError:
            raise ConfigError(
                f"arbitration {spec!r} is not a built-in; use one of {', '.join(ARBITRATIONS)} "
                "or a callable f(scores, values, weights, out)"
            ) from None
    if not callable(spec):
        raise ConfigError(f"arbitration must be a name or a callable f(scores, values, weights, out), got {spec!r}")
    # Probe once so a wrong signature or shape fails at construction, not on the first request.
    probe = np.array([0.5, 0.25])
    out = np.empty(2)
    try:
        res = spec(probe, np.array([2.0, 1.0]), np.array([1.0, 3.0]), out)
    except Exception as e:  # noqa: BLE001 - any failure of user code here is a configuration error
        raise ConfigError(f"arbitration callable failed on a probe call f(scores, values, weights, out): {e!r}") from e
    res = out if res is None else np.asarray(res)
    if res.shape != (2,):
        raise ConfigError(f"arbitration callable must fill out (or return) one priority per arm, got shape {res.shape}")
    return spec


# --------------------------------------------------------------------------- compiling eligibility


def _utc_seconds(t: datetime) -> float:
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


# --------------------------------------------------------------------------- the catalogue


class RowLayout:
    """Where schema columns and arm columns go in a tree model's rows, by the model's feature names.

    ``fill(x, idx)`` returns one row per arm in ``idx`` (all arms if None): the
    shared vector ``x`` in the schema columns, each arm's features in the arm columns.
    """

    def __init__(self, catalog: Catalog, feature_names: Sequence[str]) -> None:
        names = list(feature_names)
        catalog.schema.check_model(names, catalog.arm_feature_names)
        col = {n: j for j, n in enumerate(names)}
        self.feature_names = tuple(names)
        self.n_features = len(names)
        self.shared_cols = np.asarray([col[n] for n in catalog.schema.feature_names], dtype=np.intp)
        arm_cols = np.asarray([col[n] for n in catalog.arm_feature_names], dtype=np.intp)
        template = np.zeros((len(catalog), self.n_features))
        template[:, arm_cols] = catalog.arm_matrix
        template.setflags(write=False)
        self.template = template
        ns = len(self.shared_cols)
        self._x_shape = (ns,)
        self._prefix = ns if np.array_equal(self.shared_cols, np.arange(ns)) else None

    def fill(self, x: np.ndarray, idx: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Rows for arms ``idx`` (indices into the catalogue), written into ``out[:len(idx)]`` if given."""
        k = self.template.shape[0] if idx is None else len(idx)
        if getattr(x, "shape", None) != self._x_shape:
            raise SchemaError(
                f"RowLayout.fill: x must be the schema's vector, shape {self._x_shape}, "
                f"got {getattr(x, 'shape', type(x))}"
            )
        if out is None:
            out = np.empty((k, self.n_features))
        else:
            if out.dtype != np.float64 or out.ndim != 2 or out.shape[1] != self.n_features or out.shape[0] < k:
                raise SchemaError(
                    f"RowLayout.fill: out must be float64 with shape (>= {k}, {self.n_features}), "
                    f"got {out.dtype} {out.shape}"
                )
            out = out[:k]
        if idx is None:
            np.copyto(out, self.template)
        else:
            np.take(self.template, idx, axis=0, out=out)
        if self._prefix is not None:
            out[:, : self._prefix] = x
        else:
            out[:, self.shared_cols] = x
        return out


_INTP = np.dtype(np.intp)
_IDX_STRIDES = (_INTP.itemsize,)
_IDX_CODE = {4: "i", 8: "q"}[_INTP.itemsize]


class Catalog:
    """The arms a decider chooses from, validated against a schema and compiled for decisions.

    Raises ``ConfigError`` for duplicate or empty ids, arm features that differ
    between arms, non-finite or negative values or weights, an empty time window,
    payloads that are not JSON, text (ids, names, payloads, rules) that UTF-8
    cannot write, rules nested deeper than ``MAX_RULE_DEPTH``, and rules that
    reference undeclared fields or that the feature's kind makes meaningless
    (an ordering on a categorical, an undeclared category, a number for a boolean).

    ``arbitration``: "product" (score x value x weight, the default),
    "probability" (clip(score, 0, 1) x value x weight), "score", or a callable
    ``f(scores, values, weights, out)``; see ``priorities`` and ``check_arbitration``.

    Immutable once built and safe to share between threads (pass each thread its
    own ``out`` buffers).
    """

    def __init__(self, arms: Iterable[Arm], schema: FeatureSchema, *, arbitration: Arbitration = "product") -> None:
        if not isinstance(schema, FeatureSchema):
            raise ConfigError(f"Catalog: schema must be an nba.FeatureSchema, got {type(schema).__name__}")
        arms = tuple(arms)
        if not arms:
            raise ConfigError("Catalog: needs at least one arm")
        ids: dict[str, int] = {}
        for i, arm in enumerate(arms):
            if not isinstance(arm, Arm):
                raise ConfigError(f"Catalog: item {i} is a {type(arm).__name__}, expected nba.Arm")
            if not isinstance(arm.id, str) or not arm.id:
                raise ConfigError(f"Catalog: arm {i} has id {arm.id!r}; ids must be non-empty strings")
            config_text(arm.id, f"Catalog: arm {i} id")
            if arm.id in ids:
                raise ConfigError(
                    f"Catalog: arm id {arm.id!r} is used twice (items {ids[arm.id]} and {i}); ids must be unique"
                )
            ids[arm.id] = i
            _check_arm(arm)
        self.schema = schema
        self.arms = arms
        self.ids = tuple(ids)
        self._index = ids
        self.values = np.array([float(a.value) for a in arms])
        self.weights = np.array([float(a.weight) for a in arms])
        self.values.setflags(write=False)
        self.weights.setflags(write=False)
        self._arbitration_spec = arbitration
        self._arbitrate = _resolve_arbitration(arbitration)
        self._builtin_arbitration = self._arbitrate in ARBITRATIONS.values()
        # priority = (score x factors[0]) x factors[1] for the built-in rules: what compiled paths compute.
        ones = np.ones(len(arms))
        ones.setflags(write=False)
        self.arbitration_factors: tuple[np.ndarray, np.ndarray] | None = (
            (self.values, self.weights) if self._arbitrate is _product
            else (ones, ones) if self._arbitrate is _score_only else None
        )
        self.arbitration = arbitration if isinstance(arbitration, str) else getattr(arbitration, "__name__", "custom")
        self._build_arm_features()
        self._compile_eligibility()
        # Per arm, {namespace: {name: value}}: VW action features (VWModel.prepare_actions) and,
        # keyed by arm id in ``features_by_arm``, the ``arms`` of the log's catalog record.
        self.action_features: tuple[dict[str, dict[str, Any]], ...] = tuple(
            {a.namespace: dict(a.features)} if a.features else {} for a in arms
        )
        self.features_by_arm: dict[str, dict[str, dict[str, Any]]] = dict(zip(self.ids, self.action_features))
        try:
            canon = msgspec.json.encode(
                [msgspec.to_builtins(a, order="deterministic") for a in arms], order="deterministic"
            )
        except (TypeError, ValueError, RecursionError, msgspec.EncodeError) as e:
            # RecursionError: a payload nested absurdly deep or containing itself (msgspec's own guard).
            raise ConfigError(
                f"Catalog: an arm holds a value that cannot be encoded as JSON (payloads must be JSON values): {e}"
            ) from e
        self.catalog_id = hashlib.sha256(canon).hexdigest()[:16]
        self._layouts: dict[tuple[str, ...], RowLayout] = {}

    # ------------------------------------------------------------------ arm features

    def _build_arm_features(self) -> None:
        first = self.arms[0]
        names = list(first.features)
        expected = set(names)
        for a in self.arms[1:]:
            got = set(a.features)
            if got != expected:
                missing = sorted(expected - got)
                extra = sorted(got - expected)
                raise ConfigError(
                    f"Catalog: arm {a.id!r} has features {sorted(got)}, but arm {first.id!r} has {sorted(expected)} "
                    f"(missing {missing}, extra {extra}); every arm must declare the same feature names"
                )
        columns: list[str] = []
        encoders: list[tuple[str, str, Any]] = []  # (feature, "num" | "cat", category)
        for name in names:
            vals = [a.features[name] for a in self.arms]
            strs = [isinstance(v, str) for v in vals]
            if any(strs) and not all(strs):
                raise ConfigError(
                    f"Catalog: arm feature {name!r} mixes strings and numbers across arms; use one type for all arms"
                )
            if all(strs):
                for c in sorted(set(vals)):
                    columns.append(f"{safe_column_name(name)}={safe_column_name(c)}")
                    encoders.append((name, "cat", c))
                continue
            for a, v in zip(self.arms, vals):
                if isinstance(v, (bool, np.bool_)):
                    continue
                if not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                    raise ConfigError(
                        f"Catalog: arm {a.id!r} feature {name!r} = {v!r}; arm features must be finite numbers, "
                        "booleans or strings"
                    )
            columns.append(safe_column_name(name))
            encoders.append((name, "num", None))
        clash = sorted(set(columns) & set(self.schema.feature_names))
        if clash or len(set(columns)) != len(columns):
            dup = clash or sorted({c for c in columns if columns.count(c) > 1})
            raise ConfigError(
                f"Catalog: arm feature columns {dup} collide with schema columns or with each other; rename them"
            )
        m = np.zeros((len(self.arms), len(columns)))
        for j, (name, how, cat) in enumerate(encoders):
            for i, a in enumerate(self.arms):
                v = a.features[name]
                m[i, j] = (1.0 if v == cat else 0.0) if how == "cat" else float(v)
        m.setflags(write=False)
        self.arm_feature_names: tuple[str, ...] = tuple(columns)
        self.arm_matrix = m

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Column names of a tree model's rows in the default layout: schema columns, then arm columns."""
        return self.schema.feature_names + self.arm_feature_names

    def check_model(self, feature_names: Sequence[str]) -> None:
        """Raise ``SchemaError`` naming missing and extra features unless the model reads exactly ours."""
        self.schema.check_model(feature_names, self.arm_feature_names)

    def training_frame(
        self, profiles: Any, contexts: Any = None, *, arms: Sequence[str] | None = None,
        chosen: Sequence[str] | None = None, as_frame: bool = False,
    ) -> Any:
        """Training rows in ``feature_names`` order, built as serving builds them: see ``nba._batch.training_rows``.

        Every profile x every arm of ``arms`` (default: all, in catalogue order),
        profile-major; or, with ``chosen`` (one arm id per profile, as a log holds
        them), one row per profile. A float64 matrix, or with ``as_frame`` a pandas
        DataFrame with ``feature_names`` as its columns (``encoding="code"`` categories
        as ``category`` columns over the declared list: what LightGBM trains natively on).
        """
        from nba._batch import training_rows

        return training_rows(self, profiles, contexts, arms=arms, chosen=chosen, as_frame=as_frame)

    def layout(self, feature_names: Sequence[str] | None = None) -> RowLayout:
        """The row layout for a tree model with these feature names (default: ``feature_names``)."""
        key = tuple(self.feature_names if feature_names is None else feature_names)
        lay = self._layouts.get(key)
        if lay is None:
            lay = RowLayout(self, key)
            if len(self._layouts) < 16:
                self._layouts[key] = lay
        return lay

    # ------------------------------------------------------------------ eligibility

    def _compile_eligibility(self) -> None:
        comp = RuleCompiler(self.schema)
        # Number the fields profile first, then context, so fetched values need no reordering.
        names: dict[str, None] = {}
        for a in self.arms:
            collect_fields(a.eligibility, names)
        for source in ("profile", "context"):
            for name in names:
                if self.schema.field_source(name) == source:
                    comp.fields.setdefault(name, len(comp.fields))
        entries = []  # (arm, start, end, rules or None)
        self._has_window = False
        for i, a in enumerate(self.arms):
            lo = -math.inf if a.start is None else _utc_seconds(a.start)
            hi = math.inf if a.end is None else _utc_seconds(a.end)
            self._has_window |= a.start is not None or a.end is not None
            entries.append((i, lo, hi, comp.compile(a.eligibility, f"arm {a.id!r}")))
        self._rule_fields = tuple(comp.fields)
        self._p_keys = tuple(f for f in comp.fields if self.schema.field_source(f) == "profile")
        self._c_keys = tuple(f for f in comp.fields if self.schema.field_source(f) == "context")
        assert self._p_keys + self._c_keys == self._rule_fields  # numbered so above
        self._p_fetch = _fetcher(self._p_keys, self.schema, "profile")
        self._c_fetch = _fetcher(self._c_keys, self.schema, "context")

        def per_channel(pick: Callable[[Arm], bool]) -> tuple[tuple, np.ndarray | None]:
            mine = tuple(e for e, a in zip(entries, self.arms) if pick(a))
            # No rule and no time window among these arms: the answer never changes.
            static = None
            if not self._has_window and all(e[3] is None for e in mine):
                static = np.array([e[0] for e in mine], dtype=np.intp)
                static.setflags(write=False)
            return mine, static

        self._all_entries = per_channel(lambda a: True)
        self._unrestricted = per_channel(lambda a: not a.channels or "*" in a.channels)
        self._by_channel: dict[str, tuple[tuple, np.ndarray | None]] = {}

        def on(ch: str) -> Callable[[Arm], bool]:
            return lambda b: not b.channels or ch in b.channels or "*" in b.channels

        for a in self.arms:
            for ch in a.channels:
                if ch != "*" and ch not in self._by_channel:
                    self._by_channel[ch] = per_channel(on(ch))
        # eligible() writes the k indices into ``out`` with one struct.pack_into per k: measured with
        # callgrind (8 of 10 indices) 3.2k instructions against 4.9k for out[:k] = idx. Typed as taking
        # any buffer: numpy's stubs give ndarray __buffer__ for Python 3.12+ only.
        self._pack_idx: list[Callable[..., None]] = [
            struct.Struct(f"={k}{_IDX_CODE}").pack_into for k in range(len(self.arms) + 1)
        ]
        self.channels = tuple(self._by_channel)

    def eligible(
        self,
        profile: Any,
        context: Any = None,
        channel: str | None = None,
        now: datetime | float | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Indices (ascending, into the catalogue) of the arms eligible for this decision.

        ``now``: a datetime or unix seconds (default: the current time). ``out``: an
        intp buffer of length >= ``len(catalog)`` to write into; the result is a view
        of its first k entries. A rule comparing a field of the wrong type (a string
        where it expects a number) raises ``SchemaError`` naming the field.
        """
        per_channel = self._all_entries if channel is None else self._by_channel.get(channel)
        if per_channel is None:
            if not isinstance(channel, str):
                raise SchemaError(f"eligible: channel must be a string or None, got {type(channel).__name__}")
            per_channel = self._unrestricted
        entries, static = per_channel
        if static is None:
            idx = self._evaluate(entries, profile, context, now)
            k = len(idx)
        else:
            k = static.shape[0]
        if out is None:
            out = np.empty(len(self.arms), dtype=np.intp)
        elif not (out.__class__ is np.ndarray and out.dtype is _INTP and out.strides == _IDX_STRIDES
                  and out.shape[0] >= len(self.arms)):
            raise self._bad_out(out)
        try:
            if static is None:
                self._pack_idx[k](out, 0, *idx)
            else:
                out[:k] = static
        except (TypeError, ValueError):  # read-only buffer
            raise self._bad_out(out) from None
        return out[:k]

    def static_eligible(self, channel: str | None) -> np.ndarray | None:
        """The arms eligible on ``channel`` when no rule or time window can change them, else None.

        A shared read-only intp array (what ``eligible`` would return for any
        profile, context and time); lets a caller skip evaluating rules per decision.
        """
        entries = self._all_entries if channel is None else self._by_channel.get(channel)
        if entries is None:
            if channel.__class__ is not str:
                return None
            entries = self._unrestricted
        return entries[1]

    def _evaluate(self, entries: tuple, profile: Any, context: Any, now: Any) -> list[int]:
        """Indices of the arms among ``entries`` whose time windows and rules hold."""
        vals = self._p_fetch(profile) + self._c_fetch(context)  # every field the rules read, by position
        t = _now(now) if self._has_window else 0.0
        try:
            return [i for i, lo, hi, rules in entries if lo <= t < hi and (rules is None or rules(vals))]
        except Incomparable as e:
            field, v = self._rule_fields[e.pos], vals[e.pos]
            raise SchemaError(
                f"field {field!r} ({self.schema.field_source(field)}) is a {type(v).__name__}, which the rule "
                f"{field} {e.op} {e.const!r} cannot compare; pass a value of the declared type"
            ) from None

    def _bad_out(self, out: Any) -> SchemaError:
        return SchemaError(
            f"eligible: out must be a writeable contiguous intp array of length >= {len(self.arms)}, "
            f"got {getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
            f"{'' if getattr(getattr(out, 'flags', None), 'writeable', True) else ' read-only'}"
        )

    # ------------------------------------------------------------------ payloads, arbitration

    def __len__(self) -> int:
        return len(self.arms)

    def index(self, arm_id: str) -> int:
        """Position of an arm in the catalogue."""
        try:
            return self._index[arm_id]
        except KeyError:
            raise ConfigError(f"no arm {arm_id!r} in the catalogue") from None

    def payload(self, arm: str | int, channel: str | None = None) -> Any:
        """The arm's payload for ``channel``: its own entry, else the ``"*"`` entry, else None if it has no channels.

        Raises ``ConfigError`` if the arm lists channels and none of them (nor "*") is ``channel``.
        """
        a = self.arms[arm] if isinstance(arm, (int, np.integer)) else self.arms[self.index(arm)]
        ch = a.channels
        if channel in ch:
            return ch[channel]
        if "*" in ch:
            return ch["*"]
        if not ch or channel is None:
            return None
        raise ConfigError(f"arm {a.id!r} has no payload for channel {channel!r}; its channels are {sorted(ch)}")

    def check_payloads(self, arm_id: str) -> None:
        """Raise ``ConfigError`` unless the arm has a payload for every channel the catalogue names.

        An arm that is eligible anywhere it is asked for (a fallback) would otherwise
        fail every request on such a channel. An arm without channels has none to lack;
        requests on a channel no arm names find a payload only under ``"*"``.
        """
        a = self.arms[self.index(arm_id)]
        ch = a.channels
        if not ch or "*" in ch:
            return
        lacking = [c for c in self.channels if c not in ch]
        if lacking:
            raise ConfigError(
                f"arm {a.id!r} has no payload for channel{'s' if len(lacking) > 1 else ''} "
                f"{', '.join(map(repr, lacking))}, which the catalogue serves (its channels are {sorted(ch)}); "
                "give it a payload for each, or a '*' payload for any channel"
            )

    def check_arbitration(self, min_score: float, model_name: str) -> None:
        """Raise ``ConfigError`` if arbitration would invert the arms' business ranking for a model.

        ``min_score``: the lowest score the model can produce, as the Decider sees it
        (higher is better): -inf for a Vowpal Wabbit model (negated costs), the lowest
        leaf sum for a tree model, 0 or -inf for an online one. "product" (score x value
        x weight) with a negative score ranks a larger value x weight lower; that only
        matters when value x weight differs between arms.
        """
        if self._arbitrate is not _product or min_score >= 0.0:  # (a NaN bound is unknown: checked)
            return
        scale = self.values * self.weights
        if scale.size == 0 or bool((scale == scale[0]).all()):
            return
        hi, lo = int(np.argmax(scale)), int(np.argmin(scale))
        raise ConfigError(
            f"arbitration 'product' (score x value x weight) inverts the ranking for model {model_name!r}, "
            f"whose scores can be negative (lowest {min_score!r}): at the same score -1, arm {self.ids[hi]!r} "
            f"(value x weight {scale[hi]:g}) would rank below arm {self.ids[lo]!r} ({scale[lo]:g}). Use "
            "arbitration='probability' (clip(score, 0, 1) x value x weight, for a score that estimates a success "
            "probability: a LightGBM binary model, or a Vowpal Wabbit model trained on nba's dsjson export with "
            "0/1 rewards), 'score' (ignore value and weight), or a callable f(scores, values, weights, out)"
        )

    def priorities(
        self, scores: np.ndarray, idx: np.ndarray | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Arbitrated priorities for raw model ``scores`` of the arms ``idx`` (all arms if None).

        This runs before the exploration policy, which turns priorities into a pmf
        over the eligible arms; the log keeps the raw scores.
        """
        scores = np.asarray(scores, dtype=np.float64)
        if idx is None:
            values, weights = self.values, self.weights
        else:
            values, weights = self.values.take(idx), self.weights.take(idx)
        if scores.shape != values.shape:
            raise SchemaError(f"priorities: expected {values.shape[0]} scores (one per arm), got shape {scores.shape}")
        if out is None:
            out = np.empty(values.shape[0])
        else:
            out = out[: values.shape[0]]
        res = self._arbitrate(scores, values, weights, out)
        if self._builtin_arbitration or res is out:
            return out
        res = out if res is None else np.asarray(res, dtype=np.float64)
        if res.shape != values.shape:
            raise SchemaError(f"arbitration returned shape {res.shape}, expected {values.shape}")
        return res

    def __reduce__(self) -> tuple:
        # Compiled rules are closures; pickle the arms and schema and compile again.
        return (_rebuild_catalog, (self.arms, self.schema, self._arbitration_spec))

    def __repr__(self) -> str:
        return f"Catalog({len(self.arms)} arms, id {getattr(self, 'catalog_id', None)})"


def _rebuild_catalog(arms: tuple, schema: FeatureSchema, arbitration: Any) -> Catalog:
    return Catalog(arms, schema, arbitration=arbitration)


def _now(now: Any) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        return _utc_seconds(now)
    if isinstance(now, (int, float, np.integer, np.floating)) and not isinstance(now, bool):
        return float(now)
    raise SchemaError(f"eligible: now must be a datetime, unix seconds or None, got {type(now).__name__}")


def _fetcher(keys: tuple[str, ...], schema: FeatureSchema, source: str) -> Callable[[Any], tuple]:
    """``fetch(obj)``: the values of ``keys`` in a profile or context, NaN where absent, None where null."""
    nans = tuple(repeat(math.nan, len(keys)))
    # A complete plain dict, the usual input, is read by one itemgetter: measured with callgrind
    # (bench_schema's profiles, 7 keys) 2.7k instructions against 4.9k for map(dict.get, ...)
    # and 7.1k with isinstance(obj, Mapping) before it.
    items: Callable[[dict], tuple] = (
        itemgetter(*keys) if len(keys) > 1 else (lambda d: (d[keys[0]],)) if keys else (lambda d: ())
    )

    def fetch(obj: Any) -> tuple:
        if obj.__class__ is dict:
            try:
                return items(obj)
            except KeyError:
                return tuple(map(obj.get, keys, nans))
        if not keys:
            return ()
        if obj is None:
            return nans
        if isinstance(obj, Mapping):
            return tuple(map(obj.get, keys, nans))
        if isinstance(obj, (np.ndarray, list, tuple)):
            return _from_vector(obj, keys, schema, source)
        if isinstance(obj, (str, bytes, int, float)):
            raise SchemaError(f"{source}: expected a dict, a msgspec Struct, an object with attributes or a vector")
        vals = tuple(map(getattr, repeat(obj, len(keys)), keys, nans))
        return tuple(math.nan if v is msgspec.UNSET else v for v in vals) if msgspec.UNSET in vals else vals

    return fetch


def _from_vector(obj: Any, keys: tuple[str, ...], schema: FeatureSchema, source: str) -> tuple:
    """Rule fields read back from a ready vector of ``source``'s columns, as the log reads features back."""
    x = np.asarray(obj, dtype=np.float64)
    cols = [c.index for c in schema.columns if c.source == source]
    if x.shape != (len(cols),):
        raise SchemaError(f"{source} vector: expected {len(cols)} values, got shape {x.shape}")
    full = [math.nan] * schema.n_columns  # the other source's columns: missing
    for j, v in zip(cols, x.tolist()):
        full[j] = v
    values = {name: v for feats in read_vector(schema.log_layout, full, {}).values() for name, v in feats.items()}
    return tuple(values.get(k) for k in keys)


def _check_arm(arm: Arm) -> None:
    where = f"arm {arm.id!r}"
    for name, v in (("value", arm.value), ("weight", arm.weight)):
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float, np.integer, np.floating))
            or not math.isfinite(v)
            or v < 0
        ):
            raise ConfigError(f"{where}: {name} must be a finite number >= 0, got {v!r}")
    if not isinstance(arm.features, Mapping):
        raise ConfigError(f"{where}: features must be a dict {{name: value}}, got {type(arm.features).__name__}")
    if not isinstance(arm.channels, Mapping):
        raise ConfigError(f"{where}: channels must be a dict {{channel: payload}}, got {type(arm.channels).__name__}")
    for ch, payload in arm.channels.items():
        if not isinstance(ch, str) or not ch:
            raise ConfigError(f"{where}: channel names must be non-empty strings, got {ch!r}")
        config_text(ch, f"{where}: channel name")
        config_json_text(payload, f"{where}: payload for channel {ch!r}:")
    for name, t in (("start", arm.start), ("end", arm.end)):
        if t is not None and not isinstance(t, datetime):
            raise ConfigError(f"{where}: {name} must be a datetime or None, got {type(t).__name__}")
    if arm.start is not None and arm.end is not None and _utc_seconds(arm.start) >= _utc_seconds(arm.end):
        raise ConfigError(f"{where}: start {arm.start.isoformat()} is not before end {arm.end.isoformat()}")
    if not isinstance(arm.namespace, str) or not arm.namespace.strip() or arm.namespace.startswith("_"):
        raise ConfigError(
            f"{where}: namespace must be a non-empty string not starting with '_' (reserved by Vowpal Wabbit), "
            f"got {arm.namespace!r}"
        )
    config_text(arm.namespace, f"{where}: namespace")
    for name, v in arm.features.items():
        if not isinstance(name, str) or not name or name.startswith("_"):
            raise ConfigError(
                f"{where}: feature names must be non-empty strings not starting with '_' (reserved by Vowpal "
                f"Wabbit), got {name!r}"
            )
        config_text(name, f"{where}: feature name")
        if isinstance(v, str):
            config_text(v, f"{where}: feature {name!r} value")
    check_conditions(arm.eligibility, where)
