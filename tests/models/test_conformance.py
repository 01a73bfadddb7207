"""The conformance battery every model kind nba can load must pass (cf. river's ``check_estimator``).

The battery (``check_scorer`` and its checks, in ``tests/models/conformance.py``)
loads nothing itself: it takes a loaded model and the kind's adapters, and checks
what any scorer the Decider uses must guarantee:

* scoring gives float64, one score (or one row of scores) per input, finite, and
  the same every time;
* scoring a batch equals scoring its inputs one at a time;
* a pickle round trip (and a deep copy) scores identically;
* eight threads scoring at once get exactly the serial results;
* bad input (wrong length, wrong shape, wrong type, NaN where not allowed)
  raises a typed ``nba.NbaError``, never a bare ValueError/TypeError or a crash.

To add a model kind, append a ``ScorerKind`` to ``KINDS``: how to load it, how to
make a batch of inputs, how to score a batch, how to take one input out of a
batch, and which inputs are bad. VW and online bandit kinds plug in the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import nba
from benchmarks.workloads import lightgbm_model, lightgbm_model_file, rows
from tests.models.conformance import (
    ScorerKind,
    as_scores,
    check_bad_input_raises_typed_errors,
    check_batch_equals_one_at_a_time,
    check_concurrent_use_matches_serial,
    check_pickle_round_trip,
    check_scorer,
    check_scores_are_well_formed,
)

# --------------------------------------------------------------------------- LightGBM tree ensembles


def _feature_rows(model, n: int, seed: int) -> np.ndarray:
    return rows(n, model.num_features, seed, nan_fraction=0.05)


def _feature_bad_inputs(*, nan_allowed: bool) -> Callable[[Any], list]:
    def bad(model) -> list[tuple[str, Any, type[nba.NbaError]]]:
        nf = model.num_features
        out: list[tuple[str, Any, type[nba.NbaError]]] = [
            ("one feature too few", np.zeros((3, nf - 1)), nba.SchemaError),
            ("one feature too many", np.zeros((3, nf + 1)), nba.SchemaError),
            ("no features", np.zeros((3, 0)), nba.SchemaError),
            ("3-D array", np.zeros((2, 3, nf)), nba.SchemaError),
            ("a scalar", 1.0, nba.SchemaError),
            ("a string", "1,2,3", nba.SchemaError),
            ("None", None, nba.SchemaError),
            ("a dict", {"f0": 1.0}, nba.SchemaError),
            ("strings in an array", np.full((2, nf), "x"), nba.SchemaError),
            ("complex numbers", np.zeros((2, nf), dtype=complex), nba.SchemaError),
            ("objects", np.array([[object()] * nf] * 2, dtype=object), nba.SchemaError),
        ]
        if not nan_allowed:
            x = np.zeros((2, nf))
            x[1, 0] = np.nan
            out.append(("NaN feature", x, nba.SchemaError))
        return out

    return bad


def _lightgbm_kind(name: str, **model_kw: Any) -> ScorerKind:
    def text() -> str:
        return lightgbm_model(**model_kw)

    def booster():
        lgb = pytest.importorskip("lightgbm")
        return lgb.Booster(model_str=text())

    return ScorerKind(
        name=name,
        loaders=[
            lambda: nba.load_model(lightgbm_model_file(**model_kw)),
            lambda: nba.load_model(str(lightgbm_model_file(**model_kw))),
            lambda: nba.load_model(text()),
            lambda: nba.load_model(text().encode()),
            lambda: nba.load_model(booster()),
        ],
        make_input=_feature_rows,
        score=lambda model, X: model.predict(X),
        take=lambda X, i: X[i : i + 1] if isinstance(X, np.ndarray) and X.ndim == 2 else X,
        bad_inputs=_feature_bad_inputs(nan_allowed=True),  # NaN is a missing value for trees
        score_one=lambda model, X: model.predict_row(X[0] if isinstance(X, np.ndarray) and X.ndim == 2 else X),
    )


_SMALL = {"n_trees": 20, "num_leaves": 15, "n_features": 12, "n_rows": 2000}

# --------------------------------------------------------------------------- Vowpal Wabbit cb models

_VW_SHAPE = {"n_shared": 6, "n_actions": 4, "n_action_features": 3}


def _vw_kind(name: str, args: str) -> ScorerKind:
    from benchmarks.workloads import vw_examples, vw_model_file

    actions = vw_examples(1, 99, **_VW_SHAPE)[0][1]

    def path():
        pytest.importorskip("vowpalwabbit")  # the reference trains the model
        return vw_model_file(args, n_train=300, **_VW_SHAPE)

    def score(model, batch):
        acts = model.prepare_actions(actions)  # per call: pickled clones must hash their own
        if not isinstance(batch, list):
            return model.score(batch, acts)[None, :]
        return np.stack([model.score(shared, acts) for shared in batch])

    def bad(model) -> list[tuple[str, Any, type[nba.NbaError]]]:
        return [
            ("None", None, nba.SchemaError),
            ("a string", "|User a:1", nba.SchemaError),
            ("a number", 5, nba.SchemaError),
            ("NaN feature", {"User": {"u1": float("nan")}}, nba.SchemaError),
            ("inf feature", {"User": {"u1": float("inf")}}, nba.SchemaError),
            ("list value", {"User": {"u1": [1.0]}}, nba.SchemaError),
            ("namespace not a dict", {"User": "u1"}, nba.SchemaError),
        ]

    return ScorerKind(
        name=name,
        loaders=[
            lambda: nba.load_model(path()),
            lambda: nba.load_model(str(path())),
            lambda: nba.load_model(path().read_bytes()),
            lambda: nba.load_model(path(), format="vw"),
        ],
        make_input=lambda model, n, seed: [shared for shared, *_ in vw_examples(n, seed, **_VW_SHAPE)],
        score=score,
        take=lambda batch, i: batch[i : i + 1],
        bad_inputs=bad,
        score_one=lambda model, batch: score(model, batch[0] if isinstance(batch, list) else batch)[0],
    )


# --------------------------------------------------------------------------- online bandits


def _online_kind(name: str, make: Callable[[], Any]) -> ScorerKind:
    def trained():
        model = make()
        rng = np.random.default_rng(5)
        for _ in range(200):
            x = rng.normal(size=model.n_features)
            arm = int(rng.integers(model.n_arms))
            model.update(arm, x, float(rng.random() < 0.3 + 0.1 * arm))
        return model

    def score(model, X):
        X = np.asarray(X) if isinstance(X, np.ndarray) else X
        if not (isinstance(X, np.ndarray) and X.ndim == 2):
            return model.score(X)[None, :]
        return np.stack([model.score(x) for x in X])

    def bad(model) -> list[tuple[str, Any, type[nba.NbaError]]]:
        d = model.n_features
        nan = np.zeros(d)
        nan[0] = np.nan
        return [
            ("one feature too few", np.zeros(d - 1), nba.SchemaError),
            ("one feature too many", np.zeros(d + 1), nba.SchemaError),
            ("None", None, nba.SchemaError),
            ("a string", "1,2", nba.SchemaError),
            ("NaN feature", nan, nba.SchemaError),
            ("inf feature", np.full(d, np.inf), nba.SchemaError),
        ]

    state: dict[str, Any] = {}

    def main():
        state.setdefault("model", trained())
        return state["model"]

    return ScorerKind(
        name=name,
        loaders=[main, lambda: type(main()).from_bytes(main().to_bytes())],
        make_input=lambda model, n, seed: np.random.default_rng(seed).normal(size=(n, model.n_features)),
        score=score,
        take=lambda X, i: X[i : i + 1],
        bad_inputs=bad,
        score_one=lambda model, X: model.score(X[0] if isinstance(X, np.ndarray) and X.ndim == 2 else X),
    )


KINDS: list[ScorerKind] = [
    _lightgbm_kind("lightgbm-regression", **_SMALL),
    _lightgbm_kind("lightgbm-binary", **_SMALL, objective="binary"),
    _lightgbm_kind("lightgbm-multiclass", **{**_SMALL, "n_trees": 8}, objective="multiclass", num_class=3),
    _vw_kind("vw-cb-adf", "--cb_adf -q UA"),
    _vw_kind("vw-cb-explore-adf", "--cb_explore_adf -q UA --interactions GA"),
    _online_kind("online-linucb", lambda: nba.LinUCB(4, 5, alpha=0.7)),
    _online_kind("online-linear-thompson", lambda: nba.LinearThompson(4, 5)),
]


@pytest.fixture(scope="module", params=KINDS, ids=[k.name for k in KINDS])
def kind(request) -> ScorerKind:
    if request.param.name.startswith("lightgbm"):
        pytest.importorskip("lightgbm")  # the reference trains the models
    if request.param.name.startswith("vw"):
        pytest.importorskip("vowpalwabbit")
    return request.param


@pytest.fixture(scope="module")
def loaded(kind: ScorerKind) -> Any:
    return kind.loaders[0]()


def test_scores_are_float64_finite_and_repeatable(kind, loaded):
    check_scores_are_well_formed(loaded, kind.make_input, kind)


def test_batch_scores_equal_one_input_at_a_time(kind, loaded):
    check_batch_equals_one_at_a_time(loaded, kind.make_input, kind)


def test_pickle_round_trip_scores_identically(kind, loaded):
    check_pickle_round_trip(loaded, kind.make_input, kind)


def test_eight_threads_score_exactly_like_serial(kind, loaded):
    check_concurrent_use_matches_serial(loaded, kind.make_input, kind)


def test_bad_input_raises_typed_nba_errors(kind, loaded):
    check_bad_input_raises_typed_errors(loaded, kind)


def test_every_way_of_loading_gives_the_same_scores(kind, loaded):
    batch = kind.make_input(loaded, 100, 4)
    expected = as_scores(kind.score(loaded, batch))
    for i, load in enumerate(kind.loaders[1:], start=1):
        np.testing.assert_array_equal(as_scores(kind.score(load(), batch)), expected, err_msg=f"loader #{i}")


def test_check_scorer_runs_the_whole_battery(kind, loaded):
    check_scorer(loaded, kind.make_input, kind)


# --------------------------------------------------------------------------- the battery catches what it should


class _Broken:
    """A scorer that breaks the contract in a chosen way, to prove the battery notices."""

    def __init__(self, model: Any, flaw: str) -> None:
        self.model, self.flaw = model, flaw
        self.num_features = model.num_features
        self._calls = 0

    def predict(self, X):
        self._calls += 1
        if self.flaw == "bare-error" and (not isinstance(X, np.ndarray) or X.ndim != 2 or X.shape[1] != self.num_features):
            raise ValueError("bad")
        s = np.asarray(self.model.predict(X)).copy()
        if self.flaw == "drift":
            s += self._calls * 1e-9
        return s

    def predict_row(self, x):
        return self.model.predict_row(x)

    def __reduce__(self):
        if self.flaw == "pickle-loses-state":
            return (_Broken, (_Zero(self.num_features), "none"))
        return (_Broken, (self.model, self.flaw))


class _Zero:
    """A model that forgot its trees: scores every row 0."""

    def __init__(self, num_features: int) -> None:
        self.num_features = num_features

    def predict(self, X):
        return np.zeros(len(X))


@pytest.mark.parametrize(
    ("flaw", "check"),
    [
        ("drift", check_scores_are_well_formed),
        ("pickle-loses-state", check_pickle_round_trip),
        ("bare-error", lambda m, mi, k: check_bad_input_raises_typed_errors(m, k)),
    ],
)
def test_battery_rejects_a_broken_scorer(flaw, check):
    kind = KINDS[0]
    pytest.importorskip("lightgbm")
    broken = _Broken(kind.loaders[0](), flaw)
    with pytest.raises(AssertionError):
        try:
            check(broken, kind.make_input, kind)
        except ValueError as e:  # a bare ValueError escaping pytest.raises(NbaError) also counts as caught
            raise AssertionError(str(e)) from e
