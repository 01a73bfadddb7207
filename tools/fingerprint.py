"""A SHA-256 of everything nba decides and logs on fixed seeds, to compare two revisions.

    PYTHONPATH=<checkout>/src:. python tools/fingerprint.py

prints one hash per scenario and one over all; a behaviour-preserving change must
leave every line unchanged. Each scenario decides with explicit event ids, clock
and seed, rewards, activates, and then hashes the decisions' arms, scores, pmfs and
probabilities (float.hex) and the log's lines (the ``ts`` and ``crc`` of catalogue
and schema records, which carry the wall clock, are dropped). It uses only APIs
that every revision since 0.1.0 has, and the clock keyword each revision names
(``now=``, or the older ``at=``), so it runs unchanged on old checkouts.
"""

from __future__ import annotations

import glob
import hashlib
import inspect
import os
import re
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import nba
from benchmarks.workloads import decide_workload

T0 = 1.7e9
_CLOCK_FREE = re.compile(r',"ts":[0-9.e+]+(,"crc":\d+)?')


def _clock_kw(method: Callable[..., Any]) -> str:
    return "now" if "now" in inspect.signature(method).parameters else "at"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(u) for u in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_fmt(v[k])}" for k in sorted(v)) + "}"
    return repr(v)


def _log_lines(directory: str) -> list[str]:
    lines = []
    for path in sorted(glob.glob(os.path.join(directory, "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(('{"type":"catalog"', '{"type":"schema"')):
                    line = _CLOCK_FREE.sub("", line)
                lines.append(line)
    return lines


def _run(make: Callable[[nba.DecisionLog], nba.Decider], profiles: list, n: int, *, slate: int = 1,
         reward: Callable[[int, str], float | None] = lambda i, arm: None, defer_every: int = 0) -> str:
    """Decide n times on the profiles; reward / activate as told; the scenario's hash."""
    h = hashlib.sha256()
    with tempfile.TemporaryDirectory() as d:
        log = nba.DecisionLog(d, durability="close")
        dec = make(log)
        kw_reward, kw_activate = _clock_kw(dec.reward), _clock_kw(dec.activate)
        for i in range(n):
            p, c = profiles[i % len(profiles)]
            defer = bool(defer_every) and i % defer_every == 0
            r = dec.decide(p, c, event_id=f"ev{i}", now=T0 + i, n=slate, defer=defer)
            h.update(_fmt([r.event_id, r.arm, list(r.arms), r.probability, list(r.pmf), list(r.scores),
                           list(r.actions), r.policy, dict(r.variants), r.fallback]).encode())
            if defer and i % (2 * defer_every) == 0:
                dec.activate(r.event_id, **{kw_activate: T0 + i + 0.25})
            v = reward(i, r.arm)
            if v is not None:
                dec.reward(r.event_id, v, **{kw_reward: T0 + i + 0.5})
        dec.close() if hasattr(dec, "close") else None
        log.close()
        for line in _log_lines(d):
            h.update(line.encode())
    return h.hexdigest()


def scenarios() -> dict[str, Callable[[], str]]:
    """name -> a function returning that scenario's hash."""
    w = decide_workload(10, 60, seed=4, n_profiles=64)
    arms, schema, text, profiles = w["arms"], w["schema"], w["model_text"], w["profiles"]
    exp = [nba.Experiment("layout", variants={"a": 0.5, "b": 0.5})]

    def lightgbm(policy: Any) -> Callable[[], str]:
        def make(log: nba.DecisionLog) -> nba.Decider:
            return nba.Decider(nba.Catalog(arms, schema), nba.load_model(text), policy=policy, experiments=exp,
                               log=log, seed=11)
        return lambda: _run(make, profiles, 300, reward=lambda i, arm: float(i % 3 == 0), defer_every=7)

    def slates() -> str:
        def make(log: nba.DecisionLog) -> nba.Decider:
            return nba.Decider(nba.Catalog(arms, schema), nba.load_model(text), policy=nba.Softmax(3.0), log=log,
                               seed=12)
        return _run(make, profiles, 200, slate=3)

    def online(learner: Callable[[], Any], policy: Any, arbitration: str = "product") -> Callable[[], str]:
        def make(log: nba.DecisionLog) -> nba.Decider:
            catalog = nba.Catalog(arms, schema, arbitration=arbitration)
            return nba.Decider(catalog, learner(), policy=policy, log=log, seed=13,
                               default_reward=0.0)
        return lambda: _run(make, profiles, 300, reward=lambda i, arm: 1.0 if arm in ("offer2", "offer5") else 0.25)

    def rules_and_fallbacks() -> str:
        ruled = [nba.Arm(a.id, features=a.features, value=a.value, channels=a.channels,
                         eligibility=f"p0 > {0.3 * (i - 3)}") for i, a in enumerate(arms)]

        def make(log: nba.DecisionLog) -> nba.Decider:
            return nba.Decider(nba.Catalog(ruled, schema), nba.load_model(text), policy=nba.EpsilonGreedy(0.1),
                               log=log, seed=14, fallback="offer0")
        return _run(make, profiles, 200, reward=lambda i, arm: 1.0, defer_every=5)

    def vw() -> str:
        import numpy as np
        import vowpalwabbit

        rng = np.random.default_rng(3)
        ws = vowpalwabbit.Workspace("--cb_adf -q UA --quiet")
        for _ in range(300):
            seg = ["gold", "silver", "bronze"][int(rng.integers(3))]
            chosen = int(rng.integers(4))
            cost = -1.0 if chosen == ["gold", "silver", "bronze"].index(seg) else 0.0
            lines = [f"shared |User p0:{float(rng.normal())} segment{seg}"]
            for k in range(4):
                label = f"0:{cost}:0.25 " if k == chosen else ""
                lines.append(f"{label}|Action fee:{5.0 * k} kind{['card', 'loan', 'savings'][k % 3]}")
            ex = ws.parse(lines)
            ws.learn(ex)
            ws.finish_example(ex)
        with tempfile.TemporaryDirectory() as d:
            ws.save(os.path.join(d, "cb.model"))
            ws.finish()
            model = nba.load_model(os.path.join(d, "cb.model"))
        four = [nba.Arm(a.id, features=a.features, channels=a.channels) for a in arms[:4]]

        def make(log: nba.DecisionLog) -> nba.Decider:
            return nba.Decider(nba.Catalog(four, schema), model, policy=nba.SquareCB(), log=log, seed=15)
        return _run(make, profiles, 200, slate=2)

    def tree_batches() -> str:
        import numpy as np

        model = nba.load_model(text)
        rng = np.random.default_rng(5)
        X = rng.normal(size=(3000, model.num_features))
        X[rng.random(X.shape) < 0.05] = np.nan
        X[rng.random(X.shape) < 0.05] = 0.0
        h = hashlib.sha256()
        for raw in (True, False):
            h.update(model.predict(X, raw_score=raw).tobytes())
            h.update(np.array([model.predict_row(x, raw_score=raw) for x in X[:500]]).tobytes())
        return h.hexdigest()

    d = len(nba.Catalog(arms, schema).schema.feature_names)
    return {
        "lightgbm-batches-and-rows": tree_batches,
        "lightgbm-rules-fallbacks": rules_and_fallbacks,
        "vw-squarecb": vw,
        "lightgbm-epsilon-greedy": lightgbm(nba.EpsilonGreedy(0.2)),
        "lightgbm-softmax": lightgbm(nba.Softmax(2.0)),
        "lightgbm-squarecb": lightgbm(nba.SquareCB()),
        "lightgbm-slates": slates,
        "beta-thompson": online(lambda: nba.BetaThompson(10), nba.Thompson()),
        "ucb1": online(lambda: nba.UCB1(10), nba.UCB(), "score"),
        "linucb": online(lambda: nba.LinUCB(10, d), nba.UCB(), "score"),
        "linear-thompson": online(lambda: nba.LinearThompson(10, d), nba.Thompson(), "score"),
    }


def main() -> int:
    total = hashlib.sha256()
    for name, run in scenarios().items():
        digest = run()
        total.update(digest.encode())
        print(f"{digest[:16]}  {name}")
    print(f"{total.hexdigest()[:16]}  all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
