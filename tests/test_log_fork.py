"""nba.log after os.fork(): a DecisionLog made before the fork (gunicorn --preload) works in the child.

Real ``os.fork()`` children, in every durability mode: each child appends its own
records (event ids carry the pid) while the parent goes on appending; every record
must read back exactly once, no segment may hold two processes' records, and the
parent's lines buffered at the fork must not be written twice. A child leaves with
``os._exit`` (its exit status is the test's verdict from inside it) and is reaped
with ``os.waitpid``.

Each scenario forks from a fresh interpreter (``tests.isolated``): the test process
may hold mappings too large to fork (fork fails with ENOMEM), or threads of other tests.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import msgspec
import pytest

from nba import DecisionLog
from nba.log import DecisionRecord, read_records
from tests.isolated import assert_prints_ok

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

ARMS = {"a": {"Action": {"id": "a"}}, "b": {"Action": {"id": "b"}}}
MODES = ["record", "fsync", "interval", "close"]


def _append(log: DecisionLog, eid: str) -> int:
    return log.append_decision(eid, actions=["a", "b"], pmf=[0.5, 0.5], chosen=[0], catalog_id="main")


def _run_child(body) -> int:
    """Fork; the child runs ``body()`` and exits 0 if it returned True, 1 on False, 2 on an exception."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 2
        try:
            signal.alarm(20)  # a deadlocked child dies instead of hanging the suite
            code = 0 if body() else 1
        finally:
            os._exit(code)
    return pid


def _wait(pids: list[int]) -> list[int]:
    codes = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    return codes


def _fresh(call: str) -> None:
    """Run ``tests.test_log_fork.<call>`` in a fresh interpreter; it must finish without an error."""
    assert_prints_ok(f"import tests.test_log_fork as t; t.{call}; print('ok')", timeout=120)


def _segment_pids(directory: str) -> dict[str, set[str]]:
    """Per segment file, the pids named by the event ids of its decisions."""
    out: dict[str, set[str]] = {}
    for name in os.listdir(directory):
        with open(os.path.join(directory, name), "rb") as f:
            for line in f:
                rec = msgspec.json.decode(line)
                if rec["type"] == "decision":
                    out.setdefault(name, set()).add(rec["event_id"].split("-")[0])
    return out


@pytest.mark.parametrize("durability", MODES)
def test_parent_and_forked_children_each_write_their_own_segments_and_every_record_reads_back_once(
    durability, tmp_path
):
    _fresh(f"_children_write_their_own_segments({durability!r}, {str(tmp_path)!r})")


def _children_write_their_own_segments(durability: str, d: str) -> None:
    log = DecisionLog(d, durability=durability, interval=0.005, segment_bytes=4_000)
    log.register_catalog("main", ARMS)
    parent = f"p{os.getpid()}"
    before = [f"{parent}-pre{i}" for i in range(30)]
    for eid in before:
        _append(log, eid)  # buffered at the fork in "interval"/"close" mode
    n_child = 60

    def child() -> bool:
        me = f"p{os.getpid()}"
        seqs = [_append(log, f"{me}-{i}") for i in range(n_child)]
        if durability == "interval" and not log.wait_durable(seqs[-1], timeout=10):
            return False
        log.close()
        return seqs == list(range(1, n_child + 1)) and log.durable_seq >= seqs[-1]

    pids = [_run_child(child) for _ in range(3)]
    after = [f"{parent}-post{i}" for i in range(40)]
    for eid in after:
        _append(log, eid)
    assert _wait(pids) == [0, 0, 0]
    log.close()

    ids = Counter(r.event_id for r in read_records(d) if isinstance(r, DecisionRecord))
    want = before + after + [f"p{pid}-{i}" for pid in pids for i in range(n_child)]
    assert ids == Counter(want)  # every record once: none lost, none written twice
    owners = _segment_pids(d)
    assert all(len(p) == 1 for p in owners.values()), owners
    assert {next(iter(p)) for p in owners.values()} == {parent, *(f"p{pid}" for pid in pids)}


def test_an_interval_log_made_before_the_fork_acknowledges_in_the_child(tmp_path):
    _fresh(f"_interval_child_acknowledges({str(tmp_path)!r})")


def _interval_child_acknowledges(d: str) -> None:
    log = DecisionLog(d, durability="interval", interval=0.01)
    _append(log, "parent-0")

    def child() -> bool:
        seq = _append(log, f"p{os.getpid()}-0")
        # The sync thread was the parent's: the child starts its own, so this returns
        # True without a flush() or close().
        return log.wait_durable(seq, timeout=5.0)

    pid = _run_child(child)
    assert _wait([pid]) == [0]
    log.close()
    ids = {r.event_id for r in read_records(d) if isinstance(r, DecisionRecord)}
    assert ids == {"parent-0", f"p{pid}-0"}


def test_a_lock_held_by_another_thread_at_fork_time_does_not_deadlock_the_child(tmp_path):
    _fresh(f"_held_lock_does_not_deadlock_the_child({str(tmp_path)!r})")


def _held_lock_does_not_deadlock_the_child(d: str) -> None:
    log = DecisionLog(d, durability="record")
    _append(log, "parent-0")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with log._lock:  # as a thread in the middle of an append would
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    try:
        pid = _run_child(lambda: _append(log, f"p{os.getpid()}-0") == 1)
    finally:
        release.set()
        t.join()
    assert _wait([pid]) == [0]  # a deadlocked child would be killed by its alarm (exit -14)
    log.close()
    ids = {r.event_id for r in read_records(d) if isinstance(r, DecisionRecord)}
    assert ids == {"parent-0", f"p{pid}-0"}


def test_a_forked_child_gets_a_new_writer_id_and_the_parents_fd_stays_open(tmp_path):
    _fresh(f"_child_gets_a_new_writer_id({str(tmp_path)!r})")


def _child_gets_a_new_writer_id(d: str) -> None:
    log = DecisionLog(d)
    _append(log, "parent-0")
    parent_writer = log._writer
    r, w = os.pipe()

    def child() -> bool:
        os.write(w, log._writer.encode())
        return log.segments == [] and log.last_seq == 0

    pid = _run_child(child)
    assert _wait([pid]) == [0]
    os.close(w)
    child_writer = os.read(r, 100).decode()
    os.close(r)
    assert child_writer != parent_writer and len(child_writer) == 16
    _append(log, "parent-1")  # the child closed only its copy of the fd
    log.close()
    assert len(log.segments) == 1
    assert [r.event_id for r in read_records(d) if isinstance(r, DecisionRecord)] == ["parent-0", "parent-1"]


def test_segment_names_carry_the_writer_id_and_old_names_still_read(tmp_path):
    d = str(tmp_path)
    with DecisionLog(d) as log:
        _append(log, "new-0")
        (path,) = log.segments
    name = os.path.basename(path)
    assert name.startswith("decisions-") and f"-{log._writer}-000001.jsonl" in name
    # A segment of the older shape (no writer id, no checksums) from an earlier stamp reads first.
    old = {
        "type": "decision",
        "event_id": "old-0",
        "ts": 1.0,
        "actions": ["a"],
        "pmf": [1.0],
        "chosen": [0],
        "probability": 1.0,
    }
    with open(os.path.join(d, "decisions-20000101T000000.000000Z-000001.jsonl"), "wb") as f:
        f.write(msgspec.json.encode(old) + b"\n")
    assert [r.event_id for r in read_records(d)] == ["old-0", "new-0"]


def test_records_of_two_writers_in_one_directory_read_in_segment_start_order(tmp_path):
    d = str(tmp_path)
    first = DecisionLog(d)
    _append(first, "first-0")
    time.sleep(0.002)
    second = DecisionLog(d)
    _append(second, "second-0")
    _append(first, "first-1")  # later in time, but in the earlier segment
    first.close()
    second.close()
    assert [r.event_id for r in read_records(d)] == ["first-0", "first-1", "second-0"]
