"""Type stubs of nba._core.vectorize: profiles and contexts to vectors."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

EVENT_MISSING: int
EVENT_DEFAULTED: int
EVENT_UNKNOWN: int
EVENT_CLIPPED: int

class DictVectorizer:
    """nba.schema's fast path for dicts, Structs and Mappings, compiled; anything unusual is handed back.

    It also counts, per field, what successful calls saw: missing, defaulted, unknown, clipped.
    """

    n_columns: int
    def __init__(
        self,
        fields: list[tuple[object, ...]],
        n_columns: int,
        strict_keys: tuple[tuple[str, ...], tuple[str, ...]] | None = None,
    ) -> None: ...
    def vectorize(self, profile: object, context: object, out: npt.NDArray[np.float64]) -> bool:
        """Write the vector into ``out``; False when nba.schema's validating path must read the input."""
    def record(self, events: list[tuple[int, int]]) -> None:
        """Count one call the validating path finished: (field index, event bits) per event."""
    def add(self, calls: int, counts: npt.NDArray[np.uint64]) -> None:
        """Count ``calls`` calls at once: ``counts[i]`` are field i's four counts."""
    def counts(self, reset: bool = False) -> tuple[int, list[list[int]]]:
        """(calls, [[missing, defaulted, unknown, clipped] per field]), optionally reset to zero."""
