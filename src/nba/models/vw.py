"""Vowpal Wabbit ``--cb_adf`` / ``--cb_explore_adf`` models, scored natively.

``load_vw`` reads the binary regressor that ``vw -f`` or ``Workspace.save()``
writes (VW 9.x): the header (version, id, bits, the stored command-line options,
checksum), the reductions' saved state, and the gradient-descent weights. Every
option that changes how examples are hashed or scored is either reproduced
exactly or refused with ``ModelFormatError`` naming it; options that only affect
training (``--cb_type``, ``--epsilon``, learning rates, ...) are accepted.

Features are ``{namespace: {name: value}}`` dicts with the semantics of VW's JSON
(dsjson) parser, because decision logs are exported to dsjson and trained by VW:

* a number is the feature ``name`` with that value (float32); zero is dropped,
* ``True`` is ``name`` with value 1; ``False`` and ``None`` are dropped,
* a string is the feature ``name + value`` with value 1, after VW replaces
  ``' '``, tab, ``'|'`` and ``':'`` in the value by ``'_'`` (``{"segment": "gold"}``
  is the feature ``segmentgold``); with ``--chain_hash`` the value is hashed
  with the hash of the name instead,
* names and namespaces that start with ``'_'`` are ignored, as VW's JSON parser
  ignores them; the namespace's first character is what ``-q``/``--ignore`` see,
  and the namespace hash is VW's hash of the whole name (``" "`` is the default
  namespace).

Scores are VW's raw ``cb_adf`` per-action predictions (costs, lower is better),
summed in float32 like VW and returned as float64 in action order.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from nba import _validate
from nba._core.hashing import murmurhash3_32
from nba._core.vw import VWActions, VWBound, VWCore
from nba.errors import ConfigError, ModelFormatError, SchemaError
from nba.models import DEFAULT_MAX_BYTES, Summary, read_model_file

if TYPE_CHECKING:
    from nba.catalog import Catalog

__all__ = [
    "MIN_HIT_RATE",
    "ActionSet",
    "BoundShared",
    "FeatureHits",
    "FeatureMismatchWarning",
    "VWModel",
    "VWModelInfo",
    "VWScorer",
    "load_vw",
    "looks_like_vw",
]

#: The share of a schema's columns a VW model must have weights for before a Decider
#: binds it quietly. A correctly trained model misses only features (categories) that
#: never occurred in training; a model trained on differently named features (VW text
#: ``segment=mass`` where nba hashes ``segmentmass``, as VW's JSON parser does) hits
#: almost none, and would score every decision as if those features were absent.
MIN_HIT_RATE = 0.5

_FEATURE_CHECKS = ("warn", "raise", "off")


class FeatureMismatchWarning(UserWarning):
    """A VW model has weights for few of the schema's features: it was likely trained on other names."""

# The largest -b nba scores: a dense -b 28 model is 2**28 float32 weights, 1 GiB.
MAX_BITS = 28
# Weight store. Dense (a float32 per bucket, one load per lookup) costs 4 * 2**b
# bytes whatever the file holds; the sparse table (at most 1/8 full, so a lookup
# is one predictable probe) costs 64-128 bytes per non-zero weight, so what a
# model costs follows what its file holds, but scoring takes ~1.2-1.4x as long.
# Dense is used when it is affordable (b <= DENSE_BITS: at most 64 MiB, mapped
# lazily, so VW's usual -b 18..24 score as fast as ever) or no dearer than the
# table (the weights fill at least 1/DENSE_RATIO of the buckets: at most 128
# bytes per weight, 8-16 times the file's 8-16 bytes per record). A -b 28 model
# that learned 2k weights is a 36 kB file: dense it cost 1 GiB and 1.2 s to
# load, sparse 256 kB and a millisecond.
DENSE_BITS = 24
DENSE_RATIO = 32
# Default byte budget of a model's hash cache (see load_vw).
_HASH_CACHE_BYTES = 8 << 20
# A weight beyond this magnitude means training diverged; such costs overflow float32.
MAX_ABS_WEIGHT = 1e30
_MIN_VERSION = (9, 0, 0)
_VERSION_RE = re.compile(rb"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\x00$")

# Options that take a value, and what nba does with them.
_VALUE_OPTIONS = {
    # reproduced
    "quadratic", "cubic", "interactions", "ignore", "ignore_linear", "keep", "hash", "hash_seed",
    "bit_precision", "csoaa_ldf", "link",
    # training or exploration only: raw costs do not depend on them
    "cb_type", "epsilon", "lambda", "first", "gamma_scale", "gamma_exponent", "learning_rate",
    "power_t", "initial_t", "decay_learning_rate", "random_seed", "loss_function", "l1", "l2",
    "cb_min_cost", "cb_max_cost",
}
_FLAG_OPTIONS = {
    # rank_all only changes what VW prints to its -p file (actions sorted by score), not the scores
    "cb_adf", "cb_explore_adf", "csoaa_rank", "rank_all", "noconstant", "chain_hash",
    "softmax", "squarecb", "first_only", "sgd", "adaptive", "normalized", "invariant",
}
_CB_TYPES = {"mtr", "ips", "dr", "dm", "sm"}
_HELP = (
    "nba scores cb_adf/cb_explore_adf models with VW's hashing, -q/--cubic/--interactions "
    "of two or three namespaces, --ignore, --ignore_linear, --keep, --noconstant, --hash, --hash_seed "
    "and --chain_hash; retrain without it or score this model with vowpalwabbit"
)


class VWModelInfo(msgspec.Struct, frozen=True):
    """What a loaded VW model file says about itself (after VW's own normalization)."""

    vw_version: str  # the VW release that wrote the file (``VWModel.version`` is the model's identity)
    id: str
    bits: int
    options: str
    interactions: tuple[str, ...]
    ignore: str
    ignore_linear: str
    hash_seed: int
    hash_all: bool
    chain_hash: bool
    constant: bool
    cb_type: str
    exploration: str  # "none", "epsilon", "softmax", "squarecb" or "first"
    epsilon: float | None
    save_resume: bool
    num_weights: int


class FeatureHits(msgspec.Struct, frozen=True):
    """Which of a schema's columns a VW model has weights for (``VWModel.feature_hits``).

    ``columns`` name each column ``namespace:feature`` (``=category`` for a one-hot
    column); a column hits when setting it to 1 changes some action's cost, through
    a linear weight or an interaction. ``rate`` is the share that hit; ``hint`` says
    what the misses look like when they have a known cause.
    """

    columns: tuple[str, ...]
    hit: tuple[bool, ...]
    rate: float
    hint: str = ""

    @property
    def missed(self) -> tuple[str, ...]:
        return tuple(c for c, h in zip(self.columns, self.hit) if not h)


class ActionSet:
    """A catalogue of actions hashed once by ``VWModel.prepare_actions``."""

    __slots__ = ("_core", "n_actions")

    def __init__(self, core: VWActions) -> None:
        self._core = core
        self.n_actions: int = core.n_actions

    def __len__(self) -> int:
        return self.n_actions

    def __repr__(self) -> str:
        return f"ActionSet({self.n_actions} actions, {len(self._core.h)} features)"


class BoundShared:
    """Shared-context columns (namespace, name) hashed once by ``VWModel.bind_shared``."""

    __slots__ = ("_core", "columns")

    def __init__(self, core: VWBound, columns: tuple[tuple[str, ...], ...]) -> None:
        self._core = core
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns)

    def __repr__(self) -> str:
        return f"BoundShared({len(self.columns)} columns)"


class VWModel:
    """A VW contextual-bandit model scored by nba's compiled core.

    ``score`` returns VW's per-action costs (lower is better) for a shared
    context and a prepared ``ActionSet``; scoring releases the GIL.
    """

    def __init__(self, core: VWCore, info: VWModelInfo, records: tuple[np.ndarray, np.ndarray], source: str,
                 dense: np.ndarray | None = None) -> None:
        self._core = core
        self.info = info
        self._records = records
        self._dense = dense
        self.source = source
        self._feature_check = "warn"

    @property
    def feature_check(self) -> str:
        """What binding to a schema it has few weights for does: "warn", "raise" or "off" (see ``load_vw``)."""
        return self._feature_check

    def __repr__(self) -> str:
        i = self.info
        return (
            f"VWModel({self.source!r}, b={i.bits}, interactions={list(i.interactions)}, "
            f"exploration={i.exploration}, {i.num_weights} weights)"
        )

    def summary(self) -> Summary:
        """Format and version; what the file says of itself (``info``) and where it came from (a few lines)."""
        i = self.info
        explore = f"epsilon-greedy, epsilon {i.epsilon:g}" if i.epsilon is not None else i.exploration
        hashing = f"{'all' if i.hash_all else 'strings'}, seed {i.hash_seed}" + (", chain_hash" if i.chain_hash else "")
        lines = [
            f"Vowpal Wabbit {'cb_explore_adf' if i.exploration != 'none' else 'cb_adf'} model: {self.source}",
            f"  written by VW {i.vw_version}" + (f", id {i.id!r}" if i.id else ""),
            f"  -b {i.bits}: {i.num_weights} non-zero weights of {1 << i.bits}"
            + (" (save_resume)" if i.save_resume else " (predict-only)"),
            f"  interactions: {' '.join(i.interactions) or 'none'}; constant: {'yes' if i.constant else 'no'}",
            f"  hashing: {hashing}"
            + (f"; ignore {i.ignore!r}" if i.ignore and len(i.ignore) < 32 else "")
            + (f"; ignore_linear {i.ignore_linear!r}" if i.ignore_linear else ""),
            f"  cb_type {i.cb_type}; exploration: {explore}",
            f"  options: {i.options}",
        ]
        details = {"source": self.source, **msgspec.structs.asdict(i)}
        return Summary(format="vw", version=self.version, details=details, text="\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:
        idx, vals = self._records
        return (_rebuild_records, (self.info, idx, vals, self.source, self._core.cache_limit,
                                   self._core.cache_bytes_limit, self._feature_check))

    @property
    def weights(self) -> np.ndarray:
        """The 2**bits weights (float32, read-only), indexed like ``Workspace.get_weight``.

        A model stored sparse (see ``weight_records``) builds this 4 * 2**bits byte
        vector on first use and keeps it.
        """
        if self._dense is None:
            idx, vals = self._records
            w = np.zeros(1 << self.info.bits, dtype=np.float32)
            w[idx] = vals
            w.flags.writeable = False
            self._dense = w
        return self._dense

    @property
    def weight_records(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices, weights) of the non-zero weights, indices increasing (uint32, float32, read-only).

        What the file holds, in O(weights) memory whatever ``-b`` is: prefer it to
        ``weights`` to hash or copy a model.
        """
        return self._records

    @property
    def version(self) -> str:
        """A content hash of the model's options and non-zero weights (12 hex digits), logged with each decision.

        ``info.vw_version`` is the VW release that wrote the file, not an identity.
        """
        v = self.__dict__.get("_version")
        if v is None:
            idx, vals = self._records
            h = hashlib.sha256(self.info.options.encode("utf-8"))
            h.update(np.ascontiguousarray(idx).tobytes())
            h.update(np.ascontiguousarray(vals).tobytes())
            v = self.__dict__["_version"] = h.hexdigest()[:12]
        return v

    @property
    def storage(self) -> str:
        """How the core keeps the weights: "dense" (a float per bucket) or "sparse" (a table of the non-zero ones)."""
        return "sparse" if self._core.sparse else "dense"

    def prepare_actions(self, actions: Sequence[Mapping[str, Mapping[str, Any]]]) -> ActionSet:
        """Hash each action's ``{namespace: {name: value}}`` features once (catalogue build time)."""
        acts = [a if type(a) is dict else _as_dict(a, f"action {k}") for k, a in enumerate(actions)]
        acts = [_inner_dicts(a, f"action {k}") for k, a in enumerate(acts)]
        for k, a in enumerate(acts):
            _check_text(a, f"action {k}")
        res = self._core.encode_actions(acts)
        if isinstance(res, int):
            _explain(acts[res], f"action {res}")
            raise SchemaError(f"action {res}: invalid features")  # pragma: no cover - _explain raises
        return ActionSet(res)

    def score(self, shared: Mapping[str, Mapping[str, Any]], actions: ActionSet,
              out: np.ndarray | None = None, *, negate: bool = False) -> np.ndarray:
        """Per-action costs (float64, action order) for the shared context ``shared``.

        ``negate=True`` returns ``-cost`` (higher is better, what policies take),
        exactly, without a second pass.
        """
        res: Any
        try:
            res = self._core.score_dict(shared, actions._core, out, negate)
        except (AttributeError, TypeError):
            raise SchemaError(
                f"actions must be an ActionSet from prepare_actions, got {type(actions).__name__}"
            ) from None
        if type(res) is int:
            if res == -1 and type(shared) is not dict and isinstance(shared, Mapping):
                return self.score(_inner_dicts(dict(shared), "shared"), actions, out, negate=negate)
            if (res == -1 and type(shared) is dict and any(type(v) is not dict for v in shared.values())
                    and all(isinstance(v, Mapping) for v in shared.values())):
                return self.score(_inner_dicts(shared, "shared"), actions, out, negate=negate)
            self._fail(res, shared, actions, out)
        return res

    def _fail(self, status: int, shared: Any, actions: ActionSet, out: Any) -> None:
        if status == -2:
            _check_out(out, actions.n_actions)
        if status == -3:
            raise SchemaError(
                "the actions were prepared by a model that hashes differently; prepare them with this model"
            )
        _explain(shared, "shared")

    def bind_shared(self, columns: Iterable[tuple[str, ...]]) -> BoundShared:
        """Hash the columns of a shared feature vector once.

        A column is ``(namespace, name)``, the numeric feature ``name``, or
        ``(namespace, name, value)``, the string feature ``{name: value}`` (VW's
        ``name+value``) times the vector's entry: the column of a one-hot category.
        """
        cols: tuple[Any, ...] = tuple(tuple(c) if isinstance(c, (tuple, list)) else c for c in columns)
        for k, c in enumerate(cols):
            if type(c) is tuple:
                for part in c:
                    if isinstance(part, str):
                        _validate.text(part, f"column {k} {c!r}:")
        res = self._core.bind(list(cols))
        if isinstance(res, int):
            c = cols[res]
            raise SchemaError(
                f"column {res}: expected (namespace, name) or (namespace, name, string value) with a non-empty "
                f"namespace, got {c!r}"
            )
        return BoundShared(res, cols)

    def score_vector(self, x: np.ndarray, bound: BoundShared, actions: ActionSet,
                     out: np.ndarray | None = None, *, negate: bool = False) -> np.ndarray:
        """Per-action costs for a float64 shared vector whose columns ``bound`` describes.

        Zero entries are absent features, as VW drops zero-valued features, and so
        are NaN entries: a missing value (``Numeric(..., allow_missing=True)``) is
        scored exactly as the example without that feature. ``negate=True``
        returns ``-cost``, as ``score`` does.
        """
        res: Any
        try:
            res = self._core.score_vector(x, bound._core, actions._core, out, negate)
        except (AttributeError, TypeError):
            raise SchemaError(
                "bound must come from bind_shared and actions from prepare_actions, "
                f"got {type(bound).__name__} and {type(actions).__name__}"
            ) from None
        if type(res) is int:
            if res == -4:
                xa = _as_vector(x)
                if xa.shape[0] != len(bound.columns):
                    raise SchemaError(
                        f"x has {xa.shape[0]} columns, the bound shared features have {len(bound.columns)}"
                    )
                return self.score_vector(xa, bound, actions, out, negate=negate)
            if res == -2:
                _check_out(out, actions.n_actions)
            if res == -3:
                raise SchemaError(
                    "the actions or bound columns were hashed by a model that hashes differently; "
                    "prepare and bind them with this model"
                )
            raise SchemaError(
                f"column {res} {bound.columns[res]!r} is {x[res]!r}; "
                "features must be finite (NaN for missing) and within float32 range"
            )
        return res


    def feature_hits(self, columns: Iterable[tuple[str, ...]],
                     actions: ActionSet | None = None) -> FeatureHits:
        """Which shared ``columns`` (as ``bind_shared`` takes them) this model has weights for.

        Each column is set to 1 alone and scored against ``actions`` (default: one
        action without features); it hits when some action's cost moves. So a
        feature counts whether it reaches the score linearly or only through an
        interaction with the actions' features. Costs ``len(columns) + 1`` scorings,
        at bind time. When few one-hot columns hit, the ``name=value`` spelling of
        VW's text format is tried too and the ``hint`` says if that is what the
        model was trained on.
        """
        cols = [tuple(c) for c in columns]
        acts = actions if actions is not None else self.prepare_actions([{}])
        names = tuple(f"{c[0]}:{c[1]}" + (f"={c[2]}" if len(c) > 2 else "") for c in cols)
        hit = self._hits(cols, acts)
        rate = sum(hit) / len(hit) if hit else 1.0
        hint = ""
        onehot = [k for k, c in enumerate(cols) if len(c) > 2]
        if onehot and sum(hit[k] for k in onehot) < MIN_HIT_RATE * len(onehot):
            text = self._hits([(cols[k][0], f"{cols[k][1]}={cols[k][2]}") for k in onehot], acts)
            if sum(text) > sum(hit[k] for k in onehot):
                example = cols[onehot[text.index(True)]]
                hint = (
                    f"the model has weights for {sum(text)} of the {len(onehot)} categories spelled "
                    f"'{example[1]}={example[2]}' (VW text format's name=value): nba hashes the string feature "
                    f"{example[1]}={example[2]!r} as VW's JSON parser does, '{example[1]}{example[2]}'; retrain on "
                    f"text examples written '{example[1]}{example[2]}' or on dsjson from `nba export`"
                )
        return FeatureHits(names, tuple(hit), rate, hint)

    def _hits(self, cols: list[tuple[str, ...]], acts: ActionSet) -> list[bool]:
        if not cols:
            return []
        bound = self.bind_shared(cols)
        x = np.zeros(len(cols))
        base = self.score_vector(x, bound, acts).copy()
        out = np.empty_like(base)
        hit = []
        for k in range(len(cols)):
            x[k] = 1.0
            hit.append(bool(np.any(self.score_vector(x, bound, acts, out) != base)))
            x[k] = 0.0
        return hit

    # ------------------------------------------------------------------ the Decider's seam

    #: Scores are negated costs of a linear model: unbounded either way.
    score_bounds: tuple[float, float] = (-math.inf, math.inf)

    def bind(self, catalog: Catalog) -> VWScorer:
        """This model bound to a catalogue (``nba.base.Model``): arm features and schema columns hashed once."""
        return VWScorer(self, catalog)


class VWScorer:
    """A ``VWModel`` bound to a catalogue (``nba.base.Scorer``): costs negated (higher is better).

    The arms' features are hashed once (``prepare_actions``) and so are the schema's
    columns (``bind_shared``): a one-hot column binds as (namespace, feature,
    category), so --chain_hash models hash it exactly as VW's JSON parser does;
    "__other__" columns have no VW twin.
    """

    __slots__ = ("actions", "bound", "model", "version")

    score_bounds = VWModel.score_bounds

    def __init__(self, model: VWModel, catalog: Catalog) -> None:
        codes = [c.feature for c in catalog.schema.columns if c.kind == "code"]
        if codes:
            raise ConfigError(
                f"a VW model cannot read encoding='code' categories ({codes}): their codes are LightGBM's; "
                "declare them one-hot (the default encoding) for VW"
            )
        self.model = model
        self.version = str(model.version)
        self.actions = model.prepare_actions(list(catalog.action_features))
        schema_columns = catalog.schema.columns
        columns = [
            (c.namespace, c.feature, str(c.category)) if c.kind == "onehot" else (c.namespace, c.vw_feature or c.name)
            for c in schema_columns
        ]
        self.bound = model.bind_shared(columns)
        columns = [col for col, c in zip(columns, schema_columns) if c.kind != "other"]
        if model.feature_check != "off" and columns:
            _check_hits(model, model.feature_hits(columns, self.actions))

    def buffers(self, n_arms: int) -> dict[str, np.ndarray]:
        """Every arm's score ("all"): VW scores the whole action set, the Decider takes the eligible ones."""
        return {"all": np.empty(n_arms)}

    def score(self, x: np.ndarray, idx: np.ndarray, out: np.ndarray, buf: dict[str, np.ndarray]) -> None:
        """Negated costs of arms ``idx`` for the shared vector ``x`` into ``out``."""
        allc = buf["all"]
        self.model.score_vector(x, self.bound, self.actions, allc, negate=True)
        np.take(allc, idx, out=out)


def _check_hits(model: VWModel, hits: FeatureHits) -> None:
    """Warn or raise (``model.feature_check``) when the model has weights for too few of the schema's columns."""
    if hits.rate >= MIN_HIT_RATE:
        return
    missed = hits.missed
    msg = (
        f"{model.source}: the VW model has weights for {hits.rate:.0%} of the schema's {len(hits.columns)} "
        f"features (at least {MIN_HIT_RATE:.0%} expected), so it scores as if the others were absent; "
        f"no weight for {', '.join(missed[:6])}{' ...' if len(missed) > 6 else ''}. "
        + (hits.hint + ". " if hits.hint else "Check the namespaces and feature names it was trained on "
           "(`nba inspect MODEL --log LOGDIR`). ")
        + "load_model(..., feature_check='off') binds it anyway"
    )
    if model.feature_check == "raise":
        raise SchemaError(msg)
    import warnings

    warnings.warn(msg, FeatureMismatchWarning, stacklevel=4)


def _rebuild_records(info: VWModelInfo, idx: np.ndarray, vals: np.ndarray, source: str, hash_cache: int,
                     hash_cache_bytes: int, feature_check: str = "warn") -> VWModel:
    model = _build(info, (np.array(idx, dtype=np.uint32), np.array(vals, dtype=np.float32)), source, hash_cache,
                   hash_cache_bytes)
    model._feature_check = feature_check
    return model


def _rebuild(info: VWModelInfo, weights: np.ndarray, source: str, hash_cache: int) -> VWModel:
    """Unpickle a model pickled by an nba that kept dense weights."""
    w = np.asarray(weights, dtype=np.float32)
    idx = np.flatnonzero(w).astype(np.uint32)
    return _build(info, (idx, w[idx]), source, hash_cache, _HASH_CACHE_BYTES)


def _as_vector(x: Any) -> np.ndarray:
    try:
        arr = np.ascontiguousarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise SchemaError(f"x must be a 1-d float64 vector: {e}") from None
    if arr.ndim != 1:
        raise SchemaError(f"x must be a 1-d float64 vector, got shape {arr.shape}")
    return arr


def _check_out(out: Any, n: int) -> None:
    if type(out) is not np.ndarray or out.dtype != np.float64 or out.shape != (n,) or not out.flags.c_contiguous \
            or not out.flags.writeable:
        raise SchemaError(f"out must be a writeable contiguous float64 array of shape ({n},)")


def _as_dict(obj: Any, where: str) -> dict:
    if isinstance(obj, Mapping):
        return dict(obj)
    raise SchemaError(f"{where}: expected {{namespace: {{name: value}}}}, got {type(obj).__name__}")


def _inner_dicts(obj: dict, where: str) -> dict:
    if all(type(v) is dict for v in obj.values()):
        return obj
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in obj.items()}


def _check_text(features: dict, where: str) -> None:
    """Raise SchemaError for a namespace, name or string value UTF-8 cannot encode (a lone surrogate)."""
    for ns, feats in features.items():
        if isinstance(ns, str):
            _validate.text(ns, f"{where}: namespace")
        if isinstance(feats, Mapping):
            for name, value in feats.items():
                if isinstance(name, str):
                    _validate.text(name, f"{where}: feature name in namespace {ns!r}:")
                if isinstance(value, str):
                    _validate.text(value, f"{where}: value of {ns}/{name}")


def _explain(features: Any, where: str) -> None:
    """Raise the SchemaError that says what is wrong with ``features``."""
    if not isinstance(features, Mapping):
        raise SchemaError(f"{where}: expected {{namespace: {{name: value}}}}, got {type(features).__name__}")
    _check_text(dict(features), where)
    for ns, feats in features.items():
        if not isinstance(ns, str) or not ns:
            raise SchemaError(f"{where}: namespace {ns!r} must be a non-empty string")
        if ns.startswith("_"):
            continue
        if not isinstance(feats, Mapping):
            raise SchemaError(
                f"{where}: namespace {ns!r} must map feature names to values, got {type(feats).__name__}"
            )
        for name, value in feats.items():
            if not isinstance(name, str):
                raise SchemaError(f"{where}: feature name {name!r} in namespace {ns!r} must be a string")
            if name.startswith("_") or value is None or isinstance(value, (bool, str)):
                continue
            try:
                v = float(value) if not isinstance(value, (bytes, bytearray)) else None
            except (TypeError, ValueError, OverflowError):
                v = None
            if v is None:
                raise SchemaError(
                    f"{where}: feature {ns}/{name} has a {type(value).__name__} value; "
                    "use a number, a string or a bool"
                )
            if not math.isfinite(v) or abs(v) > 3.4028234663852886e38:
                raise SchemaError(
                    f"{where}: feature {ns}/{name} is {value!r}; features must be finite and within float32 range"
                )
    raise SchemaError(f"{where}: invalid features")


# ---------------------------------------------------------------- loading


def looks_like_vw(head: bytes) -> bool:
    """True when ``head`` starts like a VW binary model: a length-prefixed version string."""
    if len(head) < 8:
        return False
    (n,) = struct.unpack_from("<I", head, 0)
    return 6 <= n <= 13 and len(head) >= 4 + n and _VERSION_RE.match(head[4 : 4 + n]) is not None


def load_vw(source: str | os.PathLike[str] | bytes | bytearray | memoryview, *,
            hash_cache: int = 200_000, hash_cache_bytes: int = _HASH_CACHE_BYTES,
            max_bytes: int = DEFAULT_MAX_BYTES, feature_check: str = "warn") -> VWModel:
    """Load a VW ``--cb_adf`` / ``--cb_explore_adf`` binary model from a path or its bytes.

    ``hash_cache`` bounds how many feature-name hashes the model remembers so
    repeated names skip murmur3, and ``hash_cache_bytes`` what they may hold
    (names, values and ~112 bytes of overhead each; names longer than 256 UTF-8
    bytes are never cached); 0 disables the cache. ``max_bytes`` caps what is
    read from a file (see ``nba.models.read_model_file``). ``feature_check`` is what
    binding the model to a schema does when it has weights for fewer than
    ``MIN_HIT_RATE`` of the schema's columns (``VWModel.feature_hits``): "warn"
    (``FeatureMismatchWarning``), "raise" (``SchemaError``) or "off".
    """
    for name, value in (("hash_cache", hash_cache), ("hash_cache_bytes", hash_cache_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"load_vw {name}={value!r}: must be an int >= 0 (0 disables the cache)")
    _check_feature_check(feature_check)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return vw_from_bytes(bytes(source), "VW model", hash_cache, hash_cache_bytes, feature_check)
    return vw_from_bytes(*read_model_file(source, max_bytes), hash_cache, hash_cache_bytes, feature_check)


def _check_feature_check(feature_check: Any) -> None:
    if feature_check not in _FEATURE_CHECKS:
        raise ConfigError(f"feature_check={feature_check!r} must be one of {', '.join(map(repr, _FEATURE_CHECKS))}")


def vw_from_bytes(data: bytes, where: str, hash_cache: int = 200_000,
                  hash_cache_bytes: int = _HASH_CACHE_BYTES, feature_check: str = "warn") -> VWModel:
    """A VW model from the bytes of its file (``where`` names it in errors)."""
    _check_feature_check(feature_check)
    info, records = _parse(data, where)
    model = _build(info, records, where, hash_cache, hash_cache_bytes)
    model._feature_check = feature_check
    return model


def _build(info: VWModelInfo, records: tuple[np.ndarray, np.ndarray], where: str, hash_cache: int,
           hash_cache_bytes: int) -> VWModel:
    idx, vals = records
    idx.flags.writeable = False
    vals.flags.writeable = False
    slots = sorted({c for term in info.interactions for c in term.encode("latin-1")})
    slot_of = {c: i for i, c in enumerate(slots)}
    terms = np.zeros((len(info.interactions), 4), dtype=np.int32)
    for t, term in enumerate(info.interactions):
        cs = term.encode("latin-1")
        terms[t, 0] = len(cs)
        for k, c in enumerate(cs):
            terms[t, 1 + k] = slot_of[c]
    # Reductions with several weight vectors per problem (cb_type dr keeps two)
    # interleave them: feature i of vector k is weight (i * per_problem + k).
    # Scoring uses vector 0, which is every per_problem-th weight.
    per_problem = 2 if info.cb_type == "dr" else 1
    shift = per_problem.bit_length() - 1
    bits = info.bits - shift
    if bits < 1:
        raise ModelFormatError(f"{where}: -b {info.bits} is too small for --cb_type {info.cb_type}")
    if per_problem > 1:
        keep = (idx & (per_problem - 1)) == 0
        sidx, svals = idx[keep] >> shift, vals[keep]
    else:
        sidx, svals = idx, vals
    args = (info.hash_seed, info.hash_all, info.chain_hash, info.constant, info.ignore.encode("latin-1"),
            info.ignore_linear.encode("latin-1"), bytes(slots), terms, hash_cache, hash_cache_bytes)
    dense: np.ndarray | None = None
    if bits <= DENSE_BITS or sidx.size * DENSE_RATIO >= 1 << bits:
        scored = np.zeros(1 << bits, dtype=np.float32)
        scored[sidx] = svals
        scored.flags.writeable = False
        core = VWCore(scored, bits, *args)
        if per_problem == 1:
            dense = scored
    else:
        salt = int.from_bytes(os.urandom(8), sys.byteorder)  # the table's probe order: no file can choose it
        core = VWCore(None, bits, *args, sparse_idx=np.ascontiguousarray(sidx, dtype=np.uint32),
                      sparse_val=np.ascontiguousarray(svals, dtype=np.float32), salt=salt)
    return VWModel(core, info, (idx, vals), where, dense)


class _Reader:
    """Sequential reads over the model bytes, with VW's chained header checksum."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data = data
        self.pos = 0
        self.where = where
        self.hash: int | None = None

    def fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.where}: {what} (at byte {self.pos})")

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated file: {what} needs {n} bytes, {len(self.data) - self.pos} left")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        if self.hash is not None and n > 0:
            self.hash = murmurhash3_32(chunk, self.hash)
        return chunk

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def f32(self, what: str) -> float:
        return struct.unpack("<f", self.take(4, what))[0]

    def f64(self, what: str) -> float:
        return struct.unpack("<d", self.take(8, what))[0]

    def sized(self, what: str, limit: int) -> bytes:
        n = self.u32(f"{what} length")
        if n > limit:
            raise self.fail(f"{what} length {n} exceeds {limit}")
        return self.take(n, what)


def _cstr(raw: bytes, r: _Reader, what: str) -> str:
    if not raw.endswith(b"\x00"):
        raise r.fail(f"{what} is not NUL-terminated")
    try:
        return raw[:-1].decode("utf-8")
    except UnicodeDecodeError:
        raise r.fail(f"{what} is not valid UTF-8") from None


def _parse(data: bytes, where: str) -> tuple[VWModelInfo, tuple[np.ndarray, np.ndarray]]:
    r = _Reader(data, where)
    raw_version = r.sized("version string", 13)
    m = _VERSION_RE.match(raw_version)
    if m is None:
        raise ModelFormatError(f"{where}: not a Vowpal Wabbit binary model (no version string at the start)")
    version = tuple(int(g) for g in m.groups())
    vtext = ".".join(map(str, version))
    if version < _MIN_VERSION:
        raise ModelFormatError(
            f"{where}: VW model file version {vtext} is older than 9.0.0; "
            "load and save it again with vowpalwabbit 9 or later"
        )
    r.hash = 0  # VW checksums the header from the id to the options
    model_id = _cstr(r.sized("model id", 512), r, "model id")
    if r.take(1, "model marker") != b"m":
        raise r.fail("missing model marker 'm'; not a VW regressor file")
    r.f32("min label")
    r.f32("max label")
    bits = r.u32("bits")
    if not 1 <= bits <= 32:
        raise r.fail(f"bits {bits} out of range")
    lda = r.u32("lda")
    ngram = [r.take(3, "ngram") for _ in range(_bounded(r.u32("ngram count"), r, "ngram count"))]
    skips = [r.take(3, "skips") for _ in range(_bounded(r.u32("skips count"), r, "skips count"))]
    options = _cstr(r.sized("options", 1 << 20), r, "options")
    expected = r.hash
    r.hash = None
    checksum = r.sized("checksum", 4)
    if len(checksum) != 4 or struct.unpack("<I", checksum)[0] != expected:
        raise r.fail("header checksum mismatch: the file is corrupted")
    if lda:
        raise ModelFormatError(f"{where}: option --lda is not supported: {_HELP}")
    if ngram or skips:
        raise ModelFormatError(f"{where}: option {'--ngram' if ngram else '--skips'} is not supported: {_HELP}")

    opts = _parse_options(options, where)
    if "cb_adf" not in opts and "cb_explore_adf" not in opts:
        raise ModelFormatError(
            f"{where}: not a contextual-bandit ADF model (options {options.strip()!r}); "
            "nba scores models trained with --cb_adf or --cb_explore_adf"
        )
    if "bit_precision" in opts and _int_opt(opts, "bit_precision", where) != bits:
        raise ModelFormatError(f"{where}: --bit_precision disagrees with the header's {bits} bits")
    if bits > MAX_BITS:
        raise ModelFormatError(
            f"{where}: -b {bits} needs 2**{bits} weights in memory; nba supports -b up to {MAX_BITS}"
        )
    for name in ("link",):
        if name in opts and opts[name][-1] != "identity":
            raise ModelFormatError(f"{where}: option --{name} {opts[name][-1]} is not supported: {_HELP}")
    if "csoaa_ldf" in opts and opts["csoaa_ldf"][-1] not in ("multiline", "m"):
        raise ModelFormatError(f"{where}: option --csoaa_ldf {opts['csoaa_ldf'][-1]} is not supported: {_HELP}")
    if "cb_type" in opts and opts["cb_type"][-1] not in _CB_TYPES:
        raise ModelFormatError(f"{where}: option --cb_type {opts['cb_type'][-1]} is not supported: {_HELP}")
    hash_mode = opts.get("hash", ["strings"])[-1]
    if hash_mode not in ("strings", "all"):
        raise ModelFormatError(f"{where}: option --hash {hash_mode} is not supported: {_HELP}")
    seed = _int_opt(opts, "hash_seed", where) if "hash_seed" in opts else 0
    if not 0 <= seed < 2**32:
        raise ModelFormatError(f"{where}: --hash_seed {seed} is out of range")
    interactions = _interactions(opts, where)
    for what in ("ignore", "ignore_linear", "keep"):
        chars = "".join(opts.get(what, []))
        if "\\" in chars or any(ord(c) > 255 for c in chars):
            raise ModelFormatError(f"{where}: --{what} with escaped or non-latin-1 namespaces is not supported")
    ignore = "".join(sorted(set("".join(opts.get("ignore", [])))))
    ignore_linear = "".join(sorted(set("".join(opts.get("ignore_linear", [])))))
    if "keep" in opts:
        # --keep ignores every namespace it does not list (applied after --ignore, as VW does).
        keep = set("".join(opts["keep"]))
        ignore = "".join(chr(c) for c in range(256) if chr(c) not in keep)

    explore = "none"
    epsilon: float | None = None
    if "cb_explore_adf" in opts:
        kinds = [k for k in ("softmax", "squarecb", "first") if k in opts]
        if len(kinds) > 1:
            raise ModelFormatError(f"{where}: conflicting exploration options {kinds}")
        explore = kinds[0] if kinds else "epsilon"
        if explore == "epsilon":
            epsilon = _float_opt(opts, "epsilon", where) if "epsilon" in opts else 0.05

    # Reductions' saved state, top of the stack first.
    if explore in ("squarecb", "first"):
        r.take(8, f"--{explore} counter")
    r.take(16, "cb_adf event counts")
    resume_flag = r.take(1, "save_resume flag")[0]
    if resume_flag not in (0, 1):
        raise r.fail(f"save_resume flag is {resume_flag}, expected 0 or 1")
    contraction, gravity = 1.0, 0.0
    per_weight = 1
    if resume_flag:
        state = r.take(128, "gradient descent state")
        gravity, contraction = struct.unpack_from("<dd", state, 112)
        if not (math.isfinite(gravity) and gravity >= 0 and math.isfinite(contraction) and contraction > 0):
            raise r.fail(f"bad regularization state (l1 {gravity!r}, l2 contraction {contraction!r})")
        explicit = [k for k in ("sgd", "adaptive", "normalized", "invariant") if k in opts]
        if explicit:
            per_weight = 1 + ("adaptive" in opts) + ("normalized" in opts)
        else:
            per_weight = 3
    idx, vals = _read_weights(r, bits, per_weight)
    if resume_flag and (gravity != 0.0 or contraction != 1.0):
        # What VW does when it loads a model to test: fold l1/l2 state into the weights
        # (a zero weight stays zero, so only the records present change).
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused just below
            g = np.float32(gravity)
            w = vals
            w = np.where(np.abs(w) > g, w - np.sign(w) * g, np.float32(0)).astype(np.float32)
            vals = (w * np.float32(contraction)).astype(np.float32)
        if not np.all(np.abs(vals) <= MAX_ABS_WEIGHT):
            raise ModelFormatError(f"{where}: regularization state makes the weights overflow")
    nonzero = vals != 0
    if not nonzero.all():
        idx, vals = idx[nonzero], vals[nonzero]

    info = VWModelInfo(
        vw_version=vtext,
        id=model_id,
        bits=bits,
        options=options.strip(),
        interactions=tuple(interactions),
        ignore=ignore,
        ignore_linear=ignore_linear,
        hash_seed=seed,
        hash_all=hash_mode == "all",
        chain_hash="chain_hash" in opts,
        constant="noconstant" not in opts,
        cb_type=opts.get("cb_type", ["mtr"])[-1],
        exploration=explore,
        epsilon=epsilon,
        save_resume=bool(resume_flag),
        num_weights=int(idx.size),
    )
    return info, (idx, vals)


def _bounded(n: int, r: _Reader, what: str) -> int:
    if n > 256:
        raise r.fail(f"{what} {n} is implausible")
    return n


def _read_weights(r: _Reader, bits: int, per_weight: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices increasing, weights) of the (index, weight[, adaptive, normalized]) records up to the end.

    Memory and time follow the records present, never 2**bits.
    """
    rest = memoryview(r.data)[r.pos :]
    rec = 4 * (1 + per_weight)
    if len(rest) % rec:
        raise r.fail(
            f"truncated weights: {len(rest)} bytes is not a whole number of {rec}-byte records"
        )
    table = np.frombuffer(rest, dtype="<u4").reshape(-1, 1 + per_weight)
    idx = table[:, 0].astype(np.int64)
    vals = table[:, 1].view("<f4").astype(np.float32)
    size = 1 << bits
    if idx.size:
        bad = np.flatnonzero(idx >= size)
        if bad.size:
            k = int(bad[0])
            raise ModelFormatError(
                f"{r.where}: weight record {k} has index {int(idx[k])}, beyond the {size} weights of -b {bits} "
                f"(at byte {r.pos + k * rec})"
            )
        if idx.size > 1 and not bool(np.all(idx[1:] > idx[:-1])):
            # --sparse_weights models list weights in hash-table order; VW never repeats one.
            order = np.argsort(idx, kind="stable")
            dup = np.flatnonzero(idx[order][1:] == idx[order][:-1])
            if dup.size:
                k = int(order[dup[0] + 1])
                raise ModelFormatError(
                    f"{r.where}: weight record {k} repeats index {int(idx[k])}; the file is corrupted "
                    f"(at byte {r.pos + k * rec})"
                )
            idx, vals = idx[order], vals[order]
        bad = np.flatnonzero(~(np.abs(vals) <= MAX_ABS_WEIGHT))
        if bad.size:
            k = int(bad[0])
            raise ModelFormatError(
                f"{r.where}: weight {int(idx[k])} is {float(vals[k])!r}; the model diverged or the file is corrupted "
                f"(at byte {r.pos + k * rec})"
            )
    r.pos = len(r.data)
    return idx.astype(np.uint32), vals


def _parse_options(options: str, where: str) -> dict[str, list[str]]:
    """The stored command line as {option: [values]} ([] for flags); refuses what nba cannot score."""
    tokens = options.split()
    out: dict[str, list[str]] = {}
    unsupported: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--"):
            raise ModelFormatError(f"{where}: unexpected token {tok!r} in the model's options {options.strip()!r}")
        name = tok[2:]
        if name in _FLAG_OPTIONS:
            out.setdefault(name, [])
            i += 1
        elif name in _VALUE_OPTIONS:
            if i + 1 >= len(tokens):
                raise ModelFormatError(f"{where}: option --{name} has no value in the model's options")
            out.setdefault(name, []).append(tokens[i + 1])
            i += 2
        else:
            unsupported.append(tok)
            i += 2 if i + 1 < len(tokens) and not tokens[i + 1].startswith("--") else 1
    if unsupported:
        listed = ", ".join(dict.fromkeys(unsupported))
        raise ModelFormatError(
            f"{where}: option{'s' if len(unsupported) > 1 else ''} {listed} "
            f"{'are' if len(unsupported) > 1 else 'is'} not supported: {_HELP}"
        )
    return out


def _int_opt(opts: dict[str, list[str]], name: str, where: str) -> int:
    try:
        return int(opts[name][-1])
    except ValueError:
        raise ModelFormatError(f"{where}: --{name} {opts[name][-1]!r} is not an integer") from None


def _float_opt(opts: dict[str, list[str]], name: str, where: str) -> float:
    try:
        return float(opts[name][-1])
    except ValueError:
        raise ModelFormatError(f"{where}: --{name} {opts[name][-1]!r} is not a number") from None


def _interactions(opts: dict[str, list[str]], where: str) -> list[str]:
    """-q, --cubic and --interactions after VW's sorting and de-duplication."""
    decoded: list[bytes] = []
    for name, size in (("quadratic", 2), ("cubic", 3), ("interactions", 0)):
        for spec in opts.get(name, []):
            if ":" in spec:
                raise ModelFormatError(
                    f"{where}: option --{name} {spec} uses the ':' wildcard, which nba does not reproduce; "
                    "list the namespaces explicitly"
                )
            if "\\" in spec:
                raise ModelFormatError(f"{where}: option --{name} {spec} uses escaped namespaces; not supported")
            try:
                raw = spec.encode("latin-1")
            except UnicodeEncodeError:
                raise ModelFormatError(f"{where}: option --{name} {spec} has non-latin-1 namespaces") from None
            if size and len(raw) != size:
                raise ModelFormatError(f"{where}: option --{name} {spec} must name {size} namespaces")
            if len(raw) < 2:
                raise ModelFormatError(f"{where}: option --{name} {spec} must name at least two namespaces")
            if len(raw) > 3:
                raise ModelFormatError(
                    f"{where}: option --{name} {spec}: interactions of more than three namespaces are not supported"
                )
            decoded.append(raw)
    # VW sorts the list (shorter first, then bytewise), drops interactions that are
    # equal as multisets (keeping the first), and sorts the namespaces of those with
    # a repeated namespace so that equal ones are adjacent.
    decoded.sort(key=lambda b: (len(b), b))
    seen: set[bytes] = set()
    result: list[str] = []
    for raw in decoded:
        key = bytes(sorted(raw))
        if key in seen:
            continue
        seen.add(key)
        if _must_be_left_sorted(key):
            raw = key
        result.append(raw.decode("latin-1"))
    return result


def _must_be_left_sorted(sorted_ns: bytes) -> bool:
    """VW's rule: sort an interaction that mixes a repeated namespace with another ('aab', 'abb')."""
    pair = diff = False
    for a, b in itertools.pairwise(sorted_ns):
        if a == b:
            if diff:
                return True
            pair = True
        else:
            if pair:
                return True
            diff = True
    return False
