"""Model loaders: turn model files and objects into compiled core scorers.

``Summary`` is what every model's ``summary()`` returns (``nba inspect`` prints it).
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

import msgspec

from nba.errors import ConfigError, ModelFormatError

if TYPE_CHECKING:
    from nba.models.lightgbm import TreeEnsemble
    from nba.models.vw import VWModel

__all__ = ["DEFAULT_MAX_BYTES", "Summary", "load_model"]

_FORMATS = ("lightgbm", "vw")


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """What a model says about itself: ``model.summary()`` of every nba model, printed by ``nba inspect``.

    ``format`` is the model's kind ("lightgbm", "vw") and ``version`` its
    ``version`` (what each decision it scores logs as ``model_version``).
    ``details`` holds the kind's own facts in the order they print (a tree
    ensemble's ``trees``, ``leaves``, ``max_depth``...; a VW model's ``bits``,
    ``interactions``, ``options``...), each also readable as an attribute
    (``summary.leaves``). ``str(summary)`` is ``text``, the human rendering.
    """

    format: str
    version: str
    details: dict[str, Any]
    text: str

    def __str__(self) -> str:
        return self.text

    def __getattr__(self, name: str) -> Any:
        """A detail of the model's kind as an attribute: ``summary.leaves`` is ``summary.details["leaves"]``."""
        if name.startswith("_") or name in self.__struct_fields__:  # unset (mid-construction), not a detail
            raise AttributeError(name)
        try:
            return self.details[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} of a {self.format!r} model has no {name!r}") from None


#: Default cap on the bytes ``load_model`` reads from a file: 1 GiB. A LightGBM text
#: model of 10k trees of 255 leaves is ~200 MB; a VW ``-b 28`` save_resume model
#: with every weight non-zero, the largest nba scores, is 4 GiB. Raise it with
#: ``load_model(path, max_bytes=...)``.
DEFAULT_MAX_BYTES = 1 << 30

_CHUNK = 1 << 24


def read_model_file(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[bytes, str]:
    """(bytes, path as str) of a regular model file of at most ``max_bytes`` bytes.

    Anything that is not a regular file (a FIFO, a device such as ``/dev/zero``, a
    directory, a socket) is refused, as is a file larger than ``max_bytes``: the
    file is opened without blocking and checked with ``fstat`` on the open
    descriptor (no race with a rename), and read with a bounded read, so no path
    blocks forever or reads without end. ``ModelFormatError`` names the file.
    """
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    limit = _max_bytes(max_bytes)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise ModelFormatError(f"cannot read model file {name!r}: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelFormatError(f"{name}: not a regular file ({_file_kind(st.st_mode)}); pass a model file")
        if st.st_size > limit:
            raise ModelFormatError(_too_big(name, f"{st.st_size} bytes", limit))
        # Read at most limit + 1 bytes: one byte past the cap tells a file that grew
        # since fstat from one that fits.
        chunks = []
        got = 0
        want = st.st_size + 1
        while got <= limit:
            chunk = os.read(fd, want - got if got < want else min(_CHUNK, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError as e:
        raise ModelFormatError(f"cannot read model file {name!r}: {e.strerror or e}") from e
    finally:
        os.close(fd)
    if got > limit:
        raise ModelFormatError(_too_big(name, f"more than {limit} bytes", limit))
    return b"".join(chunks), name


def _max_bytes(max_bytes: Any) -> int:
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ConfigError(f"max_bytes must be a positive int (bytes), got {max_bytes!r}")
    return max_bytes


def _too_big(name: str, size: str, limit: int) -> str:
    return (
        f"{name}: the file holds {size}, over the cap max_bytes={limit} ({limit / (1 << 20):g} MiB); "
        "pass max_bytes=... to load_model (or load_vw / load_lightgbm) to raise it"
    )


def _file_kind(mode: int) -> str:
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def _sniff(head: bytes) -> str | None:
    """Guess a model format from the first bytes of a file or string."""
    text = head.lstrip()
    if text.startswith((b"tree\n", b"tree\r\n")) or b"\nversion=v" in text[:64]:
        return "lightgbm"
    from nba.models import vw

    if vw.looks_like_vw(head):
        return "vw"
    return None


class _Booster(Protocol):
    """What ``load_model`` takes for a live ``lightgbm.Booster``."""

    def model_to_string(self) -> str: ...

    def num_trees(self) -> int: ...


#: What ``load_model`` reads a model from, besides a live booster: a path, or the model's text or bytes.
ModelSource = str | os.PathLike[str] | bytes | bytearray | memoryview


@overload
def load_model(source: _Booster, *, format: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
               feature_check: str = "warn") -> TreeEnsemble: ...
@overload
def load_model(
    source: ModelSource, *, format: Literal["lightgbm"], max_bytes: int = DEFAULT_MAX_BYTES, feature_check: str = "warn"
) -> TreeEnsemble: ...
@overload
def load_model(
    source: ModelSource, *, format: Literal["vw"], max_bytes: int = DEFAULT_MAX_BYTES, feature_check: str = "warn"
) -> VWModel: ...
@overload
def load_model(
    source: ModelSource, *, format: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES, feature_check: str = "warn"
) -> TreeEnsemble | VWModel: ...
def load_model(
    source: object, *, format: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES, feature_check: str = "warn"
) -> TreeEnsemble | VWModel:
    """Load a trained model into a compiled nba scorer.

    ``source`` is a path to a model file, the model's text or bytes, or a live
    ``lightgbm.Booster``. ``format`` ("lightgbm" or "vw") skips sniffing the format.
    ``max_bytes`` caps what is read from a file (default ``DEFAULT_MAX_BYTES``,
    1 GiB); only regular files are read. ``feature_check`` ("warn", "raise" or "off")
    is what binding a VW model to a schema it has few weights for does
    (``nba.models.vw.load_vw``); LightGBM models check their feature names at bind.
    Raises ``ModelFormatError`` for anything
    that cannot be scored exactly.
    """
    _max_bytes(max_bytes)
    if format is not None and format not in _FORMATS:
        raise ModelFormatError(f"unknown model format {format!r}; expected one of {', '.join(_FORMATS)}")
    if hasattr(source, "model_to_string") and hasattr(source, "num_trees"):
        from nba.models.lightgbm import load_lightgbm

        return load_lightgbm(source)
    if isinstance(source, (str, os.PathLike)) and not (isinstance(source, str) and "\n" in source):
        data, name = read_model_file(source, max_bytes)
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

    return vw_from_bytes(data, name, feature_check=feature_check)
