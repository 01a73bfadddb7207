"""Seeded workloads shared by the tests and the benchmarks.

Everything here is deterministic in its arguments, so a test and a benchmark that
ask for the same workload get the same bytes. Expensive artefacts (trained
models) are cached on disk, keyed by every parameter that shapes them, so
repeated runs skip training. One section per model kind; add yours below.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = [
    "cache_dir",
    "rows",
    "lightgbm_training_data",
    "lightgbm_model",
    "lightgbm_model_file",
    "decisions",
]


# --------------------------------------------------------------------------- common


def cache_dir() -> Path:
    """Directory for cached workload artefacts: ``$NBA_WORKLOAD_CACHE`` or a temp dir."""
    d = Path(os.environ.get("NBA_WORKLOAD_CACHE") or Path(tempfile.gettempdir()) / "nba-workloads")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _cached_text(kind: str, params: dict, build) -> Path:
    """Path of the artefact for ``params``, building it with ``build() -> str`` on a miss.

    The file is written to a temp name and renamed, so concurrent runs never see
    half a file.
    """
    key = hashlib.sha256(json.dumps({"kind": kind, **params}, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir() / f"{kind}-{key}.txt"
    if not path.exists():
        text = build()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    return path


def rows(
    n: int,
    n_features: int,
    seed: int = 0,
    *,
    nan_fraction: float = 0.0,
) -> np.ndarray:
    """``n`` C-contiguous float64 rows of standard normal features.

    ``nan_fraction`` of the cells (chosen at random) are NaN, to exercise missing
    value handling. Same distribution as the LightGBM training data below, so
    traversals follow realistic paths.
    """
    rng = np.random.default_rng([seed, n, n_features, 7])
    X = rng.standard_normal((n, n_features))
    if nan_fraction > 0.0:
        X[rng.random((n, n_features)) < nan_fraction] = np.nan
    return np.ascontiguousarray(X)


# --------------------------------------------------------------------------- LightGBM


def lightgbm_training_data(
    n_rows: int,
    n_features: int,
    seed: int = 0,
    *,
    objective: str = "regression",
    num_class: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (X, y) with a nonlinear signal spread over all features, for ``objective``."""
    X = rows(n_rows, n_features, seed)
    rng = np.random.default_rng([seed, n_rows, n_features, 11])
    w = rng.standard_normal(n_features)
    z = X @ w / np.sqrt(n_features) + np.sin(2.0 * X[:, 0]) + 0.5 * X[:, 1 % n_features] * X[:, 2 % n_features]
    z = z + 0.3 * rng.standard_normal(n_rows)
    if objective == "binary":
        y = (z > 0).astype(np.float64)
    elif objective in ("multiclass", "multiclassova"):
        cuts = np.quantile(z, np.linspace(0, 1, num_class + 1)[1:-1])
        y = np.searchsorted(cuts, z).astype(np.float64)
    elif objective in ("poisson", "tweedie", "gamma"):
        y = rng.poisson(np.exp(np.clip(z, -3, 3))).astype(np.float64) + (objective == "gamma")
    else:
        y = z
    return X, y


def lightgbm_model_file(
    n_trees: int,
    num_leaves: int = 31,
    n_features: int = 50,
    *,
    seed: int = 0,
    objective: str = "regression",
    num_class: int = 1,
    n_rows: int = 10_000,
) -> Path:
    """Path of a cached LightGBM text model with ``n_trees`` boosting rounds.

    Trained single-threaded and deterministic; the cache key includes the
    LightGBM version, so an upgrade retrains.
    """
    import lightgbm as lgb

    params = {
        "n_trees": n_trees,
        "num_leaves": num_leaves,
        "n_features": n_features,
        "seed": seed,
        "objective": objective,
        "num_class": num_class,
        "n_rows": n_rows,
        "lightgbm": lgb.__version__,
    }

    def build() -> str:
        X, y = lightgbm_training_data(n_rows, n_features, seed, objective=objective, num_class=num_class)
        train_params = {
            "objective": objective,
            "num_leaves": num_leaves,
            "learning_rate": 0.05,
            "min_data_in_leaf": 5,
            "num_threads": 1,
            "deterministic": True,
            "force_row_wise": True,
            "seed": seed,
            "verbose": -1,
        }
        if num_class > 1:
            train_params["num_class"] = num_class
        booster = lgb.train(train_params, lgb.Dataset(X, y), num_boost_round=n_trees)
        return booster.model_to_string()

    return _cached_text("lightgbm", params, build)


def lightgbm_model(
    n_trees: int,
    num_leaves: int = 31,
    n_features: int = 50,
    *,
    seed: int = 0,
    objective: str = "regression",
    num_class: int = 1,
    n_rows: int = 10_000,
) -> str:
    """Text of a cached LightGBM model (see ``lightgbm_model_file``)."""
    return lightgbm_model_file(
        n_trees,
        num_leaves,
        n_features,
        seed=seed,
        objective=objective,
        num_class=num_class,
        n_rows=n_rows,
    ).read_text()


# --------------------------------------------------------------------------- decision log


def decisions(n: int, seed: int = 0, *, n_actions: int = 10, n_features: int = 20) -> list[dict]:
    """``n`` keyword-argument sets for ``DecisionLog.append_decision``, as a Decider logs them.

    Each has ``n_actions`` arms with a pmf, a chosen arm, the arms' scores, and
    ``n_features`` numeric user features plus two string context features:
    about 1 KB of JSON per decision at the defaults.
    """
    rng = np.random.default_rng([seed, n, n_actions, n_features, 13])
    actions = [f"offer_{k}" for k in range(n_actions)]
    devices = ["ios", "android", "web"]
    out = []
    for i in range(n):
        scores = rng.standard_normal(n_actions)
        pmf = np.exp(scores - scores.max())
        pmf /= pmf.sum()
        chosen = int(rng.choice(n_actions, p=pmf))
        out.append(
            {
                "event_id": f"{seed:04x}-{i:012x}",
                "actions": actions,
                "pmf": pmf.tolist(),
                "chosen": [chosen],
                "scores": scores.tolist(),
                "features": {
                    "User": {f"u{j}": round(float(v), 4) for j, v in enumerate(rng.standard_normal(n_features))},
                    "Context": {"device": devices[i % 3], "hour": float(i % 24)},
                },
                "model_version": "offers-cb-v1",
                "variants": {"ranker": "treatment" if i % 2 else "control"},
                "policy": "softmax",
                "catalog_id": "offers",
            }
        )
    return out
