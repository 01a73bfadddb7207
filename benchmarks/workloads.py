"""Seeded workloads shared by the tests and the benchmarks.

Everything here is deterministic in its arguments, so a test and a benchmark that
ask for the same workload get the same bytes. Expensive artefacts (trained
models) are cached on disk, keyed by every parameter that shapes them, so
repeated runs skip training. One section per model kind; add yours below.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = [
    "cache_dir",
    "rows",
    "lightgbm_training_data",
    "lightgbm_model",
    "lightgbm_model_file",
    "decisions",
    "vw_examples",
    "vw_text",
    "vw_json",
    "vw_model_file",
    "unit_ids",
    "targeting_conditions",
    "targeting_attributes",
    "growthbook_payload",
    "growthbook_experiment",
    "profile_features",
    "profiles",
    "catalogue_arms",
    "linear_bandit_rounds",
    "event_stream",
    "profile_definitions",
    "profile_events",
    "contact_policy",
    "contact_histories",
    "ope_log",
    "experiment_log",
]


# --------------------------------------------------------------------------- common


def cache_dir() -> Path:
    """Directory for cached workload artefacts: ``$NBA_WORKLOAD_CACHE`` or a temp dir."""
    d = Path(os.environ.get("NBA_WORKLOAD_CACHE") or Path(tempfile.gettempdir()) / "nba-workloads")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _cached_text(kind: str, params: dict, build) -> Path:
    """Path of the artefact for ``params``, building it with ``build() -> str`` on a miss.

    The file is written to a temp name and renamed, so concurrent runs never see
    half a file.
    """
    key = hashlib.sha256(json.dumps({"kind": kind, **params}, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir() / f"{kind}-{key}.txt"
    if not path.exists():
        text = build()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    return path


def rows(
    n: int,
    n_features: int,
    seed: int = 0,
    *,
    nan_fraction: float = 0.0,
) -> np.ndarray:
    """``n`` C-contiguous float64 rows of standard normal features.

    ``nan_fraction`` of the cells (chosen at random) are NaN, to exercise missing
    value handling. Same distribution as the LightGBM training data below, so
    traversals follow realistic paths.
    """
    rng = np.random.default_rng([seed, n, n_features, 7])
    X = rng.standard_normal((n, n_features))
    if nan_fraction > 0.0:
        X[rng.random((n, n_features)) < nan_fraction] = np.nan
    return np.ascontiguousarray(X)


# --------------------------------------------------------------------------- LightGBM


def lightgbm_training_data(
    n_rows: int,
    n_features: int,
    seed: int = 0,
    *,
    objective: str = "regression",
    num_class: int = 1,
    signal_features: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (X, y) with a nonlinear signal spread over all features (or the first ``signal_features``)."""
    X = rows(n_rows, n_features, seed)
    rng = np.random.default_rng([seed, n_rows, n_features, 11])
    w = rng.standard_normal(n_features)
    if signal_features is not None:
        w[signal_features:] = 0.0
    z = X @ w / np.sqrt(n_features) + np.sin(2.0 * X[:, 0]) + 0.5 * X[:, 1 % n_features] * X[:, 2 % n_features]
    z = z + 0.3 * rng.standard_normal(n_rows)
    if objective == "binary":
        y = (z > 0).astype(np.float64)
    elif objective in ("multiclass", "multiclassova"):
        cuts = np.quantile(z, np.linspace(0, 1, num_class + 1)[1:-1])
        y = np.searchsorted(cuts, z).astype(np.float64)
    elif objective in ("poisson", "tweedie", "gamma"):
        y = rng.poisson(np.exp(np.clip(z, -3, 3))).astype(np.float64) + (objective == "gamma")
    else:
        y = z
    return X, y


def lightgbm_model_file(
    n_trees: int,
    num_leaves: int = 31,
    n_features: int = 50,
    *,
    seed: int = 0,
    objective: str = "regression",
    num_class: int = 1,
    n_rows: int = 10_000,
    signal_features: int | None = None,
) -> Path:
    """Path of a cached LightGBM text model with ``n_trees`` boosting rounds.

    Trained single-threaded and deterministic; the cache key includes the
    LightGBM version, so an upgrade retrains. ``signal_features``: the target
    depends on the first that many features only (the trees still split on others).
    """
    import lightgbm as lgb

    params = {
        "n_trees": n_trees,
        "num_leaves": num_leaves,
        "n_features": n_features,
        "seed": seed,
        "objective": objective,
        "num_class": num_class,
        "n_rows": n_rows,
        "lightgbm": lgb.__version__,
    }
    if signal_features is not None:  # only then in the key: the other models keep their cached files
        params["signal_features"] = signal_features

    def build() -> str:
        X, y = lightgbm_training_data(
            n_rows, n_features, seed, objective=objective, num_class=num_class, signal_features=signal_features
        )
        train_params = {
            "objective": objective,
            "num_leaves": num_leaves,
            "learning_rate": 0.05,
            "min_data_in_leaf": 5,
            "num_threads": 1,
            "deterministic": True,
            "force_row_wise": True,
            "seed": seed,
            "verbose": -1,
        }
        if num_class > 1:
            train_params["num_class"] = num_class
        booster = lgb.train(train_params, lgb.Dataset(X, y), num_boost_round=n_trees)
        return booster.model_to_string()

    return _cached_text("lightgbm", params, build)


def lightgbm_model(
    n_trees: int,
    num_leaves: int = 31,
    n_features: int = 50,
    *,
    seed: int = 0,
    objective: str = "regression",
    num_class: int = 1,
    n_rows: int = 10_000,
) -> str:
    """Text of a cached LightGBM model (see ``lightgbm_model_file``)."""
    return lightgbm_model_file(
        n_trees,
        num_leaves,
        n_features,
        seed=seed,
        objective=objective,
        num_class=num_class,
        n_rows=n_rows,
    ).read_text()


# --------------------------------------------------------------------------- decision log


def decisions(n: int, seed: int = 0, *, n_actions: int = 10, n_features: int = 20) -> list[dict]:
    """``n`` keyword-argument sets for ``DecisionLog.append_decision``, as a Decider logs them.

    Each has ``n_actions`` arms with a pmf, a chosen arm, the arms' scores, and
    ``n_features`` numeric user features plus two string context features:
    about 1 KB of JSON per decision at the defaults.
    """
    rng = np.random.default_rng([seed, n, n_actions, n_features, 13])
    actions = [f"offer_{k}" for k in range(n_actions)]
    devices = ["ios", "android", "web"]
    out = []
    for i in range(n):
        scores = rng.standard_normal(n_actions)
        pmf = np.exp(scores - scores.max())
        pmf /= pmf.sum()
        chosen = int(rng.choice(n_actions, p=pmf))
        out.append(
            {
                "event_id": f"{seed:04x}-{i:012x}",
                "actions": actions,
                "pmf": pmf.tolist(),
                "chosen": [chosen],
                "scores": scores.tolist(),
                "features": {
                    "User": {f"u{j}": round(float(v), 4) for j, v in enumerate(rng.standard_normal(n_features))},
                    "Context": {"device": devices[i % 3], "hour": float(i % 24)},
                },
                "model_version": "offers-cb-v1",
                "variants": {"ranker": "treatment" if i % 2 else "control"},
                "policy": "softmax",
                "catalog_id": "offers",
            }
        )
    return out


# --------------------------------------------------------------------------- Vowpal Wabbit


def vw_examples(
    n: int,
    seed: int = 0,
    *,
    n_shared: int = 20,
    n_actions: int = 10,
    n_action_features: int = 5,
    strings: bool = True,
) -> list[tuple[dict, list[dict], int, float]]:
    """``n`` contextual-bandit decisions: (shared, actions, logged action, cost).

    Features are ``{namespace: {name: value}}``: ``User`` holds ``n_shared`` numeric
    features (a random subset of 3 * n_shared names, so examples differ), ``Geo``
    string and boolean features when ``strings``, and each action has
    ``n_action_features`` features in ``Action`` (an id string, a price, a category
    string, numeric extras). The cost depends on user x action, so ``-q UA`` matters.
    """
    rng = np.random.default_rng([seed, n, n_shared, n_actions, n_action_features, 17])
    cities = ["paris", "new york", "sao paulo", "a:b|c", "tokyo"]
    out = []
    for _ in range(n):
        names = rng.choice(3 * n_shared, size=n_shared, replace=False)
        user = {f"u{j}": round(float(rng.uniform(-2, 2)), 4) for j in names}
        shared: dict[str, dict] = {"User": user}
        if strings:
            shared["Geo"] = {"city": cities[int(rng.integers(len(cities)))], "mobile": bool(rng.integers(2))}
        actions = []
        for _k in range(n_actions):
            feats: dict[str, object] = {"id": f"offer_{int(rng.integers(3 * n_actions))}"}
            if n_action_features > 1:
                feats["price"] = round(float(rng.uniform(1, 100)), 2)
            if n_action_features > 2:
                feats["cat"] = ["card", "loan", "insurance"][int(rng.integers(3))]
            for j in range(3, n_action_features):
                feats[f"x{j}"] = round(float(rng.uniform(0, 1)), 3)
            actions.append({"Action": feats})
        chosen = int(rng.integers(n_actions))
        signal = sum(user.values()) * (1 if actions[chosen]["Action"].get("cat") == "card" else -1)
        cost = float(np.tanh(0.3 * signal + 0.2 * rng.standard_normal()))
        out.append((shared, actions, chosen, round(cost, 4)))
    return out


def _vw_text_features(feats: dict) -> str:
    parts = []
    for ns, fs in feats.items():
        items = []
        for name, value in fs.items():
            if isinstance(value, bool):
                if value:
                    items.append(name)
            elif isinstance(value, str):
                esc = value.translate({ord(" "): "_", ord("\t"): "_", ord("|"): "_", ord(":"): "_"})
                items.append(name + esc)
            elif value != 0:
                items.append(f"{name}:{value!r}")
        parts.append(f"|{ns} " + " ".join(items))
    return " ".join(parts)


def vw_text(shared: dict, actions: list[dict], label: tuple[int, float, float] | None = None) -> list[str]:
    """VW text lines (a multi_ex) for one decision; ``label`` = (action index, cost, probability).

    String features become ``name + value`` with VW's JSON escaping, so text and
    JSON examples of the same features hash the same.
    """
    lines = ["shared " + _vw_text_features(shared)]
    for k, a in enumerate(actions):
        prefix = f"0:{label[1]!r}:{label[2]!r} " if label is not None and label[0] == k else ""
        lines.append(prefix + _vw_text_features(a))
    return lines


def vw_json(shared: dict, actions: list[dict], label: tuple[int, float, float] | None = None) -> str:
    """One VW JSON (``--json``) line for a decision; ``label`` = (action index, cost, probability)."""
    doc = dict(shared)
    multi = []
    for k, a in enumerate(actions):
        a = dict(a)
        if label is not None and label[0] == k:
            a["_label"] = f"0:{label[1]!r}:{label[2]!r}"
        multi.append(a)
    doc["_multi"] = multi
    return json.dumps(doc)


def vw_model_file(args: str, n_train: int = 500, seed: int = 0, *, fmt: str = "text", **example_kw) -> Path:
    """Path of a cached VW binary model trained with ``args`` on ``vw_examples(n_train, seed, **example_kw)``.

    ``fmt`` is "text" or "json" (the latter adds ``--json``). The cache key holds
    every parameter and the vowpalwabbit version.
    """
    import vowpalwabbit

    params = {
        "args": args,
        "n_train": n_train,
        "seed": seed,
        "fmt": fmt,
        **example_kw,
        "vw": getattr(vowpalwabbit, "__version__", "?"),
    }
    key = hashlib.sha256(json.dumps({"kind": "vw", **params}, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir() / f"vw-{key}.model"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        vw = vowpalwabbit.Workspace(args + (" --json" if fmt == "json" else "") + " --quiet")
        try:
            for shared, actions, chosen, cost in vw_examples(n_train, seed, **example_kw):
                label = (chosen, cost, 1.0 / len(actions))
                ex = vw_json(shared, actions, label) if fmt == "json" else vw_text(shared, actions, label)
                parsed = vw.parse(ex)
                vw.learn(parsed)
                vw.finish_example(parsed)
            vw.save(tmp)
        finally:
            vw.finish()
        os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- experiment allocation


def growthbook_experiment(e):
    """The ``growthbook.Experiment`` equivalent to an ``nba.Experiment`` (same hash version): the reference's twin."""
    import growthbook as gb

    return gb.Experiment(
        key=e.name,
        variations=list(range(len(e.variants))),
        weights=list(e.weights),
        coverage=e.coverage,
        namespace=tuple(e.namespace) if e.namespace else None,
        seed=e.salt,
        hashVersion=e.hash_version,
    )


def unit_ids(n: int, seed: int = 0, *, non_ascii_fraction: float = 1 / 3) -> list[str]:
    """``n`` unit ids shaped like real ones: uuid-like hex, numeric, emails, anonymous ids.

    ``non_ascii_fraction`` of them carry non-ASCII characters (Latin-1, CJK and
    astral-plane emoji), which GrowthBook hashes as UTF-16 code units.
    """
    rng = np.random.default_rng([seed, n, 17])
    nums = rng.integers(0, 2**62, n).tolist()
    kinds = rng.integers(0, 4, n).tolist()
    wide = (rng.random(n) < non_ascii_fraction).tolist()
    extra = list("éüßñøçåÆ日本語用户テスト") + ["😀", "𝔘", "🚀"]
    picks = rng.integers(0, len(extra), (n, 6)).tolist()
    out = []
    for x, k, w, p in zip(nums, kinds, wide, picks):
        if k == 0:
            u = f"{x:016x}-{x % 65521:04x}-{(x >> 7) % 9973:04x}"
        elif k == 1:
            u = str(x % 10**9)
        elif k == 2:
            u = f"user{x % 100000}@example.com"
        else:
            u = f"anon-{x:x}"
        if w:
            u += "".join(extra[j] for j in p[: 1 + x % 6])
        out.append(u)
    return out


# --------------------------------------------------------------------------- features and catalogue

SEGMENTS = ("gold", "silver", "bronze", "basic")
DEVICES = ("ios", "android", "web")


def profile_features(n_numeric: int = 14) -> list:
    """nba feature declarations: ``n_numeric`` + 1 numbers, a 4-way segment, two flags (profile),
    an hour and a 3-way device (context): 20 features, 25 columns at the default."""
    import nba

    return [
        *[nba.Numeric(f"n{i}", bounds=(0.0, 100.0) if i < 2 else None) for i in range(n_numeric)],
        nba.Numeric("tenure", default=0.0),
        nba.Categorical("segment", list(SEGMENTS)),
        nba.Boolean("member"),
        nba.Boolean("optin", default=True),
        nba.Numeric("hour", source="context"),
        nba.Categorical("device", list(DEVICES), source="context"),
    ]


def profiles(
    n: int, seed: int = 0, *, n_numeric: int = 14, missing: float = 0.0, n_extra: int = 30
) -> list[tuple[dict, dict]]:
    """``n`` (profile, context) dict pairs for ``profile_features(n_numeric)``.

    Each profile also carries ``n_extra`` attributes no feature declares (a real
    profile holds more than a model reads) and a ``country`` for eligibility rules.
    ``missing`` is the chance that each declared profile feature is left out.
    """
    rng = np.random.default_rng([seed, n, n_numeric, int(missing * 1000), n_extra, 17])
    out = []
    for i in range(n):
        p: dict = {f"n{j}": round(float(v), 3) for j, v in enumerate(rng.random(n_numeric) * 120.0)}
        p["tenure"] = float(rng.integers(0, 40))
        p["segment"] = SEGMENTS[int(rng.integers(0, len(SEGMENTS)))]
        p["member"] = bool(rng.integers(0, 2))
        p["optin"] = bool(rng.integers(0, 2))
        if missing:
            for k in [k for k in p if rng.random() < missing]:
                del p[k]
        p["age"] = int(rng.integers(14, 80))
        p["country"] = ("FR", "DE", "US")[i % 3]
        p.update({f"x{j}": f"v{j}-{i}" for j in range(n_extra)})
        c = {"hour": float(i % 24), "device": DEVICES[i % 3]}
        out.append((p, c))
    return out


def catalogue_arms(n_arms: int = 10) -> list:
    """``n_arms`` nba arms with two eligibility rules each (mixed operators, profile and
    context fields), two arm features, and web/email payloads on some of them."""
    import nba

    rules = [
        [nba.Rule("age", ">=", 18), nba.Rule("segment", "in", ("gold", "silver"))],
        ["tenure >= 3", "device != 'web'"],
        [nba.Rule("member", "==", True), nba.Rule("hour", "<", 20)],
        [nba.Rule("country", "in", ("FR", "DE")), nba.Rule("n0", ">", 10.0)],
        [nba.Rule("segment", "not_in", ("basic",)), nba.Rule("optin", "==", True)],
    ]
    arms = []
    for k in range(n_arms):
        channels = {"web": {"title": f"offer {k}"}, "email": f"tmpl-{k}"} if k % 2 else {}
        arms.append(
            nba.Arm(
                f"offer_{k}",
                features={"fee": float(10 * k), "kind": ("card", "loan", "insurance")[k % 3]},
                value=1.0 + k % 4,
                weight=1.0,
                channels=channels,
                eligibility=rules[k % len(rules)],
            )
        )
    return arms


# --------------------------------------------------------------------------- decide (end to end)


def decide_workload(n_arms: int = 10, n_trees: int = 100, *, seed: int = 0, n_profiles: int = 256) -> dict:
    """A Decider's inputs: schema, arms, a cached binary LightGBM model over the catalogue's rows, profiles.

    Returns {"schema", "arms", "model_text", "profiles": [(profile, context)]}. The
    schema has 8 numeric profile features, a categorical ``segment`` and a context
    ``hour``; arms carry a numeric ``fee`` and a categorical ``kind``.
    """
    import nba

    segments = ["gold", "silver", "bronze"]
    schema = nba.FeatureSchema(
        [nba.Numeric(f"p{j}") for j in range(8)]
        + [nba.Categorical("segment", segments), nba.Numeric("hour", source="context")]
    )
    arms = [
        nba.Arm(
            f"offer{i}",
            features={"fee": float(i * 5), "kind": ["card", "loan", "savings"][i % 3]},
            value=1.0 + (i % 4) / 4,
            channels={"web": {"text": f"offer {i}"}},
        )
        for i in range(n_arms)
    ]
    names = list(nba.Catalog(arms, schema).feature_names)
    params = {"n_arms": n_arms, "n_trees": n_trees, "seed": seed, "names": names}

    def build() -> str:
        import lightgbm as lgb

        rng = np.random.default_rng(seed)
        X = rng.normal(size=(5000, len(names)))
        y = (X[:, 0] + 0.5 * X[:, -1] + rng.normal(size=5000) > 0).astype(float)
        p = {
            "objective": "binary",
            "num_leaves": 31,
            "verbose": -1,
            "seed": seed,
            "deterministic": True,
            "min_data_in_leaf": 5,
        }
        return lgb.train(p, lgb.Dataset(X, y, feature_name=names), n_trees).model_to_string()

    text = _cached_text("decide-lightgbm", params, build).read_text()
    rng = np.random.default_rng(seed + 1)
    profiles = [
        (
            {
                "id": f"u{k}",
                **{f"p{j}": float(v) for j, v in enumerate(rng.normal(size=8))},
                "segment": segments[k % 3],
            },
            {"hour": float(k % 24)},
        )
        for k in range(n_profiles)
    ]
    return {"schema": schema, "arms": arms, "model_text": text, "profiles": profiles}


# --------------------------------------------------------------------------- online bandits


def linear_bandit_rounds(
    n: int, n_arms: int = 10, n_features: int = 20, seed: int = 0, *, noise: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A planted linear reward model and ``n`` uniformly logged rounds of it.

    Returns (theta, X, arms, rewards): theta (n_arms, n_features) standard normal;
    X (n, n_features) standard normal with a last column of ones (the intercept);
    arms (n,) uniform; rewards (n,) = X[i] . theta[arms[i]] + N(0, noise^2).
    """
    rng = np.random.default_rng([seed, n, n_arms, n_features, 11])
    theta = rng.normal(size=(n_arms, n_features))
    X = np.column_stack([rng.normal(size=(n, n_features - 1)), np.ones(n)])
    arms = rng.integers(n_arms, size=n)
    rewards = np.einsum("ij,ij->i", X, theta[arms]) + noise * rng.normal(size=n)
    return theta, np.ascontiguousarray(X), arms.astype(np.int64), rewards


# --------------------------------------------------------------------------- profile events

EVENT_CHANNELS = ("web", "app", "email")
CATEGORIES = ("shoes", "shirts", "bags", "hats", "coats", "socks")
STREAM_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def event_stream(n: int, seed: int = 0, *, start: float = STREAM_START) -> list:
    """``n`` ``nba.profiles.Event``s of one customer, in arrival order, shaped like a real stream.

    Events come in sessions (gaps ~ exponential, mean 8 h; 1-12 events a minute or
    so apart; one channel a session, of "web", "app", "email"): ~70% "view"
    (``category``, ``product``, ``price``; 2% of views lack a category), 20% "click"
    (``campaign``, ``category``) and 10% "purchase" (``price``, ``category``,
    ``quantity``). Timestamps are slightly out of order: each is jittered by up to
    +-30 s, and 2% arrive up to 6 h late (a phone syncing). ``seq`` is the index.
    """
    from nba.profiles import Event

    rng = np.random.default_rng([seed, n, 23])
    kinds = rng.choice(3, size=n, p=[0.7, 0.2, 0.1]).tolist()
    u = rng.random((n, 4)).tolist()
    prices = np.round(rng.lognormal(3.5, 0.8, n), 2).tolist()
    jitter = rng.uniform(-30.0, 30.0, n).tolist()
    late = (rng.random(n) < 0.02).tolist()
    delay = rng.uniform(0.0, 6 * 3600.0, n).tolist()
    out = []
    t = start
    left = 0
    channel = EVENT_CHANNELS[0]
    for i in range(n):
        if left == 0:  # a new session
            t += float(rng.exponential(8 * 3600.0))
            left = int(rng.integers(1, 13))
            channel = EVENT_CHANNELS[int(rng.choice(3, p=[0.5, 0.35, 0.15]))]
        left -= 1
        t += 10.0 + 100.0 * u[i][0]
        cat = CATEGORIES[int(u[i][1] * len(CATEGORIES))]
        kind = kinds[i]
        if kind == 0:
            props: dict = {"product": f"p{int(u[i][2] * 500)}", "price": prices[i]}
            if u[i][3] >= 0.02:
                props["category"] = cat
            etype = "view"
        elif kind == 1:
            props = {"campaign": f"c{int(u[i][2] * 8)}", "category": cat}
            etype = "click"
        else:
            props = {"price": prices[i], "category": cat, "quantity": 1 + int(u[i][2] * 3)}
            etype = "purchase"
        ts = t + jitter[i] - (delay[i] if late[i] else 0.0)
        out.append(Event(etype, channel, round(ts, 3), props, i))
    return out


# --------------------------------------------------------------------------- profiles


def profile_definitions() -> list:
    """Eight feature definitions of every kind but Decayed: counts and sums all-time and over an hour
    (12 and 24 tiles), a last value, a recency, the channels, the first seen."""
    from nba.profiles import Count, DistinctChannels, FirstSeen, LastValue, Recency, Sum

    return [
        Count("views", "view"),
        Count("views_1h", "view", window=3600, bucket=300),
        Sum("spend", "buy", "amount"),
        Sum("spend_1h", "buy", "amount", window=3600),
        LastValue("last_sku", "buy", "sku"),
        Recency("since_buy", "buy"),
        DistinctChannels("channels"),
        FirstSeen("first_seen"),
    ]


def profile_events(n: int, n_ids: int, seed: int = 0, *, start: float = 1_700_000_000.0) -> list[tuple[str, object]]:
    """``n`` ``(unit_id, Event)`` pairs over ``n_ids`` ids, 20 a second from ``start``: 30% buys, 70% views."""
    from nba.profiles import Event

    rng = np.random.default_rng([seed, n, n_ids, 23])
    who = rng.integers(n_ids, size=n)
    kind = rng.random(n) < 0.3
    amount = rng.integers(1, 51, size=n)
    sku = rng.integers(100, size=n)
    channel = rng.integers(3, size=n)
    channels = ("web", "app", "email")
    out: list[tuple[str, object]] = []
    for k in range(n):
        ts = start + k * 0.05
        if kind[k]:
            ev = Event("buy", "web", ts, {"amount": int(amount[k]), "sku": f"sku{sku[k]}"})
        else:
            ev = Event("view", channels[channel[k]], ts)
        out.append((f"user-{who[k]:06d}", ev))
    return out


def trigger_rules() -> list:
    """The triggers the trigger benchmark and its check use: a failed payment, an abandoned cart, a lapse."""
    from nba.profiles import Absence, OnEvent

    return [
        OnEvent("failed_payment", "payment", where={"status": "failed"}, delay=60.0, cooldown=3600.0),
        Absence("abandoned_cart", after="cart_add", missing="checkout", within=1800.0, cancel="cart_empty"),
        Absence("lapsed", after="login", missing="login", within=14 * 86400.0, restart=True),
    ]


def trigger_events(n: int, n_ids: int, seed: int = 0, *, start: float = 1_700_000_000.0) -> list[tuple[str, object]]:
    """``n`` ``(unit_id, Event)`` pairs over ``n_ids`` ids, 20 a second: logins, carts, checkouts, payments, views.

    Mix: 30% login, 20% cart_add, 10% checkout, 5% cart_empty, 15% payment (a third failed), 20% view
    (matches no trigger)."""
    from nba.profiles import Event

    rng = np.random.default_rng([seed, n, n_ids, 29])
    who = rng.integers(n_ids, size=n)
    kind = rng.choice(6, size=n, p=[0.3, 0.2, 0.1, 0.05, 0.15, 0.2])
    failed = rng.random(n) < 1 / 3
    types = ("login", "cart_add", "checkout", "cart_empty", "payment", "view")
    out: list[tuple[str, object]] = []
    for k in range(n):
        t = types[kind[k]]
        props = {"status": "failed" if failed[k] else "ok"} if t == "payment" else {}
        out.append((f"user-{who[k]:06d}", Event(t, "web", start + k * 0.05, props)))
    return out


# --------------------------------------------------------------------------- contact policy

CONTACT_ARMS = [f"offer_{i}" for i in range(20)]
CONTACT_CHANNELS = ("email", "push", "sms", "web")
CONTACT_NOW = 1_781_092_800.0  # 2026-06-10 12:00 UTC


def contact_policy():
    """A realistic marketing policy over 20 arms in 4 groups of 5, one of them transactional."""
    from nba.profiles import Calendar, Cap, ContactPolicy, Gap, QuietHours, Rolling, Suppress

    groups = {f"g{g}": CONTACT_ARMS[5 * g : 5 * g + 5] for g in range(4)}
    return ContactPolicy(
        [
            Cap(3, Calendar("week", "Europe/Paris")),
            Cap(1, Rolling(86400), per="arm"),
            Cap(2, Calendar("day", "Europe/Paris"), per="group", group="g1"),
            Cap(1, Calendar("day", "Europe/Paris"), channel="sms"),
            Gap(7200, "email", "push"),
            Suppress(("accepted", "rejected"), 7 * 86400),
            QuietHours("21:00", "08:00", "Europe/Paris", channels=("sms", "push")),
        ],
        groups=groups,
        transactional=["offer_19"],
    )


def contact_histories(
    n: int, seed: int = 0, *, contacts: int = 30, outcomes: int = 10, now: float = CONTACT_NOW
) -> list:
    """``n`` Histories of ``contacts`` contacts and ``outcomes`` outcomes over the 30 days before ``now``."""
    from nba.profiles import Contact, History, Outcome

    rng = np.random.default_rng([seed, n, contacts, outcomes, 29])
    out = []
    for _ in range(n):
        cs = sorted(
            Contact(
                float(now - rng.uniform(0, 30 * 86400)),
                CONTACT_ARMS[rng.integers(20)],
                CONTACT_CHANNELS[rng.integers(4)],
            )
            for _ in range(contacts)
        )
        os_ = sorted(
            Outcome(
                float(now - rng.uniform(0, 30 * 86400)),
                CONTACT_ARMS[rng.integers(20)],
                ("accepted", "rejected", "clicked")[rng.integers(3)],
            )
            for _ in range(outcomes)
        )
        out.append(History(tuple(cs), tuple(os_)))
    return out


# --------------------------------------------------------------------------- off-policy evaluation


def ope_log(n: int, n_actions: int = 10, seed: int = 0, *, dim: int = 5, eps: float = 0.2):
    """A synthetic log (``nba.evaluation.SyntheticBandit``, softmax logging), a candidate and a reward model.

    Returns (data, pi, q): ``pi`` (n, n_actions) is epsilon-greedy on a fixed linear
    score, ``q`` (n, n_actions) the true expected reward plus N(0, 0.05^2): a good model.
    """
    from nba.evaluation import SyntheticBandit

    data = SyntheticBandit(n_actions=n_actions, dim=dim, beta=1.0, seed=seed).sample(n, seed=seed)
    rng = np.random.default_rng([seed, n, n_actions, 12])
    scores = data.context @ rng.normal(size=(dim, n_actions))
    pi = np.eye(n_actions)[np.argmax(scores, axis=1)] * (1 - eps) + eps / n_actions
    q = data.expected_reward + rng.normal(scale=0.05, size=(n, n_actions))
    return data, pi, q


def experiment_log(n: int, seed: int = 0, *, n_units: int | None = None, lift: float = 0.1):
    """``n`` joined decisions (``nba.log.JoinedExample``) of a 3-variant experiment ``"exp"`` over ``n_units`` units.

    Each unit's variant is fixed (50/30/20 split by unit); rewards are Bernoulli,
    0.2 for the control and ``0.2 + lift`` for "bold"; arms ``a0..a4`` uniformly.
    """
    from nba.log import DecisionRecord, JoinedExample

    rng = np.random.default_rng([seed, n, 31])
    n_units = n_units or max(n // 5, 1)
    variants = np.array(["control", "new", "bold"])
    unit_variant = variants[rng.choice(3, size=n_units, p=[0.5, 0.3, 0.2])]
    units = rng.integers(0, n_units, size=n)
    arms = rng.integers(0, 5, size=n)
    p = np.where(unit_variant[units] == "bold", 0.2 + lift, 0.2)
    rewards = (rng.random(n) < p).astype(float)
    actions = [f"a{i}" for i in range(5)]
    pmf = [0.2] * 5
    out = []
    for i in range(n):
        d = DecisionRecord(
            event_id=f"e{i}", ts=1_700_000_000.0 + i, actions=actions, pmf=pmf, chosen=[int(arms[i])],
            probability=0.2, variants={"exp": str(unit_variant[units[i]])}, unit=f"u{int(units[i])}",
        )
        out.append(JoinedExample(d, float(rewards[i]), bool(rewards[i]), d.ts))
    return out


def profile_frame(n: int, seed: int = 0, *, n_numeric: int = 14):
    """``profiles(n, seed)`` as one pandas DataFrame (profile and context columns side by side, no undeclared
    attributes): the segment and device as ``category`` columns, the flags as bool, as a data scientist holds them."""
    import pandas as pd

    pairs = profiles(n, seed, n_numeric=n_numeric, n_extra=0)
    df = pd.DataFrame([{**p, **c} for p, c in pairs]).drop(columns=["age", "country"])
    df["segment"] = pd.Categorical(df["segment"], categories=list(SEGMENTS))
    df["device"] = pd.Categorical(df["device"], categories=list(DEVICES))
    return df


# --------------------------------------------------------------------------- GrowthBook targeting


def targeting_conditions() -> list[dict]:
    """GrowthBook conditions shaped like real targeting rules: lists, versions, ranges, regexes, arrays."""
    return [
        {"country": {"$in": ["NL", "BE", "DE", "FR", "LU"]}},
        {"app.version": {"$vgte": "2.4.0"}, "platform": {"$in": ["ios", "android"]}},
        {"age": {"$gte": 18, "$lt": 65}, "plan": {"$ne": "free"}},
        {"email": {"$regex": "@(example|corp)\\.com$"}},
        {"$or": [{"beta": True}, {"tags": {"$elemMatch": {"$eq": "early-access"}}}]},
        {"$and": [{"company.size": {"$gt": 50}}, {"$not": {"country": "US"}}], "tags": {"$size": {"$gte": 1}}},
    ]


def targeting_attributes(n: int, seed: int = 0) -> list[dict]:
    """``n`` user attribute sets for ``targeting_conditions``, some attributes missing."""
    rng = np.random.default_rng([seed, n, 29])
    countries = ["NL", "BE", "DE", "US", "GB", "FR"]
    out = []
    for i in range(n):
        a: dict = {"id": f"user-{seed}-{i}", "country": countries[int(rng.integers(0, len(countries)))]}
        if rng.random() < 0.9:
            a["app"] = {"version": f"{rng.integers(1, 4)}.{rng.integers(0, 12)}.{rng.integers(0, 5)}"}
        a["platform"] = ["ios", "android", "web"][int(rng.integers(0, 3))]
        if rng.random() < 0.8:
            a["age"] = int(rng.integers(12, 90))
        a["plan"] = ["free", "pro", "team"][int(rng.integers(0, 3))]
        a["email"] = f"u{i}@{['example.com', 'corp.com', 'mail.org'][int(rng.integers(0, 3))]}"
        a["beta"] = bool(rng.random() < 0.1)
        a["tags"] = [t for t in ("early-access", "vip", "churn-risk") if rng.random() < 0.3]
        if rng.random() < 0.7:
            a["company"] = {"size": int(rng.integers(1, 500))}
            a["company_id"] = f"co-{int(rng.integers(0, 1000))}"
        out.append(a)
    return out


def growthbook_payload() -> dict:
    """A GrowthBook SDK payload shaped like a real one: six features, force and experiment rules.

    Hash v1 and v2, weights, coverage, seeds, a namespace layer, a second hash
    attribute and targeting conditions from ``targeting_conditions``.
    """
    conds = targeting_conditions()
    exp = {"variations": ["control", "treatment"], "weights": [0.5, 0.5]}
    return {"features": {
        "new-checkout": {"defaultValue": False, "rules": [
            {"force": True, "condition": {"beta": True}},
            {**exp, "key": "checkout-v2", "variations": [False, True], "coverage": 0.5, "hashVersion": 2,
             "condition": conds[0]},
        ]},
        "ranker": {"defaultValue": "v1", "rules": [
            {"key": "ranker-test", "variations": ["v1", "v2", "v3"], "weights": [0.34, 0.33, 0.33], "hashVersion": 2,
             "seed": "ranker-2026", "namespace": ["ranking", 0.0, 0.5]},
            {"key": "ranker-test-b", "variations": ["v1", "v4"], "hashVersion": 2, "namespace": ["ranking", 0.5, 1.0]},
        ]},
        "banner": {"defaultValue": "none", "rules": [
            {**exp, "key": "banner-legacy", "variations": ["a", "b"]},  # no hashVersion: v1, as GrowthBook
        ]},
        "pricing": {"defaultValue": "standard", "rules": [
            {**exp, "key": "pricing", "variations": ["standard", "discount"], "hashAttribute": "company_id",
             "hashVersion": 2, "condition": conds[2]},
        ]},
        "onboarding": {"defaultValue": "classic", "rules": [
            {"force": "guided", "coverage": 0.2, "hashVersion": 2, "condition": conds[1]},
            {**exp, "key": "onboarding", "variations": ["classic", "guided"], "hashVersion": 2, "coverage": 0.8},
        ]},
        "search": {"defaultValue": "bm25", "rules": [
            {**exp, "key": "search", "variations": ["bm25", "dense"], "hashVersion": 2, "condition": conds[4]},
        ]},
    }}
