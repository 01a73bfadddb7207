"""Type stubs of nba._core.trees: tree ensembles."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# Node kinds and output transforms of the tree core, for the loader that builds its arrays.
NODE_NAN_LEFT: int
NODE_NAN_RIGHT: int
NODE_LEAF: int
NODE_COMPLEX: int
TRANSFORM_IDENTITY: int
TRANSFORM_SIGMOID: int
TRANSFORM_SOFTMAX: int
TRANSFORM_EXP: int
TRANSFORM_SOFTPLUS: int
TRANSFORM_SQUARE: int

ROW_KERNELS: dict[str, int]

def cpu_row_kernels() -> tuple[str, ...]:
    """The row kernels this CPU runs, best first: a subset of ("avx512", "avx2", "lanes")."""

def set_row_kernel(name: str) -> str:
    """Ask for "auto", "avx512", "avx2" or "lanes" for every model (read at each call); returns the previous ask."""

class TreeEnsembleCore:
    """Flattened LightGBM ensemble scored exactly as ``GBDT::Predict`` (built by nba.models.lightgbm)."""

    num_features: int
    num_tree_per_iteration: int
    num_iterations: int
    transform: int
    transform_param: float
    average_output: bool
    bitvector_declined: str | None
    @property
    def row_kernel(self) -> str:
        """The kernel scoring this model now: "bitvector-avx512", "bitvector-avx2", "lanes", "lanes-categorical"."""
    def _bitvector_tables(self) -> dict[str, npt.NDArray[np.generic]] | None:
        """The bitvector kernel's arrays, which it reads in place (tests mutate them); None if declined."""
    def __init__(
        self,
        thr: npt.NDArray[np.float64],
        fx: npt.NDArray[np.uint32],
        child: npt.NDArray[np.int32],
        leafval: npt.NDArray[np.float64],
        decision_type: npt.NDArray[np.uint8],
        cat_off: npt.NDArray[np.int32],
        cat_len: npt.NDArray[np.int32],
        cat_bits: npt.NDArray[np.uint32],
        roots: npt.NDArray[np.int32],
        depth: npt.NDArray[np.int32],
        num_features: int,
        num_tree_per_iteration: int,
        transform: int,
        transform_param: float,
        average_output: bool,
        coerce_row: object,
    ) -> None:
        """Copy validated node arrays (siblings adjacent, leaves self-looped; see nba.models.lightgbm).

        ``fx`` packs feature << 2 | kind; nothing is re-checked, the loader proved every index.
        """
    def predict(
        self,
        X: object,
        out: npt.NDArray[np.float64] | None,
        start_iteration: int,
        num_iteration: int,
        raw_score: bool,
    ) -> npt.NDArray[np.float64] | None:
        """Score C-contiguous float64 rows (n, num_features) into ``out`` ((n,) or (n, classes); None: new).

        Returns None, scoring nothing, when ``X`` or ``out`` is not exactly that; the GIL
        is released for calls large enough to pay for it.
        """
    def predict_row(self, x: object, raw_score: bool = False) -> float | npt.NDArray[np.float64]:
        """One row: a float, or a new array of class scores; non-float64 input goes through coerce_row."""


class ArmForestCore:
    """A TreeEnsembleCore bound to a catalogue: all eligible arms scored in one walk per tree (exact)."""

    n_arms: int
    n_shared: int
    arm_splits: int
    def __init__(
        self, ens: TreeEnsembleCore, x_col: npt.NDArray[np.int32], n_shared: int, arm_rows: npt.NDArray[np.float64]
    ) -> None:
        """``x_col[f]``: shared-vector position of model feature f, or -1 for an arm feature.
        ValueError for multiclass ensembles and trees 128 or more deep."""
    def scores(
        self,
        x: npt.NDArray[np.float64],
        idx: npt.NDArray[np.intp],
        acc: npt.NDArray[np.float64],
        out: npt.NDArray[np.float64],
        raw_score: bool = False,
    ) -> npt.NDArray[np.float64]:
        """Scores of ascending arms ``idx`` into ``out[:len(idx)]``; ``acc`` is n_arms scratch.

        The GIL is released for walks long enough to pay for it, as in ``predict``."""
