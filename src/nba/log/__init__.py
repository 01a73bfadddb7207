"""The decision log (``writer``, moved here from ``nba/log.py``: the next commit splits it into modules)."""

from nba.log.writer import (
    ActivationRecord,
    CatalogRecord,
    CorruptRecordWarning,
    DecisionLog,
    DecisionRecord,
    ExportReport,
    JoinedExample,
    LogWarning,
    OutcomeRecord,
    ReadReport,
    Record,
    SchemaRecord,
    TornRecordWarning,
    export_dsjson,
    join,
    read_records,
)

__all__ = [
    "ActivationRecord",
    "CatalogRecord",
    "CorruptRecordWarning",
    "DecisionLog",
    "DecisionRecord",
    "ExportReport",
    "JoinedExample",
    "LogWarning",
    "OutcomeRecord",
    "ReadReport",
    "Record",
    "SchemaRecord",
    "TornRecordWarning",
    "export_dsjson",
    "join",
    "read_records",
]
