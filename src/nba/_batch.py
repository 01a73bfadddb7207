"""Batch vectorisation: many profiles and contexts (a list of dicts or a pandas DataFrame) into one matrix.

``FeatureSchema.vectorize_many`` calls this module. Each row equals what
``FeatureSchema.vectorize`` returns for that row's profile and context, bit for
bit, and a bad value raises the error ``vectorize`` raises for the first bad row
(with the row number in front).

A list of inputs runs ``vectorize`` into each row of the matrix (the compiled fast
path for plain dicts). A DataFrame is encoded a column at a time with numpy: per
feature, one ``to_numpy`` and a few vector operations, or one dictionary lookup
per distinct category (``pandas.factorize``) rather than per row. A column numpy
cannot encode as a whole (an object column of numbers, say) is encoded value by
value through the schema's own per-feature code; any error in a frame sends the
whole frame row by row through ``vectorize``, so the error is the one the first
bad row gives.

A frame's row, as ``vectorize`` sees it, is ``{column: value}`` with pandas'
missing markers (``None``, ``pd.NA``, ``NaT``) as None (missing) and a float
column's NaN as NaN (missing for categories and ``allow_missing`` features, an
error otherwise, as in a dict). pandas is imported only when a frame is passed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nba.errors import SchemaError

if TYPE_CHECKING:
    from nba.schema import FeatureSchema, _AnyPlan

__all__ = ["vectorize_many", "is_frame", "frame_rows"]


class _Decline(Exception):
    """A column the numpy path cannot encode exactly: encode it value by value instead."""


class _Bad(Exception):
    """A value the single-row path would refuse: redo the frame row by row for its exact error."""


def is_frame(obj: Any) -> bool:
    """True for a pandas DataFrame (without importing pandas when it was never imported)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, pd.DataFrame)


def _py(v: Any) -> Any:
    """A frame cell as ``vectorize`` reads it from a dict: pandas' missing markers -> None, numpy numbers as
    Python numbers (what ``DataFrame.to_dict("records")`` gives)."""
    import pandas as pd

    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()  # as DataFrame.to_dict boxes them, object columns included
    return v


def frame_rows(df: Any) -> list[dict[str, Any]]:
    """Each row of ``df`` as the dict ``vectorize`` would be given for it."""
    cols = [str(c) for c in df.columns]
    data = [[_py(v) for v in df[c].tolist()] for c in df.columns]  # tolist: Python scalars, as a dict holds them
    return [dict(zip(cols, vals)) for vals in zip(*data)] if cols else [{} for _ in range(len(df))]


def _n_rows(obj: Any, what: str) -> int | None:
    if obj is None or isinstance(obj, Mapping):
        return None
    if is_frame(obj):
        return int(len(obj))
    if isinstance(obj, (str, bytes)) or not isinstance(obj, Sequence):
        raise SchemaError(
            f"vectorize_many: {what} must be a list of inputs, a pandas DataFrame, one dict for every row or None, "
            f"got {type(obj).__name__}"
        )
    return len(obj)


def vectorize_many(schema: FeatureSchema, profiles: Any, contexts: Any = None) -> np.ndarray:
    """The ``(n, n_columns)`` float64 matrix of ``profiles`` and ``contexts`` (see the module docstring)."""
    n_p = _n_rows(profiles, "profiles")
    n_c = _n_rows(contexts, "contexts")
    if n_p is None:
        raise SchemaError(
            f"vectorize_many: profiles must be a list of inputs or a pandas DataFrame, got {type(profiles).__name__}"
            " (use vectorize for one row)"
        )
    if n_c is not None and n_c != n_p:
        raise SchemaError(f"vectorize_many: {n_p} profiles but {n_c} contexts; pass one context per profile")
    out = np.empty((n_p, schema.n_columns))
    if n_p == 0:
        return out
    frames = is_frame(profiles) or is_frame(contexts)
    if frames:
        try:
            counts = _encode_frames(schema, profiles, contexts, out)
        except _Bad:
            pass  # the row loop below raises the first bad row's own error
        else:
            schema._count_rows(n_p, counts)
            return out
        same = contexts is profiles  # one frame for both: each row one dict, as vectorize(row, row) reads it
        profiles = frame_rows(profiles) if is_frame(profiles) else profiles
        contexts = profiles if same else frame_rows(contexts) if is_frame(contexts) else contexts
    ctx_each = n_c is not None
    vec = schema.vectorize
    i = 0
    try:
        for i in range(n_p):
            vec(profiles[i], contexts[i] if ctx_each else contexts, out[i])
    except SchemaError as e:
        raise SchemaError(f"row {i}: {e}") from None
    return out


# --------------------------------------------------------------------------- frames


def _encode_frames(schema: FeatureSchema, profiles: Any, contexts: Any, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` column by column; raises ``_Bad`` where a row would raise. Returns the counts of what
    was seen (``FeatureSchema.counters``), a row per feature."""
    src = {"profile": profiles, "context": contexts}
    n = out.shape[0]
    counts = [[0, 0, 0, 0] for _ in schema._plans]
    if schema._keys is not None:  # strict about keys: a frame column no source reading the frame declares
        for obj in {id(o): o for o in (profiles, contexts) if is_frame(o)}.values():
            allowed = frozenset().union(*(schema._keys[s] for s, o in src.items() if o is obj))
            if any(c not in allowed for c in obj.columns):
                raise _Bad
        if any(o is not None and not is_frame(o) for o in src.values()):
            raise _Bad  # dicts beside a frame: the row path checks their keys
    for p in schema._plans:
        obj = src[p.source]
        c = counts[p.index]
        if obj is None:
            _fill_missing(p, out, c)
        elif is_frame(obj):
            if p.name in obj.columns:
                col = obj[p.name]
                if not hasattr(col, "dtype"):  # duplicate column names: a frame, not a Series
                    raise _Bad
                try:
                    _encode_column(p, col, out, c)
                except _Decline:
                    _encode_values(p, [_py(v) for v in col.tolist()], out, c)
            else:
                _fill_missing(p, out, c)
        else:  # a list of dicts beside a frame: the values of this feature, row by row
            from nba.schema import _raw_values

            vals = []
            for i in range(n):
                o = obj[i] if not isinstance(obj, Mapping) else obj
                if isinstance(o, (np.ndarray, list, tuple)):
                    raise _Bad  # a ready vector: let vectorize check and place it
                try:
                    vals.append(_raw_values(o, (p.name,))[0])
                except Exception:
                    raise _Bad from None
            _encode_values(p, vals, out, c)
    return np.array(counts, dtype=np.uint64)


def _block(p: _AnyPlan) -> slice:
    return slice(p.col, p.col + (p.width if p.kind == "categorical" else 1))


def _count(counts: list[int], bits: int, n: int = 1) -> None:
    """Add ``n`` values whose events are ``bits`` (EVENT_MISSING, _DEFAULTED, _UNKNOWN, _CLIPPED: 1, 2, 4, 8,
    a counts row's order) to a feature's ``counts``."""
    for k in range(4):
        if bits >> k & 1:
            counts[k] += n


def _one(p: _AnyPlan, raw: Any, n_columns: int) -> tuple[list[float], int]:
    """The values ``p`` writes in its block for one raw value and what it saw (raises what the single-row
    path raises)."""
    from nba.schema import MISSING

    vals = [0.0] * n_columns
    seen = p.encode(MISSING if raw is None else raw, vals)
    return vals[_block(p)], seen


def _fill_missing(p: _AnyPlan, out: np.ndarray, counts: list[int]) -> None:
    try:
        vals, seen = _one(p, None, out.shape[1])
    except SchemaError:  # strict about missing values
        raise _Bad from None
    out[:, _block(p)] = vals
    _count(counts, seen, out.shape[0])


def _encode_values(p: _AnyPlan, values: list[Any], out: np.ndarray, counts: list[int]) -> None:
    """Encode one feature value by value, through the plan the single-row path uses."""
    block = _block(p)
    n_cols = out.shape[1]
    try:
        rows = [_one(p, v, n_cols) for v in values]
    except SchemaError:
        raise _Bad from None
    out[:, block] = [r[0] for r in rows]
    for _, seen in rows:
        if seen:
            _count(counts, seen)


def _encode_column(p: _AnyPlan, s: Any, out: np.ndarray, counts: list[int]) -> None:
    import pandas as pd

    dtype = s.dtype
    if p.kind == "categorical":
        _encode_categorical(p, s, out, pd, counts)
        return
    if isinstance(dtype, pd.CategoricalDtype):
        raise _Decline  # categories fed to a number or a flag: the values decide
    kind = getattr(dtype, "kind", "O")
    if kind not in "biuf":
        raise _Decline  # object, strings, dates...: value by value
    mask = np.asarray(s.isna()) if isinstance(dtype, pd.api.extensions.ExtensionDtype) else None
    try:
        x = s.to_numpy(dtype=np.float64, na_value=np.nan) if mask is not None else s.to_numpy(dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise _Decline from None
    x = np.array(x, dtype=np.float64, copy=True)
    if kind == "u" and dtype.itemsize == 8 or kind == "i" and dtype.itemsize > 8:
        raise _Decline  # beyond what numpy's conversion and float() are known to round alike
    n_masked = int(mask.sum()) if mask is not None else 0
    if n_masked and p.strict_missing:
        raise _Bad
    nan = np.isnan(x) if mask is None else (np.isnan(x) & ~mask)
    if nan.any() and not p.allow_missing:
        raise _Bad
    if p.kind == "numeric":
        if np.isinf(x).any():
            raise _Bad
        lo, hi = p.lo, p.hi
        if lo != -math.inf or hi != math.inf:
            below, above = x < lo, x > hi
            if below.any() or above.any():
                if not p.clip:
                    raise _Bad
                x[below] = lo
                x[above] = hi
                counts[3] += int(np.count_nonzero(below)) + int(np.count_nonzero(above))
        default = p.default
    else:  # boolean: 0/1 (bools included), NaN when missing values are allowed
        ok = (x == 0.0) | (x == 1.0) | nan
        if not (ok if mask is None else ok | mask).all():
            raise _Bad
        default = 1.0 if p.default else 0.0
    if mask is not None and mask.any():
        x[mask] = math.nan if p.allow_missing else default
    if n_masked or p.allow_missing:
        counts[0] += n_masked + int(np.count_nonzero(nan))
        if not p.allow_missing:
            counts[1] += n_masked
    out[:, p.col] = x


def _encode_categorical(p: Any, s: Any, out: np.ndarray, pd: Any, counts: list[int]) -> None:
    """One-hot a column: the column of each distinct value looked up once, then scattered by code."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes = np.asarray(s.cat.codes, dtype=np.intp)
        uniques = list(s.cat.categories)
    else:
        kind = getattr(s.dtype, "kind", "O")
        if kind == "f" and not isinstance(s.dtype, pd.api.extensions.ExtensionDtype):
            raise _Decline  # NaN vs unknown floats: the per-value path is exact and float categories are rare
        try:
            codes, uniques_ix = pd.factorize(s, use_na_sentinel=True)
        except TypeError:  # unhashable values
            raise _Bad from None
        codes = np.asarray(codes, dtype=np.intp)
        uniques = list(uniques_ix)
        if any(type(u) is not type(uniques[0]) for u in uniques):
            raise _Decline  # factorize may merge 1 and True or 1.0; the per-value path keeps them apart
    block = _block(p)
    width = block.stop - block.start
    # The block each distinct value writes (-1: missing, from code -1); a bad value only matters if used.
    table = np.zeros((len(uniques) + 1, width))
    bad = np.zeros(len(uniques) + 1, dtype=bool)
    seen = [0] * (len(uniques) + 1)
    n_cols = out.shape[1]
    for k, u in enumerate([*(u.item() if isinstance(u, np.generic) else u for u in uniques), None]):
        try:
            table[k], seen[k] = _one(p, u, n_cols)
        except SchemaError:
            bad[k] = True
    if bad[codes].any():
        raise _Bad
    out[:, block] = table[codes]
    if any(seen):  # how many rows hold each distinct value (code -1, missing, is the last)
        rows = np.bincount(codes + 1, minlength=len(uniques) + 1)  # rows[0]: missing, rows[j + 1]: uniques[j]
        for j, bits in enumerate(seen):
            if bits:
                _count(counts, bits, int(rows[(j + 1) % len(seen)]))


# --------------------------------------------------------------------------- training rows


def _arm_indices(catalog: Any, ids: Sequence[str], what: str) -> np.ndarray:
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise SchemaError(f"training_frame: {what} must be a list of arm ids, got {type(ids).__name__}")
    idx = []
    for a in ids:
        j = catalog._index.get(a) if isinstance(a, str) else None
        if j is None:
            raise SchemaError(f"training_frame: {what} names {a!r}, which is not an arm of the catalogue; "
                              f"arms: {list(catalog.ids)[:10]!r}")
        idx.append(j)
    return np.asarray(idx, dtype=np.intp)


def training_rows(
    catalog: Any, profiles: Any, contexts: Any = None, *, arms: Sequence[str] | None = None,
    chosen: Sequence[str] | None = None, as_frame: bool = False,
) -> Any:
    """The rows a tree model over ``catalog.feature_names`` trains on, encoded exactly as a decision encodes them.

    The schema columns come from ``vectorize_many(profiles, contexts)``, the arm
    columns from the catalogue's arm matrix, the same two pieces ``RowLayout.fill``
    puts together at serving time, so the column order and encoding cannot differ.
    """
    x = vectorize_many(catalog.schema, profiles, contexts)
    n = x.shape[0]
    names = catalog.feature_names
    ns = catalog.schema.n_columns
    if chosen is not None:
        if arms is not None:
            raise SchemaError(
                "training_frame: pass arms (every profile x these arms) or chosen (one per row), not both"
            )
        idx = _arm_indices(catalog, chosen, "chosen")
        if len(idx) != n:
            raise SchemaError(f"training_frame: {n} profiles but {len(idx)} chosen arms; pass one arm id per profile")
        rows = np.empty((n, len(names)))
        rows[:, :ns] = x
        rows[:, ns:] = catalog.arm_matrix[idx]
    else:
        idx = np.arange(len(catalog), dtype=np.intp) if arms is None else _arm_indices(catalog, arms, "arms")
        k = len(idx)
        rows = np.empty((n * k, len(names)))
        rows[:, :ns] = np.repeat(x, k, axis=0)
        rows[:, ns:] = np.tile(catalog.arm_matrix[idx], (n, 1))
    if not as_frame:
        return rows
    try:
        import pandas as pd
    except ImportError:
        raise SchemaError("training_frame(as_frame=True) needs pandas; install it, or use the matrix") from None
    df = pd.DataFrame(rows, columns=list(names))
    for p in catalog.schema._codes:  # a native LightGBM category: a pandas category column over the declared list
        codes = rows[:, p.col]
        ints = np.where(np.isnan(codes), -1, codes).astype(np.int64)
        df[names[p.col]] = pd.Categorical.from_codes(ints, categories=list(p.categories))
    return df
