"""FeatureSchema's two paths side by side: the compiled fast path and the validating one must agree."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nba import FeatureSchema, SchemaError


def checked(schema: FeatureSchema, profile: Any, context: Any) -> np.ndarray:
    """The validating path alone (what the compiled path hands an input it declines)."""
    return schema._vectorize_checked(profile, context, np.empty(schema.n_columns))


def assert_paths_agree(fast: FeatureSchema, slow: FeatureSchema, profile: Any, context: Any) -> None:
    """``fast.vectorize`` gives ``slow``'s validating path's vector bit for bit, or raises its error word for
    word; ``fast`` and ``slow`` may be one schema or two built alike (whose counters must then agree too)."""
    try:
        want = checked(slow, profile, context)
    except SchemaError as e:
        with pytest.raises(SchemaError) as got:
            fast.vectorize(profile, context)
        assert str(got.value) == str(e)
    else:
        assert fast.vectorize(profile, context).tobytes() == want.tobytes()
    if fast is not slow:
        assert fast.counters() == slow.counters()
