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

class TreeEnsembleCore:
    """Flattened LightGBM ensemble scored exactly as ``GBDT::Predict`` (built by nba.models.lightgbm)."""

    num_features: int
    num_tree_per_iteration: int
    num_iterations: int
    transform: int
    transform_param: float
    average_output: bool
    @property
    def row_kernel(self) -> str:
        """The walk that scores this model: "lanes", or "lanes-categorical" (with categorical splits)."""
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

# --- one decision in one call (_decide.pxi) ---
PMF_TOLERANCE: float
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

# --- Vowpal Wabbit hashed-linear scoring (_vw.pxi) ---
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


# --- exploration: pmf and sampling (_policy.pxi) ---
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

# --- online bandits (_bandits.pxi) ---
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
        """Learn; the index of the first feature that is non-finite or beyond MAX_ABS_FEATURE (nothing learned) or -1."""
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

# --- experiment allocation (_experiments.pxi) ---
# GrowthBook bucketing constants and allocation-code flags, for nba.experiments.
GB_BUCKETS: int
GB_NS_BUCKETS: int
MAX_EXPERIMENTS: int
HOLDOUT_BIT: int
FORCED_BIT: int

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

# --- log writes (_logio.pxi) ---
def write_held(fd: int, data: bytearray, start: int = 0) -> int:
    """write(2) ``data[start:]`` holding the GIL (short page-cache writes); bytes written, or OSError."""

# --- plain dicts to vectors (_schema.pxi) ---
class DictVectorizer:
    """nba.schema's fast path for plain dicts, compiled; anything unusual is handed back."""

    n_columns: int
    def __init__(self, fields: list[tuple[object, ...]], n_columns: int) -> None: ...
    def vectorize(self, profile: object, context: object, out: npt.NDArray[np.float64]) -> bool:
        """Write the vector into ``out``; False when nba.schema's validating path must read the input."""
