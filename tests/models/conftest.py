"""Fixtures of the model suites: the LightGBM parity suites run once per row kernel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nba._core import trees as trees_core

#: Every row kernel of the tree core; the suites that use ``tree_kernel`` run on each one this CPU runs.
TREE_KERNELS = ("lanes", "avx2", "avx512")


def kernel_name(tree_kernel: str, *, categorical: bool = False, wide: bool = False) -> str:
    """The ``row_kernel`` a model reports under ``tree_kernel`` if the bitvector kernel can serve it.

    ``wide``: its trees have 33 to 64 leaves, which only the AVX-512 bitvector kernel serves.
    """
    if tree_kernel == "lanes" or categorical or (wide and tree_kernel != "avx512"):
        return "lanes-categorical" if categorical else "lanes"
    return f"bitvector-{tree_kernel}"


@pytest.fixture(scope="module", params=TREE_KERNELS)
def tree_kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    """Force one row kernel for every model (already loaded or not) while a module's tests run on it."""
    if request.param not in trees_core.cpu_row_kernels():
        pytest.skip(f"this CPU does not run the {request.param} row kernel")
    prev = trees_core.set_row_kernel(request.param)
    yield request.param
    trees_core.set_row_kernel(prev)
