"""The decision log: durable, append-only JSON lines of decisions, activations and outcomes.

A ``DecisionLog`` writes the records into size-rotated, self-contained segments
(durability modes and what it does when writes fail: ``nba.log.writer``);
``read_records`` reads them back and ``join`` attaches outcomes to their
decisions inside a reward window (``nba.log.reader``); ``export_dsjson`` writes
Vowpal Wabbit's dsjson (``nba.log.dsjson``). The record types, the checksum that
seals each line and the warnings live in ``nba.log.records``, the checks at the
append edge in ``nba.log.checks``. Everything a user needs is imported here.
"""

from nba.log.dsjson import ExportReport, export_dsjson
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
    TornRecordWarning,
)
from nba.log.writer import DecisionLog

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
