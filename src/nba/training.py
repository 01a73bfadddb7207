"""Training from the decision log: a VW contextual-bandit model and a LightGBM reward model.

``train_vw`` exports the log as VW dsjson (``nba.log.export_dsjson``: cost =
-reward) and trains ``--cb_explore_adf`` on it with the ``vowpalwabbit``
package, writing VW's binary model, which ``nba.load_model`` scores natively.
``train_reward_model`` fits reward on (context, action) with LightGBM, as
``nba.evaluation.LightGBMRewardModel`` does, and writes a LightGBM text model;
``load_reward_model`` turns that file back into a reward model for DM and DR.
Both need the ``train`` extra (``pip install 'nba[train]'``).
"""

from __future__ import annotations

import math
import os
import shlex
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from nba.errors import ConfigError, ModelFormatError, SchemaError
from nba.log.reader import joined

if TYPE_CHECKING:
    from nba.evaluation import Array, BanditData
    from nba.log.reader import JoinedExample
    from nba.models.lightgbm import TreeEnsemble
    from nba.models.vw import VWModel

__all__ = [
    "CB_TYPES",
    "RewardModelFile",
    "TrainResult",
    "load_reward_model",
    "train_reward_model",
    "train_vw",
    "train_vw_dsjson",
    "vw_args",
]

#: The ``--cb_type`` values ``train_vw`` accepts (VW 9 defaults to mtr, so nba always passes one).
CB_TYPES = ("dr", "ips", "mtr", "dm", "sm")
#: Largest ``bits`` (``-b``) nba scores (``nba.models.vw.MAX_BITS``).
MAX_BITS = 28
# Options train_vw sets itself, or that would send VW's input or output elsewhere.
_OWN_OPTIONS = {
    "-d", "--data", "-f", "--final_regressor", "-i", "--initial_regressor", "--dsjson", "--json", "-t",
    "--testonly", "--cb_explore_adf", "--cb_adf", "--cb_type", "--epsilon", "-b", "--bit_precision", "-l",
    "--learning_rate", "--passes", "-c", "--cache", "--cache_file", "--random_seed", "-q", "--quadratic",
    "--interactions", "--cubic", "--daemon", "--port", "-p", "--predictions", "--save_resume",
}


class TrainResult(msgspec.Struct, frozen=True):
    """What a training call wrote and how it went.

    ``model`` is the model file (load it with ``nba.load_model``); ``paths`` every
    file written. ``examples`` counts the decisions trained on, ``args`` is the
    learner's command line (VW) or parameters (LightGBM, as JSON),
    ``average_loss`` the loss the learner reports (VW's progressive average loss
    over the last pass; LightGBM's training loss), ``seconds`` the wall time.
    ``actions`` is a reward model's action vocabulary (category order), empty for VW.
    """

    kind: str
    model: str
    paths: tuple[str, ...]
    examples: int
    args: str
    average_loss: float
    seconds: float
    actions: tuple[str, ...] = ()


def _vowpalwabbit() -> Any:
    try:
        import vowpalwabbit  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - the extra is installed in CI
        raise ConfigError("train_vw needs the vowpalwabbit package: pip install 'nba[train]'") from None
    return vowpalwabbit


def _lightgbm() -> Any:
    try:
        import lightgbm
    except ImportError:  # pragma: no cover - the extra is installed in CI
        raise ConfigError("train_reward_model needs the lightgbm package: pip install 'nba[train]'") from None
    return lightgbm


# --------------------------------------------------------------------------- VW


def _interaction(spec: Any) -> str:
    """One interaction as VW's namespace letters: ``"UA"``, or namespace names ``("User", "Action")``."""
    if isinstance(spec, str):
        letters = spec
    elif isinstance(spec, (tuple, list)) and all(isinstance(s, str) and s for s in spec):
        letters = "".join(s[0] for s in spec)
    else:
        raise ConfigError(
            f"interactions entry {spec!r} must be namespace letters such as 'UA' or namespace names "
            "such as ('User', 'Action')"
        )
    if not 2 <= len(letters) <= 3:
        raise ConfigError(
            f"interaction {spec!r} must cross two or three namespaces (nba scores VW interactions of 2 or 3)"
        )
    if not letters.isascii() or not all(c.isalnum() for c in letters):
        raise ConfigError(
            f"interaction {spec!r}: give each namespace's first letter (ASCII letters or digits; VW's ':' "
            "wildcard and escaped namespaces are not scored by nba)"
        )
    return letters


def _number(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (lo < value if lo_open else lo <= value) or value > hi:
        span = f"({lo:g}, {hi:g}]" if lo_open else f"[{lo:g}, {hi:g}]"
        raise ConfigError(f"{name}={value!r} must be a number in {span}")
    return float(value)


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name}={value!r} must be an int in [{lo}, {hi}]")
    return value


def vw_args(
    *,
    cb_type: str = "dr",
    epsilon: float = 0.05,
    interactions: Iterable[Any] = (),
    learning_rate: float = 0.5,
    bits: int = 18,
    extra_args: Sequence[str] = (),
    seed: int = 0,
) -> list[str]:
    """The VW command line ``train_vw`` trains with (without data, cache and output), checked.

    Raises ``ConfigError`` for a setting nba's VW loader would refuse or that
    ``train_vw`` sets itself (data, output, cache, the options above)."""
    if cb_type not in CB_TYPES:
        raise ConfigError(f"cb_type={cb_type!r} must be one of {', '.join(CB_TYPES)} (VW's --cb_type)")
    eps = _number("epsilon", epsilon, 0.0, 1.0)
    lr = _number("learning_rate", learning_rate, 0.0, 1e6, lo_open=True)
    _int("bits", bits, 1, MAX_BITS)
    _int("seed", seed, 0, 2**31 - 1)
    if isinstance(interactions, str):
        raise ConfigError(f"interactions={interactions!r} must be a sequence such as ('UA',), not one string")
    inter = list(dict.fromkeys(_interaction(i) for i in interactions))
    extra: list[str] = []
    for a in extra_args:
        if not isinstance(a, str):
            raise ConfigError(f"extra_args entry {a!r} must be a str")
        extra.extend(shlex.split(a))
    for tok in extra:
        name = tok.split("=", 1)[0]
        if name in _OWN_OPTIONS:
            raise ConfigError(
                f"extra_args {tok!r}: train_vw sets this itself; use its keyword argument "
                "(cb_type, epsilon, interactions, learning_rate, passes, bits, seed) or leave it out"
            )
    args = [
        "--cb_explore_adf", "--dsjson", "--cb_type", cb_type, "--epsilon", repr(eps), "-b", str(bits),
        "-l", repr(lr), "--random_seed", str(seed),
    ]
    for i in inter:
        args += ["--interactions", i]
    return args + extra


def _check_dsjson(path: str) -> tuple[int, int]:
    """(lines, lines with an outcome) of an exported dsjson file."""

    class _Line(msgspec.Struct):
        o: list[Any] = []

    dec = msgspec.json.Decoder(_Line)
    n = rewarded = 0
    with open(path, "rb") as f:
        for line in f:
            n += 1
            rewarded += bool(dec.decode(line).o)
    return n, rewarded


def _export(
    log: str | os.PathLike[str], out: str, reward_window: timedelta | float | None, default_reward: float
) -> int:
    from nba.log import export_dsjson

    if not isinstance(log, (str, os.PathLike)) or not os.path.isdir(log):
        raise ConfigError(f"log={log!r} must be the directory of a DecisionLog")
    export_dsjson(log, out, reward_window=reward_window, default_reward=default_reward)
    n, rewarded = _check_dsjson(out)
    if n == 0:
        raise ConfigError(
            f"the log in {os.fspath(log)!r} has no decision to train on (empty, or none exportable: "
            "see nba.log.export_dsjson's report)"
        )
    if rewarded == 0 and default_reward == 0.0:
        raise ConfigError(
            f"no decision in {os.fspath(log)!r} has a reward (within reward_window={reward_window!r}); "
            "log outcomes with Decider.reward / DecisionLog.append_outcome, or widen reward_window"
        )
    return n


def _train_dsjson(data: str, out: str, args: list[str], passes: int) -> tuple[int, float, str]:
    """Train VW on a dsjson file, save the model at ``out``; (examples, average loss, command line)."""
    vw = _vowpalwabbit()
    cmd = list(args)
    cache = None
    if passes > 1:
        fd, cache = tempfile.mkstemp(suffix=".cache", dir=os.path.dirname(os.path.abspath(out)))
        os.close(fd)
        cmd += ["--passes", str(passes), "-c", "-k", "--cache_file", cache, "--holdout_off"]
    line = " ".join(shlex.quote(a) for a in cmd)
    try:
        ws = vw.Workspace(" ".join(cmd + ["--quiet", "-d", shlex.quote(data), "-f", shlex.quote(out)]))
        try:
            examples = int(ws.get_weighted_examples())
            loss = float(ws.get_sum_loss()) / examples if examples else math.nan
        finally:
            ws.finish()
    except RuntimeError as e:  # VW reports a bad option as a RuntimeError
        raise ConfigError(f"vowpalwabbit refused the arguments {line!r}: {e}") from None
    finally:
        if cache is not None and os.path.exists(cache):
            os.unlink(cache)
    if passes > 1:
        examples //= passes
    return examples, loss, line


def _load_vw(out: str, line: str) -> VWModel:
    from nba.models.vw import load_vw

    try:
        return load_vw(out)
    except ModelFormatError as e:
        os.unlink(out)
        raise ConfigError(f"VW trained with {line!r} writes a model nba cannot score: {e}") from None


def train_vw(
    log: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    cb_type: str = "dr",
    epsilon: float = 0.05,
    interactions: Iterable[Any] = (),
    learning_rate: float = 0.5,
    passes: int = 1,
    bits: int = 18,
    reward_window: timedelta | float | None = None,
    default_reward: float = 0.0,
    extra_args: Sequence[str] = (),
    seed: int = 0,
    dsjson: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train a VW ``--cb_explore_adf`` model on the decision log in ``log``; write it to ``out``.

    The log is joined (``reward_window``, ``default_reward``) and exported as
    dsjson (kept at ``dsjson`` if given, else in a temporary file), then VW learns
    it in log order: ``--cb_type`` (default dr; VW 9's own default is mtr),
    ``--epsilon`` (the exploration the model's pmf carries), ``--interactions``
    (namespace letters, ``("UA",)`` crosses User with Action), ``-l``, ``-b``,
    ``--random_seed``; ``passes > 1`` adds a cache and ``--holdout_off``.
    ``out`` is VW's binary model, which ``nba.load_model`` scores exactly.
    Raises ``ConfigError`` when the extra is missing, the log has no decision or
    no reward, or a setting would give a model nba cannot score.
    """
    t0 = time.perf_counter()
    _vowpalwabbit()
    vw_args(cb_type=cb_type, epsilon=epsilon, interactions=interactions, learning_rate=learning_rate, bits=bits,
            extra_args=extra_args, seed=seed)  # refuse a bad setting before reading the log
    _int("passes", passes, 1, 1000)
    with tempfile.TemporaryDirectory(prefix="nba-train-") as tmp:
        data = os.fspath(dsjson) if dsjson is not None else os.path.join(tmp, "train.dsjson")
        _export(log, data, reward_window, default_reward)
        res = train_vw_dsjson(
            data, out, cb_type=cb_type, epsilon=epsilon, interactions=interactions, learning_rate=learning_rate,
            passes=passes, bits=bits, extra_args=extra_args, seed=seed,
        )
    paths = res.paths if dsjson is None else (*res.paths, os.fspath(dsjson))
    return msgspec.structs.replace(res, paths=paths, seconds=time.perf_counter() - t0)


def train_vw_dsjson(
    dsjson: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    cb_type: str = "dr",
    epsilon: float = 0.05,
    interactions: Iterable[Any] = (),
    learning_rate: float = 0.5,
    passes: int = 1,
    bits: int = 18,
    extra_args: Sequence[str] = (),
    seed: int = 0,
) -> TrainResult:
    """``train_vw`` on a dsjson file already exported (``nba.log.export_dsjson``), in file order.

    The same learner, checks and output as ``train_vw``; ``discover`` trains its grid
    from one export with it."""
    t0 = time.perf_counter()
    _vowpalwabbit()
    args = vw_args(
        cb_type=cb_type, epsilon=epsilon, interactions=interactions, learning_rate=learning_rate, bits=bits,
        extra_args=extra_args, seed=seed,
    )
    _int("passes", passes, 1, 1000)
    if not os.path.isfile(dsjson):
        raise ConfigError(f"dsjson={dsjson!r} must be a dsjson file (nba export LOG OUT writes one)")
    out_s = os.fspath(out)
    examples, loss, line = _train_dsjson(os.fspath(dsjson), out_s, args, passes)
    _load_vw(out_s, line)
    return TrainResult("vw", out_s, (out_s,), examples, line, loss, time.perf_counter() - t0)


# --------------------------------------------------------------------------- reward model


class RewardModelFile(msgspec.Struct, frozen=True):
    """A reward model ``train_reward_model`` wrote, loaded: ``predict(data)`` gives ``q(x, a)``, ``(n, K)``.

    ``model`` is the LightGBM text model as nba loads it; its last column is the
    action (a category over ``actions``, stored in the file's
    ``pandas_categorical``) and the others the context columns it was trained on
    (``feature_names``). Use it as ``reward_model=`` of ``nba.evaluation.evaluate``.
    """

    model: Any  # nba.models.lightgbm.TreeEnsemble
    actions: tuple[str, ...]
    feature_names: tuple[str, ...]

    def predict(self, data: BanditData) -> Array:
        """Predicted reward of every action of ``data.actions`` for every decision, ``(n, K)``."""
        from nba.evaluation import design

        d = len(self.feature_names)
        if data.context.shape[1] != d:
            raise SchemaError(
                f"the reward model takes {d} context columns ({', '.join(self.feature_names)}); the log gives "
                f"{data.context.shape[1]}: evaluate it on a log of the same features"
            )
        if data.context_names is not None and tuple(_lgb_name(c) for c in data.context_names) != self.feature_names:
            raise SchemaError(
                f"the reward model's context columns are {list(self.feature_names)}, the log's "
                f"{list(data.context_names)}; evaluate it on a log of the same features"
            )
        index = {a: j for j, a in enumerate(self.actions)}
        missing = [a for a in data.actions if a not in index]
        if missing:
            raise SchemaError(
                f"actions {missing} were not in the reward model's training log (it knows {list(self.actions)}); "
                "retrain it on a log that offers them"
            )
        out = np.empty((data.n, data.n_actions))
        for j, a in enumerate(data.actions):
            x = design(data.context, np.full(data.n, index[a], dtype=np.intp))
            out[:, j] = self.model.predict(x)
        return out


def _lgb_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name) or "_"


def load_reward_model(path: str | os.PathLike[str]) -> RewardModelFile:
    """A reward model file written by ``train_reward_model``, ready for ``reward_model=``."""
    import nba

    model: TreeEnsemble = nba.load_model(path, format="lightgbm")
    names = tuple(model.feature_names)
    cats = model.pandas_categorical
    if not names or names[-1] != "action" or not cats or len(cats) != 1:
        raise ModelFormatError(
            f"{os.fspath(path)}: not a reward model of train_reward_model (its last feature must be the "
            "categorical 'action' with the action names in pandas_categorical)"
        )
    return RewardModelFile(model, tuple(str(a) for a in cats[0]), names[:-1])


def train_reward_model(
    log: str | os.PathLike[str] | Iterable[JoinedExample],
    out: str | os.PathLike[str],
    *,
    params: dict[str, Any] | None = None,
    num_boost_round: int = 100,
    reward_window: timedelta | float | None = None,
    default_reward: float = 0.0,
    seed: int = 0,
) -> TrainResult:
    """Fit LightGBM to reward given (context, action) on the joined log; write a LightGBM text model to ``out``.

    The rows and parameters are ``nba.evaluation.LightGBMRewardModel``'s (the
    context of ``from_joined``, then the action as a categorical column); the
    objective is ``binary`` when every reward is 0 or 1 (the prediction is then
    the success probability), else ``regression``; ``params`` override. The file
    loads with ``nba.load_model`` and, as a reward model, ``load_reward_model``.
    """
    t0 = time.perf_counter()
    _lightgbm()
    from nba.evaluation import LightGBMRewardModel, from_joined

    _int("num_boost_round", num_boost_round, 1, 1_000_000)
    if params is not None and not isinstance(params, dict):
        raise ConfigError(f"params={params!r} must be a dict of LightGBM parameters")
    examples = list(joined(log, reward_window=reward_window, default_reward=default_reward))
    if not examples:
        raise ConfigError("the log has no decision to train on (empty, or no decision was joined)")
    if not any(ex.observed for ex in examples) and default_reward == 0.0:
        raise ConfigError(
            "no decision in the log has a reward; log outcomes, or widen reward_window"
        )
    data = from_joined(examples)
    binary = bool(np.all((data.reward == 0.0) | (data.reward == 1.0)))
    user = dict(params or {})
    user.setdefault("objective", "binary" if binary else "regression")
    rm = LightGBMRewardModel(num_boost_round=num_boost_round, params=user, seed=seed)
    d = data.context.shape[1]
    names = [_lgb_name(c) for c in data.context_names] if data.context_names else [f"x{j}" for j in range(d)]
    if len(set(names)) != d or "action" in names:
        names = [f"x{j}" for j in range(d)]
    booster = rm.fit(data, feature_names=[*names, "action"])
    # Carry the action vocabulary in the file, as a model trained on a pandas category column does.
    booster.pandas_categorical = [list(data.actions)]
    out_s = os.fspath(out)
    tmp = f"{out_s}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(booster.model_to_string())
    os.replace(tmp, out_s)
    loaded = load_reward_model(out_s)
    pred = loaded.model.predict(np.column_stack([data.context, data.action.astype(np.float64)]))
    if binary:
        p = np.clip(pred, 1e-12, 1 - 1e-12)
        loss = float(-np.mean(data.reward * np.log(p) + (1 - data.reward) * np.log(1 - p)))
    else:
        loss = float(np.mean((pred - data.reward) ** 2))
    args = msgspec.json.encode({**rm.lgb_params(), "num_boost_round": num_boost_round}).decode()
    return TrainResult(
        "lightgbm", out_s, (out_s,), data.n, args, loss, time.perf_counter() - t0, actions=data.actions
    )
