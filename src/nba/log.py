"""The decision log: durable, append-only JSON lines of decisions, activations and outcomes.

A ``DecisionLog`` writes one JSON object per line (msgspec, tagged on ``"type"``)
into segments named ``<prefix>-<UTC timestamp>-<n>.jsonl`` that sort in time
order; a segment is rotated by size and starts with the current catalogue
records, so each segment is self-contained. ``read_records`` reads the segments
back (skipping, with a warning, a torn or corrupt line rather than failing),
``join`` attaches outcomes to their decisions inside a reward window, and
``export_dsjson`` writes Vowpal Wabbit's dsjson so ``vw --cb_explore_adf
--dsjson`` trains on the log directly.

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
can leave at most the last line of a segment torn: whole lines are written, the
log never appends to a segment it did not create, and after a write error it
continues in a new segment.
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import re
import threading
import time
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Union

import msgspec

from nba import _core
from nba._locks import PoliteLock, acquire_politely
from nba.errors import ConfigError, LogError

__all__ = [
    "DecisionLog",
    "DecisionRecord",
    "ActivationRecord",
    "OutcomeRecord",
    "CatalogRecord",
    "SchemaRecord",
    "Record",
    "JoinedExample",
    "LogWarning",
    "TornRecordWarning",
    "CorruptRecordWarning",
    "read_records",
    "join",
    "export_dsjson",
]

DURABILITY_MODES = ("record", "fsync", "interval", "close")
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
    scores: Union[list[Union[float, None]], None] = None
    features: Features = {}
    model_version: str = ""
    variants: dict[str, str] = {}
    policy: str = ""
    channel: Union[str, None] = None
    unit: Union[str, int, None] = None
    deferred: bool = False
    fallback: bool = False
    catalog_id: Union[str, None] = None
    x: Union[list[Union[float, None]], None] = None
    schema_id: Union[str, None] = None
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


Record = Union[DecisionRecord, ActivationRecord, OutcomeRecord, CatalogRecord, SchemaRecord]


def _enc_hook(obj: Any) -> Any:
    """Encode numpy scalars and arrays as their Python equivalents."""
    tolist = getattr(obj, "tolist", None)
    if tolist is not None:
        return tolist()
    raise NotImplementedError(f"cannot write objects of type {type(obj).__name__} to the decision log")


# --------------------------------------------------------------------------- writer

_SEGMENT_RE = re.compile(r"^(?P<prefix>.+)-(?P<stamp>\d{8}T\d{6}\.\d{6}Z)-(?P<n>\d+)\.jsonl$")


def _stamp(ns: int) -> str:
    """UTC timestamp with microseconds, as used in segment names (sorts as text)."""
    sec, rem = divmod(ns, 1_000_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(sec)) + f".{rem // 1000:06d}Z"


def _close_quietly(ref: weakref.ReferenceType) -> None:
    log = ref()
    if log is not None:
        try:
            log.close()
        except Exception:  # at interpreter exit there is nobody left to tell
            pass


class DecisionLog:
    """Durable, thread-safe, append-only writer of decision log segments.

    ``durability`` is one of "record", "fsync", "interval", "close" (see the
    module docstring for what each guarantees); ``interval`` is the group-commit
    period in seconds; ``segment_bytes`` the size at which a new segment starts;
    ``buffer_bytes`` how much the buffered modes hold before writing to the OS.
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
        self._line = bytearray()  # the record being encoded (reused)
        self._buf = bytearray()  # pending lines of the current segment (buffered modes)
        self._lock = PoliteLock()  # appends, writes, rotation (no convoy with the GIL)
        self._sync_lock = threading.Lock()  # fdatasync vs closing that fd
        self._durable = threading.Condition(threading.Lock())
        self._catalogs: dict[str, CatalogRecord] = {}
        self._schemas: dict[str, SchemaRecord] = {}

        self._fd = -1
        self._fd_gen = 0  # bumped whenever _fd changes, so a sync never hits a reused fd
        self._path: str | None = None
        self._seg_n = 0
        self._last_stamp_ns = 0
        self._seg_size = 0  # bytes of the current segment, written or buffered
        self._seg_records = 0  # records after the catalogue header
        self._broken = False  # a write failed: continue in a new segment
        self._seq = 0  # last sequence number handed out
        self._written_seq = 0  # last record handed to the OS
        self._synced_seq = 0  # last record fdatasync-ed
        self._durable_seq = 0
        self._closed = False
        self._segments: list[str] = []

        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        if durability == "interval":
            self._syncer = threading.Thread(target=self._sync_loop, name="nba-log-sync", daemon=True)
            self._syncer.start()
        self._atexit = functools.partial(_close_quietly, weakref.ref(self))
        atexit.register(self._atexit)

    # ----------------------------------------------------------------- appends

    def append(self, record: Record) -> int:
        """Append one record; returns its sequence number (see ``durable_seq``)."""
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
        except (TypeError, NotImplementedError, OverflowError) as e:
            raise LogError(
                f"cannot write {type(record).__name__} {getattr(record, 'event_id', '')!r} to the decision log: "
                f"{e}; pass numbers, strings, bools, lists and dicts"
            ) from e
        line.append(10)
        n = len(line)
        if self._fd < 0 or self._broken or (self._seg_size + n > self.segment_bytes and self._seg_records):
            self._new_segment()
        self._seg_size += n
        self._seg_records += 1
        if self._buffered:
            self._seq += 1
            self._buf += line
            if len(self._buf) >= self.buffer_bytes:
                self._write_pending()
            return self._seq
        self._write_all(line)
        if self._fsync_each:
            self._fdatasync(self._fd)
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
        scores: Sequence[float] | None = None,
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

        ``probability`` defaults to ``pmf[chosen[0]]``, ``ts`` to now.
        """
        return self.append(
            DecisionRecord(
                event_id=event_id,
                ts=time.time() if ts is None else ts,
                actions=actions,  # type: ignore[arg-type]  # any sequence encodes as a JSON list
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
        )

    def append_activation(self, event_id: str, *, ts: float | None = None) -> int:
        """Record that deferred decision ``event_id`` was activated (shown); returns its sequence number."""
        return self.append(ActivationRecord(event_id, time.time() if ts is None else ts))

    def append_outcome(self, event_id: str, value: float, *, ts: float | None = None) -> int:
        """Record reward ``value`` for ``event_id``; returns its sequence number."""
        if not math.isfinite(value):
            raise LogError(f"outcome value {value!r} for event {event_id!r} is not a finite number")
        return self.append(OutcomeRecord(event_id, time.time() if ts is None else ts, value))

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
        except (TypeError, NotImplementedError, OverflowError) as e:
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
        except (TypeError, NotImplementedError, OverflowError, msgspec.ValidationError) as e:
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
        """Paths of the segments this log has created, oldest first."""
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
                if self._fd >= 0:
                    try:
                        self._write_pending()
                    finally:
                        with self._sync_lock:
                            try:
                                self._fdatasync(self._fd)
                            finally:
                                os.close(self._fd)
                                self._fd = -1
                                self._fd_gen += 1
                    self._fsync_directory()
                    self._set_durable(self._written_seq)
            finally:
                self._closed = True
                atexit.unregister(self._atexit)
                with self._durable:
                    self._durable.notify_all()

    def __enter__(self) -> DecisionLog:
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
        """One write(2) of ``data`` (looping only on a short write); marks the segment broken on error.

        The GIL is kept (``_core.write_held``): a record is a short write into the page
        cache, and releasing the GIL for it costs a thread hand-over per decision.
        """
        try:
            written = _core.write_held(self._fd, data)
            while written < len(data):
                written += _core.write_held(self._fd, data, written)
        except OSError as e:
            self._broken = True
            self._line = bytearray()  # a traceback may still pin a view of the old one
            raise LogError(f"cannot write to log segment {self._path!r}: {e.strerror or e}") from e

    def _write_pending(self) -> None:
        """Hand the buffered lines to the OS (in a new segment if a write to this one failed)."""
        if not self._buf:
            return
        if self._broken:
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
            # Keep the unwritten records, from the start of the line the error cut,
            # for the next segment: the torn piece stays the last line of this one.
            self._buf = bytearray(buf[buf.rfind(b"\n", 0, done) + 1 :])
            self._broken = True
            raise LogError(f"cannot write to log segment {self._path!r}: {e.strerror or e}") from e
        buf.clear()
        self._written_seq = self._seq

    def _fdatasync(self, fd: int) -> None:
        try:
            os.fdatasync(fd)
        except OSError as e:
            raise LogError(f"cannot sync log segment {self._path!r} to disk: {e.strerror or e}") from e

    def _fsync_directory(self) -> None:
        """Make the segment's directory entry durable (a new file needs this to survive a crash)."""
        try:
            dfd = os.open(self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
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

    def _new_segment(self) -> None:
        """Close the current segment (durably in the syncing modes) and start the next with the catalogues."""
        if self._fd >= 0:
            if self._buf and not self._broken:
                self._write_pending()
            synced = False
            with self._sync_lock:
                if self.durability != "record":
                    try:
                        os.fdatasync(self._fd)
                        synced = True
                    except OSError as e:
                        if not self._broken:
                            raise LogError(f"cannot sync log segment {self._path!r}: {e.strerror or e}") from e
                try:
                    os.close(self._fd)
                except OSError:
                    pass
                self._fd = -1
                self._fd_gen += 1
            if self._buffered and synced:
                self._synced_seq = self._written_seq
                if not self._buf:
                    self._set_durable(self._written_seq)
        stamp_ns = max(time.time_ns(), self._last_stamp_ns + 1000)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        while True:
            self._seg_n += 1
            path = os.path.join(self.directory, f"{self.prefix}-{_stamp(stamp_ns)}-{self._seg_n:06d}.jsonl")
            try:
                fd = os.open(path, flags, 0o644)
                break
            except FileExistsError:
                continue  # another writer in this directory took the name
            except OSError as e:
                raise LogError(f"cannot create log segment {path!r}: {e.strerror or e}") from e
        self._last_stamp_ns = stamp_ns
        with self._sync_lock:
            self._fd = fd
            self._fd_gen += 1
        self._path = path
        self._segments.append(path)
        self._broken = False
        self._seg_records = 0
        header = bytearray()
        for rec in (*self._catalogs.values(), *self._schemas.values()):
            self._encoder.encode_into(rec, header, -1)
            header.append(10)
        self._seg_size = len(header) + len(self._buf)
        if self._buffered:
            # Lines left over from a failed write go after the header.
            self._buf[:0] = header
        elif header:
            self._write_all(header)
        if self.durability in ("fsync", "interval"):
            self._fsync_directory()

    # ----------------------------------------------------------------- group commit

    def _sync_once(self, force: bool = False) -> None:
        """Write pending lines (under the append lock), then fdatasync outside it.

        Appenders wait for the write to the OS only, never for the disk.
        """
        with self._lock:
            if self._fd < 0:
                self._set_durable(self._written_seq)
                return
            self._write_pending()
            fd, gen, seq = self._fd, self._fd_gen, self._written_seq
        if seq <= self._synced_seq and not force:
            return
        with self._sync_lock:
            # If the segment was rotated meanwhile, rotation already synced it.
            if gen == self._fd_gen:
                self._fdatasync(fd)
            if seq > self._synced_seq:
                self._synced_seq = seq
        self._set_durable(seq)

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
    """A line inside a segment is not a valid record; it was skipped."""


_DECODER = msgspec.json.Decoder(Record)


def _segment_paths(directory: str | os.PathLike[str]) -> list[str]:
    """Segment files of ``directory`` in time order (a single file path is returned as is)."""
    path = os.fspath(directory)
    if os.path.isfile(path):
        return [path]
    try:
        names = os.listdir(path)
    except OSError as e:
        raise LogError(f"cannot list decision log directory {path!r}: {e.strerror or e}") from e
    keyed = []
    for name in names:
        m = _SEGMENT_RE.match(name)
        if m is not None:
            keyed.append((m["stamp"], int(m["n"]), name))
    keyed.sort()
    return [os.path.join(path, name) for _, _, name in keyed]


def _read_segment(path: str) -> Iterator[Record]:
    decode = _DECODER.decode
    try:
        f = open(path, "rb")
    except OSError as e:
        raise LogError(f"cannot read log segment {path!r}: {e.strerror or e}") from e
    with f:
        offset = 0
        for lineno, line in enumerate(f, 1):
            start = offset
            offset += len(line)
            try:
                record = decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                if not line.strip():
                    continue
                if not line.endswith(b"\n"):
                    warnings.warn(
                        f"{path}:{lineno} (byte {start}): skipped a torn last record ({len(line)} bytes, {e}); "
                        "the writer stopped mid-write, so this record was never acknowledged",
                        TornRecordWarning,
                        stacklevel=3,
                    )
                else:
                    warnings.warn(
                        f"{path}:{lineno} (byte {start}): skipped a corrupt record ({e}); "
                        "the rest of the segment is read normally",
                        CorruptRecordWarning,
                        stacklevel=3,
                    )
                continue
            yield record


def read_records(directory: str | os.PathLike[str]) -> Iterator[Record]:
    """Every record of every segment in ``directory`` (or of one segment file), in time order.

    A torn last line (``TornRecordWarning``) or a corrupt line
    (``CorruptRecordWarning``) is skipped with a warning; reading goes on.
    """
    schemas: dict[str, SchemaRecord] = {}
    for path in _segment_paths(directory):
        for rec in _read_segment(path):
            if type(rec) is DecisionRecord and rec.x is not None and rec.schema_id is not None:
                schema = schemas.get(rec.schema_id)
                if schema is None:
                    warnings.warn(
                        f"{path}: decision {rec.event_id!r} refers to schema {rec.schema_id!r}, which no "
                        "schema record before it defines; its features are left empty",
                        CorruptRecordWarning,
                        stacklevel=2,
                    )
                else:
                    rec = msgspec.structs.replace(rec, features=_features(schema, rec.x, rec.raw))
            elif type(rec) is SchemaRecord:
                schemas[rec.schema_id] = rec
            yield rec


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
            if v is None or v != v:
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
    catalog: Union[CatalogRecord, None] = None


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
) -> Iterator[JoinedExample]:
    """Join outcomes to decisions by event id, in decision order.

    An outcome counts when ``start <= outcome.ts <= start + reward_window`` where
    ``start`` is the decision's ts, or for a deferred decision its first
    activation's ts (deferred decisions never activated are left out). Several
    outcomes aggregate by ``"sum"`` or take the ``"first"`` (earliest); a decision
    without any gets ``default_reward`` and ``observed=False``. Outcomes for
    unknown event ids are ignored; a repeated decision event id keeps the first.
    """
    if aggregate not in _AGGREGATES:
        raise ConfigError(f"aggregate={aggregate!r} is not one of {', '.join(map(repr, _AGGREGATES))}")
    window = _window_seconds(reward_window)
    decisions: dict[str, tuple[DecisionRecord, CatalogRecord | None]] = {}
    activations: dict[str, float] = {}
    outcomes: dict[str, list[OutcomeRecord]] = {}
    catalogs: dict[str, CatalogRecord] = {}
    for rec in read_records(directory):
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
    for event_id, (decision, cat) in decisions.items():
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


def export_dsjson(
    directory: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    reward_window: timedelta | float | None = None,
    default_reward: float = 0.0,
    aggregate: str = "sum",
    observed_only: bool = False,
) -> int:
    """Write the joined log as VW dsjson lines to ``out_path``; returns the number of events.

    ``_label_cost`` is ``-reward`` (VW minimizes cost, nba maximizes reward);
    ``a`` lists 1-based action ids, the taken one first, and ``p`` their
    probabilities in that order; ``c`` holds the decision's namespaces and
    ``_multi`` the catalogue features of each action, in ``actions`` order.
    Joining follows ``join`` (``observed_only`` drops decisions without outcome).
    The file is written to a temporary name and renamed, so it is never half there.
    """
    out = os.fspath(out_path)
    encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
    tmp = f"{out}.tmp-{os.getpid()}"
    checked_catalogs: set[int] = set()
    count = 0
    buf = bytearray()
    try:
        with open(tmp, "wb") as f:
            for ex in join(directory, reward_window=reward_window, default_reward=default_reward, aggregate=aggregate):
                if observed_only and not ex.observed:
                    continue
                d = ex.decision
                cat = ex.catalog
                if cat is None:
                    raise LogError(
                        f"event {d.event_id!r}: no catalogue record for catalog_id={d.catalog_id!r}, so its actions "
                        "have no features to export; call DecisionLog.register_catalog() before logging decisions"
                    )
                if id(cat) not in checked_catalogs:
                    for arm_id, arm_features in cat.arms.items():
                        _check_vw_keys(arm_features, f"arm {arm_id!r}", d.event_id)
                    checked_catalogs.add(id(cat))
                _check_vw_keys(d.features, "decision", d.event_id)
                try:
                    multi = [cat.arms[a] for a in d.actions]
                except KeyError as e:
                    raise LogError(
                        f"event {d.event_id!r}: action {e.args[0]!r} is not in catalogue {cat.catalog_id!r}; "
                        "register the catalogue with every arm that can be offered"
                    ) from None
                if not d.chosen or not 0 <= d.chosen[0] < len(d.actions):
                    raise LogError(f"event {d.event_id!r}: chosen={d.chosen!r} does not index actions")
                taken = d.chosen[0]
                order = [taken]
                seen = {taken}
                for i in d.chosen[1:]:
                    if i not in seen and 0 <= i < len(d.actions):
                        order.append(i)
                        seen.add(i)
                order.extend(i for i in range(len(d.actions)) if i not in seen)
                c: dict[str, Any] = dict(d.features)
                c["_multi"] = multi
                event = _DsjsonEvent(
                    label_cost=-ex.reward if ex.reward else 0.0,  # no -0.0 in the file
                    label_probability=d.probability,
                    label_action=taken + 1,
                    label_index=taken,
                    o=[_DsOutcome(o.value, _iso(o.ts)) for o in ex.outcomes],
                    timestamp=_iso(d.ts),
                    version="1",
                    event_id=d.event_id,
                    a=[i + 1 for i in order],
                    c=c,
                    p=[d.pmf[i] for i in order],
                    vw_state=_VWState(d.model_version),
                )
                encoder.encode_into(event, buf)
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
    return count
