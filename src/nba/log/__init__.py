"""The decision log: durable, append-only JSON lines of decisions, activations and outcomes.

The writer, ``nba.DecisionLog``, writes the records into size-rotated,
self-contained segments (durability modes and what it does when writes fail:
``nba.log.writer``). What reads, exports and describes a log is imported here:
``read_records`` reads the records back and ``join`` attaches outcomes to their
decisions inside a reward window (``nba.log.reader``); ``export_dsjson`` writes
Vowpal Wabbit's dsjson (``nba.log.dsjson``); ``forget`` erases a data subject's lines
(``nba.log.erasure``); the record types, the checksum that
seals each line and the warnings live in ``nba.log.records``, the checks at the
append edge in ``nba.log.checks``.
"""

from nba.log.dsjson import ExportReport, export_dsjson
from nba.log.erasure import ErasureReport, forget
from nba.log.reader import JoinedExample, ReadReport, join, read_records
from nba.log.records import (
    ActivationRecord,
    CatalogRecord,
    CorruptRecordWarning,
    DecisionRecord,
    LogWarning,
    OutcomeRecord,
    Record,
    SchemaRecord,
    SwitchRecord,
    TornRecordWarning,
)

__all__ = [
    "ActivationRecord",
    "CatalogRecord",
    "CorruptRecordWarning",
    "ErasureReport",
    "DecisionRecord",
    "ExportReport",
    "JoinedExample",
    "LogWarning",
    "OutcomeRecord",
    "ReadReport",
    "Record",
    "SchemaRecord",
    "SwitchRecord",
    "TornRecordWarning",
    "export_dsjson",
    "forget",
    "join",
    "read_records",
]
