"""nba._locks.PoliteLock: mutual exclusion, and waiting for a holder that keeps it."""

from __future__ import annotations

import threading
import time

from nba._locks import PoliteLock


def test_sections_never_overlap_across_threads():
    lock = PoliteLock()
    inside = 0
    overlaps = 0
    total = 0

    def work() -> None:
        nonlocal inside, overlaps, total
        for _ in range(2000):
            with lock:
                inside += 1
                if inside != 1:
                    overlaps += 1
                time.sleep(0)  # hand the GIL over inside the section
                total += 1
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == 0 and total == 8000


def test_non_blocking_acquire_and_blocking_on_a_busy_holder():
    lock = PoliteLock()
    assert lock.acquire(False) and lock.locked()
    assert not lock.acquire(False)
    got = threading.Event()

    def waiter() -> None:
        with lock:
            got.set()

    t = threading.Thread(target=waiter)
    t.start()
    assert not got.wait(0.2)  # yielded its 64 times, now blocked on the holder
    lock.release()
    t.join(5)
    assert got.is_set() and not lock.locked()
