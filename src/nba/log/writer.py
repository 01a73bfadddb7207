"""The decision log: durable, append-only JSON lines of decisions, activations and outcomes.

A ``DecisionLog`` writes one JSON object per line (msgspec, tagged on ``"type"``)
into segments named ``<prefix>-<UTC timestamp>-<writer id>-<n>.jsonl``; a segment
is rotated by size and starts with the current catalogue and schema records, so
each segment is self-contained. Every line ends with ``"crc"``, the CRC-32 of the
line's bytes before that field, so a reader tells a damaged line from a good one.
``read_records`` reads the segments back (skipping, with a warning, a torn or
corrupt line rather than failing), ``join`` attaches outcomes to their decisions
inside a reward window, and ``export_dsjson`` writes Vowpal Wabbit's dsjson so
``vw --cb_explore_adf --dsjson`` trains on the log directly.

Durability (what an *acknowledged* record survives; every ``append_*`` returns
the record's sequence number, acknowledged once ``seq <= log.durable_seq``):

``"record"``  (default) each append is one ``os.write`` of the whole line before
              it returns: acknowledged on return; survives the process being
              killed (SIGKILL, crash, OOM) because the bytes are in the OS.
              Not a machine crash or power loss.
``"fsync"``   ``os.write`` + ``os.fdatasync`` per record: acknowledged on return;
              survives a machine crash too. Costs a disk flush per record.
``"interval"`` group commit: appends are buffered in memory; a background thread
              writes and fdatasyncs them at least every ``interval`` seconds.
              Acknowledged once a sync completed (``durable_seq``,
              ``wait_durable(seq)``, or ``flush()``); survives a machine crash.
              Unacknowledged records (at most ``interval`` seconds' worth) may
              be lost.
``"close"``   buffered (written to the OS each ``buffer_bytes``); acknowledged
              only by ``flush()`` or ``close()``, which write and fdatasync.

``flush()`` and ``close()`` always write and fdatasync, whatever the mode. A crash
can leave at most the last line of a segment torn: whole lines are written and
the log never appends to a segment it did not create.

What the writer does when the world misbehaves:

* a failed write (a full disk) truncates the segment back to its last whole line
  and raises ``LogError``: the append is refused (no sequence number used), or a
  failed ``flush()`` keeps its records pending. The next write retries in the same
  segment, and only if the truncation failed does the log move on to a new one. A segment the log
  created that holds no record is deleted, so a failure streak leaves at most one
  header-only segment behind, and records acknowledged earlier are never touched;
* a segment unlinked under the writer (``rm -rf`` of the log directory) is noticed
  before the record is acknowledged (after each write in "record"/"fsync" mode,
  at each sync in the buffered modes): the log recreates the directory and
  rewrites the unacknowledged lines in a new segment, or raises ``LogError``;
* after ``os.fork()`` (gunicorn ``--preload``) the child has its own locks, its
  own writer id and segments, none of the parent's buffered lines (the parent
  writes those), sequence numbers counting again from 0, and, in "interval"
  mode, its own sync thread (started by its first append).

Several writers (processes, hosts) may share a directory: segment names carry a
random writer id, so no two writers ever write one segment. ``read_records``
reads segments in the order of their start stamp (ties by writer id, then
number) and each segment's records in write order: records of one writer come
in the order it wrote them; records of different writers are not merged by
timestamp.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import math
import numbers
import os
import re
import sys
import threading
import time
import warnings
import weakref
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import msgspec

from nba import _core, _validate
from nba._locks import PoliteLock, acquire_politely
from nba.errors import ConfigError, LogError, SchemaError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "ActivationRecord",
    "CatalogRecord",
    "CorruptRecordWarning",
    "DecisionLog",
    "DecisionRecord",
    "ExportReport",
    "JoinedExample",
    "LogWarning",
    "OutcomeRecord",
    "ReadReport",
    "Record",
    "SchemaRecord",
    "TornRecordWarning",
    "export_dsjson",
    "join",
    "read_records",
]

DURABILITY_MODES = ("record", "fsync", "interval", "close")
ON_ERROR = ("skip", "raise")
_AGGREGATES = ("sum", "first")

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


Record = DecisionRecord | ActivationRecord | OutcomeRecord | CatalogRecord | SchemaRecord


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


# --------------------------------------------------------------------------- append-edge checks


def _event_id(value: Any, what: str) -> str:
    """A non-empty str that UTF-8 can encode."""
    if value.__class__ is not str or not value.isascii():
        value = _validate.text(value, what)
    if not value:
        raise SchemaError(f"{what} is empty; pass the decision's event id")
    return value


def _listed(value: Any, what: str) -> list[Any]:
    """A sequence (list, tuple, numpy array) as a list of plain Python values."""
    if value.__class__ is list:
        return value
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise SchemaError(f"{what} must be a sequence, got {type(value).__name__} {value!r}")
    tolist = getattr(value, "tolist", None)
    return tolist() if tolist is not None else list(value)


def _txt(value: Any, where: str, field: str) -> Any:
    """``value`` if it is text UTF-8 can encode (``_validate.text``); the message is built only on failure."""
    if value.__class__ is str and value.isascii():
        return value
    return _validate.text(value, f"{where}: {field}")


def _bad_key(key: Any, where: str, what: str) -> None:
    """Raise unless ``key`` (a namespace or feature name that failed the fast check) is a valid name."""
    _validate.text(key, f"{where}: {what}")
    if key[:1] == "_":
        raise SchemaError(
            f"{where}: {what} {key!r} starts with '_', which VW's JSON parser treats as a reserved key "
            "(labels, _multi, _text...); rename it"
        )


def _names_ok(names: Any) -> bool:
    """Every key of a dict is an ASCII str not starting with "_": one C-speed join and two scans."""
    try:
        joined = "\x00".join(names)
    except TypeError:
        return False
    return joined.isascii() and joined[:1] != "_" and "\x00_" not in joined


def _features_ok(features: Any) -> bool:
    """The fast path of ``_check_features``: a plain dict of dicts whose names pass ``_names_ok``."""
    if features.__class__ is not dict or not _names_ok(features):
        return False
    for feats in features.values():
        if feats.__class__ is dict:
            joined = "\x00".join(feats)
            if not (joined.isascii() and joined[:1] != "_" and "\x00_" not in joined):
                return False
    return True


def _check_features(features: Any, where: str) -> None:
    """``{namespace: {name: value}}`` (or a bare value in the default namespace) with VW-safe names.

    Values are left to the encoder (anything JSON can hold; a lone surrogate or
    an unencodable object is refused there). Names are checked a dict at a time;
    a dict that fails the quick check is walked for the message.
    """
    if features.__class__ is not dict and not isinstance(features, Mapping):
        raise SchemaError(
            f"{where}: features must be a dict {{namespace: {{name: value}}}}, got {type(features).__name__}"
        )
    if not _names_ok(features):
        for ns in features:
            _bad_key(ns, where, "namespace")
    for ns, feats in features.items():
        if (feats.__class__ is dict or isinstance(feats, Mapping)) and not _names_ok(feats):
            for name in feats:
                _bad_key(name, where, f"feature {ns!r}/")


def _flag(value: Any, what: str) -> bool:
    if value.__class__ is bool:
        return value
    if getattr(getattr(value, "dtype", None), "kind", "") == "b":  # numpy.bool_
        return bool(value)
    raise SchemaError(f"{what} must be True or False, got {type(value).__name__} {value!r}")


_FLOAT = {float}
_INT = {int}
_FLOAT_OR_NONE = {float, int, type(None)}
_INT64 = 1 << 63
_MAX_TS = _validate.MAX_TS


def _decision_ok(
    event_id: Any,
    actions: Any,
    pmf: Any,
    chosen: Any,
    probability: Any,
    scores: Any,
    ts: Any,
    features: Any,
    model_version: Any,
    variants: Any,
    policy: Any,
    channel: Any,
    unit: Any,
    deferred: Any,
    fallback: Any,
    catalog_id: Any,
) -> bool:
    """The fast path of ``append_decision``'s checks: True when every value is plainly fine.

    Only C-speed bulk tests (joins, sets, min/max/fsum over lists) and no
    messages; anything unusual (a tuple, numpy values, non-ASCII text, a bad
    value) declines, and ``_decision_checked`` then converts it or says what is
    wrong. Both give the same answer (tests/test_log_hostile.py).
    """
    try:
        n = len(actions)
        return bool(
            event_id.__class__ is str
            and event_id
            and event_id.isascii()
            and actions.__class__ is list
            and n
            and "\x00".join(actions).isascii()
            and len(set(actions)) == n
            and "" not in actions
            and pmf.__class__ is list
            and len(pmf) == n
            and set(map(type, pmf)) == _FLOAT
            and min(pmf) >= 0.0
            and max(pmf) <= 1.0
            and abs(sum(pmf) - 1.0) <= 1e-6  # rounding of a few terms is ~1e-16, far inside the tolerance
            and chosen.__class__ is list
            and (
                (len(chosen) == 1 and chosen[0].__class__ is int and 0 <= chosen[0] < n)
                or (
                    len(chosen) > 1
                    and set(map(type, chosen)) == _INT
                    and min(chosen) >= 0
                    and max(chosen) < n
                    and len(set(chosen)) == len(chosen)
                )
            )
            and (probability is None or (probability.__class__ is float and abs(probability - pmf[chosen[0]]) <= 1e-9))
            and (
                scores is None
                or (scores.__class__ is list and len(scores) == n and set(map(type, scores)) <= _FLOAT_OR_NONE)
            )
            and (ts is None or (ts.__class__ is float and 0.0 <= ts < _MAX_TS))
            and (features is None or _features_ok(features))
            and model_version.__class__ is str
            and model_version.isascii()
            and policy.__class__ is str
            and policy.isascii()
            and (channel is None or (channel.__class__ is str and channel.isascii()))
            and (catalog_id is None or (catalog_id.__class__ is str and catalog_id.isascii()))
            and (
                unit is None
                or (unit.__class__ is str and unit.isascii())
                or (unit.__class__ is int and -_INT64 <= unit < _INT64)
            )
            and deferred.__class__ is bool
            and fallback.__class__ is bool
            and (
                variants is None
                or (
                    variants.__class__ is dict
                    and "\x00".join(variants).isascii()
                    and "\x00".join(variants.values()).isascii()
                )
            )
        )
    except (TypeError, ValueError, OverflowError):  # non-str in a join, unhashable in a set, inf - inf in fsum
        return False


def _decision_checked(
    event_id: Any,
    actions: Any,
    pmf: Any,
    chosen: Any,
    probability: Any,
    scores: Any,
    ts: Any,
    features: Any,
    model_version: Any,
    variants: Any,
    policy: Any,
    channel: Any,
    unit: Any,
    deferred: Any,
    fallback: Any,
    catalog_id: Any,
) -> tuple[Any, ...]:
    """The validating path of ``append_decision``: the values as the log writes them, or ``SchemaError``.

    Sequences become lists, numpy values plain numbers; every refusal names the
    field and the fix.
    """
    eid = _event_id(event_id, "decision event_id")
    where = f"decision {eid!r}"
    acts = _listed(actions, f"{where}: actions")
    n = len(acts)
    if n == 0:
        raise SchemaError(f"{where}: actions is empty; log the arms that were offered")
    try:
        joined = "\x00".join(acts)
        distinct = set(acts) if joined.isascii() else None
    except TypeError:
        distinct = None
    if distinct is None or len(distinct) != n or "" in distinct:
        for i, a in enumerate(acts):
            _validate.text(a, f"{where}: actions[{i}]")
            if not a:
                raise SchemaError(f"{where}: actions[{i}] is an empty arm id")
            if a in acts[:i]:
                raise SchemaError(f"{where}: action {a!r} appears twice in actions; each arm is offered once")

    p = _listed(pmf, f"{where}: pmf")
    if set(map(type, p)) != _FLOAT:
        p = [_validate.number(v, f"{where}: pmf[{i}]") for i, v in enumerate(p)]
    if len(p) != n:
        raise SchemaError(f"{where}: pmf has {len(p)} entries for {n} actions; give one probability per action")
    try:
        total = math.fsum(p)
    except (ValueError, OverflowError):
        total = math.nan
    if not (min(p) >= 0.0 and max(p) <= 1.0 and abs(total - 1.0) <= 1e-6):
        for i, v in enumerate(p):
            if not 0.0 <= v <= 1.0:
                raise SchemaError(f"{where}: pmf[{i}]={v!r} is not a probability in [0, 1]")
        raise SchemaError(
            f"{where}: pmf sums to {total!r}, not 1 (within 1e-6); log the full distribution over the actions"
        )

    ch = _listed(chosen, f"{where}: chosen")
    if not ch:
        raise SchemaError(f"{where}: chosen is empty; chosen[0] is the index of the action taken")
    for i, c in enumerate(ch):
        if c.__class__ is not int:
            if isinstance(c, bool) or not isinstance(c, numbers.Integral):
                raise SchemaError(f"{where}: chosen[{i}]={c!r} is not an index into actions (an int)")
            ch = [int(x) for x in ch]
            break
    if min(ch) < 0 or max(ch) >= n:
        bad = next(c for c in ch if not 0 <= c < n)
        raise SchemaError(f"{where}: chosen index {bad} is outside actions (0..{n - 1})")
    if len(set(ch)) != len(ch):
        raise SchemaError(f"{where}: chosen={ch!r} repeats an index; rank each action once")

    taken = p[ch[0]]
    if probability is None:
        prob = taken
    else:
        prob = _validate.number(probability, f"{where}: probability")
        if abs(prob - taken) > 1e-9:
            raise SchemaError(
                f"{where}: probability={prob!r} is not pmf[chosen[0]]={taken!r}; "
                "it must be the probability of the action taken (or leave it out)"
            )

    sc = None
    if scores is not None:
        sc = _listed(scores, f"{where}: scores")
        if len(sc) != n:
            raise SchemaError(f"{where}: scores has {len(sc)} entries for {n} actions")
        if not set(map(type, sc)) <= _FLOAT_OR_NONE:
            for i, v in enumerate(sc):
                if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
                    raise SchemaError(f"{where}: scores[{i}]={v!r} is not a number (or None)")

    when = None if ts is None else _validate.timestamp(ts, f"{where}: ts")
    feats = None
    if features is not None:
        _check_features(features, where)
        feats = features
    var = None
    if variants is not None:
        if not isinstance(variants, Mapping):
            raise SchemaError(f"{where}: variants must be a dict {{experiment: variant}}")
        var = {_txt(k, where, "variants key"): _txt(v, where, f"variants[{k!r}]") for k, v in variants.items()}
    return (
        eid,
        acts,
        p,
        ch,
        prob,
        sc,
        when,
        feats,
        _txt(model_version, where, "model_version"),
        var,
        _txt(policy, where, "policy"),
        None if channel is None else _txt(channel, where, "channel"),
        None if unit is None else _validate.unit_id(unit, f"{where}: unit"),
        _flag(deferred, f"{where}: deferred"),
        _flag(fallback, f"{where}: fallback"),
        None if catalog_id is None else _txt(catalog_id, where, "catalog_id"),
    )


def _readable_fast(record: Any) -> bool:
    """The numbers a reader needs as numbers (JSON has no NaN: they would be null) are finite.

    A few additions per record: ``append(record)`` is the Decider's fast path.
    """
    cls = record.__class__
    try:
        if cls is DecisionRecord:
            t = record.ts + record.probability + sum(record.pmf)
        elif cls is OutcomeRecord:
            t = record.ts + record.value
        elif cls is ActivationRecord:
            t = record.ts + 0.0
        else:
            return True
        return t - t == 0.0 and record.event_id.__class__ is str  # inf - inf and nan - nan are nan
    except TypeError:
        return False


def _unreadable_reason(record: Any) -> str | None:
    """What in ``record`` a reader could not read back, or None (the fast check was a false alarm)."""
    if record.event_id.__class__ is not str:
        return f"event_id={record.event_id!r} is not a str"
    fields: list[tuple[str, Any]] = [("ts", record.ts)]
    if record.__class__ is DecisionRecord:
        fields.append(("probability", record.probability))
        fields.extend((f"pmf[{i}]", v) for i, v in enumerate(record.pmf))
    elif record.__class__ is OutcomeRecord:
        fields.append(("value", record.value))
    for name, v in fields:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            return f"{name}={v!r} is not a finite number (JSON has no NaN or inf)"
    return None


# --------------------------------------------------------------------------- segment link watch

# A segment unlinked under the writer (rm -rf of the directory) takes every later
# write with it. os.fstat after each write would tell (st_nlink == 0) but costs
# ~0.9-1.5 us from Python; on Linux an inotify watch (IN_ATTRIB fires, inside the
# unlink call, when a link count changes) polled with one FIONREAD ioctl costs
# ~0.35 us, and os.fstat runs only when an event is queued. Elsewhere: os.fstat.
_IN_ATTRIB, _IN_DELETE_SELF, _IN_NONBLOCK, _IN_CLOEXEC = 0x4, 0x400, 0o4000, 0o2000000
_NO_EVENTS = b"\0\0\0\0"


def _load_inotify() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        import fcntl
        import termios

        libc = ctypes.CDLL(None, use_errno=True)
        init, add, rm = libc.inotify_init1, libc.inotify_add_watch, libc.inotify_rm_watch
        add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        return init, add, rm, fcntl.ioctl, termios.FIONREAD
    except (ImportError, OSError, AttributeError):
        return None


_INOTIFY = _load_inotify()


# --------------------------------------------------------------------------- writer

_SEGMENT_RE = re.compile(
    r"^(?P<prefix>.+?)-(?P<stamp>\d{8}T\d{6}\.\d{6}Z)(?:-(?P<writer>[0-9a-f]{16}))?-(?P<n>\d+)\.jsonl$"
)


def _stamp(ns: int) -> str:
    """UTC timestamp with microseconds, as used in segment names (sorts as text)."""
    sec, rem = divmod(ns, 1_000_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(sec)) + f".{rem // 1000:06d}Z"


def _writer_id() -> str:
    """64 random bits: segment names of two processes or hosts never collide."""
    return os.urandom(8).hex()


def _close_quietly(ref: weakref.ReferenceType) -> None:
    log = ref()
    if log is not None:
        with contextlib.suppress(Exception):  # at interpreter exit there is nobody left to tell
            log.close()


_LIVE: weakref.WeakSet[DecisionLog] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for log in list(_LIVE):
        log._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class DecisionLog:
    """Durable, thread-safe, fork-safe, append-only writer of decision log segments.

    ``durability`` is one of "record", "fsync", "interval", "close" (see the
    module docstring for what each guarantees); ``interval`` is the group-commit
    period in seconds; ``segment_bytes`` the size at which a new segment starts;
    ``buffer_bytes`` how much the buffered modes hold before writing to the OS.

    ``append_decision``, ``append_activation`` and ``append_outcome`` check every
    value and raise ``SchemaError`` (writing nothing) on a bad one; ``append`` of a
    prebuilt record is the fast path for a Decider, which checks its own inputs: it
    refuses only what could not be written or read back (``LogError``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        durability: str = "record",
        interval: float = 0.05,
        segment_bytes: int = 64 * 1024 * 1024,
        buffer_bytes: int = 1024 * 1024,
        prefix: str = "decisions",
    ) -> None:
        if durability not in DURABILITY_MODES:
            raise ConfigError(
                f"DecisionLog durability={durability!r} is not one of {', '.join(map(repr, DURABILITY_MODES))}"
            )
        if not (isinstance(interval, (int, float)) and math.isfinite(interval) and interval > 0):
            raise ConfigError(f"DecisionLog interval={interval!r} must be a positive number of seconds")
        if not (isinstance(segment_bytes, int) and segment_bytes > 0):
            raise ConfigError(f"DecisionLog segment_bytes={segment_bytes!r} must be a positive integer")
        if not (isinstance(buffer_bytes, int) and buffer_bytes > 0):
            raise ConfigError(f"DecisionLog buffer_bytes={buffer_bytes!r} must be a positive integer")
        if not prefix or "/" in prefix or os.sep in prefix or not re.fullmatch(r"[A-Za-z0-9_.\-]+", prefix):
            raise ConfigError(f"DecisionLog prefix={prefix!r} must be a non-empty file name part ([A-Za-z0-9_.-])")
        self.directory = os.fspath(directory)
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as e:
            raise LogError(f"cannot create log directory {self.directory!r}: {e.strerror or e}") from e
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise LogError(f"log directory {self.directory!r} is not writable; check its permissions")
        self.durability = durability
        self.interval = float(interval)
        self.segment_bytes = segment_bytes
        self.buffer_bytes = buffer_bytes
        self.prefix = prefix

        self._buffered = durability in ("interval", "close")
        self._fsync_each = durability == "fsync"
        self._encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
        self._init_locks()
        self._line = bytearray()  # the record being encoded (reused)
        self._buf = bytearray()  # pending lines of the current segment (buffered modes)
        self._catalogs: dict[str, CatalogRecord] = {}
        self._schemas: dict[str, SchemaRecord] = {}

        self._writer = _writer_id()  # in every segment name: writers sharing a directory never collide
        self._fd = -1
        self._fd_gen = 0  # bumped whenever _fd changes, so a sync never hits a reused fd
        self._path: str | None = None
        self._seg_n = 0
        self._last_stamp_ns = 0
        self._seg_size = 0  # bytes of the current segment, written or buffered
        self._seg_records = 0  # records after the catalogue header
        self._seg_hdr = 0  # bytes of the segment's header records
        self._good = 0  # bytes of whole lines written to the segment: a failed write truncates back here
        self._verified = 0  # bytes known to be synced into a linked file (buffered modes)
        self._broken = False  # a failed write could not be undone: continue in a new segment
        self._header_pending = False  # the segment's header could not be written: retry in this same file
        self._ifd = -1  # inotify instance watching the segment's link count ("record"/"fsync")
        self._wd = -1
        self._ion = bytearray(4)  # FIONREAD result
        self._inotify_ok = _INOTIFY is not None and not self._buffered
        self._seq = 0  # last sequence number handed out
        self._written_seq = 0  # last record handed to the OS
        self._synced_seq = 0  # last record fdatasync-ed into a linked segment
        self._durable_seq = 0
        self._closed = False
        self._segments: list[str] = []

        self._syncer: threading.Thread | None = None
        self._restart_syncer = False
        if durability == "interval":
            self._start_syncer()
        self._atexit = functools.partial(_close_quietly, weakref.ref(self))
        atexit.register(self._atexit)
        _LIVE.add(self)

    def _init_locks(self) -> None:
        self._lock = PoliteLock()  # appends, writes, rotation (no convoy with the GIL)
        self._sync_lock = threading.Lock()  # fdatasync vs closing that fd
        self._durable = threading.Condition(threading.Lock())
        self._stop = threading.Event()

    def _start_syncer(self) -> None:
        self._restart_syncer = False
        self._syncer = threading.Thread(target=self._sync_loop, name="nba-log-sync", daemon=True)
        self._syncer.start()

    def _after_fork(self) -> None:
        """In a forked child: own locks, no parent lines or fd, a new writer id, seq from 0.

        A lock another parent thread held at the fork would never be released in
        the child; the parent's buffered lines are the parent's to write; and two
        processes must never write into one segment, so the child's next append
        opens a segment of its own. The inherited fds are closed (the parent's
        stay open). Sequence numbers are per process: the child's start at 0, so
        it must not wait for a number it got before the fork.
        """
        self._init_locks()
        self._line = bytearray()
        self._buf = bytearray()
        for fd in (self._fd, self._ifd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = self._ifd = self._wd = -1
        self._fd_gen += 1
        self._path = None
        self._writer = _writer_id()
        self._seg_n = 0
        self._segments = []
        self._seg_size = self._seg_records = self._seg_hdr = self._good = self._verified = 0
        self._broken = self._header_pending = False
        self._seq = self._written_seq = self._synced_seq = self._durable_seq = 0
        self._syncer = None  # the parent's thread does not exist here
        self._restart_syncer = self.durability == "interval" and not self._closed

    # ----------------------------------------------------------------- appends

    def append(self, record: Record) -> int:
        """Append one record; returns its sequence number (see ``durable_seq``).

        The fast path for records a Decider built from checked values: it refuses
        (``LogError``, nothing written, no sequence number used) only what could
        not be written or read back: unencodable values, lone surrogates, a
        non-finite ts, probability, pmf entry or outcome value.
        """
        lock = self._lock.lock  # PoliteLock's fast path, inlined: this runs once per decision
        if not lock.acquire(False):
            acquire_politely(lock)
        try:
            return self._append_locked(record)
        finally:
            lock.release()

    def _append_locked(self, record: Record) -> int:
        if self._closed:
            raise LogError(f"decision log {self.directory!r} is closed; create a new DecisionLog to write")
        line = self._line
        try:
            self._encoder.encode_into(record, line)
        except _ENCODE_ERRORS as e:
            raise LogError(
                f"cannot write {type(record).__name__} {getattr(record, 'event_id', '')!r} to the decision log: "
                f"{e}; pass numbers, strings (valid UTF-8), bools, lists and dicts"
            ) from e
        if not _readable_fast(record):
            reason = _unreadable_reason(record)
            if reason is not None:
                raise LogError(
                    f"cannot write {type(record).__name__} {getattr(record, 'event_id', '')!r} to the decision "
                    f"log: {reason}; a reader could not read it back"
                )
        _seal(line)
        n = len(line)
        if self._fd < 0 or self._broken or (self._seg_size + n > self.segment_bytes and self._seg_records):
            self._new_segment()
        if self._buffered:
            if self._restart_syncer:
                self._start_syncer()
            self._seq += 1
            self._buf += line
            if len(self._buf) >= self.buffer_bytes:
                try:
                    self._write_pending()
                except LogError:
                    # Refused, not left pending: a caller that retries writes it once.
                    del self._buf[-n:]
                    self._seq -= 1
                    raise
            self._seg_size += n
            self._seg_records += 1
            return self._seq
        good = self._good
        self._write_all(line)
        if self._fsync_each:
            try:
                os.fdatasync(self._fd)
            except OSError as e:
                self._undo(good)
                raise LogError(f"cannot sync log segment {self._path!r} to disk: {e.strerror or e}") from e
        # Not acknowledged into an unlinked file: see "segment link watch" above.
        ifd = self._ifd
        if ifd >= 0:
            try:
                _INOTIFY[3](ifd, _INOTIFY[4], self._ion, True)
            except OSError:
                self._ion[0] = 1  # cannot poll: ask os.fstat
            if self._ion != _NO_EVENTS and not self._linked():
                self._relocate_line(line)
        elif os.fstat(self._fd).st_nlink == 0:
            self._relocate_line(line)
        self._seg_size += n
        self._seg_records += 1
        self._seq += 1
        self._written_seq = self._durable_seq = self._seq
        return self._seq

    def append_decision(
        self,
        event_id: str,
        *,
        actions: Sequence[str],
        pmf: Sequence[float],
        chosen: Sequence[int],
        probability: float | None = None,
        scores: Sequence[float | None] | None = None,
        features: Features | None = None,
        model_version: str = "",
        variants: Mapping[str, str] | None = None,
        policy: str = "",
        channel: str | None = None,
        unit: str | int | None = None,
        deferred: bool = False,
        fallback: bool = False,
        catalog_id: str | None = None,
        ts: float | None = None,
    ) -> int:
        """Append a decision record (fields as in ``DecisionRecord``); returns its sequence number.

        ``probability`` defaults to ``pmf[chosen[0]]``, ``ts`` to now. Raises
        ``SchemaError`` and writes nothing on a bad value: actions not distinct
        non-empty str; pmf not one probability per action summing to 1 (within
        1e-6); chosen not distinct indices into actions; probability not
        ``pmf[chosen[0]]``; namespaces or feature names starting with "_" (VW's
        reserved keys); text that is not valid UTF-8; ts not unix seconds.
        """
        # fmt: off
        args = (event_id, actions, pmf, chosen, probability, scores, ts, features, model_version, variants, policy,
                channel, unit, deferred, fallback, catalog_id)
        if not _decision_ok(*args):
            args = _decision_checked(*args)
        (event_id, actions, pmf, chosen, probability, scores, ts, features, model_version, variants, policy,
         channel, unit, deferred, fallback, catalog_id) = args
        # fmt: on
        record = DecisionRecord(
            event_id=event_id,
            ts=time.time() if ts is None else ts,
            actions=actions,  # type: ignore[arg-type]  # checked: a list of str
            pmf=pmf,  # type: ignore[arg-type]
            chosen=chosen,  # type: ignore[arg-type]
            probability=pmf[chosen[0]] if probability is None else probability,
            scores=scores,  # type: ignore[arg-type]
            features={} if features is None else features,
            model_version=model_version,
            variants={} if variants is None else variants,  # type: ignore[arg-type]
            policy=policy,
            channel=channel,
            unit=unit,
            deferred=deferred,
            fallback=fallback,
            catalog_id=catalog_id,
        )
        try:
            return self.append(record)
        except LogError as e:
            if isinstance(e.__cause__, _ENCODE_ERRORS):  # a feature value JSON cannot hold: nothing written
                raise SchemaError(
                    f"decision {event_id!r}: features: {e.__cause__}; pass numbers, str, bools or None"
                ) from None
            raise

    def append_activation(self, event_id: str, *, ts: float | None = None) -> int:
        """Record that deferred decision ``event_id`` was activated (shown); returns its sequence number.

        Raises ``SchemaError`` (nothing written) if the event id is not a non-empty
        str or ``ts`` is not unix seconds.
        """
        eid = _event_id(event_id, "activation event_id")
        when = time.time() if ts is None else _validate.timestamp(ts, f"activation {eid!r}: ts")
        return self.append(ActivationRecord(eid, when))

    def append_outcome(self, event_id: str, value: float, *, ts: float | None = None) -> int:
        """Record reward ``value`` for ``event_id``; returns its sequence number.

        Raises ``SchemaError`` (nothing written) if the event id is not a non-empty
        str, ``value`` is not a finite number or ``ts`` is not unix seconds.
        """
        eid = _event_id(event_id, "outcome event_id")
        v = _validate.number(value, f"outcome {eid!r}: value")
        when = time.time() if ts is None else _validate.timestamp(ts, f"outcome {eid!r}: ts")
        return self.append(OutcomeRecord(eid, when, v))

    def register_catalog(self, catalog_id: str, arms: Mapping[str, Features]) -> int:
        """Write the catalogue ``{arm_id: {namespace: {name: value}}}`` and repeat it atop every new segment.

        Re-registering an unchanged catalogue writes nothing and returns the last
        sequence number. Returns the record's sequence number.
        """
        try:
            # A plain-data copy: later edits of ``arms`` by the caller cannot change
            # what the segment headers repeat.
            data = msgspec.json.encode({str(k): v for k, v in arms.items()}, enc_hook=_enc_hook)
            plain = msgspec.json.decode(data)
        except _ENCODE_ERRORS as e:
            raise LogError(f"cannot write catalogue {catalog_id!r} to the decision log: {e}") from e
        return self._register_header(self._catalogs, catalog_id, CatalogRecord(catalog_id, plain, time.time()))

    def register_schema(self, schema_id: str, layout: Sequence[Sequence[Any]]) -> int:
        """Write how vectors of ``schema_id`` read back as features, and repeat it atop every new segment.

        ``layout`` is ``FeatureSchema.log_layout``. Re-registering an unchanged
        schema writes nothing and returns the last sequence number.
        """
        try:
            plain = msgspec.json.decode(msgspec.json.encode([list(f) for f in layout]))
            record = msgspec.convert(
                {"type": "schema", "schema_id": schema_id, "features": plain, "ts": time.time()}, SchemaRecord
            )
        except (*_ENCODE_ERRORS, msgspec.ValidationError) as e:
            raise LogError(f"cannot write schema {schema_id!r} to the decision log: {e}") from e
        return self._register_header(self._schemas, schema_id, record)

    def _register_header(self, table: dict[str, Any], key: str, record: CatalogRecord | SchemaRecord) -> int:
        """Append a segment-header record once (unless unchanged) and keep it for the next segments."""
        with self._lock:
            old = table.get(key)
            if old is not None and msgspec.structs.replace(old, ts=record.ts) == record:
                return self._seq
            # Open a segment first so its header holds only the records registered
            # before; the new one then lands exactly once, as an ordinary record (the
            # first after the header if this very append starts a new segment).
            if self._fd < 0 and not self._closed:
                self._new_segment()
            seq = self._append_locked(record)
            table[key] = record
            return seq

    # ----------------------------------------------------------------- durability

    @property
    def last_seq(self) -> int:
        """Sequence number of the last record appended."""
        return self._seq

    @property
    def durable_seq(self) -> int:
        """Every record with a sequence number up to this one is acknowledged (mode's guarantee)."""
        return self._durable_seq

    @property
    def segments(self) -> list[str]:
        """Paths of the segments this log (this process) created and kept, oldest first."""
        return list(self._segments)

    def wait_durable(self, seq: int, timeout: float | None = None) -> bool:
        """Block until record ``seq`` is acknowledged (or the log closed); False on timeout."""
        with self._durable:
            return self._durable.wait_for(lambda: self._durable_seq >= seq or self._closed, timeout)

    def flush(self) -> int:
        """Write every pending record and fdatasync it; returns the new ``durable_seq``."""
        self._sync_once(force=True)
        return self._durable_seq

    def close(self) -> None:
        """Flush, fdatasync and close the current segment; idempotent."""
        if self._syncer is not None:
            self._stop.set()
            if self._syncer is not threading.current_thread():
                self._syncer.join()
        with self._lock:
            if self._closed:
                return
            try:
                if self._fd < 0 and self._buf:
                    self._new_segment()  # lines a failed relocation left pending
                if self._fd >= 0:
                    if self._header_pending:
                        self._discard_segment()  # an empty file a failed header write left
                    else:
                        self._settle()
                        with self._sync_lock:
                            self._unwatch()
                            os.close(self._fd)
                            self._fd = -1
                            self._fd_gen += 1
                        self._fsync_directory()
                        self._set_durable(self._written_seq)
            finally:
                self._closed = True
                atexit.unregister(self._atexit)
                if self._ifd >= 0:
                    os.close(self._ifd)
                    self._ifd = -1
                with self._durable:
                    self._durable.notify_all()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"DecisionLog({self.directory!r}, durability={self.durability!r}, "
            f"last_seq={self._seq}, durable_seq={self._durable_seq})"
        )

    # ----------------------------------------------------------------- internals (hold self._lock)

    def _write_all(self, data: bytearray) -> None:
        """Write ``data`` whole (looping only on a short write); on error cut the segment back and raise.

        The GIL is kept (``_core.write_held``): a record is a short write into the page
        cache, and releasing the GIL for it costs a thread hand-over per decision.
        """
        try:
            written = _core.write_held(self._fd, data)
            while written < len(data):
                written += _core.write_held(self._fd, data, written)
        except OSError as e:
            self._line = bytearray()  # a traceback may still pin a view of the old one
            self._undo(self._good)
            raise LogError(f"cannot write to log segment {self._path!r}: {e.strerror or e}") from e
        self._good += len(data)

    def _undo(self, size: int) -> None:
        """Truncate the segment back to ``size`` (its last whole line), or mark it broken if that fails."""
        try:
            os.ftruncate(self._fd, size)
            self._good = size
        except OSError:
            self._broken = True

    def _write_pending(self) -> None:
        """Hand the buffered lines to the OS (a failed write is cut back and retried by the next call)."""
        if not self._buf:
            return
        if self._broken or self._fd < 0:
            self._new_segment()
        buf = self._buf
        done = 0
        try:
            done = os.write(self._fd, buf)
            if done < len(buf):
                with memoryview(buf) as view:
                    while done < len(buf):
                        done += os.write(self._fd, view[done:])
        except OSError as e:
            # A fresh copy: the traceback may pin a view of the old buffer, which then cannot grow.
            self._buf = bytearray(buf)
            try:
                os.ftruncate(self._fd, self._good)  # the whole buffer stays pending
            except OSError:
                # Keep the unwritten records, from the start of the line the error cut,
                # for the next segment: the torn piece stays the last line of this one.
                cut = buf.rfind(b"\n", 0, done) + 1
                self._good += cut
                self._buf = bytearray(buf[cut:])
                self._broken = True
            raise LogError(f"cannot write to log segment {self._path!r}: {e.strerror or e}") from e
        self._good += len(buf)
        buf.clear()
        self._written_seq = self._seq

    def _fdatasync(self, fd: int) -> None:
        try:
            os.fdatasync(fd)
        except OSError as e:
            raise LogError(f"cannot sync log segment {self._path!r} to disk: {e.strerror or e}") from e

    def _fsync_directory(self, directory: str | None = None) -> None:
        """Make the segment's directory entry durable (a new file needs this to survive a crash)."""
        try:
            dfd = os.open(directory or self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass  # some file systems refuse to sync directories; nothing better to do
        finally:
            os.close(dfd)

    def _set_durable(self, seq: int) -> None:
        with self._durable:
            if seq > self._durable_seq:
                self._durable_seq = seq
                self._durable.notify_all()

    # ----------------------------------------------------------------- segments

    def _new_segment(self) -> None:
        """Close the current segment (durably in the syncing modes) and start the next with the headers."""
        if self._fd >= 0 and self._header_pending:
            self._broken = False
            self._write_header()  # the last try to start this (empty) segment failed: retry in it
            return
        if self._fd >= 0:
            self._close_segment()
        fd, path = self._create_file()
        with self._sync_lock:
            self._fd = fd
            self._fd_gen += 1
        self._path = path
        self._segments.append(path)
        self._broken = False
        self._good = self._verified = 0
        self._watch(path)
        if self._buffered:
            # Lines left over from a failed write or an unlinked segment go after the header.
            header = self._header_bytes()
            self._seg_hdr = self._verified = len(header)
            self._seg_records = 1 if self._buf else 0
            self._buf[:0] = header
            self._seg_size = len(self._buf)
        else:
            self._seg_records = 0
            self._write_header()
        if self.durability in ("fsync", "interval"):
            self._fsync_directory()

    def _header_bytes(self) -> bytearray:
        header = bytearray()
        one = bytearray()
        for rec in (*self._catalogs.values(), *self._schemas.values()):
            self._encoder.encode_into(rec, one)
            _seal(one)
            header += one
        return header

    def _write_header(self) -> None:
        """Write the header records into the new, empty segment ("record"/"fsync" modes)."""
        header = self._header_bytes()
        self._seg_hdr = self._seg_size = len(header)
        self._header_pending = True
        if header:
            try:
                self._write_all(header)
            except LogError:
                if self._broken:
                    self._discard_segment()  # a torn header that cannot be cut: drop the file
                else:
                    self._broken = True  # cut back to empty: the next append retries in this file
                raise
        self._header_pending = False

    def _create_file(self) -> tuple[int, str]:
        """Create the next segment file (``O_EXCL``: never another writer's); recreate a deleted directory."""
        stamp_ns = max(time.time_ns(), self._last_stamp_ns + 1000)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        recreated = False
        while True:
            self._seg_n += 1
            name = f"{self.prefix}-{_stamp(stamp_ns)}-{self._writer}-{self._seg_n:06d}.jsonl"
            path = os.path.join(self.directory, name)
            try:
                fd = os.open(path, flags, 0o644)
                break
            except FileExistsError:
                continue
            except FileNotFoundError as e:
                if recreated:
                    raise LogError(f"cannot create log segment {path!r}: {e.strerror or e}") from e
                try:
                    os.makedirs(self.directory, exist_ok=True)
                except OSError as e2:
                    raise LogError(
                        f"log directory {self.directory!r} was deleted while the log was writing and cannot be "
                        f"recreated ({e2.strerror or e2}); records not yet acknowledged were not written"
                    ) from e2
                recreated = True
                warnings.warn(
                    f"log directory {self.directory!r} was deleted while the log was writing; recreated it",
                    LogWarning,
                    stacklevel=4,
                )
            except OSError as e:
                raise LogError(f"cannot create log segment {path!r}: {e.strerror or e}") from e
        self._last_stamp_ns = stamp_ns
        if recreated:
            self._fsync_directory(os.path.dirname(os.path.abspath(self.directory)))
        return fd, path

    def _close_segment(self) -> None:
        """Close the current segment, synced in the syncing modes.

        In the buffered modes an unlinked segment's unacknowledged lines go back to
        the front of the pending buffer, for the next segment. A segment of a
        failure streak that holds no record is deleted.
        """
        if self._buf and not self._broken:
            self._write_pending()
        synced = False
        with self._sync_lock:
            fd = self._fd
            if self.durability != "record":
                try:
                    os.fdatasync(fd)
                    synced = True
                except OSError as e:
                    if not self._broken:
                        raise LogError(f"cannot sync log segment {self._path!r}: {e.strerror or e}") from e
            linked = True
            if self._buffered:
                linked = self._linked()
                if not linked:
                    self._carry_unverified()
                    synced = False
            if linked and self._broken and self._good <= self._seg_hdr:
                self._unlink_current()  # nothing but its header: not worth a file
            self._unwatch()
            try:
                os.close(fd)
            except OSError:
                pass
            self._fd = -1
            self._fd_gen += 1
        if self._buffered and synced:
            self._synced_seq = self._written_seq
            if not self._buf:
                self._set_durable(self._written_seq)

    def _carry_unverified(self) -> None:
        """Put the lines written since the last verified sync back in front of the pending ones."""
        start = max(self._verified, self._seg_hdr)
        carry = b""
        if self._good > start:
            try:
                carry = os.pread(self._fd, self._good - start, start)  # the unlinked file is still ours to read
            except OSError as e:
                raise LogError(f"log segment {self._path!r} was unlinked and cannot be read back: {e}") from e
        warnings.warn(
            f"log segment {self._path!r} was unlinked while the log was writing (was the log directory "
            f"deleted?); rewriting its {carry.count(10)} unacknowledged records in a new segment",
            LogWarning,
            stacklevel=5,
        )
        self._buf[:0] = carry
        self._written_seq = self._synced_seq

    def _relocate_line(self, line: bytearray) -> None:
        """The segment was unlinked after ``line`` was written: write it (unacknowledged) into a new segment."""
        for _ in range(3):
            warnings.warn(
                f"log segment {self._path!r} was unlinked while the log was writing (was the log directory "
                "deleted?); continuing in a new segment",
                LogWarning,
                stacklevel=4,
            )
            with self._sync_lock:
                self._unwatch()
                os.close(self._fd)
                self._fd = -1
                self._fd_gen += 1
            self._new_segment()
            self._write_all(line)
            if self._fsync_each:
                self._fdatasync(self._fd)
            if self._linked():
                return
        raise LogError(f"log segments in {self.directory!r} keep being deleted under the writer; record not written")

    def _discard_segment(self) -> None:
        with self._sync_lock:
            self._unlink_current()
            self._unwatch()
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
            self._fd_gen += 1
        self._header_pending = self._broken = False

    def _unlink_current(self) -> None:
        try:
            os.unlink(self._path)  # type: ignore[arg-type]
        except OSError:
            return
        if self._segments and self._segments[-1] == self._path:
            self._segments.pop()

    # ----------------------------------------------------------------- link watch

    def _watch(self, path: str) -> None:
        """Watch the new segment's link count (inotify), if this platform and mode use it."""
        if not self._inotify_ok:
            return
        init, add = _INOTIFY[0], _INOTIFY[1]
        if self._ifd < 0:
            ifd = init(_IN_NONBLOCK | _IN_CLOEXEC)
            if ifd < 0:  # out of inotify instances: os.fstat after each write instead
                self._inotify_ok = False
                return
            self._ifd = ifd
        wd = add(self._ifd, os.fsencode(path), _IN_ATTRIB | _IN_DELETE_SELF)
        if wd < 0:
            os.close(self._ifd)
            self._ifd = -1
            return
        self._wd = wd

    def _unwatch(self) -> None:
        if self._wd >= 0:
            _INOTIFY[2](self._ifd, self._wd)
            self._wd = -1
            self._drain()

    def _drain(self) -> None:
        while True:
            try:
                if not os.read(self._ifd, 65536):
                    return
            except BlockingIOError:
                return

    def _linked(self) -> bool:
        """The current segment still has a name (nobody unlinked it)."""
        if self._ifd >= 0:
            self._drain()
        try:
            return os.fstat(self._fd).st_nlink > 0
        except OSError as e:
            raise LogError(f"cannot check log segment {self._path!r}: {e.strerror or e}") from e

    # ----------------------------------------------------------------- group commit

    def _settle(self) -> None:
        """Write every pending line and fdatasync it into a linked segment (relocating an unlinked one)."""
        for _ in range(3):
            self._write_pending()
            with self._sync_lock:
                self._fdatasync(self._fd)
                if not self._buffered or self._linked():
                    self._verified = self._good
                    self._synced_seq = self._written_seq
                    return
            self._new_segment()  # carries the unacknowledged lines over
        raise LogError(f"log segments in {self.directory!r} keep being deleted under the writer")

    def _sync_once(self, force: bool = False) -> None:
        """Write pending lines (under the append lock), then fdatasync outside it.

        Appenders wait for the write to the OS only, never for the disk. A record
        is acknowledged only once its segment, synced, is still linked.
        """
        for _ in range(4):
            with self._lock:
                if self._fd < 0:
                    if not (self._buf and not self._closed):
                        self._set_durable(self._written_seq)
                        return
                    self._new_segment()  # lines a failed relocation left pending
                self._write_pending()
                fd, gen, seq, size = self._fd, self._fd_gen, self._written_seq, self._good
            if seq <= self._synced_seq and not force:
                return
            with self._sync_lock:
                if gen != self._fd_gen:
                    linked = True  # rotated meanwhile: the rotation synced and checked that segment
                    seq = min(seq, self._synced_seq)
                else:
                    self._fdatasync(fd)
                    linked = not self._buffered or self._linked()
                    if linked:
                        self._verified = max(self._verified, size)
                        self._synced_seq = max(self._synced_seq, seq)
            if linked:
                self._set_durable(seq)
                return
            with self._lock:
                if gen == self._fd_gen:
                    self._new_segment()  # carries the unacknowledged lines over
            force = True
        raise LogError(f"log segments in {self.directory!r} keep being deleted under the writer")

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._sync_once()
            except LogError as e:
                warnings.warn(f"decision log background sync failed: {e}", LogWarning, stacklevel=1)


# --------------------------------------------------------------------------- readers


class LogWarning(UserWarning):
    """Something in a decision log was skipped; the message says what, where, and why."""


class TornRecordWarning(LogWarning):
    """The last line of a segment was cut short (the writer died mid-write); it was skipped."""


class CorruptRecordWarning(LogWarning):
    """A line inside a segment is not a valid record (bad checksum, bad JSON); it was skipped."""


class ReadReport(msgspec.Struct):
    """What a reader skipped, filled in as it reads (pass one to ``read_records`` or ``join``).

    ``reasons`` counts each kind: "corrupt line", "torn line", "schema missing"
    (a decision kept with empty features: no schema record defines its vector).
    """

    corrupt_lines: int = 0
    torn_lines: int = 0
    reasons: dict[str, int] = {}

    def _count(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def _check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error={on_error!r} is not one of {', '.join(map(repr, ON_ERROR))}")


_DECODER = msgspec.json.Decoder(Record)


def _segment_paths(directory: str | os.PathLike[str]) -> list[tuple[str, bool]]:
    """``(path, sealed)`` of each segment of ``directory`` in read order (a single file path as is).

    Order: start stamp, then writer id, then number. ``sealed``: written by a
    writer that checksums every line (names with a writer id), so a line without
    a checksum there is corrupt.
    """
    path = os.fspath(directory)
    if os.path.isfile(path):
        m = _SEGMENT_RE.match(os.path.basename(path))
        return [(path, m is not None and m["writer"] is not None)]
    try:
        names = os.listdir(path)
    except OSError as e:
        raise LogError(f"cannot list decision log directory {path!r}: {e.strerror or e}") from e
    keyed = []
    for name in names:
        m = _SEGMENT_RE.match(name)
        if m is not None:
            keyed.append((m["stamp"], m["writer"] or "", int(m["n"]), name))
    keyed.sort()
    return [(os.path.join(path, k[3]), bool(k[1])) for k in keyed]


def _read_segment(path: str, sealed: bool, on_error: str, report: ReadReport) -> Iterator[Record]:
    try:
        with open(path, "rb") as f:
            yield from _segment_lines(path, f, sealed, on_error, report)
    except OSError as e:
        raise LogError(f"cannot read log segment {path!r}: {e.strerror or e}") from e


def _segment_lines(path: str, f: Any, sealed: bool, on_error: str, report: ReadReport) -> Iterator[Record]:
    decode = _DECODER.decode
    offset = 0
    for lineno, line in enumerate(f, 1):
        start = offset
        offset += len(line)
        crc = _crc_state(line)
        if crc is True or (crc is None and not sealed):
            try:
                yield decode(line)
                continue
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                problem = str(e)
        else:
            problem = "checksum mismatch" if crc is False else "no checksum"
        if not line.strip():
            continue
        if not line.endswith(b"\n"):
            report.torn_lines += 1
            report._count("torn line")
            warnings.warn(
                f"{path}:{lineno} (byte {start}): skipped a torn last record ({len(line)} bytes, {problem}); "
                "the writer stopped mid-write, so this record was never acknowledged",
                TornRecordWarning,
                stacklevel=4,
            )
            continue
        message = f"{path}:{lineno} (byte {start}): corrupt record ({problem})"
        if on_error == "raise":
            raise LogError(f"{message}; pass on_error='skip' to read on past it")
        report.corrupt_lines += 1
        report._count("corrupt line")
        warnings.warn(
            f"{message}: skipped; the rest of the segment is read normally", CorruptRecordWarning, stacklevel=4
        )


def read_records(
    directory: str | os.PathLike[str], *, on_error: str = "skip", report: ReadReport | None = None
) -> Iterator[Record]:
    """Every record of every segment in ``directory`` (or of one segment file).

    Segments come in the order of their start stamp (ties: writer id, then
    number), each segment's records in write order: with several writers in one
    directory, each writer's records keep its order, but writers are not merged
    by timestamp. A decision logged as a vector gets its ``features`` from the
    schema record (any intact copy of it in the log). A corrupt line
    (``CorruptRecordWarning``; bad checksum or JSON) is skipped, or with
    ``on_error="raise"`` raises ``LogError``; a torn last line
    (``TornRecordWarning``: never acknowledged) is always skipped. ``report``
    counts what was skipped.
    """
    _check_on_error(on_error)
    return _records(directory, on_error, ReadReport() if report is None else report, None)


def _records(
    directory: str | os.PathLike[str], on_error: str, report: ReadReport, no_schema: set[str] | None
) -> Iterator[Record]:
    paths = _segment_paths(directory)
    schemas: dict[str, SchemaRecord] = {}
    index: dict[str, SchemaRecord] | None = None
    for path, sealed in paths:
        for rec in _read_segment(path, sealed, on_error, report):
            if type(rec) is DecisionRecord and rec.x is not None and rec.schema_id is not None:
                schema = schemas.get(rec.schema_id)
                if schema is None:
                    # Its copy atop this segment was damaged: any intact copy (the id is
                    # the layout's hash when a Decider wrote it) reads the vector the same.
                    if index is None:
                        index = _schema_index(paths)
                    schema = index.get(rec.schema_id)
                if schema is None:
                    message = (
                        f"{path}: decision {rec.event_id!r} refers to schema {rec.schema_id!r}, which no intact "
                        "schema record in the log defines"
                    )
                    if on_error == "raise":
                        raise LogError(message)
                    report._count("schema missing")
                    if no_schema is not None:
                        no_schema.add(rec.event_id)
                    warnings.warn(f"{message}; its features are left empty", CorruptRecordWarning, stacklevel=3)
                else:
                    try:
                        features = _features(schema, rec.x, rec.raw)
                    except (AttributeError, TypeError, IndexError) as e:  # an unchecksummed line gone bad
                        message = f"{path}: decision {rec.event_id!r}: vector does not fit schema {rec.schema_id!r}"
                        if on_error == "raise":
                            raise LogError(message) from e
                        report.corrupt_lines += 1
                        report._count("corrupt line")
                        warnings.warn(f"{message} ({e}); skipped", CorruptRecordWarning, stacklevel=3)
                        continue
                    rec = msgspec.structs.replace(rec, features=features)
            elif type(rec) is SchemaRecord:
                schemas[rec.schema_id] = rec
            yield rec


def _schema_index(paths: list[tuple[str, bool]]) -> dict[str, SchemaRecord]:
    """The first intact copy of every schema record in the log (read when a segment's copy is damaged)."""
    out: dict[str, SchemaRecord] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the main pass warns about these lines
        for path, sealed in paths:
            for rec in _read_segment(path, sealed, "skip", ReadReport()):
                if type(rec) is SchemaRecord:
                    out.setdefault(rec.schema_id, rec)
    return out


_ABSENT = object()  # a feature the decision saw as missing: not logged


def _features(schema: SchemaRecord, x: list[Any], raw: Features) -> Features:
    """``{namespace: {name: value}}`` of vector ``x`` as ``FeatureSchema.used_features`` gives it.

    Numbers as they are, booleans as booleans, a category by its one-hot column;
    missing values (NaN, written as null) are left out, and a category whose block
    is empty comes from ``raw`` (unknown) or is left out (missing).
    """
    out: Features = {}
    n = len(x)
    for ns, name, kind, col, cats in schema.features:
        if kind == "category":
            value = _ABSENT
            for j in range(len(cats)):
                if col + j < n and x[col + j] == 1.0:
                    value = cats[j]
                    break
            else:
                value = raw.get(ns, {}).get(name, _ABSENT)
            if value is _ABSENT:
                continue
        else:
            v = x[col] if col < n else None
            if v is None or math.isnan(v):
                continue
            value = v != 0.0 if kind == "bool" else v
        out.setdefault(ns, {})[name] = value
    return out


class JoinedExample(msgspec.Struct, frozen=True):
    """A decision with its reward: the aggregate of the outcomes inside the window, else the default.

    ``start`` is when the reward window opened (the decision's time, or its
    activation's for a deferred decision); ``outcomes`` are those that counted;
    ``catalog`` is the catalogue record in force for the decision, if any.
    """

    decision: DecisionRecord
    reward: float
    observed: bool
    start: float
    outcomes: tuple[OutcomeRecord, ...] = ()
    catalog: CatalogRecord | None = None


def _window_seconds(reward_window: timedelta | float | None) -> float:
    if reward_window is None:
        return math.inf
    if isinstance(reward_window, timedelta):
        seconds = reward_window.total_seconds()
    elif isinstance(reward_window, (int, float)) and not isinstance(reward_window, bool):
        seconds = float(reward_window)
    else:
        raise ConfigError(f"reward_window={reward_window!r} must be seconds, a timedelta, or None (no limit)")
    if not seconds >= 0:
        raise ConfigError(f"reward_window={reward_window!r} must not be negative")
    return seconds


def join(
    directory: str | os.PathLike[str],
    *,
    reward_window: timedelta | float | None = None,
    default_reward: float = 0.0,
    aggregate: str = "sum",
    on_error: str = "skip",
    report: ReadReport | None = None,
) -> Iterator[JoinedExample]:
    """Join outcomes to decisions by event id, in decision order (``read_records`` order).

    An outcome counts when ``start <= outcome.ts <= start + reward_window`` where
    ``start`` is the decision's ts, or for a deferred decision its first
    activation's ts (deferred decisions never activated are left out). Several
    outcomes aggregate by ``"sum"`` or take the ``"first"`` (earliest); a decision
    without any gets ``default_reward`` and ``observed=False``. Outcomes for
    unknown event ids are ignored; a repeated decision event id keeps the first.
    A decision's catalogue is the last copy of its ``catalog_id`` read before it;
    if that copy was damaged, an earlier intact one, else the first later one.
    ``on_error`` and ``report`` are as in ``read_records``.
    """
    _check_on_error(on_error)
    return _join(
        directory, reward_window, default_reward, aggregate, on_error, ReadReport() if report is None else report, None
    )


def _join(
    directory: str | os.PathLike[str],
    reward_window: timedelta | float | None,
    default_reward: float,
    aggregate: str,
    on_error: str,
    report: ReadReport,
    no_schema: set[str] | None,
) -> Iterator[JoinedExample]:
    if aggregate not in _AGGREGATES:
        raise ConfigError(f"aggregate={aggregate!r} is not one of {', '.join(map(repr, _AGGREGATES))}")
    window = _window_seconds(reward_window)
    decisions: dict[str, tuple[DecisionRecord, CatalogRecord | None]] = {}
    activations: dict[str, float] = {}
    outcomes: dict[str, list[OutcomeRecord]] = {}
    catalogs: dict[str, CatalogRecord] = {}
    first_catalogs: dict[str, CatalogRecord] = {}
    for rec in _records(directory, on_error, report, no_schema):
        if type(rec) is OutcomeRecord:
            outcomes.setdefault(rec.event_id, []).append(rec)
        elif type(rec) is DecisionRecord:
            if rec.event_id not in decisions:
                cat = catalogs.get(rec.catalog_id) if rec.catalog_id is not None else None
                decisions[rec.event_id] = (rec, cat)
        elif type(rec) is ActivationRecord:
            prev = activations.get(rec.event_id)
            if prev is None or rec.ts < prev:
                activations[rec.event_id] = rec.ts
        elif type(rec) is CatalogRecord:
            catalogs[rec.catalog_id] = rec
            first_catalogs.setdefault(rec.catalog_id, rec)
    for event_id, (decision, cat) in decisions.items():
        if cat is None and decision.catalog_id is not None:
            cat = first_catalogs.get(decision.catalog_id)  # every copy before it was damaged
        if decision.deferred:
            start = activations.get(event_id)
            if start is None:
                continue
        else:
            start = decision.ts
        end = start + window
        counted = tuple(
            sorted(
                (o for o in outcomes.get(event_id, ()) if start <= o.ts <= end),
                key=lambda o: o.ts,
            )
        )
        if not counted:
            yield JoinedExample(decision, float(default_reward), False, start, (), cat)
            continue
        reward = counted[0].value if aggregate == "first" else math.fsum(o.value for o in counted)
        yield JoinedExample(decision, float(reward), True, start, counted, cat)


# --------------------------------------------------------------------------- dsjson export


class _DsOutcome(msgspec.Struct):
    v: float
    Timestamp: str


class _VWState(msgspec.Struct):
    m: str


class _DsjsonEvent(msgspec.Struct):
    """One dsjson line. Field order matters: VW applies the _label_* fields when "c" ends."""

    label_cost: float = msgspec.field(name="_label_cost")
    label_probability: float = msgspec.field(name="_label_probability")
    label_action: int = msgspec.field(name="_label_Action")
    label_index: int = msgspec.field(name="_labelIndex")
    o: list[_DsOutcome] = msgspec.field(name="o")
    timestamp: str = msgspec.field(name="Timestamp")
    version: str = msgspec.field(name="Version")
    event_id: str = msgspec.field(name="EventId")
    a: list[int] = msgspec.field(name="a")
    c: dict[str, Any] = msgspec.field(name="c")
    p: list[float] = msgspec.field(name="p")
    vw_state: _VWState = msgspec.field(name="VWState")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_vw_keys(features: Mapping[str, Any], what: str, event_id: str) -> None:
    """VW's JSON parser drops or reinterprets keys starting with "_" (labels, _multi, _text...)."""
    for ns, feats in features.items():
        if ns.startswith("_"):
            raise LogError(
                f"event {event_id!r}: {what} namespace {ns!r} starts with '_', which VW's JSON parser "
                "treats as a reserved key; rename the namespace"
            )
        if not isinstance(feats, Mapping):
            continue  # a bare value: VW reads it as a feature of the default namespace
        for name in feats:
            if name.startswith("_"):
                raise LogError(
                    f"event {event_id!r}: {what} feature {ns!r}/{name!r} starts with '_', which VW's JSON "
                    "parser ignores or reinterprets; rename the feature"
                )


class ExportReport(msgspec.Struct, frozen=True):
    """What ``export_dsjson`` wrote, and what it left out and why.

    ``events``: dsjson lines written. ``skipped``: decisions left out because
    something about them was wrong (``observed_only`` drops are not counted).
    ``bad_lines``: log lines the reader skipped (corrupt or torn). ``reasons``:
    count per reason, for lines and decisions alike ("corrupt line", "no
    catalogue", "action not in catalogue", ...).
    """

    events: int
    skipped: int = 0
    bad_lines: int = 0
    reasons: dict[str, int] = {}


class _Skip(Exception):
    """A decision the export cannot write: ``reason`` for the report, ``message`` for on_error='raise'."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _dsjson_event(ex: JoinedExample, bad_catalogs: dict[int, str | None], no_schema: set[str]) -> _DsjsonEvent:
    """The dsjson line of one joined decision, or ``_Skip`` saying why there is none."""
    d = ex.decision
    eid = d.event_id
    cat = ex.catalog
    if cat is None:
        raise _Skip(
            "no catalogue",
            f"event {eid!r}: no catalogue record for catalog_id={d.catalog_id!r}, so its actions "
            "have no features to export; call DecisionLog.register_catalog() before logging decisions",
        )
    if eid in no_schema and d.x is not None:
        raise _Skip("schema missing", f"event {eid!r}: no schema record defines its vector {d.schema_id!r}")
    key = id(cat)
    if key not in bad_catalogs:
        bad_catalogs[key] = None
        try:
            for arm_id, arm_features in cat.arms.items():
                if not isinstance(arm_features, Mapping):
                    raise LogError(f"arm {arm_id!r} of catalogue {cat.catalog_id!r} is not a feature dict")
                _check_vw_keys(arm_features, f"arm {arm_id!r}", eid)
        except LogError as e:
            bad_catalogs[key] = str(e)
    if bad_catalogs[key] is not None:
        raise _Skip("reserved key", str(bad_catalogs[key]))
    try:
        _check_vw_keys(d.features, "decision", eid)
    except LogError as e:
        raise _Skip("reserved key", str(e)) from None
    try:
        multi = [cat.arms[a] for a in d.actions]
    except KeyError as e:
        raise _Skip(
            "action not in catalogue",
            f"event {eid!r}: action {e.args[0]!r} is not in catalogue {cat.catalog_id!r}; "
            "register the catalogue with every arm that can be offered",
        ) from None
    n = len(d.actions)
    if len(d.pmf) != n:
        raise _Skip("pmf does not match actions", f"event {eid!r}: {len(d.pmf)} pmf entries for {n} actions")
    if not d.chosen or not 0 <= d.chosen[0] < n:
        raise _Skip("chosen out of range", f"event {eid!r}: chosen={d.chosen!r} does not index actions")
    if not 0.0 < d.probability <= 1.0:
        raise _Skip("bad probability", f"event {eid!r}: probability {d.probability!r} is not in (0, 1]")
    if not math.isfinite(ex.reward):
        raise _Skip("non-finite reward", f"event {eid!r}: reward {ex.reward!r} is not finite")
    try:
        stamp = _iso(d.ts)
        outs = [_DsOutcome(o.value, _iso(o.ts)) for o in ex.outcomes]
    except (ValueError, OverflowError, OSError):
        raise _Skip(
            "timestamp out of range", f"event {eid!r}: ts {d.ts!r} (or an outcome's) is not a calendar date"
        ) from None
    taken = d.chosen[0]
    order = [taken]
    seen = {taken}
    for i in d.chosen[1:]:
        if i not in seen and 0 <= i < n:
            order.append(i)
            seen.add(i)
    order.extend(i for i in range(n) if i not in seen)
    c: dict[str, Any] = dict(d.features)
    c["_multi"] = multi
    return _DsjsonEvent(
        label_cost=-ex.reward if ex.reward else 0.0,  # no -0.0 in the file
        label_probability=d.probability,
        label_action=taken + 1,
        label_index=taken,
        o=outs,
        timestamp=stamp,
        version="1",
        event_id=eid,
        a=[i + 1 for i in order],
        c=c,
        p=[d.pmf[i] for i in order],
        vw_state=_VWState(d.model_version),
    )


def export_dsjson(
    directory: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    reward_window: timedelta | float | None = None,
    default_reward: float = 0.0,
    aggregate: str = "sum",
    observed_only: bool = False,
    on_error: str = "skip",
) -> ExportReport:
    """Write the joined log as VW dsjson lines to ``out_path``; returns an ``ExportReport``.

    ``_label_cost`` is ``-reward`` (VW minimizes cost, nba maximizes reward);
    ``a`` lists 1-based action ids, the taken one first, and ``p`` their
    probabilities in that order; ``c`` holds the decision's namespaces and
    ``_multi`` the catalogue features of each action, in ``actions`` order.
    Joining follows ``join`` (``observed_only`` drops decisions without outcome).
    With ``on_error="skip"`` (default) a corrupt line or a decision that cannot
    be exported (no catalogue, a "_" key VW would misread, an action missing from
    its catalogue...) is left out, counted in the report and warned about once;
    with ``"raise"`` the first one raises ``LogError`` and nothing is written.
    The file is written to a temporary name and renamed, so it is never half there.
    """
    _check_on_error(on_error)
    out = os.fspath(out_path)
    encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
    tmp = f"{out}.tmp-{os.getpid()}"
    report = ReadReport()
    no_schema: set[str] = set()
    bad_catalogs: dict[int, str | None] = {}
    count = skipped = 0
    buf = bytearray()
    try:
        with open(tmp, "wb") as f:
            joined = _join(directory, reward_window, default_reward, aggregate, on_error, report, no_schema)
            for ex in joined:
                if observed_only and not ex.observed:
                    continue
                try:
                    event = _dsjson_event(ex, bad_catalogs, no_schema)
                    try:
                        encoder.encode_into(event, buf)
                    except _ENCODE_ERRORS as e:
                        raise _Skip("unencodable", f"event {ex.decision.event_id!r}: {e}") from None
                except _Skip as s:
                    if on_error == "raise":
                        raise LogError(s.message) from None
                    skipped += 1
                    report._count(s.reason)
                    continue
                buf.append(10)
                f.write(buf)
                count += 1
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if skipped:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(report.reasons.items()))
        warnings.warn(
            f"export_dsjson({os.fspath(directory)!r}) left out {skipped} decisions ({reasons}); "
            "pass on_error='raise' to stop at the first with its details",
            LogWarning,
            stacklevel=2,
        )
    return ExportReport(count, skipped, report.corrupt_lines + report.torn_lines, dict(report.reasons))
