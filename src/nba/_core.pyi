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

# --- Vowpal Wabbit hashed-linear scoring (_vw.pxi) ---

# --- exploration: pmf and sampling (_policy.pxi) ---

# --- online bandits (_bandits.pxi) ---

# --- experiment allocation (_experiments.pxi) ---
