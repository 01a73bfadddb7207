"""Profiles: per-customer features computed incrementally from events.

``Event`` and ``check_event`` (``events.py``) are what goes in; the feature
definitions and ``Features`` (``features.py``) turn a stream of events into a small
mergeable state and the state into the profile dict a ``FeatureSchema`` reads.
"""

from nba.profiles.events import Event, check_event
from nba.profiles.features import (
    MAX_TILES,
    N_TILES,
    AnyDefinition,
    Count,
    Decayed,
    Definition,
    DistinctChannels,
    Features,
    FirstSeen,
    LastValue,
    Recency,
    Sum,
)

__all__ = [
    "Event",
    "check_event",
    "Features",
    "Definition",
    "AnyDefinition",
    "Count",
    "Sum",
    "Decayed",
    "Recency",
    "LastValue",
    "DistinctChannels",
    "FirstSeen",
    "N_TILES",
    "MAX_TILES",
]
