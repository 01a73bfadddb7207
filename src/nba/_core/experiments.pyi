"""Type stubs of nba._core.experiments: experiment allocation."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# GrowthBook bucketing constants and allocation-code flags, for nba.experiments.
GB_BUCKETS: int
GB_NS_BUCKETS: int
MAX_EXPERIMENTS: int
HOLDOUT_BIT: int
FORCED_BIT: int

class ExperimentTable:
    """Precomputed GrowthBook bucket tables of experiments, a holdout and their namespaces.

    Built and validated by ``nba.experiments.Allocator``; ``table`` holds variant
    index + 1 per hash-v2 bucket (0: not enrolled), or per hash-v1 bucket in its first
    1,000 entries for an experiment with ``v1_start >= 0`` (its seed in ``ns_units``).
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
        v1_start: npt.NDArray[np.int32],
        v1_len: npt.NDArray[np.int32],
    ) -> None: ...
    def assign(self, unit: str) -> bytes:
        """Allocation code: a holdout byte, then variant index + 1 per experiment (0: not enrolled)."""
    def assign_many(self, units: tuple[str, ...], out: npt.NDArray[np.uint8]) -> None:
        """Allocation codes of many units into the rows of ``out`` (n, 1 + n_experiments); releases the GIL."""
