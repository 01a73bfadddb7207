"""``nba demo`` closes the loop: the policy it learns from its logs beats random and the starting policy."""

from __future__ import annotations

import glob
import os
import re
import tempfile

import pytest

pytest.importorskip("vowpalwabbit")
pytest.importorskip("scipy")

from nba.cli import main  # noqa: E402
from nba.demo import run  # noqa: E402


def _leftovers() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "nba-demo-*")))


@pytest.mark.parametrize("seed", [1, 7])
def test_the_learned_policy_beats_random_and_the_starting_policy(seed, capsys):
    before = _leftovers()
    res = run(customers=1000, visits=12_000, seed=seed)
    out = capsys.readouterr().out
    # Online, in the A/B test: intervals of the lift in reward per customer wholly above 0.
    assert res.vs_current.absolute_interval.low > 0 and res.vs_random.absolute_interval.low > 0
    assert res.promoted and not res.ab.srm.alert
    # Offline, on the first log: the learned policy's DR estimate above uniform's and the logged mean.
    assert res.offline.beats("learned", "uniform")
    assert res.offline["learned"].value > res.offline["logged"].value
    assert {v.variant for v in res.ab.variants} == {"current", "learned", "random"}
    assert sum(v.decisions for v in res.ab.variants) == 12_000 - 12_000 // 2
    for step in ("1. served", "2. optimisation discovery", "3. off-policy", "4. A/B test", "vs the starting policy",
                 "vs uniform random", "promoted"):
        assert step in out
    assert _leftovers() == before  # nothing left behind in /tmp


def test_a_run_is_reproducible_and_out_keeps_the_log_model_and_report(tmp_path, capsys):
    a = run(customers=300, visits=2_000, seed=3, out=str(tmp_path / "a"))
    b = run(customers=300, visits=2_000, seed=3)
    assert a.vs_current == b.vs_current and a.offline["learned"].value == b.offline["learned"].value
    assert sorted(os.listdir(tmp_path / "a")) == ["ab-log", "learned.vw", "log", "report.html"]
    html = (tmp_path / "a" / "report.html").read_text()
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) >= 4
    capsys.readouterr()


def test_the_cli_runs_it_and_refuses_bad_sizes(capsys):
    assert main(["demo", "--customers", "200", "--visits", "1000", "--seed", "2"]) == 0
    assert "done in" in capsys.readouterr().out
    assert main(["demo", "--visits", "10"]) == 2
    assert "visits=10 must be an int >= 200" in capsys.readouterr().err
