"""Fuzzing the LightGBM loader: damaged model files load or raise ModelFormatError, never worse.

Real models (regression with missing values, binary with a categorical column,
multiclass) are mutated in many seeded ways: truncation, byte flips, line edits,
numbers swapped for huge/negative/non-numeric values, out-of-range child and
feature indices, cycles, absurd declared sizes, plain junk. For each mutant,
``nba.load_model`` must either raise exactly ``nba.ModelFormatError`` or return a
model that then scores random rows (NaN, +-inf, +-0.0, huge values) without any
exception and with finite-or-NaN output.

Some mutants are stricter: a file truncated before ``end of trees`` must be
rejected or score exactly like the intact model (never silently lose trees), and
structurally impossible trees (child or feature index out of range, a cycle,
``num_leaves`` disagreeing with the arrays) must be rejected.

The cases run in a child process so that a segfault, an abort or an endless loop
in the compiled kernel is reported as a failure naming the mutant, and the
remaining mutants still run. The child also caps its address space, so an
allocation sized by a corrupted count fails fast instead of exhausting memory.
The worker machinery is ``tests.models.fuzzing``, shared by every loader's fuzz.
"""

from __future__ import annotations

import math
import os
import random
import re

import numpy as np
import pytest

from tests.models.fuzzing import (
    Case,
    assert_all_safe,
    error_verdict,
    report,
    run_isolated,
)

CASE_TIMEOUT_S = 30.0  # no single mutant may take this long: loading and scoring is milliseconds
ADDRESS_SPACE_LIMIT = 2 << 30  # bytes; the worker needs ~0.5 GiB of address space
N_ROWS = 12
MAX_FEATURES_TO_SCORE = 10_000

WEIRD_NUMBERS = [
    "1e308",
    "-1e308",
    "1e400",
    "-1e400",
    "99999999999999999999999",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967296",
    "-1",
    "-2",
    "0",
    "nan",
    "inf",
    "-inf",
    "1e-320",
    "abc",
    "",
    "0x10",
    "1.5.5",
    "--3",
    "1e",
    "+",
    "٣",  # a non-ASCII digit
    "1_000",
]


# --------------------------------------------------------------------------- the intact models


@pytest.fixture(scope="module")
def base_models() -> list[bytes]:
    """Small real models covering numerical, categorical, missing-value and multiclass paths."""
    lgb = pytest.importorskip("lightgbm")
    rng = np.random.default_rng(5150)
    n = 400
    out = []

    X = rng.standard_normal((n, 5))
    X[rng.random((n, 5)) < 0.15] = np.nan
    y = np.nan_to_num(X[:, 0]) - 2 * np.isnan(X[:, 1]) + 0.1 * rng.standard_normal(n)
    params = {"objective": "regression", "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1, "num_threads": 1}
    out.append(lgb.train(params, lgb.Dataset(X, y), 4).model_to_string())

    X = rng.standard_normal((n, 4))
    X[:, 2] = rng.integers(0, 8, n)
    X[rng.random((n, 4)) < 0.05] = np.nan
    y = ((np.nan_to_num(X[:, 0]) + np.isin(X[:, 2], [1, 3, 6])) > 0.5).astype(float)
    params = {
        "objective": "binary",
        "num_leaves": 6,
        "min_data_in_leaf": 5,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        "max_cat_to_onehot": 2,
        "verbose": -1,
        "num_threads": 1,
    }
    out.append(lgb.train(params, lgb.Dataset(X, y, categorical_feature=[2]), 4).model_to_string())

    X = rng.standard_normal((n, 3))
    X[:, 1] = rng.integers(0, 3, n)
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.3, 0.8]).astype(float)
    params = {
        "objective": "multiclass",
        "num_class": 3,
        "num_leaves": 4,
        "min_data_in_leaf": 5,
        "min_data_per_group": 5,
        "max_cat_to_onehot": 8,
        "verbose": -1,
        "num_threads": 1,
    }
    out.append(lgb.train(params, lgb.Dataset(X, y, categorical_feature=[1]), 2).model_to_string())
    return [s.encode() for s in out]


# --------------------------------------------------------------------------- mutations


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines)


def _trees_end(data: bytes) -> int:
    i = data.find(b"end of trees")
    return i if i >= 0 else len(data)


def truncations(bases: list[bytes], rnd: random.Random, per_base: int) -> list[Case]:
    cases = []
    for b, data in enumerate(bases):
        end = _trees_end(data)
        offsets = set(range(min(len(data), 64)))  # inside the header's first lines
        offsets |= {m.start() for m in re.finditer(rb"\n", data[: end + 20])}  # at line ends
        offsets |= {m.start() + 1 for m in re.finditer(rb"[ =]", data[:end])}  # after separators
        offsets |= {rnd.randrange(len(data)) for _ in range(per_base)}
        picked = sorted(offsets)
        if len(picked) > per_base:
            picked = sorted(rnd.sample(picked, per_base))
        for off in picked:
            require = "reject_or_identical" if off <= end else "safe"
            cases.append(Case(f"truncate base{b} at byte {off}/{len(data)}", data[:off], b, require=require))
    return cases


def byte_edits(bases: list[bytes], rnd: random.Random, per_base: int) -> list[Case]:
    cases = []
    for b, data in enumerate(bases):
        end = _trees_end(data)
        for k in range(per_base):
            buf = bytearray(data)
            pos = rnd.randrange(end)
            op = k % 5
            if op == 0:
                bit = rnd.randrange(8)
                buf[pos] ^= 1 << bit
                label = f"flip bit {bit} of byte {pos}"
            elif op == 1:
                n = rnd.randint(1, 4)
                new = bytes(rnd.randrange(256) for _ in range(n))
                buf[pos : pos + n] = new
                label = f"overwrite bytes {pos}..{pos + n} with {new!r}"
            elif op == 2:
                new = bytes(rnd.choice(b"0123456789-.e =\n\r\t\x00") for _ in range(rnd.randint(1, 3)))
                buf[pos:pos] = new
                label = f"insert {new!r} at byte {pos}"
            elif op == 3:
                n = rnd.randint(1, 40)
                del buf[pos : pos + n]
                label = f"delete bytes {pos}..{pos + n}"
            else:
                new = rnd.choice([b"\x00", b"\xff", b"\xc3", b"\r", b"\xe2\x80\xa8", b"\t"])
                buf[pos : pos + 1] = new
                label = f"replace byte {pos} with {new!r}"
            cases.append(Case(f"base{b}: {label}", bytes(buf), b))
    return cases


def line_edits(bases: list[bytes], rnd: random.Random, per_base: int) -> list[Case]:
    cases = []
    for b, data in enumerate(bases):
        lines = _lines(data)
        n_tree_lines = next((i for i, s in enumerate(lines) if s.startswith(b"end of trees")), len(lines))
        for k in range(per_base):
            ls = list(lines)
            i = rnd.randrange(n_tree_lines)
            j = rnd.randrange(n_tree_lines)
            op = k % 6
            if op == 0:
                del ls[i]
                label = f"delete line {i} ({lines[i][:30]!r})"
            elif op == 1:
                ls.insert(i, ls[i])
                label = f"duplicate line {i} ({lines[i][:30]!r})"
            elif op == 2:
                ls[i], ls[j] = ls[j], ls[i]
                label = f"swap lines {i} and {j}"
            elif op == 3:
                ls[i] = b""
                label = f"blank line {i} ({lines[i][:30]!r})"
            elif op == 4:
                other = _lines(bases[rnd.randrange(len(bases))])
                ls[i] = other[rnd.randrange(len(other))]
                label = f"replace line {i} with {ls[i][:30]!r} from another model"
            else:
                key, sep, value = ls[i].partition(b"=")
                vals = value.split(b" ")
                if sep and len(vals) > 1:
                    drop = rnd.randrange(len(vals))
                    del vals[drop]
                    ls[i] = key + sep + b" ".join(vals)
                    label = f"drop value {drop} of line {i} ({key!r})"
                else:
                    ls[i] = ls[i] + b" 0"
                    label = f"append ' 0' to line {i} ({lines[i][:30]!r})"
            cases.append(Case(f"base{b}: {label}", _join(ls), b))
    return cases


_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def number_swaps(bases: list[bytes], rnd: random.Random, per_base: int) -> list[Case]:
    cases = []
    for b, data in enumerate(bases):
        spans = [m.span() for m in _NUMBER.finditer(data, 0, _trees_end(data))]
        for _ in range(per_base):
            s, e = rnd.choice(spans)
            new = rnd.choice(WEIRD_NUMBERS).encode()
            line_start = data.rfind(b"\n", 0, s) + 1
            key = data[line_start : data.find(b"\n", s)].partition(b"=")[0][:24]
            cases.append(Case(f"base{b}: number {data[s:e]!r} in {key!r} -> {new!r}", data[:s] + new + data[e:], b))
    return cases


def _tree_blocks(lines: list[bytes]) -> list[tuple[int, int]]:
    """(first, last+1) line indices of each ``Tree=`` block."""
    starts = [i for i, s in enumerate(lines) if s.startswith(b"Tree=")]
    end = next((i for i, s in enumerate(lines) if s.startswith(b"end of trees")), len(lines))
    return [(s, (starts[k + 1] if k + 1 < len(starts) else end)) for k, s in enumerate(starts)]


def _field(lines: list[bytes], lo: int, hi: int, key: bytes) -> int | None:
    for i in range(lo, hi):
        if lines[i].startswith(key + b"="):
            return i
    return None


def _set_value(line: bytes, index: int, value: object) -> bytes:
    key, _, rest = line.partition(b"=")
    vals = rest.split(b" ")
    vals[index] = str(value).encode()
    return key + b"=" + b" ".join(vals)


def _key(line: bytes) -> str:
    return line.partition(b"=")[0].decode()


def _ints(line: bytes) -> list[int]:
    return [int(v) for v in line.partition(b"=")[2].split()]


def structural(bases: list[bytes], rnd: random.Random, per_base: int) -> list[Case]:
    """Targeted edits of the fields that index arrays: the loader must check every one."""
    cases = []

    def add(b: int, label: str, ls: list[bytes], require: str = "safe") -> None:
        cases.append(Case(f"base{b}: {label}", _join(ls), b, require=require))

    for b, data in enumerate(bases):
        lines = _lines(data)
        header = {ln.partition(b"=")[0]: i for i, ln in enumerate(lines[:20]) if b"=" in ln}
        n_features = int(lines[header[b"max_feature_idx"]].partition(b"=")[2]) + 1
        blocks = _tree_blocks(lines)
        for _ in range(per_base):
            lo, hi = rnd.choice(blocks)
            t = lines[lo].decode()
            ls = list(lines)
            i_leaves = _field(ls, lo, hi, b"num_leaves")
            num_leaves = int(ls[i_leaves].partition(b"=")[2])
            i_feat = _field(ls, lo, hi, b"split_feature")
            i_left = _field(ls, lo, hi, b"left_child")
            i_right = _field(ls, lo, hi, b"right_child")
            kind = rnd.randrange(14)
            if num_leaves < 2 and kind < 7:
                kind = 7 + kind % 7  # single-leaf trees have no split arrays to corrupt
            if kind == 0:
                node = rnd.randrange(num_leaves - 1)
                v = rnd.choice([n_features, n_features + 1, -1, -2, 2**31 - 1, 10**12])
                ls[i_feat] = _set_value(ls[i_feat], node, v)
                add(b, f"{t} split_feature[{node}] = {v} (model has {n_features} features)", ls, "reject")
            elif kind == 1:
                node = rnd.randrange(num_leaves - 1)
                i = rnd.choice([i_left, i_right])
                v = rnd.choice([num_leaves - 1, num_leaves, -num_leaves - 1, -num_leaves - 5, 10**9, -(10**9), 2**31])
                ls[i] = _set_value(ls[i], node, v)
                add(b, f"{t} {_key(ls[i])}[{node}] = {v} (out of range, num_leaves={num_leaves})", ls, "reject")
            elif kind == 2:
                # A child pointing at itself or at an ancestor: traversal would never end.
                node = rnd.randrange(num_leaves - 1)
                target = rnd.choice([node, 0])
                i = rnd.choice([i_left, i_right])
                ls[i] = _set_value(ls[i], node, target)
                add(b, f"{t} {_key(ls[i])}[{node}] = {target} (a cycle)", ls, "reject")
            elif kind == 3:
                node = rnd.randrange(num_leaves - 1)
                kids = _ints(ls[i_left]) + _ints(ls[i_right])
                v = rnd.choice(kids)
                i = rnd.choice([i_left, i_right])
                ls[i] = _set_value(ls[i], node, v)
                add(b, f"{t} {_key(ls[i])}[{node}] = {v} (a node or leaf reached twice)", ls)
            elif kind == 4:
                v = rnd.choice([num_leaves - 1, num_leaves + 1, num_leaves * 2])
                ls[i_leaves] = b"num_leaves=%d" % v
                add(b, f"{t} num_leaves = {v} (arrays have {num_leaves})", ls, "reject")
            elif kind == 5:
                v = rnd.choice([10**9, 2**31 - 1, 2**31, 2**63, -(2**31)])
                ls[i_leaves] = b"num_leaves=%d" % v
                add(b, f"{t} num_leaves = {v} (huge)", ls, "reject")
            elif kind == 6:
                i_dt = _field(ls, lo, hi, b"decision_type")
                node = rnd.randrange(num_leaves - 1)
                v = rnd.choice([1, 3, 9, 12, 14, 15, 16, 64, 127, 128, 255, -1])
                ls[i_dt] = _set_value(ls[i_dt], node, v)
                # 1/3/9 turn a numerical split into a categorical one whose category
                # index may not exist; the others are undefined bits.
                add(b, f"{t} decision_type[{node}] = {v}", ls)
            elif kind == 7:
                i_cat = _field(ls, lo, hi, b"num_cat")
                v = rnd.choice([1, 2, 1000, 10**9, -1])
                ls[i_cat] = b"num_cat=%d" % v
                add(b, f"{t} num_cat = {v}", ls)
            elif kind == 8:
                i_cb = _field(ls, lo, hi, b"cat_boundaries")
                i_ct = _field(ls, lo, hi, b"cat_threshold")
                if i_cb is None:
                    # a categorical split referring to cat_boundaries that do not exist
                    i_dt = _field(ls, lo, hi, b"decision_type")
                    if num_leaves < 2:
                        continue
                    node = rnd.randrange(num_leaves - 1)
                    ls[i_dt] = _set_value(ls[i_dt], node, 1)
                    ls[_field(ls, lo, hi, b"num_cat")] = b"num_cat=1"
                    add(b, f"{t} decision_type[{node}] categorical, num_cat=1, no cat_boundaries", ls, "reject")
                else:
                    which = rnd.choice(["boundary", "threshold", "drop"])
                    if which == "boundary":
                        vals = _ints(ls[i_cb])
                        k = rnd.randrange(len(vals))
                        v = rnd.choice([10**6, -1, len(_ints(ls[i_ct])) + 1, 2**31])
                        ls[i_cb] = _set_value(ls[i_cb], k, v)
                        add(b, f"{t} cat_boundaries[{k}] = {v} (cat_threshold has {len(_ints(ls[i_ct]))})", ls, "reject")
                    elif which == "threshold":
                        k = rnd.randrange(len(_ints(ls[i_ct])))
                        v = rnd.choice([0, 2**32 - 1, 2**32, -1, 2**64])
                        ls[i_ct] = _set_value(ls[i_ct], k, v)
                        add(b, f"{t} cat_threshold[{k}] = {v}", ls)
                    else:
                        del ls[i_ct]
                        add(b, f"{t} cat_threshold line removed", ls, "reject")
            elif kind == 9:
                i_ts = header.get(b"tree_sizes")
                v = rnd.choice(["huge", "many", "zero", "short"])
                if v == "huge":
                    ls[i_ts] = b"tree_sizes=" + b" ".join([b"18446744073709551615"] * len(blocks))
                elif v == "many":
                    ls[i_ts] = b"tree_sizes=" + b" ".join([b"1"] * 200_000)
                elif v == "zero":
                    ls[i_ts] = b"tree_sizes=" + b" ".join([b"0"] * len(blocks))
                else:
                    ls[i_ts] = b"tree_sizes=" + b" ".join(ls[i_ts].partition(b"=")[2].split()[:-1])
                add(b, f"tree_sizes {v}", ls)
            elif kind == 10:
                key = rnd.choice([b"num_class", b"num_tree_per_iteration"])
                v = rnd.choice([0, -1, 10**9, 2**31, 7])
                ls[header[key]] = key + b"=%d" % v
                # A non-positive count, or more trees per iteration than the model has, is impossible;
                # a num_class that disagrees may be ignored, as long as nothing is sized by it.
                require = "reject" if v <= 0 or (key == b"num_tree_per_iteration" and v > 100) else "safe"
                add(b, f"{key.decode()} = {v}", ls, require)
            elif kind == 11:
                v = rnd.choice([-1, -2, n_features, n_features - 2, 10**9, 2**31])
                ls[header[b"max_feature_idx"]] = b"max_feature_idx=%d" % v
                # feature_names no longer has max_feature_idx + 1 entries
                add(b, f"max_feature_idx = {v} (feature_names has {n_features})", ls, "reject")
            elif kind == 12:
                v = rnd.choice([10**9, 2**31, 123456])
                ls[lo] = b"Tree=%d" % v
                add(b, f"{t} renumbered Tree={v}", ls)
            else:
                # Copies of one tree appended many times: a declared count far beyond the real one.
                n = rnd.choice([2, 50])
                block = ls[lo:hi]
                end = next(k for k, s in enumerate(ls) if s.startswith(b"end of trees"))
                ls[end:end] = block * n
                add(b, f"{t} appended {n} more times without updating tree_sizes", ls)
    return cases


def junk(bases: list[bytes], rnd: random.Random, n: int) -> list[Case]:
    head = bases[0][: bases[0].find(b"Tree=")]
    fixed = [
        ("empty", b""),
        ("whitespace", b" \n\n\t\n"),
        ("'tree' only", b"tree\n"),
        ("'tree' with CRLF only", b"tree\r\n"),
        ("header only", head),
        ("header then 'end of trees'", head + b"end of trees\n"),
        ("NUL bytes", b"\x00" * 4096),
        ("invalid UTF-8", b"tree\nversion=v4\nnum_class=1\nfeature_names=\xff\xfe\n"),
        ("UTF-16 text", bases[0].decode().encode("utf-16")),
        ("gzip magic", b"\x1f\x8b\x08\x00" + bytes(200)),
        ("very long line", b"tree\nversion=v4\nfeature_names=" + b"f " * 500_000 + b"\n"),
        ("a million '=' signs", b"tree\n" + b"=" * 1_000_000),
        ("many Tree= lines", b"tree\n" + b"Tree=0\n" * 50_000),
        ("JSON dump", b'{"name": "tree", "version": "v4", "tree_info": []}'),
        ("VW-looking text", b"Version 9.11.9\nId \nMin label:-1\n"),
        ("model repeated twice", bases[0] + bases[0]),
        ("CRLF line endings", bases[1].replace(b"\n", b"\r\n")),
        ("Windows and Unix line endings mixed", bases[2].replace(b"\n", b"\r\n", 40)),
    ]
    cases = [Case(f"junk: {label}", data, 0) for label, data in fixed]
    for k in range(n):
        size = rnd.choice([1, 7, 64, 1000, 20_000])
        noise = bytes(rnd.randrange(256) for _ in range(size))
        prefix = rnd.choice([b"", b"tree\n", head])
        cases.append(Case(f"junk: {len(prefix)}-byte prefix + {size} random bytes (#{k})", prefix + noise, 0))
    return cases


# --------------------------------------------------------------------------- the worker (child process)


def _rows(n_features: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_ROWS, n_features)) * 2
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, -1e300, 1.0, 2.0, 3.0, -1.0, 1e10])
    mask = rng.random(X.shape) < 0.35
    X[mask] = rng.choice(specials, size=int(mask.sum()))
    X[0] = 0.0
    X[1] = np.nan
    return X


def _has_extreme_values(data: bytes) -> bool:
    """True if leaf values or shrinkage contain non-finite or overflow-prone numbers (inf output is then fair)."""
    for m in re.finditer(rb"^(?:leaf_value|shrinkage|internal_value)=(.*)$", data, re.MULTILINE):
        for tok in m.group(1).split():
            try:
                v = float(tok)
            except ValueError:
                continue
            if not math.isfinite(v) or abs(v) > 1e300:
                return True
    return b"sigmoid:" in data and re.search(rb"sigmoid:(?!1\b)", data) is not None


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def _score(model, data: bytes, seed: int) -> tuple[dict | None, np.ndarray | None]:
    """Score random rows with a loaded model; returns (failure verdict or None, scores)."""
    nf = model.num_features
    if not isinstance(nf, (int, np.integer)) or nf < 1:
        return {"kind": "error", "where": "num_features", "type": "bad value", "msg": repr(nf)}, None
    if nf > MAX_FEATURES_TO_SCORE:
        return None, None
    X = _rows(nf, seed)
    step = "predict"
    try:
        out = np.asarray(model.predict(X))
        step = "predict(raw_score=True)"
        raw = np.asarray(model.predict(X, raw_score=True))
        step = "predict_row"
        one = np.asarray(model.predict_row(X[0]), dtype=np.float64)
    except BaseException as e:  # noqa: BLE001 - any exception from a loaded model is the failure
        return error_verdict(step, e), None
    for name, arr in (("predict", out), ("raw", raw)):
        if arr.dtype != np.float64 or arr.shape[:1] != (N_ROWS,):
            return {"kind": "error", "where": name, "type": "bad output", "msg": f"{arr.dtype} {arr.shape}"}, None
        if np.isinf(arr).any() and not _has_extreme_values(data):
            return {"kind": "error", "where": name, "type": "inf output", "msg": f"{arr.ravel()[:6]}"}, None
    if not _same(one.reshape(-1), out[0].reshape(-1)):
        return {"kind": "error", "where": "predict_row", "type": "mismatch", "msg": f"{one} != {out[0]}"}, None
    return None, out


_BASE_SCORES: dict = {}  # per worker process: scores of the intact models, computed once


def run_case(case: Case, bases: list[bytes], tmpdir: str, seed: int) -> dict:
    """The fuzzing runner (in a worker process): load one mutant, then score it."""
    import nba

    base_scores = _BASE_SCORES
    try:
        if case.via == "path":
            path = os.path.join(tmpdir, "mutant.txt")
            with open(path, "wb") as f:
                f.write(case.data)
            model = nba.load_model(path, format="lightgbm")
        else:
            model = nba.load_model(case.data, format="lightgbm")
    except nba.ModelFormatError as e:
        if not str(e).strip():
            return {"kind": "error", "where": "load", "type": "ModelFormatError", "msg": "empty message"}
        return {"kind": "rejected"}
    except BaseException as e:  # noqa: BLE001 - anything but ModelFormatError is the failure
        return error_verdict("load", e)
    if case.require == "reject":
        return {"kind": "error", "where": "load", "type": "accepted", "msg": "an impossible model loaded without error"}
    failure, scores = _score(model, case.data, seed)
    if failure is not None:
        return failure
    if case.require == "reject_or_identical" and scores is not None:
        if case.base not in base_scores:
            base_model = nba.load_model(bases[case.base], format="lightgbm")
            base_scores[case.base] = (base_model.num_features, np.asarray(base_model.predict(_rows(base_model.num_features, seed))))
        nf, expected = base_scores[case.base]
        if model.num_features != nf or not _same(scores, expected):
            return {
                "kind": "error",
                "where": "load",
                "type": "silently different",
                "msg": f"truncated model loaded and scores differently from the intact one "
                f"(num_trees={getattr(model, 'num_trees', '?')})",
            }
    return {"kind": "loaded"}


# --------------------------------------------------------------------------- the tests


def test_intact_models_load_and_score(base_models):
    import nba

    for data in base_models:
        model = nba.load_model(data, format="lightgbm")
        failure, scores = _score(model, data, 1)
        assert failure is None, failure
        assert scores is not None and np.isfinite(scores).all()


FAMILIES = {
    "truncate": (truncations, 220),
    "bytes": (byte_edits, 300),
    "lines": (line_edits, 220),
    "numbers": (number_swaps, 300),
    "structure": (structural, 160),
    "junk": (junk, 60),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_mutated_model_loads_or_raises_model_format_error(family, base_models, tmp_path):
    build, per_base = FAMILIES[family]
    seed = 20261123 + list(FAMILIES).index(family)
    cases = build(base_models, random.Random(seed), per_base)
    # A tenth of the mutants go through a file path rather than bytes.
    rnd = random.Random(seed + 1)
    cases = [Case(c.label, c.data, c.base, "path", c.require) if rnd.random() < 0.1 else c for c in cases]
    results = run_isolated(cases, "tests.models.test_lightgbm_fuzz:run_case", base_models, tmp_path, seed,
                           case_timeout=CASE_TIMEOUT_S, address_limit=ADDRESS_SPACE_LIMIT)
    counts = assert_all_safe(cases, results)
    report(f"lightgbm text, {family}", counts, len(cases))
    # The mutants must reach the parser's deeper paths, not all bounce off the first line.
    if family in ("numbers", "structure", "lines"):
        assert counts.get("loaded", 0) > 0, f"no {family} mutant loaded: the mutations never reach the kernel"
