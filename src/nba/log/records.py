"""The decision log's format: the record types, the checksum that seals each line, and the log's warnings.

One JSON object per line (msgspec, tagged on ``"type"``); every line ends with
``"crc"``, the CRC-32 of the line's bytes before that field, so a reader tells a
damaged line from a good one. Field meanings: docs/contracts.md, "Log records".
"""

from __future__ import annotations

import zlib
from typing import Any

import msgspec

# Feature maps are {namespace: {name: value}} with value a number, string or bool
# (VW's JSON semantics, see docs/contracts.md). Loosely typed on purpose: a reader
# must never drop a decision over the shape of a feature it can still pass along.
Features = dict[str, Any]


# --------------------------------------------------------------------------- records


class DecisionRecord(msgspec.Struct, tag="decision", tag_field="type", frozen=True, kw_only=True, omit_defaults=True):
    """One decision: what was offered, with which probabilities, and what was chosen.

    ``chosen`` holds indices into ``actions`` (ranked; ``chosen[0]`` was taken) and
    ``probability`` is ``pmf[chosen[0]]``. ``ts`` is unix seconds. Non-finite
    scores are written as ``null`` (JSON has no inf/NaN) and read back as None.

    A Decider writes the model's input vector ``x`` and its ``schema_id`` instead
    of ``features`` (cheaper to write, and exactly what the model saw), plus in
    ``raw`` the unknown categories a vector cannot hold; ``read_records`` turns
    them back into ``features`` with the schema record of the segment. Fields at
    their default (``deferred=false``, empty ``raw``, ...) are not written.
    """

    event_id: str
    ts: float
    actions: list[str]
    pmf: list[float]
    chosen: list[int]
    probability: float
    scores: list[float | None] | None = None
    features: Features = {}
    model_version: str = ""
    variants: dict[str, str] = {}
    policy: str = ""
    channel: str | None = None
    unit: str | int | None = None
    deferred: bool = False
    fallback: bool = False
    catalog_id: str | None = None
    x: list[float | None] | None = None
    schema_id: str | None = None
    raw: Features = {}
    suppressed: dict[str, str] = {}
    # Apprentice mode (nba.apprentice): the application's own arm, whether it was served because the
    # Decider was apprenticing, and what the learned policy drew (index into actions) from which pmf.
    # While apprenticing, pmf is the serving distribution (one-hot on the baseline) and probability 1.0.
    baseline: str | None = None
    apprentice: bool = False
    learned: int | None = None
    learned_pmf: list[float] | None = None


class ActivationRecord(msgspec.Struct, tag="activation", tag_field="type", frozen=True):
    """A deferred decision was shown (activated) at ``ts``; only then does it count."""

    event_id: str
    ts: float


class OutcomeRecord(msgspec.Struct, tag="outcome", tag_field="type", frozen=True):
    """A reward ``value`` observed for ``event_id`` at ``ts`` (unix seconds)."""

    event_id: str
    ts: float
    value: float


class CatalogRecord(msgspec.Struct, tag="catalog", tag_field="type", frozen=True):
    """The arms' features ``{arm_id: {namespace: {name: value}}}`` of a catalogue.

    Written when registered and again at the top of every new segment.
    """

    catalog_id: str
    arms: dict[str, Features]
    ts: float = 0.0


class SchemaRecord(msgspec.Struct, tag="schema", tag_field="type", frozen=True):
    """How a decision's vector ``x`` reads back as features (``FeatureSchema.log_layout``).

    One entry per declared feature: ``[namespace, name, kind, column, categories]``
    with kind "number", "bool" or "category" (one-hot columns from ``column``, one
    per category). Written at the top of every segment, like catalogues.
    """

    schema_id: str
    features: list[tuple[str, str, str, int, list[Any]]]
    ts: float = 0.0


class SwitchRecord(msgspec.Struct, tag="switch", tag_field="type", frozen=True):
    """Apprentice mode ended at ``ts``: the shared counters met the rule, the learned policy serves from now on.

    Written once, by the worker whose update of the shared counters made the switch: ``events``
    decisions with a baseline had been counted, ``agreements`` of them where the learned policy drew
    the baseline, against the rule's ``threshold`` (share) and ``min_events``. No personal data.
    """

    ts: float
    events: int
    agreements: int
    threshold: float
    min_events: int


Record = DecisionRecord | ActivationRecord | OutcomeRecord | CatalogRecord | SchemaRecord | SwitchRecord


def _enc_hook(obj: Any) -> Any:
    """Encode numpy scalars and arrays as their Python equivalents."""
    tolist = getattr(obj, "tolist", None)
    if tolist is not None:
        return tolist()
    raise NotImplementedError(f"cannot write objects of type {type(obj).__name__} to the decision log")


# What encoding a record can raise: unencodable types, ints beyond 64 bits, lone
# surrogates in a str (UnicodeEncodeError is a ValueError).
_ENCODE_ERRORS = (TypeError, ValueError, NotImplementedError, OverflowError, msgspec.EncodeError)


# --------------------------------------------------------------------------- line checksums

_CRC_KEY = b',"crc":'


def _seal(line: bytearray) -> None:
    """End the JSON object in ``line`` with ``"crc"`` (CRC-32 of the bytes before it) and a newline.

    The line stays plain JSON (jq and pandas read it; msgspec ignores the extra
    field). CRC-32 catches every error of up to 32 consecutive bits, so one bad
    byte never passes as a good record.
    """
    del line[-1]  # the closing brace
    line += b',"crc":%d}\n' % zlib.crc32(line)


def _crc_state(line: bytes) -> bool | None:
    """True if the line ends with a matching ``"crc"``, False if with a wrong one, None if with none."""
    end = len(line) - 1 if line.endswith(b"\n") else len(line)
    k = line.rfind(_CRC_KEY, 0, end)
    if k < 0 or line[end - 1 : end] != b"}":
        return None
    digits = line[k + 7 : end - 1]
    if not (0 < len(digits) <= 10 and digits.isdigit()):
        return None
    return zlib.crc32(memoryview(line)[:k]) == int(digits)


# --------------------------------------------------------------------------- warnings


class LogWarning(UserWarning):
    """Something in a decision log was skipped; the message says what, where, and why."""


class TornRecordWarning(LogWarning):
    """The last line of a segment was cut short (the writer died mid-write); it was skipped."""


class CorruptRecordWarning(LogWarning):
    """A line inside a segment is not a valid record (bad checksum, bad JSON); it was skipped."""
