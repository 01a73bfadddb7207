"""nba report (nba.report): the figures against a recount of the joined log, the HTML's plots, JSON, the CLI."""

from __future__ import annotations

import base64
import io
import math
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("matplotlib")

from matplotlib.image import imread

from nba import report
from nba.cli import main
from nba.errors import ConfigError, LogError
from nba.log import DecisionRecord, join
from nba.report import (
    ApprenticeSection,
    Bounds,
    ExperimentsSection,
    ExperimentSummary,
    LiftRow,
    ReportData,
    SRMRow,
    VariantRow,
)
from tests.report_logs import EXPERIMENT, write_log

WINDOW = 60.0
_IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def ab_log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ab")
    write_log(path, 3000, units=800, seed=1)
    return path


def _first_offered(rec: DecisionRecord) -> np.ndarray:
    """A candidate: always the first offered action."""
    out = np.zeros(len(rec.actions))
    out[0] = 1.0
    return out


@pytest.fixture(scope="module")
def ab_data(ab_log) -> ReportData:
    return report.build(ab_log, reward_window=WINDOW, experiments=[EXPERIMENT],
                        candidates={"always first": _first_offered})


@pytest.fixture(scope="module")
def small_log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("small")
    write_log(path, 300, units=100, seed=5)
    return path


@pytest.fixture(scope="module")
def ab_html(ab_data) -> str:
    return report.render_html(ab_data)


def _pngs(page: str) -> list[np.ndarray]:
    """Every embedded plot, decoded (imread raises on anything but a whole, valid PNG)."""
    return [imread(io.BytesIO(base64.b64decode(m, validate=True)), format="png") for m in _IMG.findall(page)]


def _expected_plots(d: ReportData) -> int:
    n = 4  # reward over time, arm shares, OPE, weights
    n += d.experiments.available and any(x.lifts for x in d.experiments.experiments)
    n += sum(d.apprentice.decisions) > 0
    return n


# --------------------------------------------------------------------------- the figures


def test_headline_equals_a_recount_of_the_joined_log(ab_log, ab_data, ab_html) -> None:
    joined = list(join(ab_log, reward_window=WINDOW))
    h = ab_data.headline
    assert h.decisions == len(joined) == 3000
    assert h.units == len({ex.decision.unit for ex in joined})
    assert h.observed == sum(ex.observed for ex in joined) > 0
    assert h.reward_sum == math.fsum(ex.reward for ex in joined)
    assert h.reward_rate == pytest.approx(h.reward_sum / len(joined), rel=1e-12)
    assert h.start == min(ex.decision.ts for ex in joined) and h.end == max(ex.decision.ts for ex in joined)
    assert h.experiments == ("bandit-vs-random",)
    assert h.arms == len({ex.decision.actions[ex.decision.chosen[0]] for ex in joined})
    for figure in (f"<td>{h.decisions:,}</td>", f"<td>{h.units:,}</td>", f"<td>{h.observed:,}</td>",
                   f"<td>{h.reward_sum:.4g}</td>", f"<td>{h.reward_rate:.4g}</td>"):
        assert figure in ab_html


def test_buckets_partition_the_decisions_per_variant_and_per_arm(ab_log, ab_data) -> None:
    joined = list(join(ab_log, reward_window=WINDOW))
    assert len(ab_data.edges) == 21
    by_variant = Counter(ex.decision.variants["bandit-vs-random"] for ex in joined)
    reward_by_variant: Counter[str] = Counter()
    for ex in joined:
        reward_by_variant[ex.decision.variants["bandit-vs-random"]] += ex.reward
    got = {s.variant: s for s in ab_data.rewards}
    assert set(got) == {"random", "bandit"}
    for v, s in got.items():
        assert s.experiment == "bandit-vs-random" and len(s.decisions) == 20
        assert sum(s.decisions) == by_variant[v]
        assert math.fsum(s.reward_sum) == pytest.approx(reward_by_variant[v])
        for n, m, lo, hi in zip(s.decisions, s.mean, s.low, s.high):
            assert (m is None) == (n == 0)
            if n >= 2:
                assert lo <= m <= hi
    # The first bucket holds exactly the decisions before the first inner edge.
    first = [ex for ex in joined if ex.decision.ts < ab_data.edges[1]]
    assert sum(s.decisions[0] for s in ab_data.rewards) == len(first)
    arms = Counter(ex.decision.actions[ex.decision.chosen[0]] for ex in joined)
    assert {a: sum(c) for a, c in zip(ab_data.arms.arms, ab_data.arms.counts)} == dict(arms)


def test_ope_of_the_logged_and_uniform_policies_equals_their_formulas(ab_log, ab_data) -> None:
    joined = list(join(ab_log, reward_window=WINDOW))
    r = np.array([ex.reward for ex in joined])
    p = np.array([ex.decision.probability for ex in joined])
    k = np.array([len(ex.decision.actions) for ex in joined])
    ope = ab_data.ope
    assert ope is not None
    cands = {c.name: c for c in ope.candidates}
    logged, uniform = cands["logged policy"], cands["uniform random"]
    est = {e.estimator: e for e in logged.estimates}
    assert set(est) == {"ips", "snips", "dr"}
    assert est["ips"].value == pytest.approx(r.mean(), rel=1e-12)  # on policy: IPS is the mean reward
    assert logged.ess == pytest.approx(len(r)) and logged.max_weight == pytest.approx(1.0)
    w = 1.0 / (k * p)
    u = {e.estimator: e for e in uniform.estimates}
    assert u["ips"].value == pytest.approx(np.mean(w * r), rel=1e-9)
    assert u["snips"].value == pytest.approx(np.sum(w * r) / np.sum(w), rel=1e-9)
    assert uniform.max_weight == pytest.approx(w.max()) and uniform.ess == pytest.approx(w.sum() ** 2 / (w @ w))
    assert sum(uniform.weight_counts) + uniform.zero_weights == len(r)
    for e in (*logged.estimates, *uniform.estimates):
        assert e.interval.low is not None and e.interval.low <= e.value <= e.interval.high
        assert e.interval.level == 0.95 and e.interval.method == "gaussian"


def test_a_candidate_is_estimated_beside_the_logged_policy(ab_log, ab_data, ab_html) -> None:
    assert ab_data.ope is not None
    cand = {c.name: c for c in ab_data.ope.candidates}["always first"]
    assert cand.kind == "candidate" and cand.n == 3000
    joined = list(join(ab_log, reward_window=WINDOW))
    w = np.array([(ex.decision.chosen[0] == 0) / ex.decision.probability for ex in joined])
    r = np.array([ex.reward for ex in joined])
    assert {e.estimator: e.value for e in cand.estimates}["ips"] == pytest.approx(np.mean(w * r), rel=1e-9)
    assert cand.zero_weights == int(np.sum(w == 0))
    assert '<td class="l">always first</td>' in ab_html


# --------------------------------------------------------------------------- the page


def test_html_holds_every_plot_and_section_title(ab_data, ab_html) -> None:
    images = _pngs(ab_html)
    assert len(images) == _expected_plots(ab_data) >= 4
    for img in images:
        assert img.ndim == 3 and img.shape[0] >= 200 and img.shape[1] >= 600
    for i, title in enumerate(report.SECTIONS, 1):
        assert f"<h2>{i}. {title}</h2>" in ab_html
    assert "src=\"http" not in ab_html and "<script" not in ab_html  # self-contained


def test_report_data_round_trips_through_json(ab_data) -> None:
    raw = msgspec.json.encode(ab_data)
    assert msgspec.json.decode(raw, type=ReportData) == ab_data


def test_report_of_a_log_without_experiments(tmp_path) -> None:
    write_log(tmp_path, 400, experiment=False, seed=2)
    data = report.build(tmp_path, reward_window=WINDOW, buckets=5)
    assert data.headline.experiments == ()
    assert [(s.experiment, s.variant, sum(s.decisions)) for s in data.rewards] == [(None, "all decisions", 400)]
    assert data.experiments.experiments == () and data.experiments.notes
    page = report.render_html(data)
    assert len(_pngs(page)) == 4
    assert ("no data: no decision in the log belongs to an experiment" in page) or ("not available" in page)


def test_report_of_a_log_without_rewards(tmp_path) -> None:
    write_log(tmp_path, 300, rewards=False, seed=3)
    data = report.build(tmp_path, reward_window=WINDOW, default_reward=0.0)
    assert data.headline.observed == 0 and data.headline.reward_sum == 0.0
    assert any("no data on rewards" in n for n in data.notes)
    assert data.ope is not None
    for c in data.ope.candidates:
        for e in c.estimates:
            assert e.value == 0.0
    page = report.render_html(data)
    assert "no data on rewards" in page and len(_pngs(page)) >= 4


@pytest.mark.parametrize("make", ["empty dir", "missing"])
def test_report_of_an_empty_log_says_no_data(tmp_path, make) -> None:
    log = tmp_path / "log"
    if make == "empty dir":
        log.mkdir()
        data = report.build(log)
        assert data.headline.decisions == 0 and data.headline.reward_rate is None
        assert data.ope is None and data.rewards == () and data.arms.arms == ()
        assert any("no data" in n for n in data.notes)
        page = report.render_html(data)
        for title in report.SECTIONS:
            assert title in page
        assert page.count("no data") >= 5 and not _IMG.search(page)
        assert msgspec.json.decode(msgspec.json.encode(data), type=ReportData) == data
    else:
        with pytest.raises(LogError, match="cannot list"):
            report.build(log)


def test_one_instant_log_has_one_bucket(tmp_path) -> None:
    write_log(tmp_path, 30, hours=0.0, seed=4)
    data = report.build(tmp_path)
    assert data.headline.span_seconds == 0.0 and len(data.edges) == 2
    assert len(_pngs(report.render_html(data))) >= 4


def test_progress_bar_goes_to_stderr_when_it_is_not_a_terminal(small_log, capsys) -> None:
    data = report.build(small_log, reward_window=WINDOW, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "nba report" in err and "300" in err
    assert data.headline.decisions == 300


def test_missing_extra_is_a_config_error_naming_it(ab_data, small_log, monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match=r"nba\[report\]"):
        report.render_html(ab_data)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(ConfigError, match=r"tqdm.*nba\[report\]"):
        report.build(small_log, progress=True)


@pytest.mark.parametrize("kwargs", [{"level": 95}, {"level": 1.0}, {"buckets": 0}, {"buckets": True},
                                    {"candidates": {"": np.zeros(1)}},
                                    {"experiments": ["bandit-vs-random"]}])
def test_bad_options_are_config_errors(small_log, kwargs) -> None:
    with pytest.raises(ConfigError):
        report.build(small_log, **kwargs)


# --------------------------------------------------------------------------- the CLI


def test_cli_writes_the_html_report(small_log, tmp_path, capsys) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(small_log), "--out", str(out), "--reward-window", "60", "--no-progress"]) == 0
    page = out.read_text()
    assert len(_pngs(page)) >= 4 and "<h2>1. Headline numbers</h2>" in page
    assert "300 decisions" in capsys.readouterr().err


def test_cli_json_round_trips(small_log, tmp_path, capsys) -> None:
    assert main(["report", str(small_log), "--json", "--reward-window", "60", "--buckets", "5", "--no-progress"]) == 0
    data = msgspec.json.decode(capsys.readouterr().out, type=ReportData)
    want = report.build(small_log, reward_window=WINDOW, buckets=5)
    assert data.headline == want.headline and data.rewards == want.rewards and data.ope == want.ope
    assert data.reward_window == 60.0 and len(data.edges) == 6
    out = tmp_path / "r.out"
    assert main(["report", str(small_log), "--json", "--out", str(out), "--no-progress"]) == 0
    assert msgspec.json.decode(out.read_bytes(), type=ReportData).headline.decisions == 300


def test_cli_reports_a_missing_log_as_an_error(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html"), "--no-progress"]) == 2
    assert "cannot list" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


# --------------------------------------------------------------------------- sections from other modules


def _hand_built(d: ReportData) -> ReportData:
    """The A/B report with hand-made experiment and apprentice sections (rendering only: shapes, not numbers):
    one experiment whose SRM check passed, one with an alert; apprentice values as summarize's Estimates."""
    iv = Bounds(-0.01, 0.03, 0.95, "gaussian")
    variants = tuple(VariantRow(v, 400, 1500, 120.0, 0.3, iv, 0.08, iv, 0.08) for v in ("random", "bandit"))
    lift = LiftRow("bandit", "random", 0.01, iv, 0.12, Bounds(-0.1, 0.4, 0.95, "delta"), 0.2, False)
    srm = SRMRow({"random": 260, "bandit": 540}, {"random": 240.0, "bandit": 560.0}, 2.4, 0.12, False, True)
    ok = ExperimentSummary("bandit-vs-random", "random", variants, (lift,), srm, ("a note",))
    bad = ExperimentSummary("skewed", "random", variants, (lift,),
                            msgspec.structs.replace(srm, alert=True, p_value=1e-6), ())
    b = len(d.edges) - 1
    estimate = {"estimator": "ips", "value": 0.09, "gaussian": {"low": 0.07, "high": 0.11, "level": 0.95,
                                                                 "method": "gaussian"}}
    appr = ApprenticeSection(True, (100,) * b, tuple(50 + 2 * i for i in range(b)), {
        "events": 100 * b, "agreements": 1000, "agreement": 0.6,
        "agreement_interval": {"low": 0.55, "high": 0.65, "level": 0.95, "method": "wilson"},
        "baseline_value": 0.08, "switching_value": estimate, "switched_at": d.edges[-1],
        "notes": ["learned is ahead"]})
    return msgspec.structs.replace(d, experiments=ExperimentsSection(True, (ok, bad)), apprentice=appr)


def test_experiment_and_apprentice_sections_render_their_plots_and_tables(ab_data) -> None:
    d = _hand_built(ab_data)
    page = report.render_html(d)
    assert len(_pngs(page)) == _expected_plots(d) == 6
    assert '<td class="l">bandit</td><td class="l">random</td><td>0.01</td>' in page  # the lift row
    assert page.count('<span class="ok">ok</span>') == 1 and page.count("SRM ALERT") == 1
    assert "learned is ahead" in page and "[0.55, 0.65]" in page and "0.09 [0.07, 0.11] (ips)" in page
    assert msgspec.json.decode(msgspec.json.encode(d), type=ReportData) == d


def test_experiment_section_from_nba_analysis(ab_log, ab_data) -> None:
    pytest.importorskip("nba.analysis")
    e = ab_data.experiments
    assert e.available and [x.experiment for x in e.experiments] == ["bandit-vs-random"]
    x = e.experiments[0]
    joined = list(join(ab_log, reward_window=WINDOW))
    by_variant = Counter(ex.decision.variants["bandit-vs-random"] for ex in joined)
    assert {v.variant: v.decisions for v in x.variants} == dict(by_variant)
    assert x.srm is not None and x.srm.checked and not x.srm.alert  # a 30/70 split as configured
    assert x.srm.expected == pytest.approx({"random": 0.3 * sum(x.srm.observed.values()),
                                            "bandit": 0.7 * sum(x.srm.observed.values())})
    assert [lift.variant for lift in x.lifts] == [v for v in by_variant if v != x.control]


def test_apprentice_section_from_nba_apprentice(ab_data) -> None:
    pytest.importorskip("nba.apprentice")
    a = ab_data.apprentice
    assert a.available and sum(a.decisions) == 0 and a.summary is None  # the A/B log has no apprentice decisions
    assert any("no apprentice decisions" in n for n in a.notes)


def test_apprentice_agreement_over_time_and_learned_policy_estimate(tmp_path) -> None:
    """Apprentice records (DecisionRecord's apprentice fields, after the merge): agreement per bucket is a
    recount, and the learned policy's IPS is its formula over the logged ``learned_pmf``."""
    pytest.importorskip("nba.apprentice")
    from nba import DecisionLog
    from nba.log import OutcomeRecord

    rng = np.random.default_rng(7)
    actions = ["a", "b", "c"]
    t0 = 1_780_000_000.0
    rows = []
    with DecisionLog(tmp_path, durability="close") as log:
        for i in range(600):
            pmf = [0.2, 0.3, 0.5]
            chosen = int(rng.choice(3, p=pmf))
            learned_pmf = [0.8, 0.1, 0.1] if i % 2 else [0.1, 0.1, 0.8]
            learned = int(np.argmax(learned_pmf))
            rec = DecisionRecord(event_id=f"e{i}", ts=t0 + 10.0 * i, actions=actions, pmf=pmf, chosen=[chosen],
                                 probability=pmf[chosen], unit=f"u{i % 50}", baseline="rules", apprentice=True,
                                 learned=learned, learned_pmf=learned_pmf)
            log.append(rec)
            r = float(chosen == 0)
            if r:
                log.append(OutcomeRecord(f"e{i}", t0 + 10.0 * i + 1, r))
            rows.append((rec.ts, chosen, learned, learned_pmf[chosen] / pmf[chosen], r))
    data = report.build(tmp_path, buckets=4)
    a = data.apprentice
    assert a.available and sum(a.decisions) == 600 and a.summary is not None
    edges = data.edges
    for k in range(4):
        inside = [r for r in rows if edges[k] <= r[0] < edges[k + 1] or (k == 3 and r[0] == edges[-1])]
        assert a.decisions[k] == len(inside)
        assert a.agreements[k] == sum(c == lrn for _, c, lrn, _, _ in inside)
    assert data.ope is not None
    learned = {c.name: c for c in data.ope.candidates}["learned policy"]
    w = np.array([r[3] for r in rows])
    rew = np.array([r[4] for r in rows])
    assert {e.estimator: e.value for e in learned.estimates}["ips"] == pytest.approx(np.mean(w * rew), rel=1e-9)
    page = report.render_html(data)
    assert len(_pngs(page)) == _expected_plots(data)


# --------------------------------------------------------------------------- properties


@st.composite
def _logs(draw):
    n = draw(st.integers(1, 25))
    t0 = 1_780_000_000.0
    # Times on a coarse grid, so that many fall exactly on bucket edges.
    ts = draw(st.lists(st.integers(0, 40), min_size=n, max_size=n))
    arms = draw(st.lists(st.sampled_from("abc"), min_size=n, max_size=n))
    variants = draw(st.lists(st.sampled_from(["x", "y", None]), min_size=n, max_size=n))
    rewards = draw(st.lists(st.sampled_from([None, 0.0, 1.0, 2.5]), min_size=n, max_size=n))
    buckets = draw(st.integers(1, 8))
    return [(t0 + 15.0 * t, a, v, r) for t, a, v, r in zip(ts, arms, variants, rewards)], buckets


@settings(max_examples=25, deadline=None)
@given(_logs())
def test_every_decision_lands_in_the_bucket_its_edges_say(case) -> None:
    from nba import DecisionLog
    from nba.log import OutcomeRecord

    rows, buckets = case
    with tempfile.TemporaryDirectory() as tmp:
        with DecisionLog(tmp, durability="close") as log:
            for i, (ts, arm, variant, r) in enumerate(rows):
                log.append(DecisionRecord(event_id=f"e{i}", ts=ts, actions=["a", "b", "c"], pmf=[0.2, 0.3, 0.5],
                                          chosen=["abc".index(arm)], probability=[0.2, 0.3, 0.5]["abc".index(arm)],
                                          unit=f"u{i % 4}", variants={} if variant is None else {"e": variant}))
                if r is not None:
                    log.append(OutcomeRecord(f"e{i}", ts + 1.0, r))
        data = report.build(tmp, buckets=buckets)
    edges = data.edges
    b = len(edges) - 1
    assert b == (buckets if max(r[0] for r in rows) > min(r[0] for r in rows) else 1)

    def bucket(ts: float) -> int:
        return next(k for k in range(b) if edges[k] <= ts < edges[k + 1] or (k == b - 1 and ts == edges[-1]))

    want_arms = {a: [0] * b for a in "abc"}
    want = {}
    for ts, arm, variant, r in rows:
        want_arms[arm][bucket(ts)] += 1
        if variant is not None:
            n, s = want.setdefault(variant, ([0] * b, [0.0] * b))
            n[bucket(ts)] += 1
            s[bucket(ts)] += r or 0.0
    assert {a: list(c) for a, c in zip(data.arms.arms, data.arms.counts)} == {a: c for a, c in want_arms.items() if any(c)}
    if want:
        assert {s.variant: (list(s.decisions), list(s.reward_sum)) for s in data.rewards} == want
    else:
        assert [sum(s.decisions) for s in data.rewards] == [len(rows)]
    assert data.headline.decisions == len(rows) and data.headline.units == len({i % 4 for i in range(len(rows))})
    assert data.headline.reward_sum == math.fsum(r or 0.0 for *_, r in rows)
