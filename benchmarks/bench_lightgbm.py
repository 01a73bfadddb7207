"""LightGBM scoring: nba against LightGBM (Python and C API) and lleaves.

Workloads: 100- and 500-tree regression models, 31 leaves, 50 features
(``workloads.lightgbm_model_file``). Three kinds of measurement, each its own
group per model size:

* ``lightgbm-row-{n}trees``: one row, best call path of each implementation;
* ``lightgbm-batch10k-{n}trees``: 10,000 rows, one thread;
* ``lightgbm-row-latency-{n}trees``: many single-row calls over varied rows, each
  timed with ``perf_counter_ns``; p50/p99/p99.9 land in ``extra_info`` (and
  ``tools/check_bench.py`` prints them). The benchmark time itself is the whole loop.

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


# --------------------------------------------------------------------------- single row


def _row_group(s: Scorers) -> str:
    return f"lightgbm-row-{s.n_trees}trees"


def test_row_nba_predict_row(benchmark, scorers):
    benchmark.group = _row_group(scorers)
    benchmark.extra_info.update(impl="nba", floors=ROW_FLOORS, call="TreeEnsemble.predict_row(x)")
    benchmark(scorers.model.predict_row, scorers.row)


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
    benchmark.extra_info.update(impl="nba", floors=BATCH_FLOORS, rows=BATCH_ROWS)
    benchmark(scorers.model.predict, scorers.batch)


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
