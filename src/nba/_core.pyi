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
class ExperimentTable:
    """Precomputed GrowthBook bucket tables of experiments, a holdout and their namespaces.

    Built and validated by ``nba.experiments.Allocator``; ``table`` holds variant
    index + 1 per hash-v2 bucket (0: not enrolled).
    """

    n_experiments: int
    def __init__(
        self,
        salt_state: npt.NDArray[np.uint32],
        table: npt.NDArray[np.uint8],
        ns_start: npt.NDArray[np.int32],
        ns_len: npt.NDArray[np.int32],
        ns_lo: npt.NDArray[np.int32],
        ns_hi: npt.NDArray[np.int32],
        ns_units: npt.NDArray[np.uint16],
        holdout_state: int,
        holdout_buckets: int,
    ) -> None: ...
    def assign(self, unit: str) -> bytes:
        """Allocation code: a holdout byte, then variant index + 1 per experiment (0: not enrolled)."""
    def assign_many(self, units: tuple[str, ...], out: npt.NDArray[np.uint8]) -> None:
        """Allocation codes of many units into the rows of ``out`` (n, 1 + n_experiments); releases the GIL."""

def fnv1a_32_str(s: str, state: int = 0x811C9DC5) -> int:
    """32-bit FNV-1a over the UTF-16 code units of ``s`` (GrowthBook's ``fnv1a32``), from ``state``."""
