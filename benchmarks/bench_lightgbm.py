"""LightGBM scoring: nba against LightGBM (Python and C API) and lleaves.

Workloads: 100- and 500-tree regression models, 31 leaves, 50 features
(``workloads.lightgbm_model_file``). Three kinds of measurement, each its own
group per model size:

* ``lightgbm-row-{n}trees``: one row, best call path of each implementation;
* ``lightgbm-batch10k-{n}trees``: 10,000 rows, one thread;
* ``lightgbm-row-latency-{n}trees``: many single-row calls over varied rows, each
  timed with ``perf_counter_ns``; p50/p99/p99.9 land in ``extra_info`` (and
  ``tools/check_bench.py`` prints them). The benchmark time itself is the whole loop.
  Varied rows are the honest single-row figure: a fixed row lets the branch
  predictor learn each tree walk (lleaves: ~6.7 us fixed, 15-21 us varied);
* ``lightgbm-shape-batch10k-{shape}``: 10,000 rows on models of other shapes
  (signal in few features, shallow trees, binary, trees past the bitvector kernel).

nba runs as it dispatches (``nba``: the best row kernel this CPU runs) and, in
the same groups, forced onto each other row kernel it runs (``nba-avx2``,
``nba-lanes``; see ``nba._core.trees.set_row_kernel``), so one run gives the
figures of every path.

Before any timing, every implementation must agree with ``Booster.predict`` on a
sample of rows, so a fast wrong answer never shows up as a win.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

import nba
from benchmarks.latency import record_latency
from benchmarks.workloads import cache_dir, lightgbm_model_file, rows
from nba._core import trees as trees_core

lgb = pytest.importorskip("lightgbm")

N_FEATURES = 50
NUM_LEAVES = 31
SIZES = (100, 500)
BATCH_ROWS = 10_000
# Per-call latency sample: enough calls for a stable p99 while keeping CI short.
LATENCY_CALLS = int(os.environ.get("NBA_BENCH_LATENCY_CALLS", "5000"))
LATENCY_ROWS = 512

ROW_FLOORS = {"lightgbm": 5.0}
BATCH_FLOORS = {"lightgbm": 1.5}
# Generous floors, set to pass on the lane chains too (a CPU without AVX2): measured on the bitvector kernel
# with AVX-512 (2026-12-04, varied rows, p50): 500 trees 6.6x lleaves, 16x the C fast path; lanes ~3x, ~7x.
LATENCY_FLOORS = {"lleaves": 2.0, "lightgbm-capi": 4.0}
BATCH_LLEAVES_FLOOR = 1.2  # lanes 1.4-1.7x, bitvector AVX-512 3.9x (100 trees) and 6.4x (500 trees)
# When a bitvector kernel serves, it must beat the lane chains it replaced (measured 1.3-3.4x at 500 trees,
# 1.3-2x at 100) and never lose at 100 trees ("no slower than today").
OVER_LANES_FLOOR = {100: 0.9, 500: 1.2}
#: Row kernels besides the dispatched one that run in the same groups, as "nba-<kernel>".
FORCED_KERNELS = tuple(k for k in ("avx2", "lanes") if k in trees_core.cpu_row_kernels()[1:])

C_API_PREDICT_NORMAL = 0
C_API_DTYPE_FLOAT64 = 1


# --------------------------------------------------------------------------- references


class LightGBMFastRow:
    """LightGBM's C API single-row fast path (``LGBM_BoosterPredictForMatSingleRowFast``).

    The FastConfig is built once; each call passes a prepared row pointer, so this
    is the cheapest way to score one row with LightGBM itself.
    """

    def __init__(self, booster, n_features: int) -> None:
        from lightgbm.basic import _LIB, _safe_call

        self._lib = _LIB
        self._booster = booster  # keep the handle alive
        self._config = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(C_API_PREDICT_NORMAL),
                ctypes.c_int(0),  # start_iteration
                ctypes.c_int(-1),  # num_iteration: all
                ctypes.c_int(C_API_DTYPE_FLOAT64),
                ctypes.c_int32(n_features),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(self._config),
            )
        )
        fn = _LIB.LGBM_BoosterPredictForMatSingleRowFast
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_double)]
        fn.restype = ctypes.c_int
        self.fn = fn
        self.out = np.zeros(1)
        self._out_len = ctypes.c_int64()
        self.out_len_ref = ctypes.byref(self._out_len)
        self.out_ptr = self.out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

    def row_call(self, row: np.ndarray) -> Callable[[], object]:
        """A zero-argument callable scoring ``row`` (pointers prepared); result in ``self.out[0]``."""
        fn, cfg, ptr, n, out = self.fn, self._config, ctypes.c_void_p(row.ctypes.data), self.out_len_ref, self.out_ptr

        def call() -> int:
            return fn(cfg, ptr, n, out)

        call.row = row  # keep the buffer alive with its pointer
        return call

    def predict_one(self, row: np.ndarray) -> float:
        row = np.ascontiguousarray(row, dtype=np.float64)
        if self.row_call(row)() != 0:
            raise RuntimeError(self._lib.LGBM_GetLastError().decode())
        return float(self.out[0])

    def close(self) -> None:
        if self._config:
            self._lib.LGBM_FastConfigFree(self._config)
            self._config = ctypes.c_void_p()


def compile_lleaves(model_path) -> object:
    """An lleaves model compiled once and cached on disk (compiling 500 trees takes ~30 s)."""
    lleaves = pytest.importorskip("lleaves")
    import llvmlite
    import llvmlite.binding as llvm

    data = open(model_path, "rb").read()
    key = hashlib.sha256(data + llvmlite.__version__.encode() + llvm.get_host_cpu_name().encode()).hexdigest()[:20]
    model = lleaves.Model(model_file=str(model_path))
    model.compile(cache=str(cache_dir() / f"lleaves-{key}.bin"))
    return model


@dataclass
class Scorers:
    """Every implementation's single-row and batch call for one model, already checked for agreement."""

    n_trees: int
    row: np.ndarray  # the fixed row of the single-row benchmarks, shape (n_features,)
    latency_rows: np.ndarray  # varied rows for the latency percentiles
    batch: np.ndarray  # BATCH_ROWS x n_features
    booster: object
    model: object  # nba TreeEnsemble
    capi: LightGBMFastRow
    lleaves: object | None = None
    _closers: list = field(default_factory=list)


def _check_agreement(scorers: Scorers) -> None:
    """Assert that nba, the C API and lleaves all match ``Booster.predict`` on a sample of rows."""
    sample = np.vstack([scorers.row[None, :], scorers.latency_rows[:199]])
    ref = scorers.booster.predict(sample)
    ours = scorers.model.predict(sample)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12, err_msg="nba.predict vs Booster.predict")
    rowwise = np.array([scorers.model.predict_row(r) for r in sample], dtype=np.float64).reshape(-1)
    np.testing.assert_allclose(rowwise, ref, rtol=1e-12, atol=1e-12, err_msg="nba.predict_row vs Booster.predict")
    capi = np.array([scorers.capi.predict_one(r) for r in sample])
    np.testing.assert_allclose(capi, ref, rtol=1e-12, atol=1e-12, err_msg="C API fast path vs Booster.predict")
    batch_ref = scorers.booster.predict(scorers.batch[:2000], num_threads=1)
    np.testing.assert_allclose(scorers.model.predict(scorers.batch[:2000]), batch_ref, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module", params=SIZES, ids=[f"{n}trees" for n in SIZES])
def scorers(request) -> Scorers:
    n_trees = request.param
    path = lightgbm_model_file(n_trees, NUM_LEAVES, N_FEATURES, seed=0)
    booster = lgb.Booster(model_file=str(path))
    model = nba.load_model(path)
    s = Scorers(
        n_trees=n_trees,
        row=rows(1, N_FEATURES, seed=101)[0].copy(),
        latency_rows=rows(LATENCY_ROWS, N_FEATURES, seed=102, nan_fraction=0.02),
        batch=rows(BATCH_ROWS, N_FEATURES, seed=103),
        booster=booster,
        model=model,
        capi=LightGBMFastRow(booster, N_FEATURES),
    )
    _check_agreement(s)
    yield s
    s.capi.close()


@pytest.fixture(scope="module")
def lleaves_model(scorers: Scorers):
    """lleaves compiled for the same model, checked against ``Booster.predict``; skipped if not installed."""
    path = lightgbm_model_file(scorers.n_trees, NUM_LEAVES, N_FEATURES, seed=0)
    model = compile_lleaves(path)
    sample = np.vstack([scorers.row[None, :], scorers.latency_rows[:199]])
    np.testing.assert_allclose(
        model.predict(sample, n_jobs=1), scorers.booster.predict(sample), rtol=1e-9, atol=1e-12, err_msg="lleaves"
    )
    return model


def _lleaves_row_call(model, row: np.ndarray) -> Callable[[], object]:
    """lleaves' compiled entry point on one row through ctypes, pointers prepared."""
    out = np.zeros(1)
    fn = model._c_entry_func
    pin = row.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
    pout = out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

    def call() -> None:
        fn(pin, pout, 0, 1)

    call.keep = (row, out)
    return call


def _floors(model, base: dict, n_trees: int) -> dict:
    """``base``, and when a bitvector kernel serves ``model``, a floor against the lane chains."""
    if model.row_kernel.startswith("bitvector") and "lanes" in FORCED_KERNELS:
        return {**base, "nba-lanes": OVER_LANES_FLOOR.get(n_trees, 1.0)}
    return dict(base)


def _forced(benchmark, kernel: str, run: Callable[[], object]) -> None:
    """Run a benchmark with every model on row kernel ``kernel``."""
    prev = trees_core.set_row_kernel(kernel)
    try:
        run()
    finally:
        trees_core.set_row_kernel(prev)


# --------------------------------------------------------------------------- single row


def _row_group(s: Scorers) -> str:
    return f"lightgbm-row-{s.n_trees}trees"


def test_row_nba_predict_row(benchmark, scorers):
    benchmark.group = _row_group(scorers)
    benchmark.extra_info.update(impl="nba", floors=ROW_FLOORS, call="TreeEnsemble.predict_row(x)",
                                row_kernel=scorers.model.row_kernel)
    benchmark(scorers.model.predict_row, scorers.row)


@pytest.mark.parametrize("kernel", FORCED_KERNELS)
def test_row_nba_forced_kernel(benchmark, scorers, kernel):
    benchmark.group = _row_group(scorers)
    benchmark.extra_info.update(impl=f"nba-{kernel}", call="TreeEnsemble.predict_row(x)")
    _forced(benchmark, kernel, lambda: benchmark(scorers.model.predict_row, scorers.row))


def test_row_nba_predict_2d(benchmark, scorers):
    benchmark.group = _row_group(scorers)
    benchmark.extra_info.update(impl="nba-predict", call="TreeEnsemble.predict(x[None, :])")
    benchmark(scorers.model.predict, scorers.row[None, :])


def test_row_lightgbm_booster_predict(benchmark, scorers):
    benchmark.group = _row_group(scorers)
    benchmark.extra_info.update(impl="lightgbm", call="Booster.predict(x[None, :])")
    benchmark(scorers.booster.predict, scorers.row[None, :])


def test_row_lightgbm_c_api_fast(benchmark, scorers):
    benchmark.group = _row_group(scorers)
    benchmark.extra_info.update(impl="lightgbm-capi", call="LGBM_BoosterPredictForMatSingleRowFast via ctypes")
    benchmark(scorers.capi.row_call(scorers.row))


def test_row_lleaves(benchmark, scorers, lleaves_model):
    benchmark.group = _row_group(scorers)
    benchmark.extra_info.update(impl="lleaves", call="compiled forest_root via ctypes")
    benchmark(_lleaves_row_call(lleaves_model, scorers.row))


# --------------------------------------------------------------------------- batch of 10k rows, one thread


def _batch_group(s: Scorers) -> str:
    return f"lightgbm-batch10k-{s.n_trees}trees"


def test_batch_nba(benchmark, scorers):
    benchmark.group = _batch_group(scorers)
    floors = _floors(scorers.model, {**BATCH_FLOORS, "lleaves": BATCH_LLEAVES_FLOOR}, scorers.n_trees)
    benchmark.extra_info.update(impl="nba", floors=floors, rows=BATCH_ROWS, row_kernel=scorers.model.row_kernel)
    benchmark(scorers.model.predict, scorers.batch)


@pytest.mark.parametrize("kernel", FORCED_KERNELS)
def test_batch_nba_forced_kernel(benchmark, scorers, kernel):
    benchmark.group = _batch_group(scorers)
    benchmark.extra_info.update(impl=f"nba-{kernel}", rows=BATCH_ROWS)
    _forced(benchmark, kernel, lambda: benchmark(scorers.model.predict, scorers.batch))


def test_batch_lightgbm(benchmark, scorers):
    benchmark.group = _batch_group(scorers)
    benchmark.extra_info.update(impl="lightgbm", rows=BATCH_ROWS)
    benchmark(lambda: scorers.booster.predict(scorers.batch, num_threads=1))


def test_batch_lleaves(benchmark, scorers, lleaves_model):
    benchmark.group = _batch_group(scorers)
    benchmark.extra_info.update(impl="lleaves", rows=BATCH_ROWS)
    benchmark(lleaves_model.predict, scorers.batch, n_jobs=1)


# --------------------------------------------------------------------------- per-call latency percentiles


def _latency(benchmark, group: str, impl: str, calls: list[Callable[[], object]]) -> None:
    record_latency(benchmark, group, impl, calls, LATENCY_CALLS)


def _latency_group(s: Scorers) -> str:
    return f"lightgbm-row-latency-{s.n_trees}trees"


def test_latency_nba(benchmark, scorers):
    from functools import partial

    calls = [partial(scorers.model.predict_row, r) for r in scorers.latency_rows]
    _latency(benchmark, _latency_group(scorers), "nba", calls)
    benchmark.extra_info.update(floors=_floors(scorers.model, LATENCY_FLOORS, scorers.n_trees),
                                row_kernel=scorers.model.row_kernel)


@pytest.mark.parametrize("kernel", FORCED_KERNELS)
def test_latency_nba_forced_kernel(benchmark, scorers, kernel):
    from functools import partial

    calls = [partial(scorers.model.predict_row, r) for r in scorers.latency_rows]
    _forced(benchmark, kernel, lambda: _latency(benchmark, _latency_group(scorers), f"nba-{kernel}", calls))


def test_latency_lightgbm(benchmark, scorers):
    from functools import partial

    calls = [partial(scorers.booster.predict, r[None, :]) for r in scorers.latency_rows]
    _latency(benchmark, _latency_group(scorers), "lightgbm", calls)


def test_latency_lightgbm_c_api_fast(benchmark, scorers):
    calls = [scorers.capi.row_call(r) for r in scorers.latency_rows]
    _latency(benchmark, _latency_group(scorers), "lightgbm-capi", calls)


def test_latency_lleaves(benchmark, scorers, lleaves_model):
    calls = [_lleaves_row_call(lleaves_model, r) for r in scorers.latency_rows]
    _latency(benchmark, _latency_group(scorers), "lleaves", calls)


# --------------------------------------------------------------------------- batches on other model shapes

SHAPE_TREES = 500
#: shape id -> (lightgbm_model_file keyword arguments, floor against lleaves when a bitvector kernel serves)
SHAPES = {
    "signal-in-4-of-50-features": ({"signal_features": 4}, 1.5),
    "binary-31-leaves": ({"objective": "binary"}, 1.5),
    "shallow-7-leaves": ({"num_leaves": 7}, 1.2),
    # the wide bitvector layout (33-64 leaves, AVX-512 only): measured 5.5x lleaves, 2.3x the lane chains
    "deep-63-leaves": ({"num_leaves": 63}, 1.5),
}


@dataclass
class Shape:
    name: str
    booster: object
    model: object
    batch: np.ndarray
    path: object
    lleaves_floor: float | None


@pytest.fixture(scope="module", params=list(SHAPES), ids=list(SHAPES))
def shape(request) -> Shape:
    kw, floor = SHAPES[request.param]
    kw = {"num_leaves": NUM_LEAVES, **kw}
    num_leaves = kw.pop("num_leaves")
    path = lightgbm_model_file(SHAPE_TREES, num_leaves, N_FEATURES, seed=0, **kw)
    booster = lgb.Booster(model_file=str(path))
    model = nba.load_model(path)
    batch = rows(BATCH_ROWS, N_FEATURES, seed=104)
    np.testing.assert_array_equal(model.predict(batch[:2000], raw_score=True),
                                  booster.predict(batch[:2000], raw_score=True, num_threads=1))
    return Shape(request.param, booster, model, batch, path, floor)


def _shape_group(s: Shape) -> str:
    return f"lightgbm-shape-batch10k-{s.name}"


def test_shape_batch_nba(benchmark, shape):
    benchmark.group = _shape_group(shape)
    floors: dict = {"lightgbm": BATCH_FLOORS["lightgbm"]}
    if shape.lleaves_floor is not None and shape.model.row_kernel.startswith("bitvector"):
        floors["lleaves"] = shape.lleaves_floor
    benchmark.extra_info.update(impl="nba", floors=_floors(shape.model, floors, SHAPE_TREES), rows=BATCH_ROWS,
                                row_kernel=shape.model.row_kernel)
    benchmark(shape.model.predict, shape.batch)


@pytest.mark.parametrize("kernel", FORCED_KERNELS)
def test_shape_batch_nba_forced_kernel(benchmark, shape, kernel):
    benchmark.group = _shape_group(shape)
    benchmark.extra_info.update(impl=f"nba-{kernel}", rows=BATCH_ROWS)
    _forced(benchmark, kernel, lambda: benchmark(shape.model.predict, shape.batch))


def test_shape_batch_lightgbm(benchmark, shape):
    benchmark.group = _shape_group(shape)
    benchmark.extra_info.update(impl="lightgbm", rows=BATCH_ROWS)
    benchmark(lambda: shape.booster.predict(shape.batch, num_threads=1))


def test_shape_batch_lleaves(benchmark, shape):
    model = compile_lleaves(shape.path)
    np.testing.assert_allclose(model.predict(shape.batch[:500], n_jobs=1), shape.booster.predict(shape.batch[:500]),
                               rtol=1e-9, atol=1e-12, err_msg="lleaves")
    benchmark.group = _shape_group(shape)
    benchmark.extra_info.update(impl="lleaves", rows=BATCH_ROWS)
    benchmark(model.predict, shape.batch, n_jobs=1)


# --------------------------------------------------------------------------- catalogue-bound forests
#
# decide()'s scoring step: every eligible arm's row is the shared vector plus the arm's own
# features, scored by the bound forest (``TreeEnsemble.bind_arms``). "nba" is the forest as it
# dispatches (a bitvector kernel: the shared vector ranked once, each arm's own splits ANDed in
# from bitvectors built at bind), "nba-walk" the same forest walking each tree once with the set
# of arms (as on a CPU without AVX2), "nba-rows" the arms' full rows through ``predict`` and
# "lightgbm" through ``Booster.predict``. Varied shared vectors, one call each, timed singly.

FOREST_CASES = {"10arms-100trees": (10, 100), "50arms-500trees": (50, 500)}
# Measured 2026-12-04 (p50, AVX-512): over the walk 3.2x (10 arms, 100 trees) and 2.3x (50 arms, 500 trees);
# over predict on the rows 2.3x and 2.1x. Generous: the walk is also what serves a CPU without AVX2.
FOREST_FLOORS = {"nba-walk": 1.5, "nba-rows": 1.3, "lightgbm": 5.0}


@dataclass
class Forest:
    name: str
    forest: object
    model: object
    booster: object
    xs: list
    rows: list
    idx: np.ndarray
    acc: np.ndarray = field(init=False)
    out: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.acc = np.zeros(self.forest.n_arms)
        self.out = np.zeros(self.forest.n_arms)

    def calls(self) -> list[Callable[[], object]]:
        from functools import partial

        return [partial(self.forest.scores, x, self.idx, self.acc, self.out, True) for x in self.xs]


@pytest.fixture(scope="module", params=list(FOREST_CASES), ids=list(FOREST_CASES))
def bound(request) -> Forest:
    from benchmarks.workloads import decide_workload

    n_arms, n_trees = FOREST_CASES[request.param]
    work = decide_workload(n_arms, n_trees, seed=0, n_profiles=LATENCY_ROWS)
    catalog = nba.Catalog(work["arms"], work["schema"])
    model = nba.load_model(work["model_text"])
    forest = model.bind(catalog).forest
    assert forest is not None
    layout = catalog.layout(catalog.feature_names)
    idx = np.arange(n_arms, dtype=np.intp)
    xs = [work["schema"].vectorize(p, c) for p, c in work["profiles"]]
    rows_ = [layout.fill(x, idx) for x in xs]
    booster = lgb.Booster(model_str=work["model_text"])
    b = Forest(request.param, forest, model, booster, xs, rows_, idx)
    for x, r in zip(xs[:64], rows_[:64]):  # the forest scores the arms' rows bit for bit, on every kernel
        want = booster.predict(r, raw_score=True, num_threads=1)
        for kernel in trees_core.cpu_row_kernels():
            prev = trees_core.set_row_kernel(kernel)
            try:
                forest.scores(x, idx, b.acc, b.out, True)
            finally:
                trees_core.set_row_kernel(prev)
            np.testing.assert_array_equal(b.out, want, err_msg=f"forest on {kernel}")
    return b


def _forest_group(b: Forest) -> str:
    return f"lightgbm-forest-latency-{b.name}"


def test_forest_nba(benchmark, bound):
    _latency(benchmark, _forest_group(bound), "nba", bound.calls())
    floors = dict(FOREST_FLOORS) if bound.forest.kernel.startswith("bitvector") else {"lightgbm": 2.0}
    benchmark.extra_info.update(floors=floors, forest_kernel=bound.forest.kernel,
                                call=f"ArmForestCore.scores ({bound.name})")


@pytest.mark.parametrize("kernel", FORCED_KERNELS)
def test_forest_nba_forced_kernel(benchmark, bound, kernel):
    impl = "nba-walk" if kernel == "lanes" else f"nba-{kernel}"
    _forced(benchmark, kernel, lambda: _latency(benchmark, _forest_group(bound), impl, bound.calls()))


def test_forest_nba_rows(benchmark, bound):
    from functools import partial

    calls = [partial(bound.model.predict, r, raw_score=True) for r in bound.rows]
    _latency(benchmark, _forest_group(bound), "nba-rows", calls)


def test_forest_lightgbm(benchmark, bound):
    from functools import partial

    calls = [partial(bound.booster.predict, r, raw_score=True, num_threads=1) for r in bound.rows]
    _latency(benchmark, _forest_group(bound), "lightgbm", calls)
