"""The ``nba`` command line (``nba inspect``) and the sample models it is shown with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nba
from nba.cli import main

MODELS = Path(__file__).resolve().parents[1] / "examples" / "models"
SAMPLE = MODELS / "offer_ctr.txt"
BY_OFFER = MODELS / "offer_ctr_by_offer.txt"


@pytest.mark.parametrize("path", [SAMPLE, BY_OFFER])
def test_sample_models_are_small_and_score_like_lightgbm(path: Path) -> None:
    lgb = pytest.importorskip("lightgbm")
    assert path.stat().st_size <= 100 * 1024
    model = nba.load_model(path)
    rng = np.random.default_rng(3)
    X = rng.normal(40, 40, (500, model.num_features))
    X[:, -1] = rng.integers(-2, 160, 500)  # fee / offer (categorical), including unseen values
    X[rng.random(X.shape) < 0.1] = np.nan
    booster = lgb.Booster(model_file=str(path))
    np.testing.assert_array_equal(model.predict(X, raw_score=True), booster.predict(X, raw_score=True))
    np.testing.assert_allclose(model.predict(X), booster.predict(X), rtol=1e-12, atol=1e-12)


def test_quickstart_sample_fits_the_readme_catalogue() -> None:
    schema = nba.FeatureSchema([
        nba.Categorical("segment", ["student", "family", "senior"], source="profile"),
        nba.Numeric("age", source="profile"),
        nba.Boolean("mobile", source="context"),
    ])
    arms = [nba.Arm("gold_card", features={"fee": 95.0}, value=40.0), nba.Arm("savings", features={"fee": 0.0})]
    model = nba.load_model(SAMPLE)
    nba.Catalog(arms, schema).check_model(model.feature_names)
    assert model.objective == "binary sigmoid:1"


def test_categorical_sample_has_categorical_splits() -> None:
    model = nba.load_model(BY_OFFER)
    assert model.feature_names[-1] == "offer"
    assert model.summary().categorical_splits > 0


def test_inspect_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(SAMPLE)]) == 0
    out = capsys.readouterr().out
    model = nba.load_model(SAMPLE)
    s = model.summary()
    for field, value in [("format", "lightgbm"), ("objective", model.objective), ("trees", model.num_trees),
                         ("features", model.num_features), ("classes", 1), ("version", model.version),
                         ("leaves", s.leaves), ("max_depth", s.max_depth)]:
        assert any(line.split()[:1] == [field] and line.split()[-1] == str(value).split()[-1]
                   for line in out.splitlines()), field
    assert f"features ({model.num_features}, in column order): {' '.join(model.feature_names)}" in out


def test_inspect_runs_as_a_module() -> None:
    res = subprocess.run([sys.executable, "-m", "nba.cli", "inspect", str(BY_OFFER)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "lightgbm" in res.stdout and "binary sigmoid:1" in res.stdout and "categorical_splits" in res.stdout


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
