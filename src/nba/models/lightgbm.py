"""LightGBM text models (``Booster.save_model``) loaded into the compiled tree kernel.

The whole file is parsed and validated here, in Python, once: every count, child
index, feature index and bitset range is proved consistent so that the core loops
in ``nba._core.trees`` can run without bounds checks. Scores equal LightGBM's exactly
(raw scores bit for bit): same traversal rules for missing values and categories,
same summation order, same output transform.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from nba._core import trees as trees_core
from nba._core.trees import ArmForestCore, TreeEnsembleCore
from nba.errors import ConfigError, ModelFormatError, SchemaError
from nba.models import DEFAULT_MAX_BYTES, Summary, read_model_file

if TYPE_CHECKING:
    from nba.catalog import Catalog

__all__ = ["TreeEnsemble", "TreeScorer", "load_lightgbm"]

_KZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold is the float 1e-35f

# Node kinds (low two bits of a node's packed feature word; see nba._core.trees).
_K_NAN_LEFT, _K_NAN_RIGHT = trees_core.NODE_NAN_LEFT, trees_core.NODE_NAN_RIGHT
_K_LEAF, _K_COMPLEX = trees_core.NODE_LEAF, trees_core.NODE_COMPLEX
# Output transforms (see nba._core.trees).
_T_IDENTITY, _T_SIGMOID = trees_core.TRANSFORM_IDENTITY, trees_core.TRANSFORM_SIGMOID
_T_SOFTMAX = trees_core.TRANSFORM_SOFTMAX
_T_EXP, _T_SOFTPLUS, _T_SQUARE = trees_core.TRANSFORM_EXP, trees_core.TRANSFORM_SOFTPLUS, trees_core.TRANSFORM_SQUARE

# Objective name (first token of ``objective=``) -> transform; parameters are read below.
_IDENTITY_OBJECTIVES = frozenset(
    {
        "regression",
        "regression_l2",
        "l2",
        "mean_squared_error",
        "mse",
        "regression_l1",
        "l1",
        "mean_absolute_error",
        "mae",
        "huber",
        "fair",
        "quantile",
        "mape",
        "mean_absolute_percentage_error",
        "lambdarank",
        "rank_xendcg",
        "xendcg",
        "xe_ndcg",
        "xe_ndcg_mart",
        "xendcg_mart",
        "custom",
        "none",
    }
)
_EXP_OBJECTIVES = frozenset({"poisson", "gamma", "tweedie"})
# NBA_TREE_KERNEL asks for a row kernel (read by the core at import; see trees_core.set_row_kernel).
_ROW_KERNEL_ASKS = ("auto", "avx512", "avx2", "lanes")
_MAX_FEATURES = (1 << 30) - 1  # the feature index shares a uint32 with the node kind
_MAX_NODES = (1 << 31) - 1  # child indices are int32


class _Parsed(msgspec.Struct):
    """A validated model, flattened (see _Nodes), ready for TreeEnsembleCore."""

    num_class: int
    num_tree_per_iteration: int
    max_feature_idx: int
    objective: str
    transform: int
    transform_param: float
    average_output: bool
    feature_names: list[str]
    thr: np.ndarray
    fx: np.ndarray
    child: np.ndarray
    leafval: np.ndarray
    decision_type: np.ndarray
    cat_off: np.ndarray
    cat_len: np.ndarray
    cat_bits: np.ndarray
    roots: np.ndarray
    depth: np.ndarray
    leaves: int
    max_depth: int
    categorical_splits: int


# ----------------------------------------------------------------------------- parsing


class _Src:
    """Where a model came from, for error messages."""

    def __init__(self, name: str) -> None:
        self.name = name

    def err(self, msg: str, line: int | None = None) -> ModelFormatError:
        where = f"{self.name}, line {line}" if line is not None else self.name
        return ModelFormatError(f"{where}: {msg}")


def _ints(src: _Src, tree: int, key: str, value: str, line: int, n: int) -> list[int]:
    parts = value.split()
    if len(parts) != n:
        raise src.err(f"tree {tree}: {key} has {len(parts)} values, expected {n}", line)
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise src.err(f"tree {tree}: {key} holds a value that is not an integer", line) from None


def _floats(src: _Src, tree: int, key: str, value: str, line: int, n: int) -> list[float]:
    parts = value.split()
    if len(parts) != n:
        raise src.err(f"tree {tree}: {key} has {len(parts)} values, expected {n}", line)
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise src.err(f"tree {tree}: {key} holds a value that is not a number", line) from None


def _header_int(src: _Src, header: dict[str, tuple[str, int]], key: str, lo: int, hi: int) -> int:
    if key not in header:
        raise src.err(f"header has no {key}=; this is not a complete LightGBM text model")
    value, line = header[key]
    try:
        v = int(value)
    except ValueError:
        raise src.err(f"{key}={value!r} is not an integer", line) from None
    if not lo <= v <= hi:
        raise src.err(f"{key}={v} is out of range [{lo}, {hi}]", line)
    return v


def _objective(src: _Src, text: str, line: int | None, num_class: int) -> tuple[int, float]:
    """The output transform and its parameter for LightGBM's ``objective=`` string."""
    tokens = text.split()
    name = tokens[0] if tokens else "none"
    params: dict[str, str] = {}
    flags: set[str] = set()
    for t in tokens[1:]:
        if ":" in t:
            k, _, v = t.partition(":")
            params[k] = v
        else:
            flags.add(t)

    def number(key: str) -> float:
        if key not in params:
            raise src.err(f"objective {name!r} needs a {key}: parameter, e.g. '{name} {key}:1'", line)
        try:
            v = float(params[key])
        except ValueError:
            raise src.err(f"objective parameter {key}:{params[key]!r} is not a number", line) from None
        if not math.isfinite(v):
            raise src.err(f"objective parameter {key}:{params[key]} is not finite", line)
        return v

    def check_classes() -> None:
        k = number("num_class")
        if k != num_class:
            raise src.err(
                f"objective says num_class:{params['num_class']} but the header says num_class={num_class}", line
            )

    if name == "binary":
        s = number("sigmoid")
        if s <= 0:
            raise src.err(f"binary objective needs sigmoid > 0, got {s}", line)
        return _T_SIGMOID, s
    if name in ("multiclass", "softmax"):
        check_classes()
        return _T_SOFTMAX, 0.0
    if name in ("multiclassova", "multiclass_ova", "ova", "ovr"):
        check_classes()
        s = number("sigmoid")
        if s <= 0:
            raise src.err(f"multiclassova objective needs sigmoid > 0, got {s}", line)
        return _T_SIGMOID, s
    if name in ("cross_entropy", "xentropy"):
        return _T_SIGMOID, 1.0
    if name in ("cross_entropy_lambda", "xentlambda"):
        return _T_SOFTPLUS, 0.0
    if name in _EXP_OBJECTIVES:
        return _T_EXP, 0.0
    if name in _IDENTITY_OBJECTIVES:
        return (_T_SQUARE if "sqrt" in flags else _T_IDENTITY), 0.0
    raise src.err(f"unknown objective {name!r}; nba knows LightGBM's built-in objectives only", line)


def _decode(source: Any, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str, str]:
    """(model text, name for messages) from a path, text, bytes or Booster."""
    if hasattr(source, "model_to_string") and hasattr(source, "num_trees"):
        try:
            text = source.model_to_string()
        except Exception as e:  # a freed or broken Booster
            raise ModelFormatError(f"cannot export the LightGBM Booster to text: {e}") from e
        return text, "<lightgbm.Booster>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "<model bytes>"
    elif isinstance(source, str) and "\n" in source:
        return source, "<model text>"
    elif isinstance(source, (str, os.PathLike)):
        data, name = read_model_file(source, max_bytes)
    else:
        raise ModelFormatError(
            f"cannot load a LightGBM model from {type(source).__name__}; "
            "pass a file path, the model text or bytes, or a lightgbm.Booster"
        )
    return text_of(data, name), name


def text_of(data: bytes, name: str) -> str:
    """The model text in ``data`` (read from ``name``): UTF-8 without NUL bytes, or ModelFormatError."""
    if b"\x00" in data:
        raise ModelFormatError(f"{name}: binary data (NUL bytes), not a LightGBM text model")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelFormatError(f"{name}: not UTF-8 text at byte {e.start}; not a LightGBM text model") from None


def _parse(text: str, src: _Src) -> _Parsed:
    lines = text.split("\n")
    n_lines = len(lines)
    i = 0
    while i < n_lines and not lines[i].strip():
        i += 1
    if i == n_lines:
        raise src.err("empty model: no LightGBM text model here")
    if lines[i].strip() != "tree":
        raise src.err("does not start with 'tree': not a LightGBM text model (save it with Booster.save_model)", i + 1)
    i += 1

    # Header: key=value lines and bare flags, up to the first tree.
    header: dict[str, tuple[str, int]] = {}
    flags: set[str] = set()
    while i < n_lines:
        raw = lines[i].rstrip("\r")
        if raw.startswith("Tree=") or raw == "end of trees":
            break
        if raw:
            key, eq, value = raw.partition("=")
            if eq:
                header[key] = (value, i + 1)
            else:
                flags.add(raw.strip())
        i += 1

    num_class = _header_int(src, header, "num_class", 1, 1 << 20)
    ntpi = _header_int(src, header, "num_tree_per_iteration", 1, 1 << 20)
    if ntpi != num_class:
        raise src.err(
            f"num_tree_per_iteration={ntpi} differs from num_class={num_class}; nba supports models "
            "with one tree per class per iteration",
            header["num_tree_per_iteration"][1],
        )
    max_fidx = _header_int(src, header, "max_feature_idx", 0, _MAX_FEATURES - 1)
    if "feature_names" not in header:
        raise src.err("header has no feature_names=; this is not a complete LightGBM text model")
    fn_value, fn_line = header["feature_names"]
    feature_names = fn_value.split()
    if len(feature_names) != max_fidx + 1:
        raise src.err(
            f"feature_names lists {len(feature_names)} names but max_feature_idx={max_fidx} "
            f"means {max_fidx + 1} features",
            fn_line,
        )
    if "feature_infos" in header:
        fi_value, fi_line = header["feature_infos"]
        if len(fi_value.split()) != max_fidx + 1:
            raise src.err(
                f"feature_infos has {len(fi_value.split())} entries, expected {max_fidx + 1}", fi_line
            )
    if "objective" in header:
        objective, obj_line = header["objective"][0].strip(), header["objective"][1]
    else:  # trained with a custom objective: raw scores are the output
        objective, obj_line = "custom", None
    transform, tparam = _objective(src, objective, obj_line, num_class)
    average_output = "average_output" in flags
    declared_trees: int | None = None
    if "tree_sizes" in header:
        declared_trees = len(header["tree_sizes"][0].split())

    # Trees.
    nodes = _Nodes()
    total_leaves = 0
    max_depth = 0
    n_cat_splits = 0
    saw_end = False
    while i < n_lines:
        raw = lines[i].rstrip("\r")
        if raw == "end of trees":
            saw_end = True
            break
        if not raw:
            i += 1
            continue
        if not raw.startswith("Tree="):
            raise src.err(f"expected 'Tree=<index>' or 'end of trees', found {raw[:40]!r}", i + 1)
        t = len(nodes.roots)
        try:
            idx = int(raw[5:])
        except ValueError:
            raise src.err(f"bad tree header {raw[:40]!r}", i + 1) from None
        if idx != t:
            raise src.err(f"tree index {idx} out of order; expected Tree={t}", i + 1)
        if declared_trees is not None and t >= declared_trees:
            raise src.err(f"more trees than the {declared_trees} that tree_sizes declares", i + 1)
        tree_line = i + 1
        fields: dict[str, tuple[str, int]] = {}
        i += 1
        while i < n_lines:
            raw = lines[i].rstrip("\r")
            if not raw or raw.startswith("Tree=") or raw == "end of trees":
                break
            key, eq, value = raw.partition("=")
            if not eq:
                raise src.err(f"tree {t}: expected key=value, found {raw[:40]!r}", i + 1)
            fields[key] = (value, i + 1)
            i += 1
        depth, leaves, ncat = _flatten_tree(src, t, tree_line, fields, max_fidx, nodes)
        if len(nodes.thr) > _MAX_NODES:
            raise src.err(f"tree {t}: the model has more than {_MAX_NODES} nodes", tree_line)
        total_leaves += leaves
        max_depth = max(max_depth, depth)
        n_cat_splits += ncat
    if not saw_end:
        raise src.err(f"no 'end of trees' line after {len(nodes.roots)} trees: the file is truncated")
    n_trees = len(nodes.roots)
    if n_trees == 0:
        raise src.err("the model has no trees; train it for at least one iteration")
    if declared_trees is not None and declared_trees != n_trees:
        raise src.err(
            f"tree_sizes declares {declared_trees} trees but {n_trees} are present",
            header["tree_sizes"][1],
        )
    if n_trees % ntpi != 0:
        raise src.err(f"{n_trees} trees is not a multiple of num_tree_per_iteration={ntpi}")
    return _Parsed(
        num_class=num_class,
        num_tree_per_iteration=ntpi,
        max_feature_idx=max_fidx,
        objective=objective,
        transform=transform,
        transform_param=tparam,
        average_output=average_output,
        feature_names=feature_names,
        thr=np.array(nodes.thr, dtype=np.float64),
        fx=np.array(nodes.fx, dtype=np.uint32),
        child=np.array(nodes.child, dtype=np.int32),
        leafval=np.array(nodes.leafval, dtype=np.float64),
        decision_type=np.array(nodes.dts, dtype=np.uint8),
        cat_off=np.array(nodes.cat_off, dtype=np.int32),
        cat_len=np.array(nodes.cat_len, dtype=np.int32),
        cat_bits=np.array(nodes.cat_bits, dtype=np.uint32),
        roots=np.array(nodes.roots, dtype=np.int32),
        depth=np.array(nodes.depth, dtype=np.int32),
        leaves=total_leaves,
        max_depth=max_depth,
        categorical_splits=n_cat_splits,
    )


def _field(src: _Src, t: int, tree_line: int, fields: dict[str, tuple[str, int]], key: str) -> tuple[str, int]:
    if key not in fields:
        raise src.err(f"tree {t} has no {key}= line (truncated or not a LightGBM model)", tree_line)
    return fields[key]


class _Nodes:
    """The growing flat arrays of every tree, in the core's layout.

    Siblings are adjacent (right child = left child + 1), each tree's nodes follow its
    root, and a leaf is marked by its kind; ``leafval`` holds leaf values by node.
    """

    def __init__(self) -> None:
        self.thr: list[float] = []
        self.fx: list[int] = []
        self.child: list[int] = []
        self.leafval: list[float] = []
        self.dts: list[int] = []
        self.cat_off: list[int] = []
        self.cat_len: list[int] = []
        self.cat_bits: list[int] = []
        self.roots: list[int] = []
        self.depth: list[int] = []

    def reserve(self, k: int) -> int:
        """Append k blank nodes; returns the index of the first."""
        pos = len(self.thr)
        self.thr.extend([0.0] * k)
        self.fx.extend([0] * k)
        self.child.extend([0] * k)
        self.leafval.extend([0.0] * k)
        self.dts.extend([0] * k)
        self.cat_off.extend([0] * k)
        self.cat_len.extend([0] * k)
        return pos

    def leaf(self, pos: int, value: float) -> None:
        self.fx[pos] = _K_LEAF
        self.leafval[pos] = value


def _flatten_tree(
    src: _Src,
    t: int,
    tree_line: int,
    fields: dict[str, tuple[str, int]],
    max_fidx: int,
    out: _Nodes,
) -> tuple[int, int, int]:
    """Validate tree ``t`` and append its nodes; returns (depth, leaves, categorical splits)."""

    def get(key: str) -> tuple[str, int]:
        return _field(src, t, tree_line, fields, key)

    v, ln = get("num_leaves")
    try:
        num_leaves = int(v)
    except ValueError:
        raise src.err(f"tree {t}: num_leaves={v!r} is not an integer", ln) from None
    if num_leaves < 1:
        raise src.err(f"tree {t}: num_leaves={num_leaves} must be at least 1", ln)
    if "is_linear" in fields and fields["is_linear"][0].strip() not in ("0", ""):
        raise src.err(
            f"tree {t} is a linear tree (linear_tree=true); nba scores piecewise-constant trees only: "
            "retrain without linear_tree",
            fields["is_linear"][1],
        )
    lv, lv_ln = get("leaf_value")
    leaf_value = _floats(src, t, "leaf_value", lv, lv_ln, num_leaves)
    if num_leaves == 1:
        root = out.reserve(1)
        out.leaf(root, leaf_value[0])
        out.roots.append(root)
        out.depth.append(0)
        return 0, 1, 0

    n_int = num_leaves - 1
    v, ln = get("num_cat")
    try:
        num_cat = int(v)
    except ValueError:
        raise src.err(f"tree {t}: num_cat={v!r} is not an integer", ln) from None
    if not 0 <= num_cat <= n_int:
        raise src.err(f"tree {t}: num_cat={num_cat} out of range [0, {n_int}]", ln)
    split_feature = _ints(src, t, "split_feature", *get("split_feature"), n_int)
    threshold = _floats(src, t, "threshold", *get("threshold"), n_int)
    decision_type = _ints(src, t, "decision_type", *get("decision_type"), n_int)
    left_child = _ints(src, t, "left_child", *get("left_child"), n_int)
    right_child = _ints(src, t, "right_child", *get("right_child"), n_int)
    bitsets: list[tuple[int, int]] = []
    if num_cat > 0:
        cb_v, cb_ln = get("cat_boundaries")
        ct_v, ct_ln = get("cat_threshold")
        n_words = len(ct_v.split())
        bounds = _ints(src, t, "cat_boundaries", cb_v, cb_ln, num_cat + 1)
        words = _ints(src, t, "cat_threshold", ct_v, ct_ln, n_words)
        if bounds[0] != 0 or bounds[-1] != n_words:
            raise src.err(
                f"tree {t}: cat_boundaries must run from 0 to {n_words} (the cat_threshold length)", cb_ln
            )
        for a, b in itertools.pairwise(bounds):
            if b < a:
                raise src.err(f"tree {t}: cat_boundaries must be non-decreasing", cb_ln)
        if any(not 0 <= w <= 0xFFFFFFFF for w in words):
            raise src.err(f"tree {t}: cat_threshold words must be unsigned 32-bit integers", ct_ln)
        word_base = len(out.cat_bits)
        out.cat_bits.extend(words)
        bitsets = [(word_base + a, b - a) for a, b in itertools.pairwise(bounds)]

    sf_ln = get("split_feature")[1]
    th_ln = get("threshold")[1]
    dt_ln = get("decision_type")[1]
    for j in range(n_int):
        f = split_feature[j]
        if not 0 <= f <= max_fidx:
            raise src.err(f"tree {t}: split_feature {f} at node {j} out of range [0, {max_fidx}]", sf_ln)
        d = decision_type[j]
        if not 0 <= d <= 15 or (d >> 2) & 3 == 3:
            raise src.err(f"tree {t}: decision_type {d} at node {j} is not a valid LightGBM decision type", dt_ln)
        c = threshold[j]
        if d & 1:
            if not (math.isfinite(c) and c == int(c) and 0 <= c < num_cat):
                raise src.err(
                    f"tree {t}: categorical node {j} has threshold {c}, expected a bitset index in [0, {num_cat})",
                    th_ln,
                )
        elif math.isnan(c):
            # +-inf is legitimate: LightGBM writes threshold=inf for a split that only
            # separates missing values (every number goes left, x <= inf); NaN is not.
            raise src.err(f"tree {t}: threshold at node {j} is NaN", th_ln)

    # Structure: every internal node but the root and every leaf has exactly one parent,
    # and all of them hang from the root (no cycles, no orphans).
    lc_ln = get("left_child")[1]
    rc_ln = get("right_child")[1]
    seen_int = [False] * n_int
    seen_leaf = [False] * num_leaves
    seen_int[0] = True
    for children, ln in ((left_child, lc_ln), (right_child, rc_ln)):
        for j, c in enumerate(children):
            if c >= 0:
                if c >= n_int or seen_int[c]:
                    raise src.err(f"tree {t}: node {j} has child {c}, which is out of range or not a tree", ln)
                seen_int[c] = True
            else:
                leaf = ~c
                if leaf >= num_leaves or seen_leaf[leaf]:
                    raise src.err(f"tree {t}: node {j} has leaf child {c}, out of range or reused", ln)
                seen_leaf[leaf] = True

    # Layout: the root, then each node's two children side by side, left subtrees first.
    root = out.reserve(1)
    n_cat_splits = 0
    max_depth = 0
    visited = 0
    stack: list[tuple[int, int, int]] = [(0, root, 0)]  # (child code, position, depth)
    while stack:
        code, pos, depth = stack.pop()
        if code < 0:
            out.leaf(pos, leaf_value[~code])
            max_depth = max(max_depth, depth)
            continue
        visited += 1
        j = code
        d = decision_type[j]
        th = threshold[j]
        if d & 1:
            kind = _K_COMPLEX
            out.cat_off[pos], out.cat_len[pos] = bitsets[int(th)]
            n_cat_splits += 1
        else:
            missing = (d >> 2) & 3
            default_left = bool(d & 2)
            if missing == 1 or -_KZERO <= th < _KZERO:
                kind = _K_COMPLEX
            elif missing == 2:
                kind = _K_NAN_LEFT if default_left else _K_NAN_RIGHT
            else:  # NaN is read as 0.0
                kind = _K_NAN_LEFT if 0.0 <= th else _K_NAN_RIGHT
        pair = out.reserve(2)
        out.thr[pos] = th
        out.fx[pos] = (split_feature[j] << 2) | kind
        out.child[pos] = pair
        out.dts[pos] = d
        stack.append((right_child[j], pair + 1, depth + 1))
        stack.append((left_child[j], pair, depth + 1))
    if visited != n_int:
        raise src.err(f"tree {t}: {n_int - visited} internal nodes are not reachable from the root", tree_line)
    out.roots.append(root)
    out.depth.append(max_depth)
    return max_depth, num_leaves, n_cat_splits


# ----------------------------------------------------------------------------- the model


def _score_bounds(parsed: _Parsed) -> tuple[float, float]:
    """(lowest, highest) prediction: a transform's range, or the sums of each tree's extreme leaves."""
    if parsed.transform in (_T_SIGMOID, _T_SOFTMAX):
        return (0.0, 1.0)
    if parsed.transform != _T_IDENTITY:  # exp, softplus, square
        return (0.0, math.inf)
    roots = parsed.roots.astype(np.intp)
    if roots.size == 0:
        return (0.0, 0.0)
    leaf = (parsed.fx & 3) == _K_LEAF
    mins = np.minimum.reduceat(np.where(leaf, parsed.leafval, math.inf), roots)
    maxs = np.maximum.reduceat(np.where(leaf, parsed.leafval, -math.inf), roots)
    n = roots.size // parsed.num_tree_per_iteration if parsed.average_output else 1
    # Widened by a bound on the rounding of any summation order (and the average's division),
    # so that no prediction falls outside; leaves all >= 0 keep a lower bound of exactly >= 0.
    eps = (roots.size + 2) * float(np.finfo(np.float64).eps)
    lo = (float(mins.sum()) - eps * float(np.abs(mins).sum())) / n
    hi = (float(maxs.sum()) + eps * float(np.abs(maxs).sum())) / n
    if (mins >= 0.0).all():
        lo = max(lo, 0.0)
    return (lo, hi)


class TreeEnsemble:
    """A LightGBM model compiled for scoring: ``predict`` for batches, ``predict_row`` for one row.

    Scores equal ``lightgbm.Booster.predict`` (raw scores bit for bit). Thread safe:
    scoring releases the GIL and touches no shared state. Pickles as its model text.
    """

    num_features: int
    num_class: int
    num_trees: int
    num_iterations: int
    objective: str
    feature_names: tuple[str, ...]
    version: str
    average_output: bool
    #: Names of the features LightGBM splits natively as categories (its ``categorical_feature``).
    categorical_features: tuple[str, ...]
    #: The category lists of a model trained on pandas ``category`` columns, in the order of those
    #: columns (the file's ``pandas_categorical``); None when it was trained without them.
    pandas_categorical: tuple[tuple[Any, ...], ...] | None

    #: (lowest, highest) score ``predict`` can return: the output transform's range, or for
    #: a raw output the sums of each tree's lowest and highest leaf. The Decider checks
    #: with it that arbitration cannot invert the ranking (``Catalog.check_arbitration``).
    score_bounds: tuple[float, float]

    def __init__(self, text: str, *, _name: str = "<model text>") -> None:
        """Parse and validate LightGBM model ``text``; prefer ``load_lightgbm``."""
        ask = os.environ.get("NBA_TREE_KERNEL", "auto")
        if ask not in _ROW_KERNEL_ASKS:
            raise ConfigError(
                f"NBA_TREE_KERNEL={ask!r} is not a row kernel: expected one of {', '.join(_ROW_KERNEL_ASKS)} "
                "(unset means auto: the fastest this CPU runs)"
            )
        parsed = _parse(text, _Src(_name))
        self._text = text
        self._parsed_stats = (parsed.leaves, parsed.max_depth, parsed.categorical_splits)
        self.num_features = parsed.max_feature_idx + 1
        self.num_class = parsed.num_class
        self.num_trees = int(parsed.roots.shape[0])
        self.num_iterations = self.num_trees // parsed.num_tree_per_iteration
        self.objective = parsed.objective
        self.feature_names = tuple(parsed.feature_names)
        self.average_output = parsed.average_output
        self.version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        self.score_bounds = _score_bounds(parsed)
        self.categorical_features, self.pandas_categorical = _categorical_info(text, self.feature_names, _name)
        self._core = TreeEnsembleCore(
            parsed.thr,
            parsed.fx,
            parsed.child,
            parsed.leafval,
            parsed.decision_type,
            parsed.cat_off,
            parsed.cat_len,
            parsed.cat_bits,
            parsed.roots,
            parsed.depth,
            self.num_features,
            parsed.num_tree_per_iteration,
            parsed.transform,
            parsed.transform_param,
            parsed.average_output,
            self._coerce_row,
        )
        # The one trick here: an instance's predict_row is the core's own method, with no
        # Python frame in between. Measured (timeit, bench_decide's 100-tree model): 1.12 us
        # a row against 1.22 us through the method below, 8% of a one-row score.
        self.predict_row = self._core.predict_row  # type: ignore[method-assign]

    def predict_row(self, x: Any, raw_score: bool = False) -> Any:
        """Score one row of ``num_features`` values: a float, or an array of class scores.

        Same result as ``predict(x)[0]``. An instance answers with the core's method
        directly (see ``__init__``); this one documents it and serves the class.
        """
        return self._core.predict_row(x, raw_score)

    # ------------------------------------------------------------------ input edge

    def _coerce_row(self, x: Any) -> np.ndarray:
        """One row as a C-contiguous float64 vector, or SchemaError."""
        a = self._as_float64(x)
        if a.ndim == 2 and a.shape[0] == 1:
            a = a[0]
        if a.ndim != 1:
            raise SchemaError(f"expected one row of {self.num_features} features, got an array of shape {a.shape}")
        if a.shape[0] != self.num_features:
            raise SchemaError(
                f"expected {self.num_features} features, got {a.shape[0]}; the model was trained on "
                f"{self.num_features} columns"
            )
        return np.ascontiguousarray(a)

    def _as_float64(self, X: Any) -> np.ndarray:
        if isinstance(X, np.ndarray):
            a = X
        else:
            try:
                a = np.asarray(X)
            except (ValueError, TypeError) as e:
                raise SchemaError(f"cannot read the input as a numeric array: {e}") from None
        kind = a.dtype.kind
        if kind == "f" and a.dtype.itemsize == 8:
            return a
        if kind in "fiub":
            return a.astype(np.float64)
        raise SchemaError(
            f"expected numeric features (float or int), got an array of dtype {a.dtype}; "
            "encode strings and categories as numbers first"
        )

    def _as_matrix(self, X: Any) -> np.ndarray:
        a = self._as_float64(X)
        if a.ndim == 1:
            a = a.reshape(1, -1)
        elif a.ndim != 2:
            raise SchemaError(f"expected a 1-D row or a 2-D batch of rows, got {a.ndim} dimensions")
        if a.shape[1] != self.num_features:
            raise SchemaError(
                f"expected {self.num_features} features, got {a.shape[1]}; the model was trained on "
                f"{self.num_features} columns"
            )
        return np.ascontiguousarray(a)

    def _iterations(self, start_iteration: int, num_iteration: int | None) -> tuple[int, int]:
        """LightGBM's InitPredict: clamp the start, then take num_iteration (<= 0 or None: all)."""
        total = self.num_iterations
        start = min(max(int(start_iteration), 0), total)
        if num_iteration is None or num_iteration <= 0:
            return start, total - start
        return start, min(int(num_iteration), total - start)

    # ------------------------------------------------------------------ scoring

    def predict(
        self,
        X: Any,
        *,
        raw_score: bool = False,
        start_iteration: int = 0,
        num_iteration: int | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Score rows ``X`` (n, num_features) or one row (num_features,).

        Returns shape (n,) or (n, num_class) as ``Booster.predict`` does; ``out`` is
        filled and returned when given (float64, C-contiguous, that shape).
        """
        if start_iteration == 0 and num_iteration is None:
            start, count = 0, self.num_iterations
        else:
            start, count = self._iterations(start_iteration, num_iteration)
        # Fast path: the core takes C-contiguous float64 rows and a fitting `out` as they are.
        res = self._core.predict(X, out, start, count, raw_score)
        if res is not None:
            return res
        X = self._as_matrix(X)
        res = self._core.predict(X, out, start, count, raw_score)
        if res is None:
            n = X.shape[0]
            shape = (n,) if self.num_class == 1 else (n, self.num_class)
            got = f"{out.dtype} array of shape {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
            raise SchemaError(f"out must be a writable C-contiguous float64 array of shape {shape}, got {got}")
        return res

    def bind_arms(self, shared_cols: np.ndarray, arm_rows: np.ndarray) -> ArmForestCore | None:
        """This ensemble bound to a catalogue's arms (``trees_core.ArmForestCore``), or None if it cannot be.

        ``shared_cols[j]`` is the model column of shared feature j (profile and
        context); ``arm_rows`` holds each arm's model row (shared columns ignored).
        The bound forest scores all eligible arms in one walk per tree, exactly as
        ``predict`` scores their rows. Multiclass models and trees deeper than 127
        cannot be bound; score their rows with ``predict``.
        """
        try:
            cols = np.asarray(shared_cols)
            rows = np.ascontiguousarray(arm_rows, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise SchemaError(f"bind_arms: shared_cols must be column indices and arm_rows numbers: {e}") from None
        if cols.size == 0:
            cols = cols.astype(np.intp)
        if cols.ndim != 1 or cols.dtype.kind not in "iu" or len(set(cols.tolist())) != cols.shape[0] or (
                cols.size and not (0 <= cols.min() and cols.max() < self.num_features)):
            raise SchemaError(
                f"bind_arms: shared_cols must be distinct integer model columns in [0, {self.num_features})"
            )
        x_col = np.full(self.num_features, -1, dtype=np.int32)
        x_col[cols] = np.arange(cols.shape[0], dtype=np.int32)
        if rows.ndim != 2 or rows.shape[1] != self.num_features or rows.shape[0] == 0:
            raise SchemaError(f"bind_arms: arm_rows must be (n_arms, {self.num_features}), got shape {rows.shape}")
        try:
            return ArmForestCore(self._core, x_col, cols.shape[0], rows)
        except ValueError:  # multiclass, or a tree deeper than the bound walk's stack
            return None

    def bind(self, catalog: Catalog) -> TreeScorer:
        """This ensemble bound to a catalogue (``nba.base.Model``): one row per arm, scored in one core call.

        The model's ``feature_names`` are mapped to the catalogue's columns
        (``Catalog.layout``); a multiclass model is refused (``ConfigError``).
        """
        return TreeScorer(self, catalog)

    # ------------------------------------------------------------------ introspection

    @property
    def row_kernel(self) -> str:
        """The kernel scoring this model now: "bitvector-avx512", "bitvector-avx2", "lanes" or "lanes-categorical".

        The bitvector kernels serve numerical trees of up to 32 leaves on CPUs with AVX2
        or AVX-512 VBMI, and of up to 64 with AVX-512; ``NBA_TREE_KERNEL`` (auto, avx512,
        avx2, lanes) caps the choice.
        """
        return str(self._core.row_kernel)

    @property
    def bitvector_declined(self) -> str | None:
        """Why the bitvector kernels cannot serve this model (e.g. "categorical splits"), or None if they can."""
        declined = self._core.bitvector_declined
        return None if declined is None else str(declined)

    def summary(self) -> Summary:
        """Format and version; objective, tree and leaf counts, depth, features, classes (prints as a table).

        Also the row kernel that scores the model on this machine now (``row_kernel``) and,
        when it is not a bitvector one, why (``bitvector_declined``).
        """
        leaves, depth, ncat = self._parsed_stats
        details = {
            "objective": self.objective,
            "trees": self.num_trees,
            "iterations": self.num_iterations,
            "classes": self.num_class,
            "leaves": leaves,
            "max_depth": depth,
            "features": self.num_features,
            "categorical_splits": ncat,
            "average_output": self.average_output,
            "row_kernel": self.row_kernel,
        }
        if self.bitvector_declined is not None:
            details["bitvector_declined"] = self.bitvector_declined
        rows = {"format": "lightgbm", "version": self.version, **details}
        width = max(map(len, rows))
        text = "\n".join(f"{k:<{width}}  {v}" for k, v in rows.items())
        return Summary(format="lightgbm", version=self.version, details=details, text=text)

    def model_to_string(self) -> str:
        """The LightGBM model text this ensemble was built from."""
        return self._text

    def __repr__(self) -> str:
        return (
            f"TreeEnsemble(objective={self.objective!r}, trees={self.num_trees}, "
            f"features={self.num_features}, classes={self.num_class}, version={self.version!r})"
        )

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_from_text, (self._text,))


class TreeScorer:
    """A ``TreeEnsemble`` bound to a catalogue (``nba.base.FusedScorer``): all eligible arms in one core call.

    ``forest`` scores all eligible arms in one walk per tree (exact) and is what the
    fused decision kernel runs; None when the ensemble cannot be bound (trees too
    deep), and then the arms' rows are filled and scored with ``predict``.
    """

    __slots__ = ("forest", "layout", "model", "score_bounds", "version")

    def __init__(self, model: TreeEnsemble, catalog: Catalog) -> None:
        if model.num_class != 1:
            raise ConfigError(
                f"a tree model used to score arms must output one score per row; this one has "
                f"{model.num_class} classes (train a binary or regression model over arm rows)"
            )
        self.layout = catalog.layout(model.feature_names or catalog.feature_names)
        catalog.schema.check_categorical(
            self.layout.feature_names, model.categorical_features, model.pandas_categorical
        )
        self.model = model
        self.version = str(model.version)
        self.score_bounds = model.score_bounds
        self.forest = model.bind_arms(self.layout.shared_cols, self.layout.template)

    def buffers(self, n_arms: int) -> dict[str, np.ndarray]:
        """The forest's accumulator ("acc"), or the arms' rows ("rows") for ``predict``."""
        if self.forest is not None:
            return {"acc": np.empty(n_arms)}
        return {"rows": np.empty((n_arms, self.layout.n_features))}

    def score(self, x: np.ndarray, idx: np.ndarray, out: np.ndarray, buf: dict[str, np.ndarray]) -> None:
        """Scores of arms ``idx`` for the shared vector ``x`` into ``out``."""
        if self.forest is not None:
            self.forest.scores(x, idx, buf["acc"], out)
        else:
            self.model.predict(self.layout.fill(x, idx, out=buf["rows"]), out=out)


def _categorical_info(
    text: str, names: tuple[str, ...], name: str
) -> tuple[tuple[str, ...], tuple[tuple[Any, ...], ...] | None]:
    """The natively categorical features (the ``[categorical_feature: ...]`` parameter, else ``feature_infos``)
    and ``pandas_categorical``, read from the model text's header and trailer."""
    cat: list[str] = []
    param = text.rfind("\n[categorical_feature: ")
    if param >= 0:
        line = text[param + 1 : text.find("\n", param + 1)].rstrip("\r]")
        for tok in line.partition(":")[2].split(","):
            tok = tok.strip()
            if tok.isdigit() and int(tok) < len(names):
                cat.append(names[int(tok)])
            elif tok in names:
                cat.append(tok)
    else:
        head = text[: text.find("\nTree=")]
        for line in head.split("\n"):
            if line.startswith("feature_infos="):
                infos = line.partition("=")[2].split()
                cat = [n for n, info in zip(names, infos) if info != "none" and not info.startswith("[")]
    pandas: tuple[tuple[Any, ...], ...] | None = None
    at = text.rfind("\npandas_categorical:")
    if at >= 0:
        end = text.find("\n", at + 1)
        raw = text[at + len("\npandas_categorical:") : None if end < 0 else end].strip()
        try:
            lists = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise ModelFormatError(f"{name}: pandas_categorical is not valid JSON: {raw[:60]!r}") from None
        if lists is not None:
            if not isinstance(lists, list) or not all(isinstance(c, list) for c in lists):
                raise ModelFormatError(f"{name}: pandas_categorical must be a list of category lists")
            pandas = tuple(tuple(c) for c in lists)
    return tuple(dict.fromkeys(cat)), pandas


def _from_text(text: str) -> TreeEnsemble:
    """Unpickle: rebuild from the model text."""
    return TreeEnsemble(text)


def load_lightgbm(source: Any, *, max_bytes: int = DEFAULT_MAX_BYTES) -> TreeEnsemble:
    """Load a LightGBM model: a path, the model text (str/bytes), or a ``lightgbm.Booster``.

    ``max_bytes`` caps what is read from a file (see ``nba.models.read_model_file``).
    Raises ``ModelFormatError`` naming the line or tree for anything that is not a
    complete, consistent LightGBM text model or uses an unsupported option (linear trees).
    """
    text, name = _decode(source, max_bytes)
    return TreeEnsemble(text, _name=name)

