"""Erasure: remove every line of a data subject from a decision log, and leave every other byte as it was.

``forget(directory, ids)`` finds the decisions that carry any of ``ids`` (as their
``unit``, or as a string value among their logged features) and the activations and
outcomes of those decisions, wherever they are (any segment, any writer, any of several
directories), and rewrites each segment that holds one without those lines: a
temporary file in the same directory, fsync, ``os.replace``, fsync of the directory, so a
segment is the old file or the new one, never a mix. A segment with nothing to remove
is not touched. The lines kept are byte-identical (each carries its own checksum).

A segment still open for writing is never rewritten (its writer would go on appending
to the replaced file): every ``DecisionLog`` holds a shared ``flock`` on its open
segment, and ``forget`` takes each segment's lock exclusively without waiting. A
segment it cannot lock is listed in ``ErasureReport.busy`` (erasures of one directory
take turns on its ``.erasure.lock``, so a lock refused is a writer's); ``DecisionLog.forget``
first moves its own writer to a new segment, so only other live processes' open
segments can be busy: run ``forget`` again once they rotate or close. A busy segment is still
read, so the subject's decisions in it are found: their outcomes in other segments go, and
``events`` names them for the pending state. A line that no
longer parses (torn, corrupt) is removed when it contains an id's bytes, since nothing
can say whose it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from nba import _files, _validate
from nba.errors import LogError
from nba.log.reader import LogPaths, segment_paths
from nba.log.records import ActivationRecord, DecisionRecord, OutcomeRecord, Record

__all__ = ["ErasureReport", "forget"]

_DECODER = msgspec.json.Decoder(Record)
_LOCK = ".erasure.lock"  # not a segment name: readers never see it


class ErasureReport(msgspec.Struct):
    """What ``forget`` did: the segments rewritten, the lines removed, the segments it could not rewrite yet."""

    rewritten: list[str] = []
    removed: int = 0
    busy: list[str] = []

    @property
    def complete(self) -> bool:
        """Whether every segment was checked and cleaned (nothing busy)."""
        return not self.busy


def _strings(value: Any) -> Iterable[str]:
    """Every str inside a logged feature map (values only: names are the schema's, not the subject's)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def _carries(rec: DecisionRecord, ids: frozenset[str]) -> bool:
    if rec.unit is not None and str(rec.unit) in ids:
        return True
    return any(s in ids for s in _strings(rec.features)) or any(s in ids for s in _strings(rec.raw))


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


class _Segment:
    """One segment, read whole: locked exclusively to be rewritten, or found busy (a writer's) and only read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.busy = False
        self.data = b""

    def open(self) -> None:
        for _ in range(8):  # another forget may replace the file between our open and our lock
            try:
                fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                return  # gone (deleted by retention): nothing of anyone left in it
            except OSError as e:
                raise LogError(f"cannot open log segment {self.path!r}: {e.strerror or e}") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # A writer's: read it all the same (never rewritten), so the subject's event ids in it
                # are found, and what else holds those decisions (pending state, outcomes) can drop them.
                self.busy = True
                with os.fdopen(fd, "rb") as f:
                    self.data = f.read()
                return
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                with os.fdopen(os.dup(fd), "rb") as f:
                    self.data = f.read()
                return
            os.close(fd)
        raise LogError(f"log segment {self.path!r} kept being replaced while forget() read it")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock
            self.fd = -1


def _rewrite(seg: _Segment, kept: list[bytes]) -> None:
    try:
        _files.replace_atomically(seg.path, b"".join(kept))
    except OSError as e:
        raise LogError(f"cannot rewrite log segment {seg.path!r} without the forgotten lines: "
                       f"{e.strerror or e}; the segment is unchanged") from e


def forget(directory: LogPaths, ids: Iterable[str | int], *, events: set[str] | None = None) -> ErasureReport:
    """Remove every decision of ``ids`` and its activations and outcomes from the log at ``directory``.

    ``directory``: a log directory, or several (one per host). ``ids``: every id of the
    subject (a profile store's ``forget`` returns them). Returns an ``ErasureReport``;
    raises ``LogError`` when a segment cannot be read or rewritten (that segment is left
    as it was, those rewritten before it stay rewritten: calling again finishes the job).
    ``events``, if given, receives the event ids of the decisions removed (so what else holds
    them, pending decision state, can drop them too).
    """
    wanted = {str(_validate.unit_id(i, "forget: id")) for i in ids}  # SchemaError before any change
    report = ErasureReport()
    if not wanted:
        return report
    subject = frozenset(wanted)
    needles = tuple(s.encode("utf-8", "surrogatepass") for s in subject)
    dirs = [directory] if isinstance(directory, (str, os.PathLike)) else list(directory)
    with contextlib.ExitStack() as held:
        for d in sorted({os.path.abspath(os.fspath(d)) for d in dirs if not os.path.isfile(d)}):
            held.enter_context(_serialized(d))
        found = _forget(segment_paths(directory), subject, needles, report)
    if events is not None:
        events.update(found)
    return report


@contextlib.contextmanager
def _serialized(directory: str) -> Iterator[None]:
    """One erasure at a time per directory, so a segment lock ``forget`` cannot take is a writer's."""
    try:
        fd = os.open(os.path.join(directory, _LOCK), os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        raise LogError(f"cannot lock decision log directory {directory!r} for erasure: {e.strerror or e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _forget(paths: list[tuple[str, bool]], subject: frozenset[str], needles: tuple[bytes, ...],
            report: ErasureReport) -> set[str]:
    segments = [_Segment(path) for path, _ in paths]
    try:
        for seg in segments:
            seg.open()
            if seg.busy:
                report.busy.append(seg.path)
        # Pass 1: the subject's decisions, anywhere, so their outcomes go too wherever they were written.
        events: set[str] = set()
        verdicts: list[list[bool]] = []
        for seg in segments:
            drop: list[bool] = []
            for line in _lines(seg.data):
                try:
                    rec = _DECODER.decode(line)  # the checksum field is ignored: a damaged line still goes by its ids
                except (msgspec.DecodeError, msgspec.ValidationError):
                    drop.append(any(n in line for n in needles))
                    continue
                if isinstance(rec, DecisionRecord) and _carries(rec, subject):
                    events.add(rec.event_id)
                    drop.append(True)
                else:
                    drop.append(False)
            verdicts.append(drop)
        # Pass 2: rewrite each segment holding a line to drop.
        for seg, drop in zip(segments, verdicts):
            if seg.fd < 0:
                continue
            lines = _lines(seg.data)
            kept: list[bytes] = []
            removed = 0
            for line, d in zip(lines, drop):
                if not d and events and (b'"type":"activation"' in line or b'"type":"outcome"' in line):
                    try:
                        out = _DECODER.decode(line)
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        linked = False
                    else:
                        linked = isinstance(out, (ActivationRecord, OutcomeRecord)) and out.event_id in events
                    d = linked
                if d:
                    removed += 1
                else:
                    kept.append(line)
            if removed:
                _rewrite(seg, kept)
                report.rewritten.append(seg.path)
                report.removed += removed
    finally:
        for seg in segments:
            seg.close()
    return events
