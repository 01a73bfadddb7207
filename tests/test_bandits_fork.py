"""An online model whose compiled core lock another thread holds at fork time still works in the child."""

from __future__ import annotations

import os
import select
import threading

import numpy as np
import pytest

import nba


@pytest.mark.parametrize("make", [lambda: nba.BetaThompson(200), lambda: nba.LinearThompson(200, 3)],
                         ids=["BetaThompson", "LinearThompson"])
def test_a_core_lock_held_by_another_thread_at_fork_does_not_hang_the_child(make) -> None:
    model = make()
    x = None if isinstance(model, nba.BetaThompson) else np.ones(3)
    stop = threading.Event()

    def busy() -> None:  # over 64 offered arms the pmf loop holds the core's lock throughout
        while not stop.is_set():
            model.pmf(x, event_id="busy", draws=200_000)

    t = threading.Thread(target=busy)
    t.start()
    try:
        for attempt in range(3):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                model.update(0, x, 1.0)  # takes the lock: a new one in this child
                os.write(w, b"%d" % model.pulls[0])
                os._exit(0)
            os.close(w)
            ready, _, _ = select.select([r], [], [], 20)
            if not ready:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail(f"the child hung on the model's lock (attempt {attempt})")
            assert os.read(r, 16) == b"1"
            os.close(r)
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    finally:
        stop.set()
        t.join()
    assert model.pulls.sum() == 0  # the parent's model learned nothing from the children
