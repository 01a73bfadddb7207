"""Model loaders: turn model files and objects into compiled core scorers."""

from __future__ import annotations

import os
from typing import Any

from nba.errors import ModelFormatError

__all__ = ["load_model"]

_FORMATS = ("lightgbm", "vw")


def read_model_file(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    """(bytes, path as str) of a model file; ``ModelFormatError`` naming it if it cannot be read."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            return f.read(), name
    except OSError as e:
        raise ModelFormatError(f"cannot read model file {name!r}: {e.strerror or e}") from e


def _sniff(head: bytes) -> str | None:
    """Guess a model format from the first bytes of a file or string."""
    text = head.lstrip()
    if text.startswith(b"tree\n") or text.startswith(b"tree\r\n") or b"\nversion=v" in text[:64]:
        return "lightgbm"
    from nba.models import vw

    if vw.looks_like_vw(head):
        return "vw"
    return None


def load_model(source: Any, *, format: str | None = None) -> Any:
    """Load a trained model into a compiled nba scorer.

    ``source`` is a path to a model file, the model's text or bytes, or a live
    ``lightgbm.Booster``. ``format`` ("lightgbm" or "vw") skips sniffing the format.
    Raises ``ModelFormatError`` for anything that cannot be scored exactly.
    """
    if format is not None and format not in _FORMATS:
        raise ModelFormatError(f"unknown model format {format!r}; expected one of {', '.join(_FORMATS)}")
    if hasattr(source, "model_to_string") and hasattr(source, "num_trees"):
        from nba.models.lightgbm import load_lightgbm

        return load_lightgbm(source)
    if isinstance(source, (str, os.PathLike)) and not (isinstance(source, str) and "\n" in source):
        data, name = read_model_file(source)
        kind = format or _sniff(data[:4096])
        if kind is None:
            raise ModelFormatError(
                f"{name}: not a LightGBM text model nor a Vowpal Wabbit model; "
                "pass format='lightgbm' or format='vw' if you are sure"
            )
    elif isinstance(source, (str, bytes, bytearray, memoryview)):
        data = source.encode() if isinstance(source, str) else bytes(source)
        name = "<model bytes>"
        kind = format or _sniff(data[:4096])
        if kind is None:
            raise ModelFormatError("model data is neither a LightGBM text model nor a Vowpal Wabbit model")
    else:
        raise ModelFormatError(
            f"cannot load a model from {type(source).__name__}; "
            "pass a file path, the model's text or bytes, or a lightgbm.Booster"
        )
    if kind == "lightgbm":
        from nba.models.lightgbm import TreeEnsemble, text_of

        return TreeEnsemble(text_of(data, name), _name=name)
    from nba.models.vw import vw_from_bytes

    return vw_from_bytes(data, name)
