"""nba.log.read_records / join / export_dsjson over several log directories (one per host), read as one log."""

from __future__ import annotations

import json

import pytest

import nba
from nba.errors import LogError
from nba.log import export_dsjson, join, read_records

SCHEMA = nba.FeatureSchema([nba.Numeric("age")])
ARMS = [nba.Arm(f"a{i}") for i in range(3)]
T0 = 1.7e9


def test_an_outcome_logged_on_another_host_joins_its_decision(tmp_path) -> None:
    host_a, host_b = tmp_path / "a", tmp_path / "b"
    a = nba.Decider(ARMS, nba.BetaThompson(3), schema=SCHEMA, policy=nba.Thompson(), log=nba.DecisionLog(host_a))
    b = nba.Decider(ARMS, nba.BetaThompson(3), schema=SCHEMA, policy=nba.Thompson(), log=nba.DecisionLog(host_b))
    ds = [a.decide({"id": f"u{k}", "age": float(k)}, now=T0 + k) for k in range(20)]
    for k, d in enumerate(ds):  # the click reaches host b's worker
        b.reward(d.event_id, float(k % 2), now=T0 + k + 1)
    a.close()
    b.close()
    joined = list(join([host_a, host_b], reward_window=60))
    assert [j.decision.event_id for j in joined] == [d.event_id for d in ds]
    assert all(j.observed and j.reward == float(k % 2) for k, j in enumerate(joined))
    assert len(list(join(host_a, reward_window=60))) == 20  # alone, host a's log has no outcome
    assert not any(j.observed for j in join(host_a, reward_window=60))
    kinds = [type(r).__name__ for r in read_records([host_b, host_a])]
    assert kinds.count("DecisionRecord") == 20 and kinds.count("OutcomeRecord") == 20
    out = tmp_path / "train.dsjson"
    report = export_dsjson([host_a, host_b], out, reward_window=60)
    lines = out.read_text().splitlines()
    assert report.events == 20 == len(lines) and report.skipped == 0
    assert sorted(json.loads(line)["_label_cost"] for line in lines) == [-1.0] * 10 + [0.0] * 10


def test_a_list_of_logs_holds_directories(tmp_path) -> None:
    with pytest.raises(LogError, match="no decision log directory"):
        list(read_records([]))
    (tmp_path / "d").mkdir()
    f = tmp_path / "f.jsonl"
    f.write_text("")
    with pytest.raises(LogError, match="a list of logs holds directories"):
        list(read_records([tmp_path / "d", f]))
