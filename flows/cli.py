"""The `ldm` command: params, releases and the Prefect flows.

    ldm params check|show [--params params.yaml]
    ldm publish MODEL_DIR --name NAME [--alias A] [--store URL] [--metrics FILE]
    ldm pull NAME [--version V | --alias A] -o DIR [--store URL]
    ldm releases NAME [--store URL] [--json]
    ldm alias NAME ALIAS --version V;  ldm store init [--store URL]
    ldm run [--target STAGE];  ldm serve [--cron CRON];  ldm evaluate NAME;  ldm remote
    ldm sample --models models -n 16 --class 3 -o DIR;  ldm upscale --models models IMAGE -o OUT.png

Stages run through DVC (`dvc repro`), or alone as `python -m stages.<name>`.
A user error prints one line and exits with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
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
                                     epilog="Run the whole pipeline with `dvc repro` (or `make run`), or under Prefect with `ldm run`. "
                                            "Releases and flows: docs/storage.md.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    params = commands.add_parser("params", help="validate or print params.yaml")
    params_commands = params.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = params_commands.add_parser("check", help="validate params.yaml without running anything")
    check.set_defaults(handler=_params_check)
    show = params_commands.add_parser("show", help="print params.yaml with every default filled in")
    show.set_defaults(handler=_params_show)
    for sub in (check, show):
        sub.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")

    from flows.cli_flows import add_flow_commands
    from flows.cli_release import add_release_commands

    add_release_commands(commands)
    add_flow_commands(commands)
    _add_model_commands(commands)
    return parser


def _add_model_commands(commands: argparse._SubParsersAction) -> None:
    """`ldm sample` and `ldm upscale`, defined by the stage module that owns the model code."""
    from stages.sample import add_commands, run_command

    add_commands(commands)
    for name in ("sample", "upscale"):
        handler = commands.choices[name].get_default("handler")
        commands.choices[name].set_defaults(handler=lambda args, h=handler: run_command(_with(args, h)))


def _with(args: argparse.Namespace, handler) -> argparse.Namespace:
    args.handler = handler
    return args


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the input, the config or the store is wrong: one line, exit 2."""
    from flows.dvc import CommandFailed
    from ldm.storage import StoreError
    from stages.params import ParamsError

    return StoreError, ParamsError, CommandFailed, ValueError, OSError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ldm` console script."""
    args = build_parser().parse_args(argv)
    if args.command != "params":
        from stages.lineage import setup_logging

        setup_logging()
        for noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.handler(args)
    except _user_errors() as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
