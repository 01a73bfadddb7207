"""Build only the compiled core; all metadata lives in pyproject.toml.

NBA_DEBUG=1 at build time turns bounds checks back on and compiles with -O0 -g,
so the test suite can be run against a checked build now and then.
"""

import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("NBA_DEBUG") == "1"

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

# One extension per module of the nba._core package; each .pxd is its contract.
core = Extension(
    "nba._core.*",
    ["src/nba/_core/*.pyx"],
    include_dirs=[np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    # No -ffast-math: raw scores must sum in exactly LightGBM's order and rounding.
    extra_compile_args=["-O0", "-g"] if DEBUG else ["-O3"],
)

# The debug build's C file goes to its own directory, so that a later release build never
# compiles C generated with the debug directives.
setup(ext_modules=cythonize([core], compiler_directives=directives, force=DEBUG, include_path=["src"],
                            nthreads=os.cpu_count() or 1,
                            build_dir="build/cython-debug" if DEBUG else None))
