"""The exceptions nba raises. Catch ``NbaError`` to catch them all.

Each subclass also derives from the closest builtin (ValueError, KeyError,
OSError) so code written against plain Python exceptions keeps working.
"""

from __future__ import annotations

__all__ = [
    "NbaError",
    "ModelFormatError",
    "SchemaError",
    "ConfigError",
    "UnknownEventError",
    "LogError",
    "IdentityError",
    "ContactError",
    "ConflictError",
    "StoreError",
]


class NbaError(Exception):
    """Base class of every error nba raises on purpose."""


class ModelFormatError(NbaError, ValueError):
    """A model file or object cannot be loaded: malformed, truncated, or an unsupported option.

    The message names the file, and the line or tree, where the problem was found.
    """


class SchemaError(NbaError, ValueError):
    """Input features do not fit what the model or schema expects (count, name, type, value)."""


class ConfigError(NbaError, ValueError):
    """An nba object was configured inconsistently (weights, arms, experiments, policy options)."""


class UnknownEventError(NbaError, KeyError):
    """A reward or activation names an event id the decider does not know."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class LogError(NbaError, OSError):
    """The decision log cannot be written or read as asked."""


class IdentityError(NbaError, ValueError):
    """An identity resolution step was refused (``nba.profiles.identity``): a junk or malformed id,
    a profile over its limits, or a merge of two different customers. Nothing was changed."""


class ContactError(NbaError, RuntimeError):
    """A contact history could not be updated (``nba.profiles.contact``): it kept changing under a
    compare-and-set for every attempt allowed. Nothing was changed; the call may be retried."""


class ConflictError(NbaError, RuntimeError):
    """A write to shared state (``nba.profiles.RedisProfileStore``) lost its compare-and-set to other
    writers too many times in a row. The part that was not written is unchanged; retry it, or spread
    the writers over more profiles."""


class StoreError(NbaError, OSError):
    """A shared store (``nba.profiles.RedisProfileStore``) could not reach its backend, or the backend
    refused the call (down, a timeout, out of memory). A write that was under way may have been applied."""
