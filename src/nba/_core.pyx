# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""nba's compiled kernels: arithmetic only.

Everything here takes flat, already validated arrays and returns numbers. Parsing,
validation and error messages live in the Python modules that build these objects
(``nba.models.*``, ``nba.policy``, ...). Each concept lives in its own include file
so the module stays one extension while the code stays one file per concept.
"""

from libc.stdint cimport uint16_t, uint32_t, uint64_t, int32_t, int64_t, uint8_t

include "_hash.pxi"
include "_trees.pxi"
include "_vw.pxi"
include "_policy.pxi"
include "_bandits.pxi"
include "_experiments.pxi"
include "_decide.pxi"
include "_logio.pxi"
include "_schema.pxi"
