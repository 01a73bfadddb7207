"""Consent by purpose: what a customer allowed, when, and what a decision may use.

A purpose is a name: ``"personalisation"`` (a model may read the profile),
``"logging"`` (the decision log may hold profile features), or a channel
(``"email"``, ``"push"``, ...: an action may be sent there). Each change is a
``ConsentChange``: granted, denied or revoked at a time, with an optional expiry
and a source. ``Consent`` keeps a profile's changes, oldest first, and answers
``granted_at(purpose, t)`` from the latest change at or before ``t``: granted and
not expired is consent; denied, revoked, expired, or no change at all is not
(opt-in, as GDPR requires; ``Consent(default=...)`` sets the answer for purposes
with no change, per purpose).

Merging two profiles (``nba.profiles.identity``) keeps every change of both; at
equal times a denial or revocation wins over a grant, so a merge can never turn a
refusal into consent, and the result is the same in any order (associative,
commutative, and merging a profile with itself changes nothing).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec

from nba import _validate
from nba.errors import ModelFormatError, SchemaError

__all__ = ["PERSONALISATION", "LOGGING", "Consent", "ConsentChange"]

#: A model may read the profile's features for this decision.
PERSONALISATION = "personalisation"
#: The decision log may hold the profile's features.
LOGGING = "logging"

Status = Literal["granted", "denied", "revoked"]
# At equal times the most restrictive change comes last, so it is the one that counts.
_RANK = {"granted": 0, "revoked": 1, "denied": 2}
_MAX_PURPOSE = 128


class ConsentChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One change of consent for ``purpose``: ``status`` from ``at`` (unix seconds) until ``expires``."""

    purpose: str
    status: Status
    at: float
    expires: float | None = None  # a grant's end (unix seconds); None: until changed
    source: str = ""  # where it was given: "web-banner", "call-centre", ...

    def key(self) -> tuple[float, int, float, str]:
        """The order of changes: by time, then the more restrictive later, then expiry and source."""
        return (self.at, _RANK[self.status], math.inf if self.expires is None else self.expires, self.source)


def _check(change: ConsentChange) -> ConsentChange:
    purpose = _validate.text(change.purpose, "consent purpose")
    if not purpose or len(purpose) > _MAX_PURPOSE:
        raise SchemaError(f"consent purpose must be 1 to {_MAX_PURPOSE} characters, got {change.purpose!r}")
    if change.status not in _RANK:
        raise SchemaError(f"consent status must be 'granted', 'denied' or 'revoked', got {change.status!r}")
    at = _validate.timestamp(change.at, "consent time")
    expires = change.expires
    if expires is not None:
        expires = _validate.timestamp(expires, "consent expiry")
        if expires <= at:
            raise SchemaError(f"consent for {purpose!r}: expires ({expires}) must be after at ({at})")
    _validate.text(change.source, "consent source")
    return ConsentChange(purpose, change.status, at, expires, change.source)


class _Snapshot(msgspec.Struct, forbid_unknown_fields=True):
    format: int
    changes: list[ConsentChange]


_FORMAT = 1
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Snapshot)


class Consent:
    """A profile's consent changes by purpose, and what they allow at a time.

    ``default`` maps a purpose to the answer when it has no change yet (False for
    every purpose not listed: opt-in). Not thread-safe on its own: the profile
    store that holds it serialises changes to one profile.
    """

    __slots__ = ("_by_purpose", "_default")

    def __init__(self, changes: Iterable[ConsentChange] = (), *, default: Mapping[str, bool] | None = None) -> None:
        self._default = {
            _validate.text(p, "consent purpose"): bool(v) for p, v in (default or {}).items()
        }
        self._by_purpose: dict[str, list[ConsentChange]] = {}
        for c in changes:
            self.record(c)

    def record(self, change: ConsentChange) -> None:
        """Add a change (validated; ``SchemaError`` and nothing changed if it is malformed)."""
        if not isinstance(change, ConsentChange):
            raise SchemaError(f"expected a nba.profiles.ConsentChange, got {type(change).__name__}")
        c = _check(change)
        changes = self._by_purpose.setdefault(c.purpose, [])
        if c in changes:
            return  # the same change twice is one change
        changes.append(c)
        if len(changes) > 1 and changes[-2].key() > c.key():
            changes.sort(key=ConsentChange.key)

    def grant(self, purpose: str, at: float, *, expires: float | None = None, source: str = "") -> None:
        """Record that ``purpose`` was granted at ``at`` (until ``expires``, if given)."""
        self.record(ConsentChange(purpose, "granted", at, expires, source))

    def deny(self, purpose: str, at: float, *, source: str = "") -> None:
        """Record that ``purpose`` was refused at ``at``."""
        self.record(ConsentChange(purpose, "denied", at, None, source))

    def revoke(self, purpose: str, at: float, *, source: str = "") -> None:
        """Record that an earlier grant of ``purpose`` was withdrawn at ``at``."""
        self.record(ConsentChange(purpose, "revoked", at, None, source))

    def status(self, purpose: str, t: float) -> ConsentChange | None:
        """The change in force for ``purpose`` at ``t`` (the latest at or before it), or None."""
        changes = self._by_purpose.get(purpose)
        if not changes:
            return None
        current = None
        for c in changes:  # few changes per purpose: a scan is cheaper than a bisect on keys
            if c.at > t:
                break
            current = c
        return current

    def granted_at(self, purpose: str, t: float) -> bool:
        """True if ``purpose`` may be used at ``t``: granted by the change in force and not expired."""
        c = self.status(purpose, t)
        if c is None:
            return self._default.get(purpose, False)
        return c.status == "granted" and (c.expires is None or t < c.expires)

    def changes(self) -> list[ConsentChange]:
        """Every change, by purpose then time."""
        return [c for p in sorted(self._by_purpose) for c in self._by_purpose[p]]

    def merge(self, other: Consent) -> Consent:
        """A new Consent with the changes of both (self's defaults, then other's for purposes self lacks)."""
        out = Consent(default={**other._default, **self._default})
        for p in set(self._by_purpose) | set(other._by_purpose):
            merged = set(self._by_purpose.get(p, ())) | set(other._by_purpose.get(p, ()))
            out._by_purpose[p] = sorted(merged, key=ConsentChange.key)
        return out

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Consent) and self._by_purpose == other._by_purpose
                and self._default == other._default)

    def __repr__(self) -> str:
        return f"Consent({len(self.changes())} changes over {sorted(self._by_purpose)})"

    def to_bytes(self) -> bytes:
        """The changes as msgpack (defaults are configuration, not state, and are not included)."""
        return _ENCODER.encode(_Snapshot(_FORMAT, self.changes()))

    @classmethod
    def from_bytes(cls, data: bytes, *, default: Mapping[str, bool] | None = None) -> Consent:
        """A Consent from ``to_bytes`` output; ``ModelFormatError`` if the bytes are not one."""
        try:
            snap = _DECODER.decode(data)
        except (msgspec.DecodeError, TypeError) as e:
            raise ModelFormatError(f"not a consent snapshot: {e}") from None
        if snap.format != _FORMAT:
            raise ModelFormatError(f"consent snapshot format {snap.format} is not {_FORMAT}; upgrade nba")
        try:
            return cls(snap.changes, default=default)
        except SchemaError as e:
            raise ModelFormatError(f"consent snapshot holds an invalid change: {e}") from None
