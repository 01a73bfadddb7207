"""Type stubs of nba._core.bandits: online bandits."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# State behind one lock per object (short sections keep the GIL; draw loops release it). Arms, shapes and
# rewards are validated by nba.bandits; methods taking ``x`` return the index
# of its first non-finite feature (nothing done) or -1.
UNPLAYED_SCORE: float
#: Largest |x_i| LinearCore.update learns from (the rest is refused, nothing learned).
MAX_ABS_FEATURE: float

class BetaBernoulliCore:
    """Beta(alpha, beta) posterior per arm."""

    n_arms: int
    version: int
    def __init__(self, n_arms: int, alpha0: float, beta0: float) -> None: ...
    def update(self, arm: int, reward: float) -> None: ...
    def mean(self, out: npt.NDArray[np.float64]) -> None: ...
    def sample(self, key: int, out: npt.NDArray[np.float64]) -> None: ...
    def best_pmf(
        self,
        key: int,
        draws: int,
        arms: npt.NDArray[np.int64],
        scale: npt.NDArray[np.float64],
        out: npt.NDArray[np.float64],
    ) -> None:
        """Share of ``draws`` posterior draws in which each offered arm (times scale) is best."""
    def get_state(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64], int]: ...
    def set_state(self, alpha: npt.ArrayLike, beta: npt.ArrayLike, pulls: npt.ArrayLike, version: int) -> None: ...

class UCB1Core:
    """Pull counts and reward sums per arm."""

    n_arms: int
    version: int
    def __init__(self, n_arms: int) -> None: ...
    def update(self, arm: int, reward: float) -> None: ...
    def ucb(self, out: npt.NDArray[np.float64]) -> None: ...
    def mean(self, out: npt.NDArray[np.float64]) -> None: ...
    def get_state(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], int]: ...
    def set_state(self, sums: npt.ArrayLike, pulls: npt.ArrayLike, version: int) -> None: ...

class LinearCore:
    """Disjoint ridge regressions (A^-1 by Sherman-Morrison, b, theta) per arm."""

    n_arms: int
    n_features: int
    version: int
    def __init__(self, n_arms: int, n_features: int, ridge: float) -> None: ...
    def update(self, arm: int, x: npt.NDArray[np.float64], reward: float) -> int:
        """Learn; the index of the first feature non-finite or beyond MAX_ABS_FEATURE (nothing learned), or -1."""
    def ucb(self, x: npt.NDArray[np.float64], alpha: float, out: npt.NDArray[np.float64]) -> int: ...
    def mean_width(
        self, x: npt.NDArray[np.float64], mean: npt.NDArray[np.float64], width: npt.NDArray[np.float64]
    ) -> int: ...
    def sample(self, x: npt.NDArray[np.float64], v: float, key: int, out: npt.NDArray[np.float64]) -> int: ...
    def best_pmf(
        self,
        x: npt.NDArray[np.float64],
        v: float,
        key: int,
        draws: int,
        arms: npt.NDArray[np.int64],
        scale: npt.NDArray[np.float64],
        out: npt.NDArray[np.float64],
    ) -> int: ...
    def get_state(
        self,
    ) -> tuple[
        npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64], int
    ]: ...
    def set_state(
        self, ainv: npt.ArrayLike, b: npt.ArrayLike, theta: npt.ArrayLike, pulls: npt.ArrayLike, version: int
    ) -> None: ...
