"""The ``nba`` command line: ``nba demo``, ``nba inspect MODEL [--log LOGDIR]``, ``nba export LOG_DIR OUT``,
``nba report LOG_DIR``, ``nba train LOG_DIR --out DIR``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _cmd_inspect(args: argparse.Namespace) -> int:
    import nba
    from nba.models.vw import VWModel

    model = nba.load_model(args.model, feature_check="off")
    print(model.summary())
    if not isinstance(model, VWModel):
        names = model.feature_names
        print(f"features ({len(names)}, in column order): {' '.join(names)}")
        return 0
    if args.log is None:
        print("(pass --log LOGDIR to check which of a decision log's features the model has weights for)")
        return 0
    columns, actions = _log_layout(args.log)
    hits = model.feature_hits(columns, model.prepare_actions(actions) if actions else None)
    by_ns: dict[str, list[bool]] = {}
    for name, hit in zip(hits.columns, hits.hit):
        by_ns.setdefault(name.split(":", 1)[0], []).append(hit)
    print(f"features of {args.log} the model has weights for: {sum(hits.hit)} of {len(hits.columns)} "
          f"({hits.rate:.0%})")
    for ns, ns_hits in by_ns.items():
        print(f"  namespace {ns}: {sum(ns_hits)} of {len(ns_hits)}")
    if hits.missed:
        print(f"  no weight for: {', '.join(hits.missed[:20])}{' ...' if len(hits.missed) > 20 else ''}")
    if hits.hint:
        print(f"  {hits.hint}")
    return 0


def _log_layout(log_dir: str) -> tuple[list[tuple[str, ...]], list[dict]]:
    """The VW columns of a log's (first) schema and the features of its (first) catalogue's arms."""
    from nba.errors import ConfigError
    from nba.log import CatalogRecord, SchemaRecord, read_records

    schema: SchemaRecord | None = None
    catalog: CatalogRecord | None = None
    for rec in read_records(log_dir):
        if schema is None and isinstance(rec, SchemaRecord):
            schema = rec
        elif catalog is None and isinstance(rec, CatalogRecord):
            catalog = rec
        if schema is not None and catalog is not None:
            break
    if schema is None:
        raise ConfigError(f"{log_dir}: the log holds no schema record (it was written without a FeatureSchema)")
    columns: list[tuple[str, ...]] = []
    for ns, name, kind, _col, cats in schema.features:
        if kind == "category":
            columns += [(ns, name, str(c)) for c in cats]
        elif kind != "code":
            columns.append((ns, name))
    return columns, list(catalog.arms.values()) if catalog is not None else []


def _cmd_demo(args: argparse.Namespace) -> int:
    from nba.demo import run_demo

    return run_demo(args)


def _cmd_export(args: argparse.Namespace) -> int:
    from nba.log import export_dsjson

    report = export_dsjson(
        args.log_dir, args.out, reward_window=args.reward_window, default_reward=args.default_reward,
        aggregate=args.aggregate, observed_only=args.observed_only, on_error=args.on_error,
    )
    print(f"wrote {report.events} events to {args.out} (train with: vw --cb_explore_adf --dsjson -d {args.out})")
    if report.skipped or report.bad_lines:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(report.reasons.items()))
        print(f"left out {report.skipped} decisions and {report.bad_lines} bad log lines ({reasons})")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    import msgspec

    from nba import report

    options = dict(reward_window=args.reward_window, default_reward=args.default_reward, level=args.level,
                   buckets=args.buckets, progress=not args.no_progress)
    if args.json and args.out is None:
        sys.stdout.write(msgspec.json.encode(report.build(args.log_dir, **options)).decode() + "\n")
        return 0
    out = args.out or "report.html"
    data = report.write(args.log_dir, out, format="json" if args.json else None, **options)
    h = data.headline
    print(f"wrote the report of {h.decisions:,} decisions to {out}", file=sys.stderr)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import os

    from nba.training import train_reward_model, train_vw

    os.makedirs(args.out, exist_ok=True)
    model = os.path.join(args.out, "model.vw")
    res = train_vw(
        args.log_dir, model, cb_type=args.cb_type, epsilon=args.epsilon, interactions=args.interactions,
        learning_rate=args.learning_rate, passes=args.passes, reward_window=args.reward_window,
        default_reward=args.default_reward, bits=args.bits, seed=args.seed,
    )
    print(f"wrote {model}: VW model trained on {res.examples} decisions in {res.seconds:.1f} s "
          f"(average loss {res.average_loss:.4f}; vw {res.args})")
    print(f"  load it with: nba.load_model({model!r})   inspect it with: nba inspect {model}")
    if args.reward_model:
        path = os.path.join(args.out, "reward_model.txt")
        rm = train_reward_model(args.log_dir, path, reward_window=args.reward_window,
                                default_reward=args.default_reward, seed=args.seed)
        print(f"wrote {path}: LightGBM reward model over {len(rm.actions)} actions, {rm.examples} decisions")
        print(f"  use it with: nba.training.load_reward_model({path!r}) as reward_model= of nba.evaluation")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nba", description="nba: next best action decisioning SDK")
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("inspect", help="print a summary of a model file")
    sp.add_argument("model", help="path to a LightGBM text model or a Vowpal Wabbit model")
    sp.add_argument("--log", default=None, metavar="LOGDIR",
                    help="a decision log: show which of its schema's features a VW model has weights for")
    sp.set_defaults(func=_cmd_inspect)
    sp = sub.add_parser("demo", help="the whole loop on a simulated market: serve, log, train, evaluate, A/B, report")
    sp.add_argument("--customers", type=int, default=3000, help="simulated customers (default 3000)")
    sp.add_argument("--visits", type=int, default=40_000, help="simulated visits over 28 days (default 40000)")
    sp.add_argument("--seed", type=int, default=2026, help="seed of the simulated market and the deciders")
    sp.add_argument("--out", default=None, metavar="DIR",
                    help="keep the logs, the model and report.html in DIR (default: a temporary directory, removed)")
    sp.set_defaults(func=_cmd_demo)
    sp = sub.add_parser("export", help="export a decision log as VW dsjson (decisions joined with rewards)")
    sp.add_argument("log_dir", help="directory of a DecisionLog")
    sp.add_argument("out", help="dsjson file to write")
    sp.add_argument("--reward-window", type=float, default=None,
                    help="seconds after a decision a reward counts (default: any)")
    sp.add_argument("--default-reward", type=float, default=0.0, help="reward of decisions that got none (default 0)")
    sp.add_argument("--aggregate", choices=("sum", "first"), default="sum", help="how several rewards combine")
    sp.add_argument("--observed-only", action="store_true", help="leave out decisions that got no reward")
    sp.add_argument("--on-error", choices=("skip", "raise"), default="skip",
                    help="skip (and count) corrupt lines and unexportable decisions, or stop at the first "
                    "(default skip)")
    sp.add_argument("--dsjson", action="store_true", help="write VW dsjson (the only format; accepted for clarity)")
    sp.set_defaults(func=_cmd_export)
    sp = sub.add_parser(
        "report", help="write a self-contained HTML report of a decision log (or its figures as JSON)",
        description="A self-contained HTML report of a decision log: headline numbers, reward over time per "
        "experiment variant, arm shares, off-policy estimates (IPS, SNIPS, DR) of the logged policy, uniform "
        "random and the apprentice's learned policy, importance weights, SRM and lifts, apprentice agreement. "
        "Candidate models are evaluated through the Python API only (nba.report.build(log, candidates=...) with "
        "nba.evaluation.model_candidate): the log does not hold the catalogue's values, weights and arbitration "
        "a candidate needs. Plots need the report extra: pip install nba[report].")
    sp.add_argument("log_dir", help="directory of a DecisionLog")
    sp.add_argument("--out", default=None,
                    help="file to write (default report.html; a .json name writes the figures as JSON)")
    sp.add_argument("--json", action="store_true",
                    help="write the figures as JSON instead of HTML: to stdout, or to --out")
    sp.add_argument("--reward-window", type=float, default=None,
                    help="seconds after a decision a reward counts (default: any)")
    sp.add_argument("--default-reward", type=float, default=0.0, help="reward of decisions that got none (default 0)")
    sp.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    sp.add_argument("--buckets", type=int, default=20, help="number of equal-width time buckets (default 20)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    sp.set_defaults(func=_cmd_report)
    sp = sub.add_parser("train", help="train a VW cb_explore_adf model (and a reward model) from a decision log")
    sp.add_argument("log_dir", help="directory of a DecisionLog")
    sp.add_argument("--out", required=True, help="directory to write model.vw (and reward_model.txt) into")
    sp.add_argument("--cb-type", choices=("ips", "dr", "mtr"), default="dr", help="VW --cb_type (default dr)")
    sp.add_argument("--epsilon", type=float, default=0.05, help="exploration of the model's pmf (default 0.05)")
    sp.add_argument("--interactions", nargs="*", default=[], metavar="NS",
                    help="quadratic or cubic interactions as namespace first letters, e.g. UA (User x Action)")
    sp.add_argument("--learning-rate", type=float, default=0.5, help="VW -l (default 0.5)")
    sp.add_argument("--passes", type=int, default=1, help="passes over the log (default 1)")
    sp.add_argument("--bits", type=int, default=18, help="VW -b hash bits (default 18)")
    sp.add_argument("--seed", type=int, default=0, help="VW --random_seed and LightGBM's seed (default 0)")
    sp.add_argument("--reward-model", action="store_true", help="also train a LightGBM reward model for DM/DR")
    sp.add_argument("--reward-window", type=float, default=None,
                    help="seconds after a decision a reward counts (default: any)")
    sp.add_argument("--default-reward", type=float, default=0.0, help="reward of decisions that got none (default 0)")
    sp.set_defaults(func=_cmd_train)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nba`` console script."""
    from nba.errors import NbaError

    args = _parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NbaError as e:
        print(f"nba: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
