"""Type stubs of nba._core.policy: exploration: pmf and sampling."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

PMF_TOLERANCE: float

# pmf kernels write into ``out`` (same length as ``scores``) and return -1, the index
# of the first non-finite score (nothing written), or -2 when either is not a float64
# C-contiguous vector of one length >= 1 (``out`` writable): nba.policy then converts.

def pmf_epsilon_greedy(
    scores: npt.NDArray[np.float64], epsilon: float, tie_rtol: float, out: npt.NDArray[np.float64]
) -> int:
    """VW cb_explore_adf epsilon-greedy on scores (higher is better); ties within ``tie_rtol``."""

def pmf_softmax(
    scores: npt.NDArray[np.float64], lambda_: float, epsilon: float, out: npt.NDArray[np.float64]
) -> int:
    """exp(lambda_ * (s - max s)) normalized, then VW's minimum probability epsilon / n."""

def pmf_squarecb(scores: npt.NDArray[np.float64], gamma: float, out: npt.NDArray[np.float64]) -> int:
    """SquareCB: 1 / (n + gamma (best - s_i)) off the best, the rest on the best."""

def event_key(event_id: bytes, seed: int) -> int:
    """64-bit sampling key of (seed, event id bytes)."""

def uniform(key: int, j: int) -> float:
    """The j-th uniform in [0, 1) of the stream of ``key``."""

def sample_index(pmf: npt.NDArray[np.float64], event_id: str | bytes, seed: int, tol: float) -> int | None:
    """Index drawn with u_0 of the event's stream; ``-1 - j`` if entry j (or the sum, j = n) is bad;
    None if ``pmf`` is not a float64 C-contiguous vector or ``event_id`` not str/bytes."""

def sample_slate(
    pmf: npt.NDArray[np.float64], event_id: bytes, seed: int, tol: float, out: npt.NDArray[np.int64]
) -> int:
    """len(out) distinct indices without replacement into ``out``; -1, or j as in sample_index."""
