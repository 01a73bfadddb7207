"""Type stubs of nba._core.vectorize: profiles and contexts to vectors."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

class DictVectorizer:
    """nba.schema's fast path for dicts, Structs and Mappings, compiled; anything unusual is handed back."""

    n_columns: int
    def __init__(self, fields: list[tuple[object, ...]], n_columns: int) -> None: ...
    def vectorize(self, profile: object, context: object, out: npt.NDArray[np.float64]) -> bool:
        """Write the vector into ``out``; False when nba.schema's validating path must read the input."""
