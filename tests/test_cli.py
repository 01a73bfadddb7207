"""The ``nba`` command line: ``nba inspect`` on the shipped sample model and on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nba
from nba.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "models" / "offer_ctr.txt"


def test_sample_model_is_small_and_loads() -> None:
    assert SAMPLE.stat().st_size <= 100 * 1024
    model = nba.load_model(SAMPLE)
    assert isinstance(model, nba.TreeEnsemble)
    assert model.feature_names == ("age", "tenure_months", "balance", "visits_30d", "hour", "offer", "channel")
    assert model.summary().categorical_splits > 0


def test_sample_model_scores_like_lightgbm() -> None:
    lgb = pytest.importorskip("lightgbm")
    booster = lgb.Booster(model_file=str(SAMPLE))
    rng = np.random.default_rng(3)
    X = np.column_stack(
        [rng.integers(18, 80, 500), rng.exponential(30, 500), rng.lognormal(7, 1.2, 500), rng.poisson(3, 500),
         rng.integers(0, 24, 500), rng.integers(-1, 15, 500), rng.integers(0, 4, 500)]
    ).astype(float)
    X[rng.random(X.shape) < 0.1] = np.nan
    model = nba.load_model(SAMPLE)
    np.testing.assert_array_equal(model.predict(X, raw_score=True), booster.predict(X, raw_score=True))
    np.testing.assert_allclose(model.predict(X), booster.predict(X), rtol=1e-12, atol=1e-12)


def test_inspect_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(SAMPLE)]) == 0
    out = capsys.readouterr().out
    model = nba.load_model(SAMPLE)
    for field, value in [("format", "lightgbm"), ("objective", model.objective), ("trees", model.num_trees),
                         ("features", 7), ("classes", 1), ("version", model.version)]:
        assert any(line.split()[:1] == [field] and str(value) in line for line in out.splitlines()), field


def test_inspect_runs_as_a_module() -> None:
    res = subprocess.run([sys.executable, "-m", "nba.cli", "inspect", str(SAMPLE)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "lightgbm" in res.stdout and "binary sigmoid:1" in res.stdout


def test_inspect_reports_a_bad_model_as_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.txt"
    text = SAMPLE.read_text()
    bad.write_text(text[: text.index("end of trees")])
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "nba: error:" in err and "truncated" in err


def test_inspect_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "nope.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_export_writes_dsjson_of_a_decision_log(tmp_path, capsys) -> None:
    log_dir = tmp_path / "log"
    with nba.DecisionLog(log_dir) as log:
        log.register_catalog("c1", {"a": {"Action": {"fee": 1.0}}, "b": {"Action": {"fee": 2.0}}})
        log.append_decision("e1", actions=["a", "b"], pmf=[0.8, 0.2], chosen=[1], features={"User": {"age": 30.0}},
                            catalog_id="c1")
        log.append_outcome("e1", 1.0)
    out = tmp_path / "train.dsjson"
    assert main(["export", str(log_dir), str(out)]) == 0
    assert "wrote 1 events" in capsys.readouterr().out
    import json

    (line,) = out.read_text().splitlines()
    event = json.loads(line)
    assert event["_label_cost"] == -1.0 and event["_label_probability"] == 0.2 and event["EventId"] == "e1"
