"""Type stubs of nba._core.decide: one decision in one call."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from nba._core.trees import ArmForestCore

DECIDE_EPSILON_GREEDY: int
DECIDE_SOFTMAX: int
DECIDE_SQUARECB: int

def decide_forest(
    forest: ArmForestCore,
    x: npt.NDArray[np.float64],
    idx: npt.NDArray[np.intp],
    values: npt.NDArray[np.float64],
    weights: npt.NDArray[np.float64],
    policy: int,
    p1: float,
    p2: float,
    event_id: str | bytes,
    seed: int,
    acc: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float64],
    pri: npt.NDArray[np.float64],
    pmf: npt.NDArray[np.float64],
) -> int:
    """Score, arbitrate ((score x value) x weight), explore and draw; the drawn position in ``idx``,
    ``-1 - j`` for a non-finite priority j, ``-1 - len(idx)`` for a pmf sample() would refuse."""
