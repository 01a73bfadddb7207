"""Batch vectorisation: ``FeatureSchema.vectorize_many`` against what one writes without it.

Workload: ``workloads.profile_features`` (20 features -> 25 columns) over
``workloads.profile_frame`` (10,000 rows: numbers, bools, and the segment and
device as pandas ``category`` columns). Groups, each timing one whole batch:

* ``batch-frame-10k``: ``vectorize_many(df, df)`` vs a plain pandas encoding of the
  same data (``fillna`` / ``clip`` per number, ``pd.get_dummies`` per category, one
  ``reindex`` to ``feature_names``; checked equal to nba's matrix) and vs a Python
  loop calling ``vectorize`` per row over ``df.to_dict("records")`` (made once, not timed);
* ``batch-dicts-10k``: ``vectorize_many`` over the list of dicts vs the same loop.

Rows/s of each side are in ``extra_info["rows_per_s"]``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import nba
from benchmarks.workloads import profile_features, profile_frame

pd = pytest.importorskip("pandas")

N_ROWS = 10_000
# Floors well under what a shared 2-core machine measured (frame: 4.3x pandas, 8.3x the loop, about
# 5M rows/s; dicts: 0.8-1.0x the loop, noisy): the sides run one after the other, so load moves the ratio.
# With another agent's builds on the second core: frame 2.0-2.1x pandas, 3.4-3.5x the loop (per-feature
# counters, FeatureSchema.counters, cost ~8% of the frame path: 1.34 -> 1.44-1.49 ms per 10k rows).
FRAME_FLOORS = {"pandas-get-dummies": 1.6, "python-loop": 2.5}
# A list of dicts runs the same compiled row path as the loop: the floor only guards against a slower batch path.
DICTS_FLOORS = {"python-loop": 0.6}


@pytest.fixture(scope="module")
def schema() -> nba.FeatureSchema:
    return nba.FeatureSchema(profile_features())


@pytest.fixture(scope="module")
def frame():
    return profile_frame(N_ROWS, seed=3)


@pytest.fixture(scope="module")
def records(frame) -> list[dict]:
    return frame.to_dict("records")


def pandas_encode(schema: nba.FeatureSchema, df) -> np.ndarray:
    """The matrix as one writes it in pandas: per number fillna and clip, per category get_dummies, one reindex."""
    parts = []
    for f in schema.features:
        s = df[f.name]
        if isinstance(f, nba.Categorical):
            parts.append(pd.get_dummies(s, prefix=f.name, prefix_sep="=", dtype=np.float64))
        elif isinstance(f, nba.Boolean):
            parts.append(s.astype(np.float64).fillna(math.nan if f.allow_missing else float(f.default)))
        else:
            x = s.astype(np.float64).fillna(math.nan if f.allow_missing else f.default)
            if f.bounds is not None:
                x = x.clip(*f.bounds)
            parts.append(x)
    return pd.concat(parts, axis=1).reindex(columns=list(schema.feature_names), fill_value=0.0).to_numpy(np.float64)


def python_loop(schema: nba.FeatureSchema, rows: list[dict]) -> np.ndarray:
    out = np.empty((len(rows), schema.n_columns))
    vec = schema.vectorize
    for i, r in enumerate(rows):
        vec(r, r, out[i])
    return out


def _rows_per_s(benchmark) -> None:
    benchmark.extra_info["rows_per_s"] = N_ROWS / benchmark.stats.stats.median


def test_references_agree_with_nba(schema, frame, records):
    x = schema.vectorize_many(frame, frame)
    np.testing.assert_array_equal(pandas_encode(schema, frame), x)
    np.testing.assert_array_equal(python_loop(schema, records), x)
    np.testing.assert_array_equal(schema.vectorize_many(records, records), x)


def test_frame_nba(benchmark, schema, frame):
    benchmark.group = "batch-frame-10k"
    benchmark.extra_info.update(impl="nba", floors=FRAME_FLOORS, rows=N_ROWS)
    benchmark(schema.vectorize_many, frame, frame)
    _rows_per_s(benchmark)


def test_frame_pandas(benchmark, schema, frame):
    benchmark.group = "batch-frame-10k"
    benchmark.extra_info.update(impl="pandas-get-dummies", rows=N_ROWS)
    benchmark(pandas_encode, schema, frame)
    _rows_per_s(benchmark)


def test_frame_loop(benchmark, schema, records):
    benchmark.group = "batch-frame-10k"
    benchmark.extra_info.update(impl="python-loop", rows=N_ROWS)
    benchmark(python_loop, schema, records)
    _rows_per_s(benchmark)


def test_dicts_nba(benchmark, schema, records):
    benchmark.group = "batch-dicts-10k"
    benchmark.extra_info.update(impl="nba", floors=DICTS_FLOORS, rows=N_ROWS)
    benchmark(schema.vectorize_many, records, records)
    _rows_per_s(benchmark)


def test_dicts_loop(benchmark, schema, records):
    benchmark.group = "batch-dicts-10k"
    benchmark.extra_info.update(impl="python-loop", rows=N_ROWS)
    benchmark(python_loop, schema, records)
    _rows_per_s(benchmark)
