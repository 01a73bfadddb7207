"""nba._core.locks.PoliteLock: mutual exclusion, waiting for a holder that keeps it, renewal after fork."""

from __future__ import annotations

import os
import threading
import time

import pytest

from nba._core.locks import PoliteLock


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


def test_a_lock_held_by_another_thread_at_fork_is_free_in_the_child():
    lock = PoliteLock()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the holder does not exist here: the lock must be free
            os._exit(0 if lock.acquire(False) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert lock.locked()  # the parent's holder still has it
    finally:
        release.set()
        t.join()


def test_releasing_a_free_lock_is_an_error_and_leaves_it_usable():
    lock = PoliteLock()
    with pytest.raises(RuntimeError):
        lock.release()
    assert lock.acquire(False) and not lock.acquire(False)  # still one holder at most
    lock.release()
    assert not lock.locked()
