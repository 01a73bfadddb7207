"""Profiles: what nba knows of each customer, built from events on every channel.

``Event`` and ``check_event`` (``events.py``) are what goes in; the feature
definitions and ``Features`` (``features.py``) turn a stream of events into a small
mergeable state and the state into the profile dict a ``FeatureSchema`` reads;
``IdentityGraph`` (``identity.py``) says which ids are one profile; ``Consent``
(``consent.py``) what the customer allowed; a ``ProfileStore`` (``store.py``:
``EmbeddedProfileStore``, in memory; ``redis_store.py``: ``RedisProfileStore``, shared
through Redis) holds all three per profile and answers ``profile(id, now)``;
a ``ContactPolicy`` (``contact.py``) caps and spaces contacts over a profile's ``History``,
which a ``ContactStore`` (``EmbeddedContactStore``, ``RedisContactStore``) keeps.
``Triggers`` (``triggers.py``) says which profiles are due for a proactive action.
See docs/profiles.md.
"""

from nba.profiles.consent import LOGGING, PERSONALISATION, Consent, ConsentChange
from nba.profiles.contact import (
    Calendar,
    Cap,
    Contact,
    ContactPolicy,
    ContactStore,
    EmbeddedContactStore,
    Gap,
    History,
    Outcome,
    QuietHours,
    RedisContactStore,
    Rolling,
    Rule,
    Suppress,
    Window,
)
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
from nba.profiles.identity import IdentityGraph, Merge
from nba.profiles.redis_store import RedisProfileStore
from nba.profiles.store import EmbeddedProfileStore, Profile, ProfileStore
from nba.profiles.triggers import (
    Absence,
    Due,
    EmbeddedTriggerStore,
    OnEvent,
    RedisTriggerStore,
    TriggerRule,
    Triggers,
    TriggerStore,
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
    "IdentityGraph",
    "Merge",
    "Consent",
    "ConsentChange",
    "PERSONALISATION",
    "LOGGING",
    "ProfileStore",
    "EmbeddedProfileStore",
    "RedisProfileStore",
    "Profile",
    "ContactPolicy",
    "Rule",
    "Cap",
    "Gap",
    "Suppress",
    "QuietHours",
    "Window",
    "Rolling",
    "Calendar",
    "History",
    "Contact",
    "Outcome",
    "ContactStore",
    "EmbeddedContactStore",
    "RedisContactStore",
    "Triggers",
    "OnEvent",
    "Absence",
    "TriggerRule",
    "Due",
    "TriggerStore",
    "EmbeddedTriggerStore",
    "RedisTriggerStore",
]
