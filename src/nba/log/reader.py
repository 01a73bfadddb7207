"""Reading the decision log back: segments in order, records, and outcomes joined to decisions.

``read_records`` reads the segments back (skipping, with a warning, a torn or
corrupt line rather than failing) and gives a decision logged as a vector its
features again; ``join`` attaches outcomes to their decisions inside a reward
window.

Segments are read in the order of their start stamp (ties by writer id, then
number) and each segment's records in write order: records of one writer come
in the order it wrote them; records of different writers are not merged by
timestamp.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any, Union

import msgspec

from nba.errors import ConfigError, LogError
from nba.log.records import (
    ActivationRecord,
    CatalogRecord,
    CorruptRecordWarning,
    DecisionRecord,
    OutcomeRecord,
    Record,
    SchemaRecord,
    TornRecordWarning,
    _crc_state,
)
from nba.schema import read_vector

ON_ERROR = ("skip", "raise")
_AGGREGATES = ("sum", "first")

# The names DecisionLog._create_file gives its segments (older logs: no writer id).
_SEGMENT_RE = re.compile(
    r"^(?P<prefix>.+?)-(?P<stamp>\d{8}T\d{6}\.\d{6}Z)(?:-(?P<writer>[0-9a-f]{16}))?-(?P<n>\d+)\.jsonl$"
)


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


#: A log directory, one segment file, or several directories (one per host) read as one log.
LogPaths = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]


def segment_paths(directory: LogPaths) -> list[tuple[str, bool]]:
    """``(path, sealed)`` of each segment of ``directory`` in read order (a single file path as is).

    ``directory`` may also be a list of directories (one per host): their segments
    are read as one log. Order: start stamp, then writer id, then number. ``sealed``:
    written by a writer that checksums every line (names with a writer id), so a line
    without a checksum there is corrupt.
    """
    dirs = [directory] if isinstance(directory, (str, os.PathLike)) else list(directory)
    if not dirs:
        raise LogError("no decision log directory given")
    keyed = []
    for d in dirs:
        path = os.fspath(d)
        if os.path.isfile(path):
            m = _SEGMENT_RE.match(os.path.basename(path))
            if len(dirs) == 1:
                return [(path, m is not None and m["writer"] is not None)]
            raise LogError(f"{path!r} is a file: a list of logs holds directories")
        try:
            names = os.listdir(path)
        except OSError as e:
            raise LogError(f"cannot list decision log directory {path!r}: {e.strerror or e}") from e
        for name in names:
            m = _SEGMENT_RE.match(name)
            if m is not None:
                keyed.append((m["stamp"], m["writer"] or "", int(m["n"]), os.path.join(path, name)))
    keyed.sort()
    return [(k[3], bool(k[1])) for k in keyed]


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
    directory: LogPaths, *, on_error: str = "skip", report: ReadReport | None = None
) -> Iterator[Record]:
    """Every record of every segment in ``directory`` (or of one segment file, or of a list of
    directories read as one log: one per host).

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
    directory: LogPaths, on_error: str, report: ReadReport, no_schema: set[str] | None
) -> Iterator[Record]:
    paths = segment_paths(directory)
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
                        features = read_vector(schema.features, rec.x, rec.raw)
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
    directory: LogPaths,
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


def joined(
    log: str | os.PathLike[str] | Iterable[JoinedExample],
    *,
    reward_window: timedelta | float | None = None,
    default_reward: float = 0.0,
) -> Iterable[JoinedExample]:
    """The joined examples of ``log``: a log directory (``join``-ed with ``reward_window`` and
    ``default_reward``), or examples already joined, passed through (for the analyses that take either)."""
    if isinstance(log, (str, os.PathLike)):
        if not os.path.isdir(log):
            raise ConfigError(f"log={os.fspath(log)!r} must be the directory of a DecisionLog")
        return join(log, reward_window=reward_window, default_reward=default_reward)
    if reward_window is not None or default_reward != 0.0:
        raise ConfigError(
            "reward_window and default_reward apply only when log is a directory (joined examples are joined already)"
        )
    if not isinstance(log, Iterable):
        raise ConfigError(f"log must be a log directory or an iterable of JoinedExample, got {type(log).__name__}")
    return log


def _join(
    directory: LogPaths,
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
