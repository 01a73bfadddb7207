"""The conformance battery every model kind nba can load must pass (cf. river's ``check_estimator``).

A helper module, not a test module: ``tests/models/test_conformance.py`` runs the
battery on every kind it lists, and other suites (``test_vw.py``) run it on their
own kinds. ``check_scorer`` loads nothing itself: it takes a loaded model and the
kind's adapters (a ``ScorerKind``) and checks what any scorer the Decider uses
must guarantee (the list is in ``test_conformance``'s docstring).
"""

from __future__ import annotations

import copy
import pickle
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import nba

N_THREADS = 8


@dataclass(frozen=True)
class ScorerKind:
    """How the battery drives one kind of model."""

    name: str
    loaders: Sequence[Callable[[], Any]]  # every way to load the same model; the first is the main one
    make_input: Callable[[Any, int, int], Any]  # (model, n, seed) -> a batch of n inputs
    score: Callable[[Any, Any], np.ndarray]  # (model, batch) -> float64 scores, first axis = inputs
    take: Callable[[Any, int], Any]  # (batch, i) -> a batch holding only input i
    bad_inputs: Callable[[Any], list[tuple[str, Any, type[nba.NbaError]]]]  # (model) -> (label, batch, error)
    score_one: Callable[[Any, Any], np.ndarray] | None = None  # (model, batch of one) -> scores, single-input path


# --------------------------------------------------------------------------- the battery


def as_scores(a: Any) -> np.ndarray:
    arr = np.asarray(a)
    assert arr.dtype == np.float64, f"scores must be float64, got {arr.dtype}"
    return arr


def check_scorer(model: Any, make_input: Callable[[Any, int, int], Any], kind: ScorerKind) -> None:
    """Run the whole battery on one loaded ``model``."""
    check_scores_are_well_formed(model, make_input, kind)
    check_batch_equals_one_at_a_time(model, make_input, kind)
    check_pickle_round_trip(model, make_input, kind)
    check_concurrent_use_matches_serial(model, make_input, kind)
    check_bad_input_raises_typed_errors(model, kind)


def check_scores_are_well_formed(model, make_input, kind: ScorerKind) -> None:
    batch = make_input(model, 64, 1)
    s = as_scores(kind.score(model, batch))
    assert s.shape[0] == 64
    assert np.isfinite(s).all(), "finite inputs gave non-finite scores"
    np.testing.assert_array_equal(as_scores(kind.score(model, batch)), s, err_msg="scoring twice differs")
    assert s.std(axis=0).max() > 0, "every input got the same score: the inputs never reach the model"


def check_batch_equals_one_at_a_time(model, make_input, kind: ScorerKind) -> None:
    batch = make_input(model, 20, 2)
    s = as_scores(kind.score(model, batch))
    for i in range(20):
        one = kind.take(batch, i)
        np.testing.assert_array_equal(as_scores(kind.score(model, one))[0], s[i], err_msg=f"input {i} alone")
        if kind.score_one is not None:
            np.testing.assert_array_equal(
                as_scores(kind.score_one(model, one)).reshape(-1), s[i].reshape(-1), err_msg=f"input {i}, one-input path"
            )


def check_pickle_round_trip(model, make_input, kind: ScorerKind) -> None:
    batch = make_input(model, 200, 3)
    s = as_scores(kind.score(model, batch))
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        clone = pickle.loads(pickle.dumps(model, protocol=protocol))
        assert type(clone) is type(model)
        np.testing.assert_array_equal(as_scores(kind.score(clone, batch)), s, err_msg=f"pickle protocol {protocol}")
    np.testing.assert_array_equal(as_scores(kind.score(copy.deepcopy(model), batch)), s, err_msg="deepcopy")


def check_concurrent_use_matches_serial(model, make_input, kind: ScorerKind, repeats: int = 25) -> None:
    batches = [make_input(model, 50, 100 + t) for t in range(N_THREADS)]
    expected = [as_scores(kind.score(model, b)) for b in batches]
    expected_one = [as_scores(kind.score(model, kind.take(b, 0))) for b in batches]
    barrier = threading.Barrier(N_THREADS)
    errors: list[str] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for _ in range(repeats):
                got = as_scores(kind.score(model, batches[t]))
                one = as_scores(kind.score(model, kind.take(batches[t], 0)))
                if not (np.array_equal(got, expected[t]) and np.array_equal(one, expected_one[t])):
                    errors.append(f"thread {t}: concurrent scores differ from serial")
                    return
        except BaseException as e:  # noqa: BLE001 - reported below, with the thread
            errors.append(f"thread {t}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(N_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors


def check_bad_input_raises_typed_errors(model, kind: ScorerKind) -> None:
    for label, bad, error in kind.bad_inputs(model):
        with pytest.raises(nba.NbaError) as info:
            kind.score(model, bad)
        assert isinstance(info.value, error), f"{label}: expected {error.__name__}, got {type(info.value).__name__}"
        assert str(info.value), f"{label}: the error has no message"
        if kind.score_one is not None:
            with pytest.raises(nba.NbaError):
                kind.score_one(model, bad)
