"""The `ldm` command: validate params and look at the pipeline.

    ldm params check [--params params.yaml]
    ldm params show  [--params params.yaml]

Stages run through DVC (`dvc repro`), or alone as `python -m stages.<name>`.
"""

from __future__ import annotations

import argparse
import json
import sys


def _params_check(args: argparse.Namespace) -> int:
    from stages.params import ParamsError, load_params

    try:
        params = load_params(args.params)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sections = ", ".join(type(params).model_fields)
    print(f"{args.params}: valid ({sections})")
    return 0


def _params_show(args: argparse.Namespace) -> int:
    from stages.params import ParamsError, load_params

    try:
        params = load_params(args.params)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(params.model_dump(mode="json"), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="ldm", description="Latent diffusion pipeline: params, stages, releases.",
                                     epilog="Run the whole pipeline with `dvc repro` (or `make run`).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    params = commands.add_parser("params", help="validate or print params.yaml")
    params_commands = params.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = params_commands.add_parser("check", help="validate params.yaml without running anything")
    check.set_defaults(handler=_params_check)
    show = params_commands.add_parser("show", help="print params.yaml with every default filled in")
    show.set_defaults(handler=_params_show)
    for sub in (check, show):
        sub.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ldm` console script."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
