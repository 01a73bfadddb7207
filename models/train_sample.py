"""Train the sample LightGBM model shipped in ``models/``: ``python models/train_sample.py``.

``offer_ctr.txt`` is a binary click-through model over seeded synthetic traffic:
numeric profile features, the hour of day, and two categorical features (which
offer was shown, on which channel). It is small (tens of KB) and deterministic,
so ``nba inspect models/offer_ctr.txt`` and the tests see the same model everywhere.
Needs ``lightgbm`` (``pip install nba[train]``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FEATURES = ["age", "tenure_months", "balance", "visits_30d", "hour", "offer", "channel"]
CATEGORICAL = ["offer", "channel"]
N_OFFERS = 12
N_CHANNELS = 3


def synthetic_traffic(n: int, seed: int = 2024) -> tuple[np.ndarray, np.ndarray]:
    """(X, clicked) for ``n`` seeded impressions; columns as in ``FEATURES``."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype(float)
    tenure = rng.exponential(30.0, n).round()
    balance = rng.lognormal(7.0, 1.2, n).round(2)
    visits = rng.poisson(3.0, n).astype(float)
    hour = rng.integers(0, 24, n).astype(float)
    offer = rng.integers(0, N_OFFERS, n).astype(float)
    channel = rng.integers(0, N_CHANNELS, n).astype(float)
    # Some profile fields are unknown for some users: LightGBM learns where missing goes.
    balance[rng.random(n) < 0.08] = np.nan
    tenure[rng.random(n) < 0.05] = np.nan
    offer_appeal = rng.normal(0.0, 0.6, N_OFFERS)
    young_offers = np.isin(offer, [1, 4, 7])
    logit = (
        -2.2
        + offer_appeal[offer.astype(int)]
        + 0.35 * np.log1p(visits)
        + 0.4 * young_offers * (age < 35)
        - 0.3 * (channel == 2)
        + 0.25 * np.sin(hour / 24.0 * 2 * np.pi)
        + 0.2 * np.nan_to_num(np.log1p(balance) - 7.0)
    )
    clicked = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(float)
    return np.column_stack([age, tenure, balance, visits, hour, offer, channel]), clicked


def train(n_rows: int = 20_000, rounds: int = 40, seed: int = 2024):
    """The sample Booster, trained single-threaded and deterministically."""
    import lightgbm as lgb

    X, y = synthetic_traffic(n_rows, seed)
    params = {
        "objective": "binary",
        "num_leaves": 15,
        "learning_rate": 0.1,
        "min_data_in_leaf": 40,
        "max_cat_to_onehot": 4,
        "cat_smooth": 5,
        "num_threads": 1,
        "deterministic": True,
        "force_row_wise": True,
        "seed": seed,
        "verbose": -1,
    }
    data = lgb.Dataset(X, y, feature_name=FEATURES, categorical_feature=CATEGORICAL)
    return lgb.train(params, data, num_boost_round=rounds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE / "offer_ctr.txt", help="where to write the model")
    args = p.parse_args()
    booster = train()
    booster.save_model(str(args.out))
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB, {booster.num_trees()} trees)")


if __name__ == "__main__":
    main()
