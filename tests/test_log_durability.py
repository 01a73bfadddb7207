"""nba.log durability: a writer process is SIGKILLed mid-stream; what it acknowledged must be readable.

The writer (a separate Python process) appends from several threads and reports
each event id on stdout only once the log acknowledged it (append returned in
"record"/"fsync" mode; ``durable_seq`` passed it in "interval"/"close" mode). The
parent kills it with SIGKILL while it writes, then reads the log back. A killed
process cannot test a machine crash (the page cache survives a SIGKILL); that
guarantee rests on fdatasync and is documented, not tested here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import warnings

import msgspec
import pytest

from nba.log import (
    CorruptRecordWarning,
    DecisionRecord,
    TornRecordWarning,
    read_records,
)

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")

_WRITER = r"""
import os, sys, threading, time
from nba import DecisionLog

directory, mode, n_threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
log = DecisionLog(directory, durability=mode, interval=0.005, segment_bytes=32_000, buffer_bytes=8_000)
log.register_catalog("main", {"a": {"Action": {"id": "a"}}, "b": {"Action": {"id": "b"}}})
out_lock = threading.Lock()

def ack(ids):
    with out_lock:
        os.write(1, "".join(i + "\n" for i in ids).encode())

def work(t):
    pending = []
    i = 0
    while True:
        eid = f"t{t}-{i}"
        seq = log.append_decision(
            eid, actions=["a", "b"], pmf=[0.5, 0.5], chosen=[i % 2],
            features={"User": {"i": i, "pad": "x" * (i * 7 % 120)}}, catalog_id="main",
        )
        i += 1
        if mode in ("record", "fsync"):
            ack([eid])  # acknowledged: append returned
            continue
        pending.append((seq, eid))
        if mode == "close" and i % 40 == 0:
            log.flush()
        durable = log.durable_seq
        if pending[0][0] <= durable:
            ack([e for s, e in pending if s <= durable])
            pending = [(s, e) for s, e in pending if s > durable]
        time.sleep(0.0001)

threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(n_threads)]
for th in threads:
    th.start()
for th in threads:
    th.join()
"""


def _write_then_kill(directory: str, mode: str, n_threads: int, kill_after: int) -> list[str]:
    """Run the writer, SIGKILL it after ``kill_after`` acknowledgements; return every acknowledged id."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, directory, mode, str(n_threads)],
            stdout=subprocess.PIPE,
            stderr=err,
        )
        watchdog = threading.Timer(30.0, proc.kill)  # never hang the suite
        watchdog.start()
        try:
            seen = 0
            head = []
            while seen < kill_after:
                line = proc.stdout.readline()
                if not line:
                    break
                head.append(line)
                seen += 1
            os.kill(proc.pid, signal.SIGKILL)
            rest = proc.stdout.read()  # acks already in the pipe when the writer died
            proc.wait()
        finally:
            watchdog.cancel()
            proc.stdout.close()
        err.seek(0)
        assert seen == kill_after, f"writer stopped early: {err.read().decode(errors='replace')[-2000:]}"
        assert proc.returncode == -signal.SIGKILL
    data = b"".join(head) + rest
    # A partially written ack (cut by the kill) is not a complete acknowledgement line.
    return [x.decode() for x in data.split(b"\n")[:-1]]


def _read(directory: str) -> tuple[list, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = list(read_records(directory))
    return records, caught


def _decision_ids(records: list) -> list[str]:
    return [r.event_id for r in records if isinstance(r, DecisionRecord)]


def _segments(directory: str) -> list[str]:
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".jsonl"))


def _check_every_ack_survived(directory: str, acked: list[str]) -> list[str]:
    records, caught = _read(directory)
    # The kill may tear the last line of the segment being written; nothing else.
    assert all(issubclass(w.category, TornRecordWarning) for w in caught), [str(w.message) for w in caught]
    assert len(caught) <= 1
    ids = _decision_ids(records)
    assert len(ids) == len(set(ids)), "a record was written twice"
    missing = set(acked) - set(ids)
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
    for path in _segments(directory):
        with open(path, "rb") as f:
            first = f.readline()
        if first.endswith(b"\n"):
            assert msgspec.json.decode(first)["type"] == "catalog"
    return ids


def _tear_last_record_and_corrupt_one(directory: str, acked: list[str]) -> None:
    """Simulate what a machine crash can leave: a torn last line, and garbage inside a segment."""
    segs = _segments(directory)
    assert len(segs) >= 2, "the writer should have rotated segments"
    # The newest segment whose last whole line is a decision (the kill may have left the
    # newest one empty, or holding only its catalogue header).
    for last in reversed(segs):
        with open(last, "rb") as f:
            data = f.read()
        data = data[: data.rfind(b"\n") + 1]  # drop a line the kill already tore
        lines = data.split(b"\n")
        if len(lines) >= 2 and msgspec.json.decode(lines[-2])["type"] == "decision":
            break
    torn_id = msgspec.json.decode(lines[-2])["event_id"]
    with open(last, "r+b") as f:
        f.truncate(len(data) - 1 - len(lines[-2]) // 2)
    first = segs[0]
    with open(first, "rb") as f:
        flines = f.read().split(b"\n")
    victim = len(flines) // 2
    corrupt_id = msgspec.json.decode(flines[victim])["event_id"]
    flines[victim] = b"\x00" * len(flines[victim])
    with open(first, "wb") as f:
        f.write(b"\n".join(flines))

    records, caught = _read(directory)
    kinds = sorted(w.category.__name__ for w in caught)
    assert kinds == ["CorruptRecordWarning", "TornRecordWarning"], [str(w.message) for w in caught]
    assert any(os.path.basename(last) in str(w.message) for w in caught if w.category is TornRecordWarning)
    assert any(os.path.basename(first) in str(w.message) for w in caught if w.category is CorruptRecordWarning)
    ids = set(_decision_ids(records))
    assert torn_id not in ids and corrupt_id not in ids
    assert set(acked) - ids <= {torn_id, corrupt_id}


@pytest.mark.parametrize(
    ("mode", "n_threads", "kill_after"),
    [
        ("record", 4, 3_000),
        ("record", 1, 150),
        ("fsync", 2, 150),
        ("interval", 4, 1_500),
        ("close", 2, 400),
    ],
)
def test_acknowledged_records_survive_sigkill(mode, n_threads, kill_after):
    with tempfile.TemporaryDirectory() as d:
        acked = _write_then_kill(d, mode, n_threads, kill_after)
        assert len(acked) >= kill_after
        ids = _check_every_ack_survived(d, acked)
        if mode in ("interval", "close"):
            assert len(ids) >= len(acked)
        else:
            # Acknowledged on return: at most one record per thread was written but not yet reported.
            assert len(ids) - len(acked) <= n_threads


def test_reader_survives_a_torn_last_line_and_a_corrupt_segment_after_a_kill():
    with tempfile.TemporaryDirectory() as d:
        acked = _write_then_kill(d, "record", 2, 1_500)
        _check_every_ack_survived(d, acked)
        _tear_last_record_and_corrupt_one(d, acked)
