"""Smoke test for a built wheel (cibuildwheel's test-command): import nba and score a model."""

import numpy as np

import nba

try:
    import lightgbm as lgb
except ImportError:  # pragma: no cover - platforms without a lightgbm wheel
    lgb = None

if lgb is not None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(float)
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), num_boost_round=10)
    model = nba.load_model(booster.model_to_string())
    np.testing.assert_allclose(model.predict(X[:50]), booster.predict(X[:50]), rtol=0, atol=1e-12)
print("nba", nba.__version__, "ok")
