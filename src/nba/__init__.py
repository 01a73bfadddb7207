"""nba: next best action. Score, choose, test and learn, log, in-process and in microseconds.

The public API is what ``__all__`` lists; everything else is private or lives in
a submodule you never need to import.
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
from nba.log import (
    ActivationRecord,
    CatalogRecord,
    CorruptRecordWarning,
    DecisionLog,
    DecisionRecord,
    ExportReport,
    JoinedExample,
    OutcomeRecord,
    SchemaRecord,
    TornRecordWarning,
    export_dsjson,
    join,
    read_records,
)
from nba.experiments import Allocator, Assignment, Experiment, Holdout
from nba.models import load_model
from nba.models.lightgbm import TreeEnsemble
from nba.models.vw import VWModel
from nba.bandits import BetaThompson, LinearThompson, LinUCB, UCB1
from nba.policy import EpsilonGreedy, Greedy, Softmax, SquareCB, Thompson, UCB, sample, sample_slate
from nba.schema import Boolean, Categorical, FeatureSchema, Numeric
from nba.catalog import Arm, Catalog
from nba.rules import AllOf, AnyOf, Not, Rule, parse_rule
from nba.decider import Decider, Decision, LearnWarning

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
    # models
    "load_model",
    # online bandits (nba.bandits)
    "BetaThompson",
    "UCB1",
    "LinUCB",
    "LinearThompson",
    # exploration policies and seeded sampling (nba.policy)
    "Greedy",
    "EpsilonGreedy",
    "Softmax",
    "SquareCB",
    "UCB",
    "Thompson",
    "sample",
    "sample_slate",
    # decisions
    "Decider",
    "Decision",
    "LearnWarning",
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
    "TreeEnsemble",
    "VWModel",
    # experiments
    "Experiment",
    "Holdout",
    "Assignment",
    "Allocator",
    # decision log
    "DecisionLog",
    "DecisionRecord",
    "ActivationRecord",
    "OutcomeRecord",
    "CatalogRecord",
    "SchemaRecord",
    "JoinedExample",
    "ExportReport",
    "TornRecordWarning",
    "CorruptRecordWarning",
    "read_records",
    "join",
    "export_dsjson",
]
