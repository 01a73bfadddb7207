"""LightGBM data and model builders shared by the scorer, catalogue-bound and decide-kernel suites.

A helper module, not a test module: the suites import these instead of each other's privates.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

lgb = pytest.importorskip("lightgbm")

N_FEATURES = 6
KZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float constant)
SPECIALS = np.array(
    [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 1e-35, -1e-35, KZERO, -KZERO, 2e-35, 5e300, -5e300]
)


def train(params: dict, X: np.ndarray, y: np.ndarray, rounds: int = 8, **dataset_kw) -> lgb.Booster:
    p = {
        "verbose": -1,
        "num_threads": 1,
        "deterministic": True,
        "seed": 7,
        "num_leaves": 15,
        "min_data_in_leaf": 5,
        **params,
    }
    return lgb.train(p, lgb.Dataset(X, y, **dataset_kw), num_boost_round=rounds)


def data(rng: np.random.Generator, n: int = 600, d: int = N_FEATURES) -> tuple[np.ndarray, np.ndarray]:
    X = rng.standard_normal((n, d))
    z = X[:, 0] + np.sin(2 * X[:, 1]) + 0.5 * X[:, 2] * X[:, 3 % d] + 0.3 * rng.standard_normal(n)
    return X, z


def numerical_thresholds(text: str) -> dict[int, np.ndarray]:
    """Feature -> thresholds of its numerical splits, read straight from the model text."""
    out: dict[int, list[float]] = {}
    for block in text.split("\nTree=")[1:]:
        kv = dict(re.findall(r"^(\w+)=(.*)$", block, flags=re.MULTILINE))
        if int(kv["num_leaves"]) < 2:
            continue
        feats = [int(v) for v in kv["split_feature"].split()]
        thr = [float(v) for v in kv["threshold"].split()]
        dts = [int(v) for v in kv["decision_type"].split()]
        for f, t, d in zip(feats, thr, dts):
            if not d & 1:
                out.setdefault(f, []).append(t)
    return {f: np.array(v) for f, v in out.items()}


def probe(booster: lgb.Booster, rng: np.random.Generator, n: int = 1500, *, cat: tuple[int, ...] = ()) -> np.ndarray:
    """Random rows with NaN, +-inf, +-0.0, tiny and huge values, and exact thresholds +- one ulp."""
    d = booster.num_feature()
    X = rng.standard_normal((n, d)) * 1.5
    mask = rng.random(X.shape) < 0.12
    X[mask] = rng.choice(SPECIALS, int(mask.sum()))
    for f, ts in numerical_thresholds(booster.model_to_string()).items():
        m = rng.random(n) < 0.4
        t = rng.choice(ts, int(m.sum()))
        step = rng.integers(-1, 2, t.shape[0])
        t = np.where(step < 0, np.nextafter(t, -np.inf), np.where(step > 0, np.nextafter(t, np.inf), t))
        X[m, f] = t
    for f in cat:
        X[:, f] = rng.integers(-3, 80, n)
        odd = rng.random(n) < 0.2
        X[odd, f] = rng.choice(
            np.array([np.nan, np.inf, -np.inf, -0.5, -1.0, 2.7, 1e10, 2.0**31, 2.0**31 - 1, 2.0**32 + 3, -1e-40, 0.0]),
            int(odd.sum()),
        )
    return X


def categorical_booster(rng: np.random.Generator, max_cat_to_onehot: int, rounds: int) -> lgb.Booster:
    """A regression model with categorical columns 4 (60 categories) and 5 (7 categories)."""
    n = 3000
    X, z = data(rng, n)
    X[:, 4] = rng.integers(0, 60, n)
    X[:, 5] = rng.integers(0, 7, n)
    effect = rng.standard_normal(60)
    y = z + 2 * effect[X[:, 4].astype(int)] + (X[:, 5] == 3)
    return train(
        {"objective": "regression", "max_cat_to_onehot": max_cat_to_onehot, "cat_smooth": 1, "min_data_per_group": 5},
        X,
        y,
        rounds=rounds,
        categorical_feature=[4, 5],
    )


def categorical_nan_data(rng: np.random.Generator, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose column 4 is a category in [0, 30) or NaN (20%), and a target that depends on it."""
    X, z = data(rng, n)
    X[:, 4] = rng.integers(0, 30, n)
    X[rng.random(n) < 0.2, 4] = np.nan
    return X, z + np.where(np.isnan(X[:, 4]), 3.0, X[:, 4] % 4)


def missing_booster(rng: np.random.Generator, use_missing: bool, zero_as_missing: bool) -> lgb.Booster:
    """A regression model trained on data with 15% NaN and 15% zeros, in the given missing mode."""
    n = 2000
    X, z = data(rng, n)
    X[rng.random(X.shape) < 0.15] = np.nan
    X[rng.random(X.shape) < 0.15] = 0.0
    y = z + np.where(np.isnan(X[:, 0]), 2.0, 0.0) - np.where(X[:, 1] == 0.0, 1.5, 0.0)
    y = np.nan_to_num(y, nan=1.0)
    return train(
        {"objective": "regression", "use_missing": use_missing, "zero_as_missing": zero_as_missing}, X, y, rounds=10
    )


def edited_model(booster: lgb.Booster, edit) -> str:
    """The model text with each tree's decision_type/threshold rewritten by ``edit(tree, dts, thr)``."""
    out = []
    text = booster.model_to_string()
    head, *trees = text.split("\nTree=")
    for t, block in enumerate(trees):
        kv = dict(re.findall(r"^(\w+)=(.*)$", block, flags=re.MULTILINE))
        if int(kv["num_leaves"]) > 1:
            dts = [int(v) for v in kv["decision_type"].split()]
            thr = [float(v) for v in kv["threshold"].split()]
            edit(t, dts, thr)
            block = re.sub(r"^decision_type=.*$", "decision_type=" + " ".join(map(str, dts)), block, flags=re.MULTILINE)
            block = re.sub(r"^threshold=.*$", "threshold=" + " ".join(repr(v) for v in thr), block, flags=re.MULTILINE)
        out.append(block)
    head = re.sub(r"^tree_sizes=.*\n", "", head, flags=re.MULTILINE)  # LightGBM seeks by the byte sizes
    return "\nTree=".join([head, *out])


def decision_type_model(rng: np.random.Generator, decision_type: int) -> str:
    """A regression model's text with every split set to ``decision_type``, some thresholds in the zero band."""
    X, z = data(rng)
    booster = train({"objective": "regression"}, X, z)
    picks = np.array([0.0, 1e-36, -1e-36, 1e-35, -1e-35, KZERO, -KZERO, 3e-35, -3e-35])

    def edit(t: int, dts: list[int], thr: list[float]) -> None:
        for j in range(len(dts)):
            dts[j] = decision_type
            if (t + j) % 3 == 0:  # thresholds at, inside and just outside the zero band
                thr[j] = float(picks[(t * 7 + j) % len(picks)])

    return edited_model(booster, edit)
