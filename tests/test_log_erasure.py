"""nba.log.erasure: forget() removes a subject's decisions, activations and outcomes, and nothing else.

The oracle is the list of lines before: after ``forget`` every segment holds exactly
its old lines minus the subject's, in order and byte for byte, and no byte of any of the
subject's ids is left anywhere in the directory.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nba
from nba.log import DecisionRecord, OutcomeRecord, forget, read_records

SUBJECT = ("subject-7f3a9c", "sub.mail@example.org")  # bytes found nowhere else in these logs
T0 = 1_700_000_000.0


def _write(log: nba.DecisionLog, units: list[object], *, tag: str = "") -> list[str]:
    """A decision per unit (the mail as a context feature of the subject's), an activation and an outcome for each."""
    eids = []
    for k, unit in enumerate(units):
        eid = f"e{tag}{k}"
        feats = {"Context": {"mail": SUBJECT[1]}} if unit == SUBJECT[0] else {"Context": {"mail": f"m{k}@x.org"}}
        log.append_decision(event_id=eid, actions=["a", "b"], pmf=[0.5, 0.5], chosen=[k % 2], features=feats,
                            unit=unit, deferred=True, now=T0 + k)  # type: ignore[arg-type]
        log.append_activation(eid, now=T0 + k + 0.5)
        log.append_outcome(eid, 1.0, now=T0 + k + 1)
        eids.append(eid)
    return eids


def _segments(path: Path) -> dict[str, list[bytes]]:
    return {p.name: p.read_bytes().splitlines(keepends=True) for p in sorted(path.glob("*.jsonl"))}


def _everything(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.iterdir() if p.is_file())


def _subject_events(before: dict[str, list[bytes]]) -> set[str]:
    out = set()
    for lines in before.values():
        for line in lines:
            if SUBJECT[0].encode() in line:
                out.add(line.split(b'"event_id":"', 1)[1].split(b'"', 1)[0].decode())
    return out


def _expected(before: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    events = _subject_events(before)
    return {name: [ln for ln in lines if not any(f'"event_id":"{e}"'.encode() in ln for e in events)]
            for name, lines in before.items()}


def test_forget_removes_the_subjects_lines_and_keeps_every_other_byte(tmp_path: Path):
    with nba.DecisionLog(tmp_path, segment_bytes=600) as a, nba.DecisionLog(tmp_path, segment_bytes=600) as b:
        _write(a, ["u1", SUBJECT[0], 42, "u2", SUBJECT[0]], tag="a")
        _write(b, [SUBJECT[0], "u3", 7], tag="b")
    before = _segments(tmp_path)
    assert len(before) > 2
    report = forget(tmp_path, [SUBJECT[0]])
    assert report.complete and report.removed == 9  # three decisions, their activations and outcomes
    assert _segments(tmp_path) == _expected(before)
    blob = _everything(tmp_path)
    assert all(s.encode() not in blob for s in SUBJECT)
    units = [r.unit for r in read_records(tmp_path) if isinstance(r, DecisionRecord)]
    assert units == ["u1", 42, "u2", "u3", 7]


def test_segments_without_the_subject_are_not_touched(tmp_path: Path):
    with nba.DecisionLog(tmp_path, segment_bytes=1500) as log:
        _write(log, ["u1", "u2", "u3", SUBJECT[0], "u4", "u5", "u6"])
    stats = {p.name: os.stat(p) for p in tmp_path.glob("*.jsonl")}
    report = forget(tmp_path, [SUBJECT[0]])
    assert len(report.rewritten) == 1 or len(report.rewritten) == 2  # the decision's segment and its outcome's
    for p in tmp_path.glob("*.jsonl"):
        if str(p) not in report.rewritten:
            assert os.stat(p).st_ino == stats[p.name].st_ino and os.stat(p).st_mtime_ns == stats[p.name].st_mtime_ns


def test_an_int_unit_is_found_by_its_decimal_id(tmp_path: Path):
    with nba.DecisionLog(tmp_path) as log:
        _write(log, [981234567, 5, "981234567x"])
    forget(tmp_path, ["981234567"])
    assert [r.unit for r in read_records(tmp_path) if isinstance(r, DecisionRecord)] == [5, "981234567x"]
    forget(tmp_path, [5])
    assert [r.unit for r in read_records(tmp_path) if isinstance(r, DecisionRecord)] == ["981234567x"]


def test_an_outcome_in_another_writers_segment_goes_too(tmp_path: Path):
    with nba.DecisionLog(tmp_path) as a, nba.DecisionLog(tmp_path) as b:
        a.append_decision(event_id="x1", actions=["a"], pmf=[1.0], chosen=[0], unit=SUBJECT[0], now=T0)
        a.append_decision(event_id="x2", actions=["a"], pmf=[1.0], chosen=[0], unit="other", now=T0)
        b.append_outcome("x1", 1.0, now=T0 + 1)
        b.append_outcome("x2", 0.5, now=T0 + 1)
    forget(tmp_path, [SUBJECT[0]])
    left = [r for r in read_records(tmp_path) if isinstance(r, (DecisionRecord, OutcomeRecord))]
    assert [r.event_id for r in left] == ["x2", "x2"]


def test_a_segment_being_written_is_reported_busy_and_left_alone(tmp_path: Path):
    live = nba.DecisionLog(tmp_path)
    _write(live, [SUBJECT[0], "u1"])
    before = _segments(tmp_path)
    events: set[str] = set()
    report = forget(tmp_path, [SUBJECT[0]], events=events)
    assert not report.complete and report.busy == [live.segments[0]] and report.removed == 0
    assert _segments(tmp_path) == before
    assert events == {"e0"}  # read, though not rewritten: what else holds the decision can drop it
    live.close()
    assert forget(tmp_path, [SUBJECT[0]]).complete
    assert _segments(tmp_path) == _expected(before)


def test_an_outcome_of_a_decision_in_a_busy_segment_goes_from_the_closed_ones(tmp_path: Path):
    live = nba.DecisionLog(tmp_path)
    live.append_decision(event_id="x1", actions=["a"], pmf=[1.0], chosen=[0], unit=SUBJECT[0], now=T0)
    with nba.DecisionLog(tmp_path) as other:  # another worker got the click
        other.append_outcome("x1", 1.0, now=T0 + 1)
        other.append_outcome("x2", 1.0, now=T0 + 1)
    report = forget(tmp_path, [SUBJECT[0]])
    assert report.busy == [live.segments[0]] and report.removed == 1
    live.close()
    left = [r.event_id for r in read_records(tmp_path) if isinstance(r, OutcomeRecord)]
    assert left == ["x2"]


def test_decision_log_forget_moves_to_a_new_segment_and_cleans_the_old(tmp_path: Path):
    log = nba.DecisionLog(tmp_path)
    _write(log, ["u1", SUBJECT[0]])
    report = log.forget([SUBJECT[0]])
    assert report.complete and report.removed == 3
    _write(log, ["u2"], tag="later")  # the log goes on in its new segment
    log.close()
    assert SUBJECT[0].encode() not in _everything(tmp_path)
    assert [r.unit for r in read_records(tmp_path) if isinstance(r, DecisionRecord)] == ["u1", "u2"]


def test_a_torn_line_holding_an_id_is_removed(tmp_path: Path):
    with nba.DecisionLog(tmp_path) as log:
        _write(log, ["u1"])
    seg = next(tmp_path.glob("*.jsonl"))
    with open(seg, "ab") as f:
        f.write(b'{"type":"decision","event_id":"t","unit":"' + SUBJECT[0].encode())  # a crash mid-line
    forget(tmp_path, [SUBJECT[0]])
    assert SUBJECT[0].encode() not in seg.read_bytes()
    assert [r.unit for r in read_records(tmp_path) if isinstance(r, DecisionRecord)] == ["u1"]


def test_concurrent_forgets_never_bring_lines_back(tmp_path: Path):
    subjects = [f"subj-{i:03d}" for i in range(8)]
    with nba.DecisionLog(tmp_path, segment_bytes=4096) as log:
        for k in range(4):
            for s in subjects:
                log.append_decision(event_id=f"{s}-{k}", actions=["a"], pmf=[1.0], chosen=[0], unit=s, now=T0)
    threads = [threading.Thread(target=forget, args=(tmp_path, [s])) for s in subjects[:6]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    units = {r.unit for r in read_records(tmp_path) if isinstance(r, DecisionRecord)}
    assert units == set(subjects[6:])


def test_a_bad_id_raises_before_anything_changes(tmp_path: Path):
    with nba.DecisionLog(tmp_path) as log:
        _write(log, [SUBJECT[0]])
    before = _segments(tmp_path)
    with pytest.raises(nba.SchemaError):
        forget(tmp_path, [SUBJECT[0], 2**80])
    assert _segments(tmp_path) == before
    assert forget(tmp_path, []).removed == 0


@settings(max_examples=25, deadline=None)
@given(units=st.lists(st.sampled_from(["p", "q", "r", 11, 12]), min_size=1, max_size=30),
       gone=st.sets(st.sampled_from(["p", "q", "r", "11", "12"]), max_size=3), seg=st.integers(600, 5000))
def test_forget_equals_filtering_the_records(tmp_path_factory, units, gone, seg):
    path = tmp_path_factory.mktemp("log")
    with nba.DecisionLog(path, segment_bytes=seg) as log:
        eids = _write(log, units)
    forget(path, gone)
    dropped = {e for e, u in zip(eids, units) if str(u) in gone}
    left = [r for r in read_records(path) if isinstance(r, (DecisionRecord, OutcomeRecord))]
    want = [(e, kind) for e, u in zip(eids, units) if e not in dropped for kind in ("d", "o")]
    assert [(r.event_id, "d" if isinstance(r, DecisionRecord) else "o") for r in left] == want
