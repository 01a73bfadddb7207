"""The decision log's writer: ``DecisionLog``, durable, thread-safe and fork-safe.

A ``DecisionLog`` writes one record per line (``nba.log.records``) into segments
named ``<prefix>-<UTC timestamp>-<writer id>-<n>.jsonl``; a segment is rotated by
size and starts with the current catalogue and schema records, so each segment
is self-contained.

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
random writer id, so no two writers ever write one segment (the order they are read
back in: ``nba.log.reader``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import math
import os
import re
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from nba import _files, _validate
from nba._core import logio as logio_core
from nba._core.locks import PoliteLock
from nba.errors import ConfigError, LogError, SchemaError
from nba.log import erasure
from nba.log.checks import _decision_checked, _decision_ok, _event_id, _readable_fast, _unreadable_reason
from nba.log.erasure import ErasureReport
from nba.log.records import (
    _ENCODE_ERRORS,
    ActivationRecord,
    CatalogRecord,
    DecisionRecord,
    Features,
    LogWarning,
    OutcomeRecord,
    Record,
    SchemaRecord,
    _enc_hook,
    _seal,
)

if TYPE_CHECKING:
    from typing_extensions import Self

DURABILITY_MODES = ("record", "fsync", "interval", "close")


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
        with self._lock:
            return self._append_locked(record)

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
        now: float | None = None,
    ) -> int:
        """Append a decision record (fields as in ``DecisionRecord``); returns its sequence number.

        ``probability`` defaults to ``pmf[chosen[0]]``; the record's ``ts`` is ``now``
        (unix seconds), the clock by default. Raises ``SchemaError`` and writes
        nothing on a bad value: actions not distinct non-empty str; pmf not one
        probability per action summing to 1 (within 1e-6); chosen not distinct
        indices into actions; probability not ``pmf[chosen[0]]``; namespaces or
        feature names starting with "_" (VW's reserved keys); text that is not valid
        UTF-8; now not unix seconds.
        """
        # fmt: off
        args = (event_id, actions, pmf, chosen, probability, scores, now, features, model_version, variants, policy,
                channel, unit, deferred, fallback, catalog_id)
        if not _decision_ok(*args):
            args = _decision_checked(*args)
        (event_id, actions, pmf, chosen, probability, scores, now, features, model_version, variants, policy,
         channel, unit, deferred, fallback, catalog_id) = args
        # fmt: on
        record = DecisionRecord(
            event_id=event_id,
            ts=time.time() if now is None else now,
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

    def append_activation(self, event_id: str, *, now: float | None = None) -> int:
        """Record that deferred decision ``event_id`` was activated (shown); returns its sequence number.

        The record's ``ts`` is ``now`` (unix seconds), the clock by default. Raises
        ``SchemaError`` (nothing written) if the event id is not a non-empty str or
        ``now`` is not unix seconds.
        """
        eid = _event_id(event_id, "activation event_id")
        when = time.time() if now is None else _validate.timestamp(now, f"activation {eid!r}: now")
        return self.append(ActivationRecord(eid, when))

    def append_outcome(self, event_id: str, value: float, *, now: float | None = None) -> int:
        """Record reward ``value`` for ``event_id``; returns its sequence number.

        The record's ``ts`` is ``now`` (unix seconds), the clock by default. Raises
        ``SchemaError`` (nothing written) if the event id is not a non-empty str,
        ``value`` is not a finite number or ``now`` is not unix seconds.
        """
        eid = _event_id(event_id, "outcome event_id")
        v = _validate.number(value, f"outcome {eid!r}: value")
        when = time.time() if now is None else _validate.timestamp(now, f"outcome {eid!r}: now")
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

    def forget(self, ids: Iterable[str | int], *, events: set[str] | None = None) -> ErasureReport:
        """Remove the decisions of ``ids`` (and their activations and outcomes) from this log's directory.

        This log moves to a new segment first, so the one it was writing can be rewritten
        too; segments other live processes are writing are reported ``busy``
        (``nba.log.erasure``). Records appended from now on are not affected. ``events``
        receives the event ids of the decisions removed.
        """
        wanted = list(ids)
        with self._lock:
            if self._closed:
                raise LogError(f"decision log {self.directory!r} is closed; use nba.log.forget(directory, ids)")
            if self._fd >= 0 and self._seg_records:
                self._new_segment()
            current = self._path if self._fd >= 0 else None
        report = erasure.forget(self.directory, wanted, events=events)
        if current in report.busy:  # begun after the call: not the erasure's to clean
            report.busy.remove(current)
        return report

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

        The GIL is kept (``logio_core.write_held``): a record is a short write into the page
        cache, and releasing the GIL for it costs a thread hand-over per decision.
        """
        try:
            written = logio_core.write_held(self._fd, data)
            while written < len(data):
                written += logio_core.write_held(self._fd, data, written)
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
        _files.fsync_directory(directory or self.directory)

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
                # Held while the segment is open: nba.log.erasure never rewrites a segment being written.
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
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
