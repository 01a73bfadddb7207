"""nba.log against a hostile world: bad values at append, a deleted directory, a full disk, flipped bytes.

Each surface gets a list of hostile inputs; the test names say what must hold:
the writer refuses a bad value before writing anything, never acknowledges a
record into an unlinked file, leaves no file storm on a full disk, and a reader
returns every record either exactly as written or not at all (with a warning).
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import subprocess
import tempfile
import warnings
import zlib
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nba import DecisionLog
from nba._core import logio as logio_core
from nba.errors import LogError, SchemaError
from nba.log import (
    ActivationRecord,
    CorruptRecordWarning,
    DecisionRecord,
    ExportReport,
    LogWarning,
    OutcomeRecord,
    ReadReport,
    export_dsjson,
    join,
    read_records,
)
from nba.log.checks import _decision_checked, _decision_ok

ARMS = {"a": {"Action": {"id": "a", "fee": 1.5}}, "b": {"Action": {"id": "b"}}, "c": {"Action": {"id": "c"}}}
MODES = ["record", "fsync", "interval", "close"]
NOW = 1_700_000_000.0


def _decide(log: DecisionLog, eid: str, **kw) -> int:
    args = {
        "actions": ["a", "b", "c"],
        "pmf": [0.5, 0.3, 0.2],
        "chosen": [1],
        "catalog_id": "main",
        "features": {"User": {"age": 31.0, "city": "Paris"}},
        "now": NOW,
    }
    args.update(kw)
    return log.append_decision(eid, **args)


def _ids(directory) -> list[str]:
    return [r.event_id for r in read_records(directory) if isinstance(r, DecisionRecord)]


def _quiet_ids(directory) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _ids(directory)


def _files(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".jsonl"))


# --------------------------------------------------------------------------- values at append

_GOOD = {"actions": ["a", "b", "c"], "pmf": [0.5, 0.3, 0.2], "chosen": [0]}
# (what is wrong, keyword overrides for append_decision, event id): each must raise SchemaError.
_BAD_DECISIONS = [
    ("pmf sums to 0.7", {"pmf": [0.4, 0.2, 0.1]}, "e"),
    ("pmf sums to 1.3", {"pmf": [0.5, 0.5, 0.3]}, "e"),
    ("pmf entry NaN", {"pmf": [math.nan, 0.5, 0.5]}, "e"),
    ("pmf entry inf", {"pmf": [math.inf, 0.0, 0.0]}, "e"),
    ("pmf entry negative", {"pmf": [1.2, -0.2, 0.0]}, "e"),
    ("pmf entry a str", {"pmf": ["0.5", 0.3, 0.2]}, "e"),
    ("pmf entry a bool", {"pmf": [True, 0.0, 0.0]}, "e"),
    ("pmf entry None", {"pmf": [None, 0.5, 0.5]}, "e"),
    ("pmf shorter than actions", {"pmf": [0.5, 0.5]}, "e"),
    ("pmf longer than actions", {"pmf": [0.25] * 4}, "e"),
    ("pmf a str", {"pmf": "0.5"}, "e"),
    ("actions empty", {"actions": [], "pmf": [], "chosen": [0]}, "e"),
    ("actions a str", {"actions": "abc"}, "e"),
    ("duplicate action", {"actions": ["a", "a", "c"]}, "e"),
    ("non-str action", {"actions": ["a", 2, "c"]}, "e"),
    ("None action", {"actions": ["a", None, "c"]}, "e"),
    ("empty action id", {"actions": ["a", "", "c"]}, "e"),
    ("lone surrogate in an action", {"actions": ["a", "\ud800", "c"]}, "e"),
    ("chosen empty", {"chosen": []}, "e"),
    ("chosen out of range", {"chosen": [7]}, "e"),
    ("chosen negative", {"chosen": [-1]}, "e"),
    ("chosen a float", {"chosen": [0.0]}, "e"),
    ("chosen a bool", {"chosen": [True]}, "e"),
    ("chosen a str", {"chosen": ["0"]}, "e"),
    ("chosen repeats", {"chosen": [0, 0]}, "e"),
    ("chosen an int, not a list", {"chosen": 0}, "e"),
    ("probability not pmf[chosen[0]]", {"probability": 0.3}, "e"),
    ("probability NaN", {"probability": math.nan}, "e"),
    ("scores too short", {"scores": [1.0]}, "e"),
    ("score a str", {"scores": [1.0, "x", 2.0]}, "e"),
    ("namespace starting with _", {"features": {"_User": {"age": 1.0}}}, "e"),
    ("feature starting with _", {"features": {"User": {"_label": 1.0}}}, "e"),
    ("namespace a lone surrogate", {"features": {"\udcff": {"age": 1.0}}}, "e"),
    ("feature name a lone surrogate", {"features": {"User": {"\ud800": 1.0}}}, "e"),
    ("feature value a lone surrogate", {"features": {"User": {"city": "\ud800"}}}, "e"),
    ("feature value an object", {"features": {"User": {"x": object()}}}, "e"),
    ("non-str namespace", {"features": {1: {"age": 1.0}}}, "e"),
    ("non-str feature name", {"features": {"User": {1: 1.0}}}, "e"),
    ("features a list", {"features": [1, 2]}, "e"),
    ("event id a lone surrogate", {}, "\ud800"),
    ("event id empty", {}, ""),
    ("event id an int", {}, 7),
    ("event id None", {}, None),
    ("ts NaN", {"now": math.nan}, "e"),
    ("ts inf", {"now": math.inf}, "e"),
    ("ts -inf", {"now": -math.inf}, "e"),
    ("ts in milliseconds", {"now": 1.7e12}, "e"),
    ("ts -1e300", {"now": -1e300}, "e"),
    ("ts negative", {"now": -1.0}, "e"),
    ("ts a str", {"now": "2024-01-01"}, "e"),
    ("unit a float", {"unit": 1.5}, "e"),
    ("unit beyond 64 bits", {"unit": 2**70}, "e"),
    ("unit a lone surrogate", {"unit": "\ud800"}, "e"),
    ("unit a list", {"unit": [1]}, "e"),
    ("model_version a lone surrogate", {"model_version": "m\ud800"}, "e"),
    ("policy not a str", {"policy": 3}, "e"),
    ("channel a lone surrogate", {"channel": "\udfff"}, "e"),
    ("catalog_id not a str", {"catalog_id": 5}, "e"),
    ("variants value a lone surrogate", {"variants": {"exp": "\ud800"}}, "e"),
    ("variants not a dict", {"variants": ["exp"]}, "e"),
    ("deferred not a bool", {"deferred": "yes"}, "e"),
    ("fallback not a bool", {"fallback": 1}, "e"),
]


@pytest.mark.parametrize(("what", "kw", "eid"), _BAD_DECISIONS, ids=[b[0] for b in _BAD_DECISIONS])
def test_a_bad_decision_value_raises_schema_error_and_writes_nothing(what, kw, eid, tmp_path):
    with DecisionLog(tmp_path) as log:
        log.append_outcome("before", 1.0, now=NOW)
        with pytest.raises(SchemaError):
            log.append_decision(eid, **{**_GOOD, **kw})
        assert log.last_seq == 1  # no sequence number used
        log.append_outcome("after", 1.0, now=NOW)
    records = list(read_records(tmp_path))
    assert [r.event_id for r in records] == ["before", "after"]


_BAD_OUTCOMES = [
    ("value NaN", "e", math.nan, None),
    ("value inf", "e", math.inf, None),
    ("value a str", "e", "1", None),
    ("value a bool", "e", True, None),
    ("value None", "e", None, None),
    ("event id a lone surrogate", "\ud800", 1.0, None),
    ("event id empty", "", 1.0, None),
    ("event id an int", 3, 1.0, None),
    ("ts NaN", "e", 1.0, math.nan),
    ("ts in milliseconds", "e", 1.0, 1.7e12),
    ("ts -1e300", "e", 1.0, -1e300),
]


@pytest.mark.parametrize(("what", "eid", "value", "ts"), _BAD_OUTCOMES, ids=[b[0] for b in _BAD_OUTCOMES])
def test_a_bad_outcome_or_activation_raises_schema_error_and_writes_nothing(what, eid, value, ts, tmp_path):
    with DecisionLog(tmp_path) as log:
        with pytest.raises(SchemaError):
            log.append_outcome(eid, value, now=ts)
        if what.startswith(("event id", "ts")):
            with pytest.raises(SchemaError):
                log.append_activation(eid, now=ts)
        assert log.last_seq == 0
    assert list(read_records(tmp_path)) == []


def _record_with(field: str, value) -> DecisionRecord | OutcomeRecord | ActivationRecord:
    base = {"event_id": "e", "ts": NOW, "actions": ["a", "b"], "pmf": [0.5, 0.5], "chosen": [0], "probability": 0.5}
    if field.startswith("outcome."):
        kw = {"event_id": "e", "ts": NOW, "value": 1.0, field.split(".")[1]: value}
        return OutcomeRecord(**kw)
    if field.startswith("activation."):
        return ActivationRecord(**{"event_id": "e", "ts": NOW, field.split(".")[1]: value})
    if field.startswith("features"):
        return DecisionRecord(**base, features=value)
    return DecisionRecord(**{**base, field: value})


# What append(record) (the Decider's fast path) must refuse: anything the reader could not read back.
_BAD_RECORDS = [
    ("event_id", "\ud800"),
    ("event_id", 5),
    ("actions", ["a", "\udc80"]),
    ("model_version", "\ud800"),
    ("policy", "\ud800x"),
    ("channel", "\ud800"),
    ("catalog_id", "\ud800"),
    ("schema_id", "\ud800"),
    ("unit", "\ud800"),
    ("variants", {"exp": "\ud800"}),
    ("variants", {"\ud800": "v"}),
    ("features", {"User": {"city": "\ud800"}}),
    ("features", {"\ud800": {"a": 1}}),
    ("features", {"User": {"x": object()}}),
    ("raw", {"User": {"city": "\udfff"}}),
    ("ts", math.nan),
    ("ts", math.inf),
    ("ts", "now"),
    ("probability", math.nan),
    ("pmf", [math.nan, 0.5]),
    ("pmf", [math.inf, 0.0]),
    ("pmf", [None, 0.5]),
    ("outcome.value", math.nan),
    ("outcome.value", -math.inf),
    ("outcome.ts", math.nan),
    ("outcome.event_id", "\ud800"),
    ("activation.ts", math.inf),
    ("activation.event_id", None),
]


@pytest.mark.parametrize(("field", "value"), _BAD_RECORDS, ids=[f"{f}={v!r}" for f, v in _BAD_RECORDS])
@pytest.mark.parametrize("durability", ["record", "close"])
def test_the_fast_path_refuses_a_record_it_could_not_read_back_before_writing_anything(
    field, value, durability, tmp_path
):
    with DecisionLog(tmp_path, durability=durability) as log:
        log.append_outcome("before", 1.0, now=NOW)
        with pytest.raises(LogError):
            log.append(_record_with(field, value))
        assert log.last_seq == 1
        log.append_outcome("after", 2.0, now=NOW)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.event_id for r in read_records(tmp_path)] == ["before", "after"]


_texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=6) | st.sampled_from(["\ud800", "", "_x", "é"])
_numbers = st.floats() | st.integers(-3, 3) | st.sampled_from([True, None, "0.5", np.float64(0.5)])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event_id=_texts | st.integers(),
    actions=st.lists(_texts, max_size=4) | st.tuples(_texts, _texts),
    pmf=st.lists(_numbers, max_size=4) | st.sampled_from([[1.0], [0.5, 0.5], [0.25] * 4, (1.0,)]),
    chosen=st.lists(st.integers(-1, 4) | st.sampled_from([True, 0.0, np.int64(1)]), max_size=3),
    probability=st.none() | _numbers,
    scores=st.none() | st.lists(_numbers, max_size=4),
    ts=st.none() | st.floats() | st.sampled_from([NOW, 1.7e12, np.float64(NOW)]),
    features=st.none() | st.dictionaries(_texts, st.dictionaries(_texts, _numbers | _texts, max_size=2), max_size=2),
    unit=st.none() | _texts | st.integers(-(2**64), 2**64),
    deferred=st.booleans() | st.sampled_from([1, np.bool_(True)]),
)
def test_the_fast_and_validating_checks_of_append_decision_agree(
    event_id, actions, pmf, chosen, probability, scores, ts, features, unit, deferred
):
    """Where the fast path says "fine", the validating path returns the values unchanged; it never
    accepts what the validating path refuses."""
    args = (
        event_id,
        actions,
        pmf,
        chosen,
        probability,
        scores,
        ts,
        features,
        "m",
        None,
        "p",
        None,
        unit,
        deferred,
        False,
        "main",
    )
    fast = _decision_ok(*args)
    try:
        checked = _decision_checked(*args)
    except SchemaError:
        assert not fast
        return
    if fast:
        assert checked == args


# --------------------------------------------------------------------------- directory deleted while running


@pytest.mark.parametrize("durability", MODES)
def test_records_appended_after_the_directory_is_deleted_land_in_a_recreated_directory(durability, tmp_path):
    d = str(tmp_path / "log")
    log = DecisionLog(d, durability=durability, interval=0.01)
    log.register_catalog("main", ARMS)
    for i in range(5):
        _decide(log, f"gone{i}")
    log.flush()  # acknowledged: these are lost with the deleted files, nothing to do about that
    pending = [f"pending{i}" for i in range(5)]
    for eid in pending:  # buffered, unacknowledged in the buffered modes
        _decide(log, eid)
    shutil.rmtree(d)
    after = [f"after{i}" for i in range(5)]

    def write_after() -> None:
        seqs = [_decide(log, eid) for eid in after]
        if durability == "interval":
            assert log.wait_durable(seqs[-1], timeout=10)
        log.flush()

    with pytest.warns(LogWarning, match="deleted|unlinked"):
        write_after()
    log.close()
    ids = Counter(_ids(d))
    if durability in ("record", "fsync"):
        # pending* were acknowledged on return before the rmtree: gone with the old file.
        assert ids == Counter(after)
    else:
        # Every unacknowledged line was rewritten into the recreated directory, once.
        assert ids == Counter(pending + after)
    assert all(n in {os.path.basename(p) for p in log.segments} for n in _files(d))
    seg = os.path.join(d, _files(d)[0])
    with open(seg, "rb") as f:
        assert msgspec.json.decode(f.readline())["type"] == "catalog"  # the new segment has its header


@pytest.mark.parametrize("durability", MODES)
def test_a_deleted_segment_file_is_noticed_before_acknowledging_and_the_record_rewritten(durability, tmp_path):
    d = str(tmp_path)
    log = DecisionLog(d, durability=durability)
    _decide(log, "e0")
    log.flush()
    (seg,) = log.segments
    _decide(log, "e1")
    os.unlink(seg)

    def write_e2() -> int:
        seq = _decide(log, "e2")  # "record"/"fsync" notice the unlinked file here,
        log.flush()  # the buffered modes at their sync
        return seq

    with pytest.warns(LogWarning, match="unlinked"):
        seq = write_e2()
    assert log.durable_seq >= seq
    log.close()
    want = ["e2"] if durability in ("record", "fsync") else ["e1", "e2"]
    assert _ids(d) == want


@pytest.mark.parametrize("durability", MODES)
def test_a_directory_that_cannot_be_recreated_raises_log_error_and_acknowledges_nothing(durability, tmp_path):
    d = str(tmp_path / "log")
    log = DecisionLog(d, durability=durability)
    _decide(log, "e0")
    log.flush()
    durable = log.durable_seq
    shutil.rmtree(d)
    with open(d, "w") as f:  # a file where the directory was: makedirs cannot succeed
        f.write("not a directory")

    def write_e1() -> None:
        _decide(log, "e1")
        log.flush()

    with pytest.warns(LogWarning), pytest.raises(LogError, match="cannot be recreated|cannot create"):
        write_e1()
    assert log.durable_seq == durable
    os.unlink(d)

    def write_e2() -> None:
        _decide(log, "e2")
        log.close()

    with pytest.warns(LogWarning, match="recreated"):
        write_e2()
    ids = _ids(d)
    assert "e2" in ids and ids.count("e2") == 1
    assert ids in (["e2"], ["e1", "e2"])  # e1 was never acknowledged; the buffered modes keep it pending


# --------------------------------------------------------------------------- full disk


def _mount_tmpfs(path: str, size: str) -> bool:
    os.makedirs(path, exist_ok=True)
    try:
        run = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return run.returncode == 0


def _umount(path: str) -> None:
    subprocess.run(["umount", "-l", path], capture_output=True, timeout=10, check=False)


class _FullDisk:
    """Stands in for ``os.write`` / ``logio_core.write_held``: ENOSPC while ``full``, after half the first write."""

    def __init__(self) -> None:
        self.full = False
        self.real = os.write
        self.first = True

    def __call__(self, fd: int, data, start: int = 0) -> int:
        data = memoryview(data)[start:]
        if not self.full:
            return self.real(fd, data)
        if self.first and len(data) > 1:
            self.first = False
            return self.real(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(params=["tmpfs", "simulated"])
def full_disk(request, tmp_path, monkeypatch):
    """``(directory, fill, free)``: a log directory whose disk ``fill()`` fills and ``free()`` frees."""
    d = str(tmp_path / "disk")
    if request.param == "tmpfs":
        if os.geteuid() != 0 or not _mount_tmpfs(d, "64k"):
            pytest.skip("cannot mount a tmpfs here (needs root); the simulated disk covers the same logic")
        request.addfinalizer(lambda: _umount(d))
        filler = os.path.join(d, "filler")

        def fill() -> None:
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                while os.write(fd, b"\0" * 512):
                    pass
            except OSError:
                pass  # ENOSPC: the disk is full
            finally:
                os.close(fd)

        def free() -> None:
            os.unlink(filler)

        yield d + "/log", fill, free
        return
    disk = _FullDisk()
    monkeypatch.setattr(os, "write", disk)
    monkeypatch.setattr(logio_core, "write_held", disk)

    def fill() -> None:
        disk.full, disk.first = True, True

    def free() -> None:
        disk.full = False

    yield d + "/log", fill, free


@pytest.mark.parametrize("durability", MODES)
def test_a_full_disk_raises_log_error_leaves_no_file_storm_and_keeps_every_acknowledged_record(durability, full_disk):
    d, fill, free = full_disk
    log = DecisionLog(d, durability=durability, segment_bytes=1_500, buffer_bytes=400)
    log.register_catalog("main", ARMS)
    acked: list[str] = []
    for i in range(12):  # several segments
        _decide(log, f"ok{i}")
        acked.append(f"ok{i}")
    log.flush()
    files_before = len(_files(d))
    fill()
    failures = 0
    for i in range(200):
        try:
            _decide(log, f"full{i}")
            log.flush()
        except LogError as e:
            failures += 1
            assert "No space left" in str(e) or "cannot" in str(e)
    assert failures >= 190  # buffered modes may take a few appends before the buffer reaches the disk
    # One failure -> one retry in place: at most one new (header-only) segment for the whole streak.
    assert len(_files(d)) <= files_before + 1, _files(d)
    free()
    _decide(log, "after")
    log.close()
    ids = Counter(_quiet_ids(d))
    assert all(ids[e] == 1 for e in acked + ["after"]), ids
    # A failed append was never acknowledged; in the buffered modes it stayed pending and lands once.
    assert all(n <= 1 for n in ids.values())
    if durability in ("record", "fsync"):
        assert not any(e.startswith("full") for e in ids)
    # No torn or corrupt line anywhere: every failed write was cut back.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(read_records(d))


@pytest.mark.parametrize("durability", ["interval", "close"])
def test_a_buffered_append_whose_buffer_write_fails_is_refused_not_left_pending(durability, tmp_path, monkeypatch):
    disk = _FullDisk()
    monkeypatch.setattr(os, "write", disk)
    log = DecisionLog(tmp_path, durability=durability, buffer_bytes=1, interval=60)
    _decide(log, "ok0")  # each append fills the buffer: written to the OS at once
    disk.full, disk.first = True, True
    with pytest.raises(LogError, match="No space left"):
        _decide(log, "refused")
    assert log.last_seq == 1
    disk.full = False
    assert _decide(log, "ok1") == 2
    log.close()
    assert _ids(tmp_path) == ["ok0", "ok1"]


# --------------------------------------------------------------------------- flipped bytes

_SCHEMA_LAYOUT = [["User", "age", "number", 0, []], ["User", "city", "category", 1, ["paris", "lyon"]]]


def _hostile_log(d: str) -> list:
    """A small log of every record kind over three segments; returns the records as appended."""
    written: list = []
    with DecisionLog(d, segment_bytes=1_200) as log:
        log.register_catalog("main", ARMS)
        log.register_schema("s1", _SCHEMA_LAYOUT)
        for i in range(9):
            eid = f"e{i}"
            if i % 3 == 0:
                rec = DecisionRecord(
                    event_id=eid,
                    ts=NOW + i,
                    actions=["a", "b", "c"],
                    pmf=[0.2, 0.3, 0.5],
                    chosen=[2],
                    probability=0.5,
                    x=[30.0 + i, 1.0, 0.0],
                    schema_id="s1",
                    catalog_id="main",
                    model_version="m",
                )
                log.append(rec)
            else:
                _decide(log, eid, now=NOW + i, deferred=i % 4 == 0)
                rec = None
            written.append(rec or eid)
            if i % 2 == 0:
                log.append_outcome(eid, float(i), now=NOW + i + 0.5)
            if i % 4 == 0:
                log.append_activation(eid, now=NOW + i + 0.1)
    return written


@pytest.fixture(scope="module")
def pristine():
    """The intact log's files, the records it reads back, and its export."""
    d = tempfile.mkdtemp()
    _hostile_log(d)
    files = {n: Path(d, n).read_bytes() for n in _files(d)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = list(read_records(d))
    out = os.path.join(d, "x.dsjson")
    report = export_dsjson(d, out)
    assert report == ExportReport(9, 0, 0, {})
    with open(out, "rb") as f:
        lines = f.read().splitlines()
    yield files, records, lines
    shutil.rmtree(d)


def _as_written(rec):
    """What the writer was given: a vector decision's features are the reader's, filled from the schema."""
    if isinstance(rec, DecisionRecord) and rec.x is not None:
        return msgspec.structs.replace(rec, features={})
    return rec


def _flip_and_read(files: dict[str, bytes], offset: int, byte: int):
    d = tempfile.mkdtemp()
    try:
        for name, data in files.items():
            if 0 <= offset < len(data):
                data = data[:offset] + bytes([byte]) + data[offset + 1 :]
            offset -= len(data)
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            records = list(read_records(d))
            report = export_dsjson(d, os.path.join(d, "x.dsjson"))  # on_error="skip" must never raise
        return records, caught, report
    finally:
        shutil.rmtree(d)


def _check_flip(pristine, offset: int, byte: int) -> tuple[int, int]:
    files, good, _ = pristine
    records, caught, report = _flip_and_read(files, offset, byte)
    want = Counter(msgspec.json.encode(_as_written(r)) for r in good)
    got = Counter(msgspec.json.encode(_as_written(r)) for r in records)
    altered = got - want
    assert not altered, f"flip at {offset} -> {byte:#x} returned records never written: {list(altered)}"
    full = {msgspec.json.encode(r) for r in good}
    for r in records:  # a vector decision reads its features from an intact schema copy, or none
        if msgspec.json.encode(r) not in full:
            assert r.features == {} and any("schema" in str(w.message) for w in caught)
    missing = sum((want - got).values())
    if missing:
        assert caught, f"flip at {offset}: {missing} records dropped without a warning"
    assert isinstance(report, ExportReport) and report.events <= 9
    return missing, len(caught)


def _total(files: dict[str, bytes]) -> int:
    return sum(len(v) for v in files.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_one_flipped_byte_anywhere_never_returns_an_altered_record_and_never_aborts_the_export(pristine, data):
    total = _total(pristine[0])
    offset = data.draw(st.integers(0, total - 1), label="offset")
    byte = data.draw(st.integers(0, 255), label="byte")
    _check_flip(pristine, offset, byte)


def test_every_byte_of_a_log_flipped_one_at_a_time_is_either_harmless_or_skipped_with_a_warning(pristine):
    files = pristine[0]
    total = _total(files)
    dropped = 0
    for offset in range(0, total, 3):  # every third byte, xor'ed with a different bit each time
        concat = b"".join(files.values())
        missing, _ = _check_flip(pristine, offset, concat[offset] ^ (1 << (offset % 8)))
        dropped += missing
    assert dropped > 0  # the sweep did hit records


def test_a_corrupt_catalogue_header_falls_back_to_an_intact_copy_and_costs_no_decision(pristine, tmp_path):
    files, _, good_lines = pristine
    names = sorted(files)
    for victim in (names[0], names[1]):  # the first header (fallback: a later copy) and a later one (an earlier)
        d = tmp_path / victim
        d.mkdir()
        for name, data in files.items():
            if name == victim:
                first, rest = data.split(b"\n", 1)
                assert b'"type":"catalog"' in first
                data = first.replace(b'"fee":1.5', b'"fee":9.5') + b"\n" + rest
            (d / name).write_bytes(data)
        with pytest.warns(CorruptRecordWarning, match="checksum mismatch"):
            report = export_dsjson(d, d / "x.dsjson")
        assert (report.events, report.skipped, report.bad_lines) == (9, 0, 1)
        assert (d / "x.dsjson").read_bytes().splitlines() == good_lines


def test_a_corrupt_schema_header_falls_back_to_an_intact_copy(pristine, tmp_path):
    files, good, _ = pristine
    first = min(files)
    for name, data in files.items():
        if name == first:
            lines = data.split(b"\n")
            assert b'"type":"schema"' in lines[1]
            lines[1] = lines[1].replace(b'"paris"', b'"pariz"')
            data = b"\n".join(lines)
        (tmp_path / name).write_bytes(data)
    with pytest.warns(CorruptRecordWarning):
        records = list(read_records(tmp_path))
    decisions = {r.event_id: r.features for r in records if isinstance(r, DecisionRecord)}
    assert decisions == {r.event_id: r.features for r in good if isinstance(r, DecisionRecord)}


def test_join_and_export_raise_on_a_corrupt_line_with_on_error_raise(pristine, tmp_path):
    files, _, _ = pristine
    for name, data in files.items():
        (tmp_path / name).write_bytes(data.replace(b'"e1"', b'"x1"', 1))
    with pytest.raises(LogError, match="checksum mismatch"):
        list(join(tmp_path, on_error="raise"))
    with pytest.raises(LogError, match="checksum mismatch"):
        export_dsjson(tmp_path, tmp_path / "x.dsjson", on_error="raise")
    assert not (tmp_path / "x.dsjson").exists()
    report = ReadReport()
    with pytest.warns(CorruptRecordWarning):
        n = len(list(join(tmp_path, report=report)))
    assert (n, report.corrupt_lines, report.reasons) == (8, 1, {"corrupt line": 1})


def test_lines_carry_a_checksum_and_stay_plain_json(tmp_path):
    with DecisionLog(tmp_path) as log:
        log.register_catalog("main", ARMS)
        _decide(log, "e0")
    seg = Path(log.segments[0])
    for line in seg.read_bytes().splitlines():
        obj = json.loads(line)  # what jq and pandas read
        body = line[: line.rindex(b',"crc":')]
        assert obj["crc"] == zlib.crc32(body)
    # A line without the field, in a segment of the new shape, is not trusted.
    lines = seg.read_bytes().splitlines()
    lines[1] = msgspec.json.encode({k: v for k, v in json.loads(lines[1]).items() if k != "crc"})
    seg.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.warns(CorruptRecordWarning, match="no checksum"):
        assert _ids(tmp_path) == []


def test_export_skips_decisions_it_cannot_write_and_reports_why(tmp_path):
    d = str(tmp_path)
    with DecisionLog(d) as log:
        log.register_catalog("main", ARMS)
        _decide(log, "ok")
        _decide(log, "unknown-catalog", catalog_id="nope")
        _decide(log, "no-catalog-id", catalog_id=None)
        _decide(log, "unknown-action", actions=["a", "b", "zzz"])
        log.append(
            DecisionRecord(
                event_id="far-future",
                ts=1e300,
                actions=["a"],
                pmf=[1.0],
                chosen=[0],
                probability=1.0,
                catalog_id="main",
            )
        )  # the fast path trusts the Decider's ts
        log.append(
            DecisionRecord(
                event_id="short-pmf",
                ts=NOW,
                actions=["a", "b"],
                pmf=[1.0],
                chosen=[0],
                probability=1.0,
                catalog_id="main",
            )
        )
        log.append(
            DecisionRecord(
                event_id="zero-p",
                ts=NOW,
                actions=["a", "b"],
                pmf=[0.0, 1.0],
                chosen=[0],
                probability=0.0,
                catalog_id="main",
            )
        )
    with pytest.warns(LogWarning, match="left out 6 decisions"):
        report = export_dsjson(d, tmp_path / "x.dsjson")
    assert report.events == 1 and report.skipped == 6
    assert report.reasons == {
        "no catalogue": 2,
        "action not in catalogue": 1,
        "timestamp out of range": 1,
        "pmf does not match actions": 1,
        "bad probability": 1,
    }
    with pytest.raises(LogError, match="unknown-catalog"):
        export_dsjson(d, tmp_path / "y.dsjson", on_error="raise")


def test_read_records_and_join_refuse_an_unknown_on_error(tmp_path):
    from nba.errors import ConfigError

    with pytest.raises(ConfigError, match="on_error"):
        read_records(tmp_path, on_error="ignore")
    with pytest.raises(ConfigError, match="on_error"):
        join(tmp_path, on_error="ignore")
    with pytest.raises(ConfigError, match="on_error"):
        export_dsjson(tmp_path, tmp_path / "x", on_error="ignore")


def test_every_record_the_writer_accepts_reads_back(tmp_path):
    """The reader never finds unreadable what the writer acknowledged: non-ASCII text, numpy values,
    extreme finite numbers, empty and odd-but-valid strings."""
    with DecisionLog(tmp_path) as log:
        _decide(
            log,
            "é-ü-日本",
            actions=["ä", "b", "😀"],
            features={"Üser": {"näme": "ß", "big": 1e308}},
            unit=2**63 - 1,
            variants={"exp": "träatment"},
            model_version="v😀",
            channel="wéb",
        )
        _decide(
            log,
            "np",
            pmf=np.array([0.5, 0.3, 0.2]),
            chosen=np.array([2]),
            actions=("a", "b", "c"),
            scores=np.array([1.0, -np.inf, np.nan]),
            now=np.float64(NOW),
            unit=np.int64(-5),
            deferred=np.bool_(True),
        )
        _decide(log, "tiny", pmf=[1 - 2e-7, 1e-7, 1e-7], now=0.0)
        log.append_outcome("é-ü-日本", np.float32(0.25), now=NOW)
        log.append_activation("np", now=np.float64(NOW))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = list(read_records(tmp_path))
    assert [r.event_id for r in records] == ["é-ü-日本", "np", "tiny", "é-ü-日本", "np"]
    assert records[1].scores == [1.0, None, None] and records[1].deferred is True and records[1].chosen == [2]
