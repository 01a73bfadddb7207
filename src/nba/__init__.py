"""nba: next best action. Score, choose, test and learn, log, in-process and in microseconds.

The public API is what ``__all__`` lists: what a Decider is built from, returns and
raises. Everything else has one home, its module: the log's records, readers,
export and warnings in ``nba.log``; ``sample``/``sample_slate`` in ``nba.policy``;
``Allocator``/``Assignment`` in ``nba.experiments``; ``Summary`` in ``nba.models``,
the loaded model types in ``nba.models.lightgbm`` (``TreeEnsemble``) and
``nba.models.vw`` (``VWModel``); ``LearnWarning`` in ``nba.decider``; the seams
(Protocols) in ``nba.base``. Each name is imported from one place.
"""

from __future__ import annotations

from nba.errors import (
    ConfigError,
    LogError,
    ModelFormatError,
    NbaError,
    SchemaError,
    UnknownEventError,
)
from nba.log.writer import DecisionLog
from nba.experiments import Experiment, Holdout
from nba.models import load_model
from nba.bandits import BetaThompson, LinearThompson, LinUCB, UCB1
from nba.policy import EpsilonGreedy, Greedy, Softmax, SquareCB, Thompson, UCB
from nba.schema import Boolean, Categorical, FeatureSchema, Numeric
from nba.catalog import Arm, Catalog
from nba.rules import AllOf, AnyOf, Not, Rule, parse_rule
from nba.decider import Decider, Decision, Erasure
from nba.analysis import ExperimentAnalysis, analyze
from nba.apprentice import Apprentice

__version__ = "0.1.0"  # the one place the version is written: pyproject.toml reads it (statically)

__all__ = [
    "__version__",
    # errors
    "NbaError",
    "ModelFormatError",
    "SchemaError",
    "ConfigError",
    "UnknownEventError",
    "LogError",
    # models: trained ones loaded, or online bandits that learn in-process (nba.bandits)
    "load_model",
    "BetaThompson",
    "UCB1",
    "LinUCB",
    "LinearThompson",
    # exploration policies (nba.policy)
    "Greedy",
    "EpsilonGreedy",
    "Softmax",
    "SquareCB",
    "UCB",
    "Thompson",
    # decisions
    "Decider",
    "Decision",
    "Erasure",
    "Apprentice",
    # features, arms and the catalogue
    "FeatureSchema",
    "Numeric",
    "Categorical",
    "Boolean",
    "Arm",
    "Catalog",
    "Rule",
    "AllOf",
    "AnyOf",
    "Not",
    "parse_rule",
    # experiments (nba.experiments)
    "Experiment",
    "Holdout",
    # the decision log (records, readers and export: nba.log)
    "DecisionLog",
    # experiment analysis (nba.analysis; needs the analysis extra)
    "analyze",
    "ExperimentAnalysis",
]
