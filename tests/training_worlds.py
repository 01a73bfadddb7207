"""Seeded worlds whose logs the training and offline suites train and evaluate on (a helper, not tests).

``write_log`` logs ``n`` decisions of a ``SyntheticBandit``-like world into a
``DecisionLog``: contexts ``x`` in the ``User`` namespace, one arm feature per
arm in ``Action``, a known expected reward ``sigmoid(x . theta_a + b_a)`` per
arm and Bernoulli rewards; the logging policy is uniform or ``softmax(beta q)``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from nba import DecisionLog
from nba.evaluation import SyntheticBandit


def arms(k: int) -> dict[str, dict[str, dict[str, object]]]:
    """Catalogue features of ``k`` arms: each its id as a string feature (a one-hot arm in VW)."""
    return {f"a{j}": {"Action": {"arm": f"a{j}", "fee": float(j)}} for j in range(k)}


def write_log(
    directory: str | os.PathLike[str],
    n: int,
    *,
    seed: int = 0,
    world: SyntheticBandit | None = None,
    beta: float = 0.0,
    bias: dict[int, float] | None = None,
    t0: float = 1_000_000.0,
) -> dict[str, np.ndarray]:
    """Log ``n`` decisions and their rewards; returns the contexts, pmfs, choices and true mean rewards."""
    world = world or SyntheticBandit(n_actions=4, dim=3, seed=seed)
    k = world.n_actions
    rng = np.random.default_rng([seed, 7])
    x = rng.normal(size=(n, world.dim))
    q = world.expected_reward(x)
    for a, b in (bias or {}).items():  # plant a better arm: shift its expected reward up
        q[:, a] = np.clip(q[:, a] + b, 0.0, 1.0)
    z = beta * q
    pmf = np.exp(z - z.max(axis=1, keepdims=True))
    pmf /= pmf.sum(axis=1, keepdims=True)
    u = rng.random(n)
    chosen = np.minimum((pmf.cumsum(axis=1) < u[:, None]).sum(axis=1), k - 1)
    reward = (rng.random(n) < q[np.arange(n), chosen]).astype(float)
    names = list(arms(k))
    with DecisionLog(directory) as log:
        log.register_catalog("offers", arms(k))
        for i in range(n):
            ts = t0 + i
            eid = f"e{seed}-{i}"
            log.append_decision(
                eid, actions=names, pmf=pmf[i].tolist(), chosen=[int(chosen[i])], catalog_id="offers",
                features={"User": {f"x{j}": float(x[i, j]) for j in range(world.dim)}}, now=ts,
            )
            if reward[i]:
                log.append_outcome(eid, 1.0, now=ts + 1.0)
    return {"x": x, "pmf": pmf, "chosen": chosen, "reward": reward, "q": q}


def decider_world(k: int = 4, dim: int = 3, seed: int = 0) -> tuple[Any, SyntheticBandit]:
    """A catalogue (numeric ``x0..`` profile features, arms ``a0..`` with their id as a feature) and its world."""
    import nba

    schema = nba.FeatureSchema([nba.Numeric(f"x{j}") for j in range(dim)])
    catalog = nba.Catalog([nba.Arm(f"a{j}", features={"arm": f"a{j}"}) for j in range(k)], schema)
    return catalog, SyntheticBandit(n_actions=k, dim=dim, seed=seed)


def decider_log(directory: str | os.PathLike[str], n: int, *, seed: int = 0) -> tuple[Any, SyntheticBandit]:
    """A real Decider exploring uniformly (epsilon-greedy at 1) logs ``n`` rewarded decisions of the world."""
    import nba
    from nba.bandits import LinUCB

    catalog, world = decider_world(seed=seed)
    rng = np.random.default_rng([seed, 11])
    model = LinUCB(len(catalog), catalog.schema.n_columns, alpha=0.1)
    with nba.Decider(catalog, model, policy=nba.EpsilonGreedy(1.0), log=DecisionLog(directory), seed=seed) as dec:
        for i in range(n):
            x = rng.normal(size=world.dim)
            d = dec.decide({f"x{j}": float(x[j]) for j in range(world.dim)}, now=1_000_000.0 + i)
            q = world.expected_reward(x[None, :])[0, catalog.index(d.arm)]
            if rng.random() < q:
                dec.reward(d.event_id, 1.0, now=1_000_000.5 + i)
    return catalog, world
