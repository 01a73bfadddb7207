"""nba.log: records, segments, readers, the reward join, and VW dsjson export."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from datetime import timedelta

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nba
from nba import DecisionLog
from nba._core import logio as logio_core
from nba.errors import ConfigError, LogError, SchemaError
from nba.log import (
    ActivationRecord,
    CatalogRecord,
    CorruptRecordWarning,
    DecisionRecord,
    OutcomeRecord,
    TornRecordWarning,
    export_dsjson,
    join,
    read_records,
)

# --------------------------------------------------------------------------- helpers

ARMS = {
    "a": {"Action": {"id": "a", "fee": 0.0}},
    "b": {"Action": {"id": "b", "fee": 95.0}},
    "c": {"Action": {"id": "c", "fee": 12.5}},
}


def _decision(event_id: str, ts: float, *, deferred: bool = False, chosen: int = 0) -> DecisionRecord:
    return DecisionRecord(
        event_id=event_id,
        ts=ts,
        actions=["a", "b", "c"],
        pmf=[0.5, 0.3, 0.2],
        chosen=[chosen],
        probability=[0.5, 0.3, 0.2][chosen],
        features={"User": {"age": 31.0, "city": "Paris"}},
        model_version="m1",
        deferred=deferred,
        catalog_id="main",
    )


def _read_strict(directory) -> list:
    """All records; any reader warning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return list(read_records(directory))


def _segment_lines(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        return f.read().splitlines()


# --------------------------------------------------------------------------- round trip

_finite = st.floats(allow_nan=False, allow_infinity=False)
_names = st.text(min_size=1, max_size=8)
_values = st.one_of(_finite, st.text(max_size=10), st.booleans(), st.integers(-(2**53), 2**53))
_features = st.dictionaries(_names, st.dictionaries(_names, _values, max_size=4), max_size=3)

_decisions = st.builds(
    DecisionRecord,
    event_id=st.text(max_size=20),
    ts=_finite,
    actions=st.lists(st.text(max_size=6), max_size=5),
    pmf=st.lists(_finite, max_size=5),
    chosen=st.lists(st.integers(0, 4), max_size=3),
    probability=_finite,
    scores=st.none() | st.lists(st.none() | _finite, max_size=5),
    features=_features,
    model_version=st.text(max_size=8),
    variants=st.dictionaries(_names, st.text(max_size=6), max_size=3),
    policy=st.text(max_size=8),
    channel=st.none() | st.text(max_size=6),
    unit=st.none() | st.text(max_size=6) | st.integers(-(2**63), 2**63 - 1),
    deferred=st.booleans(),
    fallback=st.booleans(),
    catalog_id=st.none() | st.text(max_size=6),
)
_records = st.one_of(
    _decisions,
    st.builds(ActivationRecord, st.text(max_size=20), _finite),
    st.builds(OutcomeRecord, st.text(max_size=20), _finite, _finite),
    st.builds(CatalogRecord, st.text(max_size=8), st.dictionaries(_names, _features, max_size=3), _finite),
)


@settings(max_examples=40, deadline=None)
@given(records=st.lists(_records, min_size=1, max_size=12), durability=st.sampled_from(["record", "close"]))
def test_every_record_type_round_trips_through_a_segment(records, durability):
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d, durability=durability) as log:
            seqs = [log.append(r) for r in records]
        assert seqs == list(range(1, len(records) + 1))
        assert _read_strict(d) == records


def test_convenience_appends_fill_defaults_and_read_back():
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d) as log:
            log.append_decision("e1", actions=["a", "b"], pmf=np.array([0.25, 0.75]), chosen=[1], now=10.0)
            log.append_activation("e1", now=11.0)
            log.append_outcome("e1", np.float64(2.5), now=12.0)
        d1, a1, o1 = _read_strict(d)
        assert d1 == DecisionRecord(
            event_id="e1", ts=10.0, actions=["a", "b"], pmf=[0.25, 0.75], chosen=[1], probability=0.75
        )
        assert a1 == ActivationRecord("e1", 11.0)
        assert o1 == OutcomeRecord("e1", 12.0, 2.5)


def test_decider_shaped_decisions_read_back_field_for_field():
    from benchmarks.workloads import decisions

    work = decisions(200, seed=5)
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d, segment_bytes=50_000) as log:
            for i, kw in enumerate(work):
                log.append_decision(**kw, now=1_000.0 + i)
        got = _read_strict(d)
    assert len(got) == len(work)
    for i, (rec, kw) in enumerate(zip(got, work)):
        assert rec.ts == 1_000.0 + i
        assert rec.probability == kw["pmf"][kw["chosen"][0]]
        assert {k: getattr(rec, k) for k in kw} == kw


def test_non_finite_scores_are_written_as_null():
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d) as log:
            log.append_decision("e", actions=["a", "b"], pmf=[1.0, 0.0], chosen=[0], scores=[1.5, float("-inf")])
        (rec,) = _read_strict(d)
        assert rec.scores == [1.5, None]


def test_unencodable_values_and_bad_outcomes_raise_nba_errors_and_keep_the_log_usable():
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d) as log:
            with pytest.raises(SchemaError, match="decision 'bad': features: cannot write objects of type object"):
                log.append_decision("bad", actions=["a"], pmf=[1.0], chosen=[0], features={"x": {"y": object()}})
            bad = DecisionRecord(
                event_id="bad", ts=1.0, actions=["a"], pmf=[1.0], chosen=[0], probability=1.0,
                features={"x": {"y": object()}},
            )
            with pytest.raises(LogError, match="cannot write DecisionRecord 'bad'"):
                log.append(bad)  # the fast path refuses what it cannot encode
            with pytest.raises(SchemaError, match="finite number"):
                log.append_outcome("e", float("nan"))
            assert log.append_outcome("e", 1.0) == 1
        (rec,) = _read_strict(d)
        assert (type(rec), rec.event_id, rec.value) == (OutcomeRecord, "e", 1.0)


def test_bad_configuration_is_rejected():
    with tempfile.TemporaryDirectory() as d:
        with pytest.raises(ConfigError, match="durability"):
            DecisionLog(d, durability="sometimes")
        with pytest.raises(ConfigError, match="interval"):
            DecisionLog(d, durability="interval", interval=0)
        with pytest.raises(ConfigError, match="segment_bytes"):
            DecisionLog(d, segment_bytes=0)
        with pytest.raises(ConfigError, match="aggregate"):
            list(join(d, aggregate="mean"))
        with pytest.raises(ConfigError, match="reward_window"):
            list(join(d, reward_window=-1.0))


def test_appending_after_close_raises():
    with tempfile.TemporaryDirectory() as d:
        log = DecisionLog(d)
        log.close()
        log.close()  # idempotent
        with pytest.raises(LogError, match="closed"):
            log.append_outcome("e", 1.0)


# --------------------------------------------------------------------------- segments


def test_rotation_by_size_keeps_every_record_and_repeats_catalogs_atop_each_segment():
    other = {"x": {"Action": {"id": "x"}}}
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d, segment_bytes=2_000) as log:
            log.register_catalog("main", ARMS)
            log.register_catalog("other", other)
            for i in range(300):
                log.append(_decision(f"e{i}", float(i)))
                log.append_outcome(f"e{i}", float(i), now=i + 0.5)
            segments = log.segments
        assert len(segments) > 10
        # Names sort in creation (time) order and the reader follows them.
        assert sorted(segments) == segments
        assert sorted(os.path.join(d, n) for n in os.listdir(d)) == segments
        records = _read_strict(d)
        ids = [r.event_id for r in records if isinstance(r, (DecisionRecord, OutcomeRecord))]
        assert ids == [f"e{i}" for i in range(300) for _ in range(2)]
        for path in segments:
            lines = _segment_lines(path)
            assert os.path.getsize(path) <= 2_000 or len(lines) == 3
            head = [msgspec.json.decode(line) for line in lines[:2]]
            assert [h["type"] for h in head] == ["catalog", "catalog"], path
            assert {h["catalog_id"]: h["arms"] for h in head} == {"main": ARMS, "other": other}
            assert all(msgspec.json.decode(line)["type"] != "catalog" for line in lines[2:])


def test_reregistering_an_unchanged_catalog_writes_nothing_but_a_change_is_written():
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d) as log:
            assert log.register_catalog("main", ARMS) == 1
            assert log.register_catalog("main", dict(ARMS)) == 1
            changed = {**ARMS, "d": {"Action": {"id": "d"}}}
            assert log.register_catalog("main", changed) == 2
        cats = [r for r in _read_strict(d) if isinstance(r, CatalogRecord)]
        assert [c.arms for c in cats] == [ARMS, changed]


def test_a_record_larger_than_a_segment_still_gets_written_whole():
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d, segment_bytes=50) as log:
            for i in range(3):
                log.append(_decision(f"e{i}", 1.0))
            assert len(log.segments) == 3
        assert [r.event_id for r in _read_strict(d)] == ["e0", "e1", "e2"]


# --------------------------------------------------------------------------- write failures


class _DiskFullOnce:
    """A write that writes half of the next call's bytes, then fails with ENOSPC once.

    Stands in for both ``os.write`` (buffered modes) and ``logio_core.write_held(fd, data,
    start)`` (per-record writes).
    """

    def __init__(self) -> None:
        self.armed = False
        self.real = os.write
        self.cut = False

    def __call__(self, fd: int, data, start: int = 0) -> int:
        data = memoryview(data)[start:]
        if not self.armed:
            return self.real(fd, data)
        if not self.cut:
            self.cut = True
            return self.real(fd, bytes(data)[: len(data) // 2])
        self.armed = False
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("durability", ["record", "close"])
def test_a_failed_write_is_cut_back_and_the_next_append_retries_in_the_same_segment(durability, monkeypatch):
    disk = _DiskFullOnce()
    monkeypatch.setattr(os, "write", disk)
    monkeypatch.setattr(logio_core, "write_held", disk)
    with tempfile.TemporaryDirectory() as d:
        log = DecisionLog(d, durability=durability)
        log.register_catalog("main", ARMS)
        for i in range(6):
            log.append(_decision(f"e{i}", float(i)))
        disk.armed = True
        with pytest.raises(LogError, match="No space left"):
            if durability == "record":
                log.append(_decision("lost", 6.0))
            else:
                log.flush()  # the buffered e0..e5 hit the full disk: they stay pending
        assert log.durable_seq == (7 if durability == "record" else 0)
        log.append(_decision("e6", 6.0))
        log.close()
        # The half-written line was cut off: one segment, no torn line, every record once.
        assert len(log.segments) == 1
        ids = [r.event_id for r in _read_strict(d) if isinstance(r, DecisionRecord)]
        assert ids == [f"e{i}" for i in range(7)]


@pytest.mark.parametrize("durability", ["record", "close"])
def test_a_failed_write_that_cannot_be_cut_back_continues_in_a_new_segment(durability, monkeypatch):
    disk = _DiskFullOnce()
    monkeypatch.setattr(os, "write", disk)
    monkeypatch.setattr(logio_core, "write_held", disk)
    def ftruncate(fd, size):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "ftruncate", ftruncate)
    with tempfile.TemporaryDirectory() as d:
        log = DecisionLog(d, durability=durability)
        log.register_catalog("main", ARMS)
        for i in range(6):
            log.append(_decision(f"e{i}", float(i)))
        disk.armed = True
        with pytest.raises(LogError, match="No space left"):
            if durability == "record":
                log.append(_decision("lost", 6.0))
            else:
                log.flush()
        log.append(_decision("e6", 6.0))
        log.close()
        assert len(log.segments) == 2
        with pytest.warns(TornRecordWarning, match=os.path.basename(log.segments[0])):
            records = list(read_records(d))
        ids = [r.event_id for r in records if isinstance(r, DecisionRecord)]
        assert ids == [f"e{i}" for i in range(7)]
        assert msgspec.json.decode(_segment_lines(log.segments[1])[0])["type"] == "catalog"


# --------------------------------------------------------------------------- durability modes in-process


def test_close_mode_holds_records_in_memory_until_flush():
    with tempfile.TemporaryDirectory() as d:
        log = DecisionLog(d, durability="close")
        seq = log.append(_decision("e0", 1.0))
        assert log.durable_seq == 0
        assert not log.wait_durable(seq, timeout=0.01)
        assert all(os.path.getsize(p) == 0 for p in log.segments)
        assert log.flush() == seq
        assert [r.event_id for r in _read_strict(d)] == ["e0"]
        log.append(_decision("e1", 2.0))
        log.close()
        assert log.durable_seq == 2
        assert [r.event_id for r in _read_strict(d)] == ["e0", "e1"]


def test_close_mode_writes_whole_lines_when_its_buffer_fills():
    with tempfile.TemporaryDirectory() as d:
        log = DecisionLog(d, durability="close", buffer_bytes=1_000)
        line_bytes = len(msgspec.json.encode(_decision("e0", 0.0))) + 1
        n = 1_000 // line_bytes + 2  # fills the buffer once, leaves one record pending
        for i in range(n):
            log.append(_decision(f"e{i}", float(i)))
        # Some lines reached the OS before close, every one of them whole.
        assert len(_read_strict(d)) == n - 1
        log.close()
        assert len(_read_strict(d)) == n


def test_interval_mode_acknowledges_records_after_a_background_sync():
    with tempfile.TemporaryDirectory() as d, DecisionLog(d, durability="interval", interval=0.01) as log:
        seqs = [log.append(_decision(f"e{i}", float(i))) for i in range(50)]
        assert log.wait_durable(seqs[-1], timeout=10.0)
        assert log.durable_seq >= seqs[-1]
        # Acknowledged means written and synced: visible to a reader now.
        assert [r.event_id for r in _read_strict(d)] == [f"e{i}" for i in range(50)]


def test_record_and_fsync_modes_acknowledge_on_return():
    for mode in ("record", "fsync"):
        with tempfile.TemporaryDirectory() as d, DecisionLog(d, durability=mode) as log:
            seq = log.append(_decision("e0", 1.0))
            assert log.durable_seq == seq
            assert [r.event_id for r in _read_strict(d)] == ["e0"]


# --------------------------------------------------------------------------- concurrency


@pytest.mark.parametrize("durability", ["record", "interval", "close"])
def test_concurrent_appends_from_eight_threads_keep_every_record_once_and_whole(durability):
    n_threads, per_thread = 8, 400
    with tempfile.TemporaryDirectory() as d:
        log = DecisionLog(d, durability=durability, interval=0.002, segment_bytes=20_000, buffer_bytes=3_000)
        log.register_catalog("main", ARMS)
        barrier = threading.Barrier(n_threads)
        seqs: list[list[int]] = [[] for _ in range(n_threads)]

        def work(t: int) -> None:
            barrier.wait()
            for i in range(per_thread):
                # Varied sizes so lines straddle buffer and segment boundaries.
                rec = _decision(f"t{t}-{i}", time.time())
                if i % 3 == 0:
                    rec = msgspec.structs.replace(rec, features={"User": {"pad": "x" * (i % 97)}})
                seqs[t].append(log.append(rec))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        log.close()
        all_seqs = sorted(s for ss in seqs for s in ss)
        assert all_seqs == list(range(2, 2 + n_threads * per_thread))  # seq 1 is the catalogue
        ids = [r.event_id for r in _read_strict(d) if isinstance(r, DecisionRecord)]
        assert len(ids) == n_threads * per_thread
        assert set(ids) == {f"t{t}-{i}" for t in range(n_threads) for i in range(per_thread)}
        # Per thread, the log keeps each thread's own order.
        for t in range(n_threads):
            mine = [int(x.split("-")[1]) for x in ids if x.startswith(f"t{t}-")]
            assert mine == list(range(per_thread))
        for path in log.segments:
            assert msgspec.json.decode(_segment_lines(path)[0])["type"] == "catalog"


# --------------------------------------------------------------------------- readers


def _write_log(d: str, n: int, segment_bytes: int = 64 * 1024 * 1024) -> list[str]:
    with DecisionLog(d, segment_bytes=segment_bytes) as log:
        for i in range(n):
            log.append(_decision(f"e{i}", float(i)))
        return log.segments


def test_reader_skips_a_torn_last_line_with_a_warning():
    with tempfile.TemporaryDirectory() as d:
        (seg,) = _write_log(d, 5)
        size = os.path.getsize(seg)
        with open(seg, "r+b") as f:
            f.truncate(size - 40)  # cut the last record mid-line
        with pytest.warns(TornRecordWarning, match=r"torn last record") as rec:
            ids = [r.event_id for r in read_records(d)]
        assert ids == ["e0", "e1", "e2", "e3"]
        assert len(rec) == 1 and os.path.basename(seg) in str(rec[0].message)


def test_reader_keeps_a_complete_last_record_that_lost_only_its_newline():
    with tempfile.TemporaryDirectory() as d:
        (seg,) = _write_log(d, 3)
        with open(seg, "r+b") as f:
            f.truncate(os.path.getsize(seg) - 1)
        assert [r.event_id for r in _read_strict(d)] == ["e0", "e1", "e2"]


def test_reader_skips_a_corrupt_line_inside_a_segment_and_reads_on():
    with tempfile.TemporaryDirectory() as d:
        segs = _write_log(d, 40, segment_bytes=2_000)
        assert len(segs) >= 3
        lines = _segment_lines(segs[0])
        lines[1] = b'{"type":"decision","event_id":"e1","ts":'  # garbage in the middle
        lines.insert(2, b"\x00" * 30)  # a crash can leave zeros where data should be
        lines.insert(3, b'{"type":"no-such-type","x":1}')
        with open(segs[0], "wb") as f:
            f.write(b"\n".join(lines) + b"\n")
        with pytest.warns(CorruptRecordWarning) as rec:
            ids = [r.event_id for r in read_records(d)]
        assert len([w for w in rec if issubclass(w.category, CorruptRecordWarning)]) == 3
        assert ids == [f"e{i}" for i in range(40) if i != 1]


def test_reader_of_a_missing_directory_raises_a_log_error():
    with pytest.raises(LogError, match="cannot list"):
        list(read_records("/nonexistent/nba-log"))


def test_reader_ignores_files_that_are_not_segments():
    with tempfile.TemporaryDirectory() as d:
        _write_log(d, 2)
        with open(os.path.join(d, "export.jsonl"), "w") as f:
            f.write("not a segment\n")
        assert len(_read_strict(d)) == 2


# --------------------------------------------------------------------------- join


def _joined(d: str, **kw) -> dict[str, tuple[float, bool]]:
    return {j.decision.event_id: (j.reward, j.observed) for j in join(d, **kw)}


def test_join_applies_the_reward_window_and_default_reward():
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d) as log:
            log.register_catalog("main", ARMS)
            log.append(_decision("in", 100.0))
            log.append(_decision("late", 100.0))
            log.append(_decision("none", 100.0))
            log.append(_decision("edge", 100.0))
            log.append_outcome("in", 1.0, now=105.0)
            log.append_outcome("late", 1.0, now=200.0)
            log.append_outcome("edge", 3.0, now=110.0)
            log.append_outcome("unknown-event", 9.0, now=101.0)
        got = _joined(d, reward_window=timedelta(seconds=10), default_reward=-0.5)
        assert got == {"in": (1.0, True), "late": (-0.5, False), "none": (-0.5, False), "edge": (3.0, True)}
        assert _joined(d, reward_window=10.0, default_reward=-0.5) == got
        # No window: every outcome counts.
        assert _joined(d)["late"] == (1.0, True)


def test_join_aggregates_several_rewards_by_sum_or_first():
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d) as log:
            log.append(_decision("e", 100.0))
            log.append_outcome("e", 2.0, now=103.0)
            log.append_outcome("e", 5.0, now=101.0)  # logged later, happened earlier
            log.append_outcome("e", 7.0, now=150.0)  # outside the window
        assert _joined(d, reward_window=10, aggregate="sum")["e"] == (7.0, True)
        assert _joined(d, reward_window=10, aggregate="first")["e"] == (5.0, True)
        (ex,) = join(d, reward_window=10)
        assert [o.value for o in ex.outcomes] == [5.0, 2.0]


def test_join_excludes_deferred_decisions_never_activated_and_counts_activated_ones_from_activation():
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d) as log:
            log.append(_decision("never", 100.0, deferred=True))
            log.append(_decision("shown", 100.0, deferred=True))
            log.append_outcome("never", 1.0, now=101.0)
            log.append_activation("shown", now=500.0)
            log.append_activation("shown", now=600.0)  # a second activation does not move the start
            log.append_outcome("shown", 4.0, now=102.0)  # before activation: not caused by it
            log.append_outcome("shown", 1.0, now=505.0)  # inside the window from activation
            log.append_outcome("shown", 8.0, now=601.0)  # outside it
        (ex,) = join(d, reward_window=10)
        assert ex.decision.event_id == "shown"
        assert (ex.reward, ex.observed, ex.start) == (1.0, True, 500.0)


def test_join_attaches_the_catalog_in_force_for_each_decision():
    with tempfile.TemporaryDirectory() as d:
        changed = {"a": {"Action": {"id": "a2"}}, "b": ARMS["b"], "c": ARMS["c"]}
        with DecisionLog(d) as log:
            log.register_catalog("main", ARMS)
            log.append(_decision("before", 1.0))
            log.register_catalog("main", changed)
            log.append(_decision("after", 2.0))
        cats = {j.decision.event_id: j.catalog.arms for j in join(d)}
        assert cats == {"before": ARMS, "after": changed}


# --------------------------------------------------------------------------- dsjson export


def test_dsjson_fields_follow_vw_conventions():
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d) as log:
            log.register_catalog("main", ARMS)
            log.append(_decision("e", 1_700_000_000.25, chosen=2))
            log.append_outcome("e", 0.75, now=1_700_000_001.0)
        out = os.path.join(d, "train.dsjson")
        assert export_dsjson(d, out).events == 1
        with open(out) as f:
            (line,) = f.read().splitlines()
        ev = json.loads(line)
        assert list(ev)[:4] == ["_label_cost", "_label_probability", "_label_Action", "_labelIndex"]
        assert ev["_label_cost"] == -0.75
        assert ev["_label_probability"] == 0.2
        assert (ev["_label_Action"], ev["_labelIndex"]) == (3, 2)
        assert ev["a"] == [3, 1, 2] and ev["p"] == [0.2, 0.5, 0.3]
        assert ev["c"]["User"] == {"age": 31.0, "city": "Paris"}
        assert ev["c"]["_multi"] == [ARMS["a"], ARMS["b"], ARMS["c"]]
        assert ev["EventId"] == "e" and ev["Version"] == "1" and ev["VWState"] == {"m": "m1"}
        assert ev["Timestamp"] == "2023-11-14T22:13:20.250000Z"
        assert ev["o"] == [{"v": 0.75, "Timestamp": "2023-11-14T22:13:21.000000Z"}]
        assert list(ev).index("c") > list(ev).index("_labelIndex")  # VW applies labels when "c" ends


def test_dsjson_export_refuses_what_vw_would_silently_misread():
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d) as log:
            log.append(_decision("no-catalog", 1.0))
        with pytest.raises(LogError, match="register_catalog"):
            export_dsjson(d, os.path.join(d, "x.dsjson"), on_error="raise")
        assert not os.path.exists(os.path.join(d, "x.dsjson"))
        with pytest.warns(nba.log.LogWarning, match="left out 1 decisions"):
            report = export_dsjson(d, os.path.join(d, "x.dsjson"))
        assert (report.events, report.skipped, report.reasons) == (0, 1, {"no catalogue": 1})
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d) as log:
            log.register_catalog("main", ARMS)
            log.append(msgspec.structs.replace(_decision("e", 1.0), features={"User": {"_label": 1.0}}))
            log.append(_decision("ok", 2.0))
        with pytest.raises(LogError, match="starts with '_'"):
            export_dsjson(d, os.path.join(d, "x.dsjson"), on_error="raise")
        with pytest.warns(nba.log.LogWarning, match="reserved key: 1"):
            report = export_dsjson(d, os.path.join(d, "x.dsjson"))
        assert (report.events, report.skipped) == (1, 1)


def test_vw_parses_exported_features_with_its_json_semantics():
    """String values become the feature "key+value" (spaces, tabs, '|' and ':' -> '_'),
    true becomes the feature "key", false and 0 are dropped: what docs/contracts.md states."""
    vw = pytest.importorskip("vowpalwabbit")
    with tempfile.TemporaryDirectory() as d:
        with DecisionLog(d) as log:
            arms = {"a": {"Action": {"id": "gold card"}}, "b": {"Action": {"id": "b", "fee": 9.5}}}
            log.register_catalog("main", arms)
            features = {"User": {"age": 31.0, "city": "new york:ny|x", "vip": True, "churned": False, "zero": 0.0}}
            log.append_decision(
                "e", actions=["a", "b"], pmf=[0.5, 0.5], chosen=[1], features=features, catalog_id="main"
            )
        out = os.path.join(d, "x.dsjson")
        export_dsjson(d, out)
        ws = vw.Workspace("--cb_explore_adf --dsjson --quiet --strict_parse")
        with open(out) as f:
            shared, act_a, act_b = ws.parse(f.read())
        u, a = ws.hash_space("User"), ws.hash_space("Action")
        constant = 11650396
        want_shared = {
            (ws.hash_feature("age", u), 31.0),
            (ws.hash_feature("citynew_york_ny_x", u), 1.0),
            (ws.hash_feature("vip", u), 1.0),
        }
        assert {f for f in shared.iter_features() if f[0] != constant} == want_shared
        assert {f for f in act_a.iter_features() if f[0] != constant} == {(ws.hash_feature("idgold_card", a), 1.0)}
        assert {f for f in act_b.iter_features() if f[0] != constant} == {
            (ws.hash_feature("idb", a), 1.0),
            (ws.hash_feature("fee", a), 9.5),
        }
        ws.finish()


def _simulated_log(d: str, n: int, seed: int) -> None:
    """Uniform logging policy over 3 offers; the best offer depends on the user's segment."""
    rng = np.random.default_rng(seed)
    arms = ["a", "b", "c"]
    best = {"young": "b", "old": "c"}
    with DecisionLog(d) as log:
        log.register_catalog("main", {k: {"Action": {"id": k}} for k in arms})
        for i in range(n):
            seg = "young" if rng.random() < 0.5 else "old"
            k = int(rng.integers(3))
            eid = f"e{i}"
            log.append_decision(
                eid,
                actions=arms,
                pmf=[1 / 3] * 3,
                chosen=[k],
                features={"User": {"segment": seg}},
                catalog_id="main",
                now=1000.0 + i,
            )
            p_click = 0.8 if arms[k] == best[seg] else 0.1
            if rng.random() < p_click:
                log.append_outcome(eid, 1.0, now=1000.5 + i)


def test_vw_learns_from_the_exported_dsjson_to_prefer_the_better_action():
    vw = pytest.importorskip("vowpalwabbit")
    with tempfile.TemporaryDirectory() as d:
        _simulated_log(d, 2_000, seed=7)
        out = os.path.join(d, "train.dsjson")
        n = export_dsjson(d, out, reward_window=60.0).events
        assert n == 2_000
        # The command-line driver path: vw -d file --dsjson; --strict_parse turns any parse error into an exception.
        ws = vw.Workspace(f"--cb_explore_adf --dsjson -q UA --epsilon 0.05 --quiet --strict_parse -d {out}")
        assert ws.get_weighted_examples() == n
        with open(out) as f:
            lines = f.read().splitlines()
        probe = {}
        for line in lines:
            seg = json.loads(line)["c"]["User"]["segment"]
            probe.setdefault(seg, line)
        for seg, want in (("young", 1), ("old", 2)):
            pmf = ws.predict(ws.parse(probe[seg]))
            assert int(np.argmax(pmf)) == want, (seg, pmf)
        ws.finish()


def test_the_vw_command_line_driver_reads_every_exported_line_without_a_parse_error():
    pytest.importorskip("vowpalwabbit")
    with tempfile.TemporaryDirectory() as d:
        _simulated_log(d, 500, seed=11)
        out = os.path.join(d, "train.dsjson")
        assert export_dsjson(d, out).events == 500
        # python -m vowpalwabbit is the vw executable's argument handling and driver.
        cmd = [sys.executable, "-m", "vowpalwabbit", "--cb_explore_adf", "--dsjson", "--strict_parse", "-d", out]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, run.stderr[-2000:]
        log = run.stdout + run.stderr
        assert "number of examples = 500" in log
        assert "error" not in log.lower()


def test_vw_workspace_learns_exported_lines_one_by_one():
    vw = pytest.importorskip("vowpalwabbit")
    with tempfile.TemporaryDirectory() as d:
        _simulated_log(d, 300, seed=3)
        out = os.path.join(d, "train.dsjson")
        export_dsjson(d, out, observed_only=True)
        ws = vw.Workspace("--cb_explore_adf --dsjson --quiet --strict_parse")
        with open(out) as f:
            lines = f.read().splitlines()
        assert 0 < len(lines) < 300
        for line in lines:
            ws.learn(line)
        assert ws.get_weighted_examples() == len(lines)
        ws.finish()


# --------------------------------------------------------------------------- writes that keep the GIL


def test_write_held_writes_from_start_and_reports_errors(tmp_path):
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        assert logio_core.write_held(fd, bytearray(b"hello world"), 6) == 5
        assert logio_core.write_held(fd, bytearray(b"!")) == 1
        with pytest.raises(ValueError):
            logio_core.write_held(fd, bytearray(b"ab"), 3)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"world!"
    with pytest.raises(OSError) as e:
        logio_core.write_held(fd, bytearray(b"x"))  # closed: EBADF
    assert e.value.errno == errno.EBADF


def test_append_waits_for_a_holder_that_keeps_the_lock():
    """An append whose lock is busy (as during another thread's flush) waits, then lands once."""
    with tempfile.TemporaryDirectory() as d:
        log = DecisionLog(d, durability="record")
        log._lock.acquire()
        done = threading.Event()
        t = threading.Thread(target=lambda: (log.append(_decision("late", 1.0)), done.set()))
        t.start()
        assert not done.wait(0.2)  # still waiting after yielding the GIL 64 times
        log._lock.release()
        t.join(5)
        assert done.is_set()
        log.close()
        assert [r.event_id for r in _read_strict(d)] == ["late"]


# --------------------------------------------------------------------------- vectors read back as features

_SCHEMA = nba.FeatureSchema([
    nba.Numeric("age", bounds=(0, 120), clip=True),
    nba.Numeric("score", allow_missing=True),
    nba.Categorical("city", ["paris", "lyon"], unknown="zeros"),
    nba.Categorical("tier", ["gold", "silver"], unknown="other", default="silver"),
    nba.Categorical("band", [1, 2, 3]),
    nba.Boolean("member", allow_missing=True),
    nba.Numeric("hour", source="context", namespace="Context"),
    nba.Boolean("mobile", source="context", namespace="Context"),
])
_values = {
    "age": st.one_of(st.none(), st.floats(-50, 200)),
    "score": st.one_of(st.none(), st.just(math.nan), st.floats(-1e6, 1e6)),
    "city": st.one_of(st.none(), st.sampled_from(["paris", "lyon", "berlin", "Paris"])),
    "tier": st.one_of(st.none(), st.sampled_from(["gold", "silver", "bronze"])),
    "band": st.one_of(st.none(), st.sampled_from([1, 2, 3, 7])),
    "member": st.one_of(st.none(), st.booleans(), st.just(math.nan)),
}


@settings(max_examples=150, deadline=None)
@given(
    profile=st.fixed_dictionaries({}, optional=_values),
    context=st.fixed_dictionaries({}, optional={"hour": st.floats(0, 23), "mobile": st.booleans()}),
)
def test_logged_vectors_read_back_as_the_features_the_decision_used(profile, context):
    """x + schema_id + raw, as the Decider writes them, read back as used_features."""
    x = _SCHEMA.vectorize(profile, context)
    xs = x.tolist()
    with tempfile.TemporaryDirectory() as d:
        log = DecisionLog(d)
        log.register_schema(_SCHEMA.schema_id, _SCHEMA.log_layout)
        rec = msgspec.structs.replace(_decision("e0", 1.0), features={}, x=xs, schema_id=_SCHEMA.schema_id,
                                      raw=_SCHEMA.log_raw(xs, profile, context) or {})
        log.append(rec)
        log.close()
        (back,) = [r for r in _read_strict(d) if isinstance(r, DecisionRecord)]
    # As JSON: types (True is not 1.0) and order count, as they do in the exported dsjson.
    assert msgspec.json.encode(back.features) == msgspec.json.encode(_SCHEMA.used_features(profile, context))


def test_a_decision_whose_schema_record_is_missing_keeps_empty_features_with_a_warning():
    with tempfile.TemporaryDirectory() as d:
        log = DecisionLog(d)
        log.append(msgspec.structs.replace(_decision("e0", 1.0), features={}, x=[1.0], schema_id="nope"))
        log.close()
        with pytest.warns(CorruptRecordWarning, match="schema 'nope'"):
            (rec,) = [r for r in read_records(d) if isinstance(r, DecisionRecord)]
    assert rec.features == {} and rec.x == [1.0]


def test_schema_records_head_every_segment():
    with tempfile.TemporaryDirectory() as d:
        log = DecisionLog(d, segment_bytes=2000)
        log.register_schema(_SCHEMA.schema_id, _SCHEMA.log_layout)
        assert log.register_schema(_SCHEMA.schema_id, _SCHEMA.log_layout) == log.last_seq  # unchanged: nothing written
        for i in range(20):
            log.append(_decision(f"e{i}", float(i)))
        log.close()
        assert len(log.segments) > 2
        for path in log.segments:
            first = msgspec.json.decode(_segment_lines(path)[0])
            assert first["type"] == "schema" and first["schema_id"] == _SCHEMA.schema_id
