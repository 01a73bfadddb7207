"""Build only the compiled core; all metadata lives in pyproject.toml.

NBA_DEBUG=1 at build time turns bounds checks back on and compiles with -O0 -g,
so the test suite can be run against a checked build now and then.
"""

import os
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("NBA_DEBUG") == "1"


def render_templates(root: str = "src/nba/_core") -> list[str]:
    """Render each ``<name>.pxi.in`` there (Cython's Tempita) to ``<name>.pxi``; return the templates.

    A .pxi is written only when its text changes, so that its mtime (which cythonize
    checks, as for any included file) moves exactly when the output does: a template
    edit rebuilds the core, and an unchanged template keeps builds incremental.
    """
    from Cython.Tempita import Template

    templates = sorted(Path(root).glob("*.pxi.in"))
    for src in templates:
        text = Template(src.read_text(), name=str(src)).substitute()
        out = src.with_suffix("")
        if not out.exists() or out.read_text() != text:
            tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, out)  # a concurrent build never reads half a file
    return [str(t) for t in templates]


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
    include_dirs=[np.get_include(), "src/nba/_core"],  # trees_qs.h, also for the debug build's C files
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    # No -ffast-math: raw scores must sum in exactly LightGBM's order and rounding. No contraction of
    # a * b + c into one fused multiply-add either (gcc's default where FMA exists, as with
    # -march=native): the profile features must round as Python's float arithmetic does.
    extra_compile_args=(["-O0", "-g"] if DEBUG else ["-O3"]) + ["-ffp-contract=off"],
)
core.depends += render_templates() + ["src/nba/_core/trees_qs.h"]  # also puts them into an sdist

# The debug build's C file goes to its own directory, so that a later release build never
# compiles C generated with the debug directives.
setup(ext_modules=cythonize([core], compiler_directives=directives, force=DEBUG, include_path=["src"],
                            nthreads=os.cpu_count() or 1,
                            build_dir="build/cython-debug" if DEBUG else None))
