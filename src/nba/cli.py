"""The ``nba`` command line: ``nba demo``, ``nba inspect MODEL``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _cmd_inspect(args: argparse.Namespace) -> int:
    import nba

    model = nba.load_model(args.model)
    print(model.summary())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from nba.demo import run_demo

    return run_demo(args)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nba", description="nba: next best action decisioning SDK")
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("inspect", help="print a summary of a model file")
    sp.add_argument("model", help="path to a LightGBM text model or a Vowpal Wabbit model")
    sp.set_defaults(func=_cmd_inspect)
    sp = sub.add_parser("demo", help="score, decide, log and learn on a simulated stream")
    sp.add_argument("--decisions", type=int, default=20_000, help="number of simulated decisions")
    sp.add_argument("--log-dir", default=None, help="where to write the decision log (default: a temp dir)")
    sp.set_defaults(func=_cmd_demo)
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
