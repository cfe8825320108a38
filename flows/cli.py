"""The `ldm` command: params, releases and the Prefect flows.

    ldm params check|show [--params params.yaml] [--set KEY=VALUE ...] [--origin]
    ldm publish MODEL_DIR --name NAME [--alias A] [--store URL] [--metrics FILE]
    ldm pull NAME [--version V | --alias A] -o DIR [--store URL]
    ldm releases NAME [--store URL] [--json]
    ldm alias NAME ALIAS --version V;  ldm store init [--store URL]
    ldm run [--target STAGE];  ldm serve [--cron CRON];  ldm evaluate NAME;  ldm remote
    ldm sample --models models -n 16 --class 3 -o DIR;  ldm upscale --models models IMAGE -o OUT.png
    ldm inpaint IMAGE --mask MASK.png -o OUT.png [--samples K]
    ldm import SRC --from reference|diffusers --preset NAME -o MODEL_DIR;  ldm export MODEL_DIR --to diffusers|reference -o OUT

Stages run through DVC (`dvc repro`), or alone as `python -m stages.<name>`.
A user error prints `error: ...` and exits with code 2; a bug keeps its traceback.
Nothing heavy is imported to build the parser: torch, Lightning and Prefect load
inside the command that needs them, so `ldm --help` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys

from flows.cli_flows import add_flow_commands
from flows.cli_inpaint import add_inpaint_command
from flows.cli_interchange import add_interchange_commands
from flows.cli_models import add_model_commands
from flows.cli_release import add_release_commands
from stages.cli import guard, setup_logging


def _params_check(args: argparse.Namespace) -> int:
    from stages.params import parse_params, read_raw
    from stages.params.show import apply_sets

    raw, _ = apply_sets(read_raw(args.params), args.set)
    params = parse_params(raw, args.params)
    sections = ", ".join(type(params).model_fields)
    print(f"{args.params}: valid ({sections})")
    return 0


def _params_show(args: argparse.Namespace) -> int:
    from stages.params import parse_params, read_raw
    from stages.params.show import apply_sets, lr_notes, origins_of, render

    raw, keys = apply_sets(read_raw(args.params), args.set)
    params = parse_params(raw, args.params)
    origins = origins_of(raw, keys) if args.origin else None
    print(render(params.model_dump(mode="json"), origins, lr_notes(params)), end="")
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
    show = params_commands.add_parser(
        "show", help="print the resolved params as YAML: params.yaml over the presets' recipes over the defaults")
    show.add_argument("--origin", action="store_true", help="mark each value: params.yaml, --set, preset NAME or default")
    show.set_defaults(handler=_params_show)
    for sub in (check, show):
        sub.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a value as `dvc exp run -S` would, e.g. train_ldm.preset=celebahq-ldm4 "
                              "(repeatable; VALUE is YAML)")

    add_release_commands(commands)
    add_flow_commands(commands)
    add_model_commands(commands)
    add_inpaint_command(commands)
    add_interchange_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ldm` console script."""
    args = build_parser().parse_args(argv)
    if args.command != "params":
        setup_logging()
        for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    return guard(lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
