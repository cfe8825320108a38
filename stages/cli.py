"""The one command-line mechanism of the stages, and the one error wrapper of every entry point.

A stage module is `run(params, paths)` plus `main = stage_main(run, Paths, __doc__)`.
`Paths` is a frozen dataclass whose fields become required options (`--name`; `arg(optional=True)`: not required),
so dvc.yaml's `cmd` is the only place a path is written; a `Literal` field
becomes a required choice, and a `Location` field takes a path or an
s3://bucket/prefix URL. `guard` runs any command: a `UserError` is one line
and exit code 2, anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ldm.data.location import Location, location
from ldm.errors import UserError

P = TypeVar("P")


def arg(help: str, *, optional: bool = False) -> Any:
    """A `Paths` field: a required option with this help text; `optional`: None when not given (fields at the end)."""
    if optional:
        return dataclasses.field(default=None, metadata={"help": help})
    return dataclasses.field(metadata={"help": help})


def setup_logging() -> None:
    """Plain `level: message` lines on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)


# A full disk is the environment's fault, not a bug: one line, like a UserError.
_NO_SPACE = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
             errno.EFBIG: "the file size limit is reached"}


def guard(work: Callable[[], object]) -> int:
    """Run `work`: 0, or for a UserError `error: <message>` on stderr (a line per problem) and 2; the same for
    a full disk (every output is written under a temporary name first, so nothing partial looks complete).

    Any other exception propagates with its traceback: a bug is not a user error.
    """
    try:
        code = work()
    except UserError as exc:
        _end_progress_bars()
        lines = _own_message(exc).splitlines() or [type(exc).__name__]
        print("\n".join(f"error: {line}" for line in lines), file=sys.stderr, flush=True)
        return 2
    except OSError as exc:
        if exc.errno not in _NO_SPACE:
            raise
        _end_progress_bars()
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"error: {_NO_SPACE[exc.errno]}{where}; no output was published: free space and run the command again",
              file=sys.stderr, flush=True)
        return 2
    return code if isinstance(code, int) else 0


def _end_progress_bars() -> None:
    """Close the progress bars the error interrupted, so that its line starts a line of its own."""
    from tqdm import tqdm

    for bar in list(tqdm._instances):  # noqa: SLF001 - tqdm's own registry of open bars
        bar.close()


def _own_message(exc: UserError) -> str:
    """The error's message; for one raised in a DataLoader worker, the worker's own message (torch re-raises it
    with the worker's whole traceback as its text)."""
    text = str(exc).strip()
    name = type(exc).__name__
    if not text.startswith(f"Caught {name} in DataLoader worker process"):
        return text
    found = list(re.finditer(rf"^[\w.]*\b{name}: ", text, re.M))
    return text[found[-1].end():].strip() if found else text


def _location(text: str) -> Location:
    """A `Location` option: a local path or an s3:// URL (argparse reports a bad one as a usage error, exit 2)."""
    try:
        return location(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser(paths_type: type, doc: str, prog: str) -> argparse.ArgumentParser:
    """`--params` plus one required option per field of `paths_type`."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", required=True, type=Path, help="the params file (params.yaml)")
    hints = typing.get_type_hints(paths_type)
    for field in dataclasses.fields(paths_type):
        flag, help = f"--{field.name.replace('_', '-')}", field.metadata.get("help", "")
        required, hint = field.default is dataclasses.MISSING, hints[field.name]
        if not required:  # `X | None` of an `arg(optional=True)`: X
            hint = typing.Union[tuple(arg for arg in typing.get_args(hint) if arg is not type(None))]
        options = typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None
        if options:
            parser.add_argument(flag, dest=field.name, required=required, choices=options, help=help)
        elif hint == Location:
            parser.add_argument(flag, dest=field.name, required=required, type=_location, metavar="PATH|URL", help=help)
        else:
            parser.add_argument(flag, dest=field.name, required=required, type=Path, metavar="PATH", help=help)
    return parser


def stage_main(run: Callable[[Any, P], object], paths_type: type[P], doc: str) -> Callable[[list[str] | None], int]:
    """The `main(argv)` of a stage module: parse, load params, run under `guard`."""
    module = run.__module__

    def main(argv: list[str] | None = None) -> int:
        args = vars(build_parser(paths_type, doc, f"python -m {module}").parse_args(argv))
        params_file = args.pop("params")
        setup_logging()

        def work() -> None:
            from stages.params import load_params

            run(load_params(params_file), paths_type(**args))

        return guard(work)

    return main
