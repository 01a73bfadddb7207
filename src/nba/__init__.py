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
    JoinedExample,
    OutcomeRecord,
    TornRecordWarning,
    export_dsjson,
    join,
    read_records,
)
from nba.models import load_model

__version__ = "0.1.0"

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
    # decision log
    "DecisionLog",
    "DecisionRecord",
    "ActivationRecord",
    "OutcomeRecord",
    "CatalogRecord",
    "JoinedExample",
    "TornRecordWarning",
    "CorruptRecordWarning",
    "read_records",
    "join",
    "export_dsjson",
]
