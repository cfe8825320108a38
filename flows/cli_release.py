"""`ldm publish | pull | releases | alias | store init`: model releases from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flows.config import git_revision, load_config, release_store, store_url
from ldm.errors import InputNotFound, InvalidInput

STORE_HELP = "release store: s3://BUCKET[/PREFIX], file:///PATH or a folder (default: $LDM_STORE, else storage.releases in params.yaml)"


def _publish(args: argparse.Namespace) -> int:
    from ldm.storage import flatten_metrics

    config = load_config(args.params)
    model = Path(args.model_dir)
    if not model.is_dir():
        raise InputNotFound(f"{model}: no such model folder")
    bundle: dict[str, Path] = {"": model}
    metrics: dict[str, float] = {}
    for file in map(Path, args.metrics):
        if not file.is_file():
            raise InputNotFound(f"--metrics {file}: no such file")
        bundle[f"metrics/{file.name}"] = file
        try:
            report = json.loads(file.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"--metrics {file}: not JSON ({exc})") from None
        metrics.update({f"metrics/{file.name}:{key}": value for key, value in flatten_metrics(report).items()})
    store = release_store(config, args.store)
    release, new = store.publish(bundle, args.name, args.alias, params=config.params, metrics=metrics or None,
                                 git_revision=git_revision(Path.cwd()))
    state = "published" if new else "unchanged: these files are already"
    print(f"{state} {release.name} version {release.version} in {store.url} ({release.files} files, "
          f"content {release.content_sha256[:12]}{', aliases ' + ', '.join(release.aliases) if release.aliases else ''})")
    return 0


def _pull(args: argparse.Namespace) -> int:
    store = release_store(load_config(args.params), args.store)
    release = store.pull(args.name, Path(args.output), version=args.version, alias=args.alias)
    print(f"pulled {release.name} version {release.version} into {args.output} ({release.files} files verified, "
          f"content {release.content_sha256[:12]})")
    return 0


def _releases(args: argparse.Namespace) -> int:
    store = release_store(load_config(args.params), args.store)
    found = store.releases(args.name)
    if args.json:
        print(json.dumps([{"version": r.version, "created": r.created, "aliases": list(r.aliases), "content_sha256": r.content_sha256,
                           "files": r.files, "size": r.size, "git_revision": r.manifest.get("git_revision")} for r in found], indent=2))
        return 0
    if not found:
        print(f"no releases of {args.name} in {store.url}")
        return 0
    print(f"{'version':>7}  {'created':<25}  {'content':<12}  {'files':>5}  {'bytes':>12}  aliases")
    for r in found:
        print(f"{r.version:>7}  {r.created:<25}  {r.content_sha256[:12]:<12}  {r.files:>5}  {r.size:>12}  {', '.join(r.aliases)}")
    return 0


def _alias(args: argparse.Namespace) -> int:
    store = release_store(load_config(args.params), args.store)
    release = store.set_alias(args.name, args.alias, args.version)
    print(f"{args.name}: alias {args.alias} -> version {release.version}")
    return 0


def _store_init(args: argparse.Namespace) -> int:
    config = load_config(args.params)
    url = store_url(config, args.store)
    store = release_store(config, args.store)
    if url.startswith("s3://"):
        created = store.backend.create_bucket()  # type: ignore[attr-defined]
        print(f"{url}: bucket {'created' if created else 'exists'}, versioning enabled")
    else:
        Path(store.url).mkdir(parents=True, exist_ok=True)
        print(f"{store.url}: folder ready")
    return 0


def add_release_commands(commands: argparse._SubParsersAction) -> None:
    """Register the release subcommands on the `ldm` parser."""
    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--store", default=None, metavar="URL", help=STORE_HELP)
        sub.add_argument("--params", default="params.yaml", help="params file for the storage section (default: %(default)s; "
                                                                 "defaults apply when it is absent)")

    publish = commands.add_parser("publish", help="upload a model folder as the next release of NAME",
                                  description="Upload weights, config, metrics and a manifest (sha256 of every file, params, "
                                              "lineage, git revision). The same files again make no new version.")
    publish.add_argument("model_dir", metavar="MODEL_DIR", help="folder with the weights and config.json")
    publish.add_argument("--name", required=True, help="release name (letters, digits, . _ -)")
    publish.add_argument("--alias", default=None, help="alias to point at this release, e.g. prod")
    publish.add_argument("--metrics", action="append", default=[], metavar="FILE", help="a metrics JSON to ship as metrics/FILE (repeatable)")
    publish.set_defaults(handler=_publish)

    pull = commands.add_parser("pull", help="download one release and verify every sha256",
                               description="Download a release (the latest unless --version or --alias) into a temporary "
                                           "folder beside DIR, verify every file, then move it into place.")
    pull.add_argument("name", metavar="NAME")
    which = pull.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, default=None, help="release number")
    which.add_argument("--alias", default=None, help="release alias, e.g. prod")
    pull.add_argument("-o", "--output", required=True, metavar="DIR", help="new, empty or previously pulled folder")
    pull.set_defaults(handler=_pull)

    listing = commands.add_parser("releases", help="list the releases of NAME", description="Versions, dates, aliases, content hashes.")
    listing.add_argument("name", metavar="NAME")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_releases)

    alias = commands.add_parser("alias", help="point an alias at a release", description="Move ALIAS of NAME to --version V.")
    alias.add_argument("name", metavar="NAME")
    alias.add_argument("alias", metavar="ALIAS")
    alias.add_argument("--version", type=int, required=True, help="release number")
    alias.set_defaults(handler=_alias)

    store = commands.add_parser("store", help="set up the release store")
    store_commands = store.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = store_commands.add_parser("init", help="create the bucket (versioning on) or the folder",
                                     description="Create the bucket with versioning enabled, or enable it on an existing one.")
    init.set_defaults(handler=_store_init)
    for sub in (publish, pull, listing, alias, init):
        common(sub)
