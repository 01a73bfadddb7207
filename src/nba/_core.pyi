"""Type stub for nba's compiled core (``nba._core``).

Users rarely touch these symbols directly: the Python modules that validate
input and build core objects (``nba.models``, ``nba.policy``, ...) wrap them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# --- hashing (_hash.pxi) ---
def murmurhash3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 of ``data`` with ``seed``, unsigned."""

def fnv1a_32(data: bytes) -> int:
    """32-bit FNV-1a of ``data``, unsigned."""

def splitmix64(x: int) -> int:
    """splitmix64 finalizer of a 64-bit unsigned integer."""

# --- tree ensembles (_trees.pxi) ---
class TreeEnsembleCore:
    """Flattened LightGBM ensemble scored exactly as ``GBDT::Predict`` (built by nba.models.lightgbm)."""

    num_features: int
    num_tree_per_iteration: int
    num_iterations: int
    transform: int
    transform_param: float
    average_output: bool
    def __init__(
        self,
        thr: npt.NDArray[np.float64],
        fx: npt.NDArray[np.uint32],
        right: npt.NDArray[np.int32],
        decision_type: npt.NDArray[np.uint8],
        cat_off: npt.NDArray[np.int32],
        cat_len: npt.NDArray[np.int32],
        cat_bits: npt.NDArray[np.uint32],
        roots: npt.NDArray[np.int32],
        num_features: int,
        num_tree_per_iteration: int,
        transform: int,
        transform_param: float,
        average_output: bool,
        coerce_row: object,
    ) -> None:
        """Copy validated preorder node arrays (see nba.models.lightgbm); nothing is re-checked."""
    def predict(
        self,
        X: npt.NDArray[np.float64],
        out: npt.NDArray[np.float64],
        start_iteration: int,
        num_iteration: int,
        raw_score: bool,
    ) -> npt.NDArray[np.float64]:
        """Score C-contiguous float64 rows (n, num_features) into ``out`` (n * classes); GIL released."""
    def predict_row(self, x: object, raw_score: bool = False) -> float | npt.NDArray[np.float64]:
        """One row: a float, or a new array of class scores; non-float64 input goes through coerce_row."""


# --- Vowpal Wabbit hashed-linear scoring (_vw.pxi) ---

# --- exploration: pmf and sampling (_policy.pxi) ---

# --- online bandits (_bandits.pxi) ---

# --- experiment allocation (_experiments.pxi) ---
