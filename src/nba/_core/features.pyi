"""Type stubs of nba._core.features: profile feature updates in one compiled call per event."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

#: Step kinds by name: "python" (the Python updater), "count_total", "count_window", "sum_total",
#: "sum_window", "decayed", "recency", "last_value", "channels", "first_seen".
KINDS: dict[str, int]

class Step:
    """One definition's update, compiled; declines to ``update`` (its Python updater) on anything unusual."""

    index: int
    kind: int
    n: int
    bucket: float
    k: float
    prop: str | None
    where_keys: tuple[str, ...]
    where_values: tuple[Any, ...]
    where_bools: tuple[bool, ...]
    zero: int | float
    update: Callable[[Any, Any], None]

    def __init__(self, index: int, kind: int, update: Callable[[Any, Any], None], *, n: int = 0,
                 bucket: float = 1.0, k: float = 0.0, prop: str | None = None,
                 where: tuple[tuple[str, Any, bool], ...] = (), zero: int | float = 0) -> None: ...

class Tracker:
    """The steps of a Features by event type, tracking events into its states (``Features.track``'s fast path)."""

    def __init__(self, plans: dict[str, tuple[Step, ...]], every: tuple[Step, ...], check: Callable[[Any], Any],
                 max_ts: float) -> None: ...

    def track(self, state: Any, event: Any) -> None:
        """Apply the steps of ``event``'s type to ``state`` in place, as their Python updaters would; an event
        whose ts is not a float in ``[0, max_ts)`` goes through ``check`` first."""

    def track_many(self, state: Any, events: Iterable[Any]) -> None:
        """``track`` each of ``events`` in turn."""
