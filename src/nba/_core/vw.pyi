"""Type stubs of nba._core.vw: Vowpal Wabbit hashed-linear scoring."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

def vw_hash(data: bytes, seed: int, hash_all: bool = False) -> int:
    """VW's feature hash of ``data`` with ``seed``: ``--hash strings`` (trim, digits -> int + seed) or ``all``."""

def vw_hash_string_feature(key: bytes, value: bytes, ns_hash: int, hash_all: bool = False, chain: bool = False) -> int:
    """Hash of the string-valued JSON feature ``{key: value}`` in a namespace whose hash is ``ns_hash``."""

class VWActions:
    """Actions hashed once: per-action feature blocks grouped by interaction slot."""
    n_actions: int
    layout: object
    h: npt.NDArray[np.uint32]
    v: npt.NDArray[np.float32]
    lin: npt.NDArray[np.uint8]
    base: npt.NDArray[np.int64]
    off: npt.NDArray[np.int32]
    def __init__(self, h: np.ndarray, v: np.ndarray, lin: np.ndarray, base: np.ndarray, off: np.ndarray,
                 n_actions: int, layout: object) -> None: ...

class VWBound:
    """Shared-vector columns hashed once, grouped by interaction slot, with their column indices."""
    n_columns: int
    layout: object
    h: npt.NDArray[np.uint32]
    lin: npt.NDArray[np.uint8]
    off: npt.NDArray[np.int32]
    cols: npt.NDArray[np.int32]
    def __init__(self, h: np.ndarray, lin: np.ndarray, off: np.ndarray, cols: np.ndarray, n_columns: int,
                 layout: object) -> None: ...

class VWCore:
    """A validated VW cb model: weights (dense 2**bits float32, or a sparse table of the non-zero ones),
    hashing parameters, interaction terms, and a hash cache bounded by entries and bytes."""
    cache_limit: int
    cache_bytes_limit: int
    cached_bytes: int
    sparse: bool
    layout: object
    @property
    def n_slots(self) -> int: ...
    @property
    def table_bytes(self) -> int:
        """Bytes of the weight store."""
    def __init__(self, weights: npt.NDArray[np.float32] | None, bits: int, seed: int, hash_all: bool,
                 chain_hash: bool, add_constant: bool, ignore: bytes, ignore_linear: bytes, slot_chars: bytes,
                 terms: npt.NDArray[np.int32], cache_limit: int = 200000, cache_bytes_limit: int = 8 << 20,
                 sparse_idx: npt.NDArray[np.uint32] | None = None, sparse_val: npt.NDArray[np.float32] | None = None,
                 salt: int = 0) -> None:
        """``weights`` None: the weights ``sparse_val`` at the distinct indices ``sparse_idx``, in a table
        probed by a multiply-shift hash made from ``salt``."""
    def clear_cache(self) -> None: ...
    def encode_actions(self, actions: list[dict]) -> VWActions | int:
        """Hash action dicts; an int is the index of the first invalid action."""
    def bind(self, columns: list[tuple[str, str] | tuple[str, str, str]]) -> VWBound | int:
        """Hash (namespace, name[, string value]) columns; an int is the index of the first invalid column."""
    def score_dict(self, shared: object, actions: VWActions, out: npt.NDArray[np.float64] | None = None,
                   negate: bool = False) -> npt.NDArray[np.float64] | int:
        """Per-action costs, or a status: -1 invalid shared, -2 bad out, -3 layout mismatch."""
    def score_vector(self, x: npt.NDArray[np.float64], bound: VWBound, actions: VWActions,
                     out: npt.NDArray[np.float64] | None = None, negate: bool = False
                     ) -> npt.NDArray[np.float64] | int:
        """Per-action costs (a NaN entry is an absent feature), or a status: k >= 0 column k infinite or beyond
        float32, -2 bad out, -3 layout mismatch, -4 bad x."""
