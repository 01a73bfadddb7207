"""What each eligibility operator means, in plain Python.

The reference the eligibility tests check nba's rules against, and the naive-Python
eligibility benchmark (``benchmarks/bench_schema.py``) runs.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

RULE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": lambda v, c: v in c,
    "not_in": lambda v, c: v not in c,
}
