"""The bitvector row kernels (nba._core.trees_qs.h) against LightGBM, on each path, and what they decline.

Every parity check runs under each row kernel this CPU runs (the ``tree_kernel``
fixture forces it); the mutation checks corrupt one rank, mask, lane or leaf of the
bitvector tables in place and show that the parity check then fails, so a kernel
that read the wrong one could not pass.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from nba._core import trees as trees_core
from nba.errors import ConfigError
from nba.models.lightgbm import TreeEnsemble, load_lightgbm

lgb = pytest.importorskip("lightgbm")
from tests.models import lightgbm_cases as cases  # noqa: E402
from tests.models.conftest import kernel_name  # noqa: E402

pytestmark = pytest.mark.usefixtures("tree_kernel")


def _edge_rows(booster: lgb.Booster, rng: np.random.Generator, n: int = 400) -> np.ndarray:
    """cases.probe's rows, then one row per threshold of every feature: on it and one ulp either side."""
    X = cases.probe(booster, rng, n)
    extra = []
    for f, ts in cases.numerical_thresholds(booster.model_to_string()).items():
        for t in np.unique(ts):
            for v in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)):
                row = X[len(extra) % n].copy()
                row[f] = v
                extra.append(row)
    specials = np.repeat(X[:1], len(cases.SPECIALS) * X.shape[1], axis=0)
    for k in range(specials.shape[0]):
        specials[k, k % X.shape[1]] = cases.SPECIALS[k // X.shape[1]]
    return np.vstack([X, np.array(extra).reshape(-1, X.shape[1]), specials])


def _exact(booster: lgb.Booster, model: TreeEnsemble, X: np.ndarray) -> bool:
    """Batch and one-row raw scores both equal Booster.predict(raw_score=True), bit for bit."""
    raw = booster.predict(X, raw_score=True)
    rows = np.array([model.predict_row(r, raw_score=True) for r in X]).reshape(raw.shape)
    return bool(np.array_equal(model.predict(X, raw_score=True), raw) and np.array_equal(rows, raw))


def _check(booster: lgb.Booster, X: np.ndarray) -> TreeEnsemble:
    model = load_lightgbm(booster)
    raw = booster.predict(X, raw_score=True)
    np.testing.assert_array_equal(model.predict(X, raw_score=True), raw)
    rows = np.array([model.predict_row(r, raw_score=True) for r in X]).reshape(raw.shape)
    np.testing.assert_array_equal(rows, raw)
    return model


# ----------------------------------------------------------------------------- choosing the kernel


def test_row_kernel_follows_the_ask_and_the_cpu(rng: np.random.Generator, tree_kernel: str) -> None:
    X, z = cases.data(rng)
    model = load_lightgbm(cases.train({"objective": "regression"}, X, z))
    assert model.row_kernel == kernel_name(tree_kernel)
    assert model.bitvector_declined is None
    best = trees_core.cpu_row_kernels()[0]
    prev = trees_core.set_row_kernel("auto")
    try:
        assert model.row_kernel == kernel_name(best)
        for ask in trees_core.cpu_row_kernels():
            trees_core.set_row_kernel(ask)
            assert model.row_kernel == kernel_name(ask)  # a model already loaded switches too
    finally:
        trees_core.set_row_kernel(prev)


def test_cpu_row_kernels_always_include_the_lane_chains() -> None:
    kernels = trees_core.cpu_row_kernels()
    assert kernels[-1] == "lanes"
    assert set(kernels) <= {"avx512", "avx2", "lanes"}


def test_an_unknown_row_kernel_is_refused(monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match="expected one of"):
        trees_core.set_row_kernel("sse9")
    X, z = cases.data(rng)
    text = cases.train({"objective": "regression"}, X, z).model_to_string()
    monkeypatch.setenv("NBA_TREE_KERNEL", "fastest")
    with pytest.raises(ConfigError, match="NBA_TREE_KERNEL='fastest'"):
        load_lightgbm(text)


@pytest.mark.parametrize("ask", ["lanes", "avx2", "avx512", "auto"])
def test_nba_tree_kernel_is_read_at_import(ask: str, tree_kernel: str) -> None:
    """The environment variable caps the kernel of a fresh process at the best the CPU runs."""
    if tree_kernel != "lanes":
        pytest.skip("one process per ask is enough")
    code = (
        "import numpy as np, lightgbm as lgb; from nba.models.lightgbm import load_lightgbm; "
        "X = np.random.default_rng(0).standard_normal((200, 3)); "
        "b = lgb.train({'verbose': -1, 'num_threads': 1}, lgb.Dataset(X, X[:, 0]), num_boost_round=2); "
        "print(load_lightgbm(b).row_kernel)"
    )
    env = {**os.environ, "NBA_TREE_KERNEL": ask}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    cpu = trees_core.cpu_row_kernels()
    order = ["lanes", "avx2", "avx512"]
    want = cpu[0] if ask == "auto" else max((k for k in cpu if order.index(k) <= order.index(ask)), key=order.index)
    assert out.strip() == kernel_name(want)


_STUB_PROBE = r"""
#include <Python.h>
#include "trees_qs.h"
#include <stdio.h>
int main(void) {
    nba_qs q;
    double x[1] = {0.0}, out[1] = {7.0}, acc[1] = {0.0};
    Py_ssize_t idx[1] = {0};
    memset(&q, 0, sizeof q);
    printf("%d %d %d %g\n", nba_qs_cpu(), nba_qs_row(&q, 2, x, 0, 0, 1, out, 1e-35),
           nba_qs_forest(&q, 2, x, NULL, idx, 1, acc, 1e-35), out[0]);
    return 0;
}
"""


@pytest.mark.parametrize("portable", [True, False], ids=["stubs", "x86-64"])
def test_the_kernel_header_compiles_cleanly_and_its_stubs_decline(portable: bool, tree_kernel: str, tmp_path) -> None:
    """What a wheel for another architecture compiles (NBA_QS_PORTABLE: the same stubs): no CPU support, and
    every row or forest declined untouched, so the lane chains serve; both forms warning-free."""
    import shutil
    import sysconfig
    from pathlib import Path

    if tree_kernel != "lanes":
        pytest.skip("one compile per form is enough")
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc")
    core = Path(trees_core.__file__).parent
    (tmp_path / "probe.c").write_text(_STUB_PROBE)
    cmd = [gcc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{sysconfig.get_paths()['include']}",
           f"-I{core}", str(tmp_path / "probe.c"), "-o", str(tmp_path / "probe")]
    subprocess.run(cmd + (["-DNBA_QS_PORTABLE"] if portable else []), check=True, capture_output=True)
    if portable:
        out = subprocess.run([str(tmp_path / "probe")], check=True, capture_output=True, text=True).stdout
        assert out.split() == ["0", "1", "1", "7"]


# ----------------------------------------------------------------------------- what falls back


def test_models_the_bitvector_kernel_declines_score_on_the_lanes(rng: np.random.Generator, tree_kernel: str) -> None:
    X, z = cases.data(rng, 3000)
    deep = cases.train({"objective": "regression", "num_leaves": 65, "min_data_in_leaf": 2}, X, z, rounds=4)
    model = _check(deep, _edge_rows(deep, rng))
    assert model.bitvector_declined == "a tree has more than 64 leaves"
    assert model.row_kernel == "lanes"
    for leaves, wide in ((32, False), (33, True), (64, True)):  # the edges of the two layouts
        booster = cases.train({"objective": "regression", "num_leaves": leaves, "min_data_in_leaf": 2}, X, z, rounds=4)
        model = _check(booster, _edge_rows(booster, rng))
        assert model.row_kernel == kernel_name(tree_kernel, wide=wide)
        avx2_only = wide and tree_kernel == "avx2"
        assert model.bitvector_declined == (
            "trees of more than 32 leaves take the bitvector kernel with AVX-512 only" if avx2_only else None)

    fine = cases.train({"objective": "regression", "max_bin": 1023, "num_leaves": 31, "min_data_in_leaf": 2},
                       X, z, rounds=60)
    assert max(len(np.unique(t)) for t in cases.numerical_thresholds(fine.model_to_string()).values()) > 255
    model = _check(fine, _edge_rows(fine, rng, 200))
    assert model.bitvector_declined == "more than 255 distinct thresholds on a feature"

    cat = cases.categorical_booster(rng, 4, 5)
    assert load_lightgbm(cat).bitvector_declined == "categorical splits"


def test_more_than_256_features_in_splits_are_declined(rng: np.random.Generator) -> None:
    X = rng.standard_normal((600, 300))
    y = X @ rng.standard_normal(300)
    booster = cases.train({"objective": "regression", "num_leaves": 31, "feature_fraction": 0.5}, X, y, rounds=40)
    model = _check(booster, cases.probe(booster, rng, 100))
    assert model.bitvector_declined == "more than 256 features in splits"


@pytest.mark.parametrize(("use_missing", "zero_as_missing"), [(True, False), (True, True), (False, False)])
def test_rows_whose_nan_or_zero_no_rank_serves_take_the_lanes(
    use_missing: bool, zero_as_missing: bool, rng: np.random.Generator, tree_kernel: str
) -> None:
    """Nodes of one feature that send NaN (or zero) different ways, out of threshold order: no single rank."""
    booster = cases.missing_booster(rng, use_missing, zero_as_missing)
    model = _check(booster, _edge_rows(booster, rng, 1500))
    assert model.row_kernel == kernel_name(tree_kernel)
    tables = model._core._bitvector_tables()
    assert tables is not None
    if use_missing:  # NaN in training: LightGBM picks each node's default direction, and they conflict
        assert (tables["rnan"] == -1).any()
    if zero_as_missing:
        assert (tables["rzero"] == -1).any()


@pytest.mark.parametrize("decision_type", [0, 2, 4, 6, 8, 10])
def test_every_missing_type_and_default_direction(decision_type: int, rng: np.random.Generator) -> None:
    text = cases.decision_type_model(rng, decision_type)
    booster = lgb.Booster(model_str=text)
    model = load_lightgbm(text)
    X = _edge_rows(booster, rng, 800)
    np.testing.assert_array_equal(model.predict(X, raw_score=True), booster.predict(X, raw_score=True))


# ----------------------------------------------------------------------------- every gather and block shape


@pytest.mark.parametrize(("n_features", "lo", "hi"), [(10, 1, 16), (28, 17, 32), (60, 33, 64), (120, 65, 128),
                                                        (240, 129, 256)])
@pytest.mark.parametrize("num_leaves", [31, 63])
def test_every_table_size_gathers_exactly(
    n_features: int, lo: int, hi: int, num_leaves: int, rng: np.random.Generator
) -> None:
    """vpermb (<= 64 features), vpermi2b (<= 128), two of them (<= 256); pshufb on 1, 2, 4 and more chunks."""
    X = rng.standard_normal((1500, n_features))
    y = X @ rng.standard_normal(n_features) + np.sin(X[:, 0])
    booster = cases.train({"objective": "regression", "num_leaves": num_leaves, "min_data_in_leaf": 3}, X, y,
                          rounds=80)
    model = _check(booster, _edge_rows(booster, rng, 300))
    tables = model._core._bitvector_tables()
    assert tables is not None and lo <= tables["fidx"].shape[0] <= hi


@pytest.mark.parametrize("rounds", [1, 5, 8, 9, 16, 17, 40])
@pytest.mark.parametrize("num_class", [1, 3])
@pytest.mark.parametrize("num_leaves", [31, 48])
def test_iteration_ranges_inside_and_across_blocks(
    rounds: int, num_class: int, num_leaves: int, rng: np.random.Generator
) -> None:
    """Blocks of 16 trees (8 in the wide layout) need not align with iterations or with the range asked for."""
    X, z = cases.data(rng, 3000)
    p = {"num_leaves": num_leaves, "min_data_in_leaf": 2}
    if num_class == 1:
        booster = cases.train({"objective": "regression", **p}, X, z, rounds=rounds)
    else:
        booster = cases.train({"objective": "multiclass", "num_class": 3, **p}, X, np.searchsorted([-0.5, 0.5], z),
                              rounds)
    model = load_lightgbm(booster)
    P = cases.probe(booster, rng, 300)
    for start in sorted({0, 1, rounds // 3, rounds - 1}):
        for num in sorted({1, 5, rounds - start}):
            if start + num > rounds:
                continue
            kw = {"start_iteration": start, "num_iteration": num}
            np.testing.assert_array_equal(model.predict(P, raw_score=True, **kw), booster.predict(P, raw_score=True, **kw))


# ----------------------------------------------------------------------------- mutations are caught


@pytest.fixture(scope="module", params=[31, 63], ids=["31-leaves", "63-leaves-wide"])
def mutable(request) -> tuple[lgb.Booster, np.ndarray, bool]:
    rng = np.random.default_rng(11)
    X, z = cases.data(rng, 4000)
    booster = cases.train({"objective": "regression", "num_leaves": request.param, "min_data_in_leaf": 2}, X, z,
                          rounds=40)
    return booster, _edge_rows(booster, rng, 600), request.param > 32


def _root_slot(tables: dict, tree: int, lanes: int) -> int:
    """The slot of a tree's root: its first node, round 0 of its block's first group, in its lane."""
    return int(tables["gstart"][tree // lanes]) * 64 + tree % lanes


@pytest.mark.parametrize("mutation", ["rank", "mask", "lane", "leaf"])
def test_a_wrong_rank_mask_lane_or_leaf_is_caught(mutation: str, mutable, tree_kernel: str) -> None:
    booster, X, wide = mutable
    model = load_lightgbm(booster)
    assert model.row_kernel == kernel_name(tree_kernel, wide=wide)
    tables = model._core._bitvector_tables()
    assert tables is not None
    assert tables["mask"].dtype == (np.uint64 if wide else np.uint32)
    assert _exact(booster, model, X)
    lanes, leaves = (8, 64) if wide else (16, 32)
    root, other = _root_slot(tables, 0, lanes), _root_slot(tables, 1, lanes)
    if mutation == "rank":  # the root compares against the next threshold: off by one rank
        tables["tix"][root] += 1
    elif mutation == "mask":  # the root, going right, no longer clears its left subtree
        tables["mask"][root] = np.iinfo(tables["mask"].dtype).max
    elif mutation == "lane":  # trees 0 and 1 swap roots
        for name in ("feat", "tix", "mask"):
            a = tables[name]
            a[root], a[other] = a[other], a[root]
    else:
        tables["leaves"][:leaves] += 1.0
    # the lanes never read these tables
    assert _exact(booster, model, X) == (model.row_kernel == "lanes")
