"""Train the sample LightGBM models shipped in ``examples/models/``: ``python examples/models/train_sample.py``.

``offer_ctr.txt`` is a binary click-through model over seeded synthetic traffic, with
the feature names of the README's quick-start catalogue (``nba.Catalog(arms,
schema).feature_names``: the one-hot ``segment=...`` columns, ``age``, ``mobile``
and the arm's ``fee``), so ``nba.Decider(arms, nba.load_model(...), schema=schema)``
accepts it. Some ages are unknown (NaN), so the trees carry missing-value rules.

``offer_ctr_by_offer.txt`` is the same kind of model keyed by a LightGBM categorical
feature (``offer``: which of 12 offers was shown) instead of the arm's columns: a
sample of categorical splits for ``nba inspect`` and the tests.

Both are small and deterministic. Needs ``lightgbm`` (``pip install nba[train]``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEGMENTS = ("student", "family", "senior")
CTR_FEATURES = [*(f"segment={s}" for s in SEGMENTS), "age", "mobile", "fee"]
FEES = (0.0, 25.0, 95.0, 150.0)
BY_OFFER_FEATURES = ["age", "tenure_months", "visits_30d", "hour", "mobile", "offer"]
N_OFFERS = 12

_PARAMS = {
    "objective": "binary",
    "num_leaves": 15,
    "learning_rate": 0.1,
    "min_data_in_leaf": 40,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}


def ctr_traffic(n: int, seed: int = 2024) -> tuple[np.ndarray, np.ndarray]:
    """(X, clicked) for ``n`` impressions; columns as in ``CTR_FEATURES``."""
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, len(SEGMENTS) + 1, n)  # the last value: segment unknown (all zeros)
    onehot = (seg[:, None] == np.arange(len(SEGMENTS))[None, :]).astype(float)
    age = np.where(seg == 0, rng.integers(18, 28, n), np.where(seg == 2, rng.integers(60, 90, n),
                                                                 rng.integers(25, 70, n))).astype(float)
    age[rng.random(n) < 0.07] = np.nan
    mobile = (rng.random(n) < 0.6).astype(float)
    fee = rng.choice(FEES, n)
    # Students click free offers, families mid-priced ones, seniors avoid mobile.
    logit = (
        -2.0
        - 0.012 * fee * (seg == 0)
        + 0.6 * ((fee > 0) & (fee < 100) & (seg == 1))
        - 0.5 * mobile * (seg == 2)
        + 0.3 * mobile
        + 0.01 * np.nan_to_num(40.0 - age) * (fee == 0)
    )
    clicked = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(float)
    return np.column_stack([onehot, age, mobile, fee]), clicked


def by_offer_traffic(n: int, seed: int = 2025) -> tuple[np.ndarray, np.ndarray]:
    """(X, clicked) for ``n`` impressions; columns as in ``BY_OFFER_FEATURES``."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype(float)
    tenure = rng.exponential(30.0, n).round()
    tenure[rng.random(n) < 0.05] = np.nan
    visits = rng.poisson(3.0, n).astype(float)
    hour = rng.integers(0, 24, n).astype(float)
    mobile = (rng.random(n) < 0.6).astype(float)
    offer = rng.integers(0, N_OFFERS, n)
    appeal = rng.normal(0.0, 0.6, N_OFFERS)
    logit = (
        -2.2
        + appeal[offer]
        + 0.35 * np.log1p(visits)
        + 0.4 * np.isin(offer, [1, 4, 7]) * (age < 35)
        + 0.25 * np.sin(hour / 24.0 * 2 * np.pi)
        - 0.2 * mobile
    )
    clicked = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(float)
    return np.column_stack([age, tenure, visits, hour, mobile, offer.astype(float)]), clicked


def train_ctr(n_rows: int = 20_000, rounds: int = 40, seed: int = 2024):
    """The quick-start sample Booster (offer_ctr.txt)."""
    import lightgbm as lgb

    X, y = ctr_traffic(n_rows, seed)
    return lgb.train({**_PARAMS, "seed": seed}, lgb.Dataset(X, y, feature_name=CTR_FEATURES), num_boost_round=rounds)


def train_by_offer(n_rows: int = 20_000, rounds: int = 30, seed: int = 2025):
    """The categorical sample Booster (offer_ctr_by_offer.txt)."""
    import lightgbm as lgb

    X, y = by_offer_traffic(n_rows, seed)
    data = lgb.Dataset(X, y, feature_name=BY_OFFER_FEATURES, categorical_feature=["offer"])
    params = {**_PARAMS, "seed": seed, "max_cat_to_onehot": 4, "cat_smooth": 5}
    return lgb.train(params, data, num_boost_round=rounds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", type=Path, default=HERE, help="where to write the models")
    args = p.parse_args()
    for name, booster in (("offer_ctr.txt", train_ctr()), ("offer_ctr_by_offer.txt", train_by_offer())):
        path = args.out_dir / name
        booster.save_model(str(path))
        print(f"wrote {path} ({path.stat().st_size // 1024} KB, {booster.num_trees()} trees)")


if __name__ == "__main__":
    main()
