"""nba report (nba.report): the figures against a recount of the joined log, the HTML's plots, JSON, the CLI."""

from __future__ import annotations

import base64
import io
import math
import re
import sys
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import pytest

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
from tests.report_logs import write_log

WINDOW = 60.0
_IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def ab_log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ab")
    write_log(path, 3000, units=800, seed=1)
    return path


@pytest.fixture(scope="module")
def ab_data(ab_log) -> ReportData:
    return report.build(ab_log, reward_window=WINDOW)


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


def test_a_candidate_is_estimated_beside_the_logged_policy(ab_log) -> None:
    def first_offered(rec: DecisionRecord) -> np.ndarray:
        out = np.zeros(len(rec.actions))
        out[0] = 1.0
        return out

    data = report.build(ab_log, reward_window=WINDOW, candidates={"always first": first_offered})
    assert data.ope is not None
    cand = {c.name: c for c in data.ope.candidates}["always first"]
    assert cand.kind == "candidate" and cand.n == 3000
    joined = list(join(ab_log, reward_window=WINDOW))
    w = np.array([(ex.decision.chosen[0] == 0) / ex.decision.probability for ex in joined])
    r = np.array([ex.reward for ex in joined])
    assert {e.estimator: e.value for e in cand.estimates}["ips"] == pytest.approx(np.mean(w * r), rel=1e-9)
    assert cand.zero_weights == int(np.sum(w == 0))
    assert "always first" in report.render_html(data)


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
    write_log(tmp_path, 50, hours=0.0, seed=4)
    data = report.build(tmp_path)
    assert data.headline.span_seconds == 0.0 and len(data.edges) == 2
    assert len(_pngs(report.render_html(data))) >= 4


def test_progress_bar_goes_to_stderr_when_it_is_not_a_terminal(ab_log, capsys) -> None:
    data = report.build(ab_log, reward_window=WINDOW, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "nba report" in err and "3000" in err
    assert data.headline.decisions == 3000


def test_missing_extra_is_a_config_error_naming_it(ab_data, ab_log, monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match=r"nba\[report\]"):
        report.render_html(ab_data)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(ConfigError, match=r"tqdm.*nba\[report\]"):
        report.build(ab_log, progress=True)


@pytest.mark.parametrize("kwargs", [{"level": 95}, {"level": 1.0}, {"buckets": 0}, {"buckets": True},
                                    {"candidates": {"": np.zeros(1)}}])
def test_bad_options_are_config_errors(ab_log, kwargs) -> None:
    with pytest.raises(ConfigError):
        report.build(ab_log, **kwargs)


# --------------------------------------------------------------------------- the CLI


def test_cli_writes_the_html_report(ab_log, tmp_path, capsys) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(ab_log), "--out", str(out), "--reward-window", "60", "--no-progress"]) == 0
    page = out.read_text()
    assert len(_pngs(page)) >= 4 and "<h2>1. Headline numbers</h2>" in page
    assert "3,000 decisions" in capsys.readouterr().err


def test_cli_json_round_trips(ab_log, ab_data, tmp_path, capsys) -> None:
    assert main(["report", str(ab_log), "--json", "--reward-window", "60", "--no-progress"]) == 0
    data = msgspec.json.decode(capsys.readouterr().out, type=ReportData)
    assert data.headline == ab_data.headline and data.rewards == ab_data.rewards and data.ope == ab_data.ope
    out = tmp_path / "r.out"
    assert main(["report", str(ab_log), "--json", "--out", str(out), "--no-progress"]) == 0
    assert msgspec.json.decode(out.read_bytes(), type=ReportData).headline.decisions == 3000


def test_cli_reports_a_missing_log_as_an_error(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html"), "--no-progress"]) == 2
    assert "cannot list" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


# --------------------------------------------------------------------------- sections from other modules


def _hand_built(d: ReportData) -> ReportData:
    """The A/B report with hand-made experiment and apprentice sections (rendering only: shapes, not numbers)."""
    iv = Bounds(-0.01, 0.03, 0.95, "gaussian")
    variants = tuple(VariantRow(v, 400, 1500, 120.0, 0.3, iv, 0.08, iv, 0.08) for v in ("random", "bandit"))
    lift = LiftRow("bandit", "random", 0.01, iv, 0.12, Bounds(-0.1, 0.4, 0.95, "delta"), 0.2, False)
    srm = SRMRow({"random": 260, "bandit": 540}, {"random": 240.0, "bandit": 560.0}, 2.4, 0.12, False, True)
    exp = ExperimentSummary("bandit-vs-random", "random", variants, (lift,), srm, ("a note",))
    b = len(d.edges) - 1
    appr = ApprenticeSection(True, (100,) * b, tuple(50 + 2 * i for i in range(b)), {
        "events": 100 * b, "agreements": 1000, "agreement": 0.6,
        "agreement_interval": {"low": 0.55, "high": 0.65, "level": 0.95, "method": "wilson"},
        "baseline_value": 0.08, "switching_value": 0.09, "switched_at": d.edges[-1], "notes": ["learned is ahead"]})
    return msgspec.structs.replace(d, experiments=ExperimentsSection(True, (exp,)), apprentice=appr)


def test_experiment_and_apprentice_sections_render_their_plots_and_tables(ab_data) -> None:
    d = _hand_built(ab_data)
    page = report.render_html(d)
    assert len(_pngs(page)) == _expected_plots(d) == 6
    assert '<td class="l">bandit</td><td class="l">random</td><td>0.01</td>' in page  # the lift row
    assert '<span class="ok">ok</span>' in page and "learned is ahead" in page and "[0.55, 0.65]" in page
    assert msgspec.json.decode(msgspec.json.encode(d), type=ReportData) == d
    alert = msgspec.structs.replace(d.experiments.experiments[0],
                                    srm=msgspec.structs.replace(srm_of(d), alert=True, p_value=1e-6))
    page = report.render_html(msgspec.structs.replace(d, experiments=ExperimentsSection(True, (alert,))))
    assert "SRM ALERT" in page


def srm_of(d: ReportData) -> SRMRow:
    srm = d.experiments.experiments[0].srm
    assert srm is not None
    return srm


def test_experiment_section_from_nba_analysis(ab_log, ab_data) -> None:
    pytest.importorskip("nba.analysis")
    e = ab_data.experiments
    assert e.available and [x.experiment for x in e.experiments] == ["bandit-vs-random"]
    x = e.experiments[0]
    joined = list(join(ab_log, reward_window=WINDOW))
    by_variant = Counter(ex.decision.variants["bandit-vs-random"] for ex in joined)
    assert {v.variant: v.decisions for v in x.variants} == dict(by_variant)
    assert x.srm is not None and x.srm.checked and not x.srm.alert  # a 30/70 split as configured
    assert [lift.variant for lift in x.lifts] == [v for v in by_variant if v != x.control]


def test_apprentice_section_from_nba_apprentice(ab_data) -> None:
    pytest.importorskip("nba.apprentice")
    a = ab_data.apprentice
    assert a.available and sum(a.decisions) == 0 and a.summary is None  # the A/B log has no apprentice decisions
    assert any("no apprentice decisions" in n for n in a.notes)
