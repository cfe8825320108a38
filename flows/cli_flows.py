"""`ldm run | serve | evaluate | remote`: the Prefect flows and the DVC remote from the command line."""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path

from flows.config import load_config


def _prefect_defaults() -> None:
    """What a temporary Prefect server needs on a busy or offline machine, unless the environment says otherwise."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # the default 20 s is not enough on 2 cores
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _run(args: argparse.Namespace) -> int:
    _prefect_defaults()
    from flows.pipeline import pipeline

    summary = pipeline(workdir=args.workdir, params_file=args.params, targets=args.target or None, store=args.store,
                       alias=args.alias, push=False if args.no_push else None, release=not args.no_release)
    print(json.dumps(summary, indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    _prefect_defaults()
    from flows.pipeline import pipeline

    workdir = str(Path(args.workdir).resolve())
    cron = args.cron or load_config(Path(workdir) / args.params).orchestrate.cron
    print(f"serving deployment {args.name} of ldm-pipeline on cron {cron!r} in {workdir}; Ctrl-C stops")
    pipeline.serve(name=args.name, cron=cron, parameters={"workdir": workdir, "params_file": args.params}, limit=1, global_limit=1)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    _prefect_defaults()
    from flows.evaluate import evaluate_release

    result = evaluate_release(name=args.name, version=args.version, alias=args.alias, workdir=args.workdir, params_file=args.params,
                              store=args.store, dest=args.output, command=shlex.split(args.command) if args.command else None)
    print(json.dumps(result, indent=2))
    return 0


def _remote(args: argparse.Namespace) -> int:
    from flows.dvc import configure_remote

    workdir = Path(args.workdir).resolve()
    config = load_config(workdir / args.params)
    remote = configure_remote(workdir, config.storage.dvc_remote, config.s3)
    if remote is None:
        print("no DVC remote: storage.dvc_remote is empty and the repository has no default remote")
    else:
        print(f"DVC remote {remote!r} is the default (.dvc/config.local for ours); credentials come from the AWS environment")
    return 0


def add_flow_commands(commands: argparse._SubParsersAction) -> None:
    """Register the flow subcommands on the `ldm` parser."""
    run = commands.add_parser("run", help="run the pipeline flow once: stages, dvc push, release",
                              description="Run every dvc.yaml stage in DAG order under Prefect, push to the DVC remote and "
                                          "publish orchestrate.release.paths as a release.")
    run.add_argument("--target", action="append", default=[], metavar="STAGE", help="run only this stage and what it needs (repeatable)")
    run.add_argument("--store", default=None, metavar="URL", help="release store (default: $LDM_STORE, else storage.releases)")
    run.add_argument("--alias", default=None, help="alias for the release (default: orchestrate.release.alias)")
    run.add_argument("--no-push", action="store_true", help="skip dvc push")
    run.add_argument("--no-release", action="store_true", help="skip the release")
    run.set_defaults(handler=_run)

    serve = commands.add_parser("serve", help="run the pipeline flow on a cron schedule on this host (needs a Prefect server)",
                                description="flow.serve: a long-running process that starts the pipeline on schedule. Point "
                                            "PREFECT_API_URL at a Prefect server (infra/README.md).")
    serve.add_argument("--cron", default=None, help="cron schedule (default: orchestrate.cron in params.yaml)")
    serve.add_argument("--name", default="ldm-pipeline-serve", help="deployment name (default: %(default)s)")
    serve.set_defaults(handler=_serve)

    evaluate = commands.add_parser("evaluate", help="pull a release and evaluate it (flow ldm-evaluate-release)")
    evaluate.add_argument("name", metavar="NAME")
    which = evaluate.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, default=None, help="release number")
    which.add_argument("--alias", default=None, help="release alias")
    evaluate.add_argument("--store", default=None, metavar="URL", help="release store (default: $LDM_STORE, else storage.releases)")
    evaluate.add_argument("-o", "--output", default=None, metavar="DIR", help="where to pull (default: .cache/releases/NAME-VERSION)")
    evaluate.add_argument("--command", default=None, help="evaluation command with {release} {metrics} {params} placeholders "
                                                          "(default: python -m stages.evaluate ...)")
    evaluate.set_defaults(handler=_evaluate)

    remote = commands.add_parser("remote", help="make storage.dvc_remote DVC's default remote (in .dvc/config.local)")
    remote.set_defaults(handler=_remote)
    for sub in (run, serve, evaluate, remote):
        sub.add_argument("--workdir", default=".", help="the DVC workspace (default: %(default)s)")
        sub.add_argument("--params", default="params.yaml", help="params file, relative to --workdir (default: %(default)s)")
