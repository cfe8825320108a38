"""DVC from a flow: the stage order of dvc.yaml, one stage at a time, the remote, push, metrics.

Everything goes through the `dvc` command line in a subprocess, so DVC stays the
one judge of what is stale and dvc.yaml the one copy of the DAG.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ldm.errors import InvalidInput, UserError
from ldm.storage import S3Settings, flatten_metrics

log = logging.getLogger(__name__)
REMOTE = "ldm"  # the remote this project configures (in .dvc/config.local)
# DVC's words when another dvc command holds the repository, or the outputs of the stage it runs.
_BUSY = re.compile(r"Unable to acquire lock|is busy, it is being blocked by")
# Output that says the failure was the network or a busy lock, not the stage: worth a retry.
_TRANSIENT = re.compile(rf"{_BUSY.pattern}|Connection (?:reset|refused|aborted)|Temporary failure in name resolution"
                        r"|Name or service not known|EndpointConnectionError|ConnectTimeout|Read timed out|ServiceUnavailable"
                        r"|SlowDown|RequestTimeout|\b50[234]\b|Too Many Requests", re.IGNORECASE)
_NODE = re.compile(r'^"(?P<name>[^"]+)";$')
_EDGE = re.compile(r'^"(?P<src>[^"]+)" -> "(?P<dst>[^"]+)";$')


class CommandFailed(UserError, RuntimeError):
    """A command exited non-zero or ran out of time; `transient` says whether a retry may help."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient

    def __reduce__(self) -> tuple:
        return CommandFailed, (str(self), self.transient)  # whole across processes (a Dask worker's task)


@dataclass(frozen=True)
class Outcome:
    """What a finished command returned and the last lines it printed."""

    code: int
    tail: str


def subprocess_env(settings: S3Settings | None = None) -> dict[str, str]:
    """This interpreter's folder first on PATH (dvc's `python -m stages...` finds the same one), the checksum policy
    and the bounded retries of `settings` (the remote's timeouts are in its config: `configure_remote`)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")
    if settings is not None:  # botocore reads these in dvc-s3 too; the environment wins if it sets them
        env.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", settings.checksum)
        env.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", settings.checksum)
        env.setdefault("AWS_MAX_ATTEMPTS", str(settings.max_attempts))
        env.setdefault("AWS_RETRY_MODE", "standard")
    return env


def run_command(args: list[str], cwd: Path, timeout_s: float, env: dict[str, str], logger: logging.Logger = log,
                retry_on_timeout: bool = False) -> Outcome:
    """Run `args`, log its output line by line, kill its whole process group when `timeout_s` runs out (a transient
    failure if `retry_on_timeout`: a transfer stalled by its endpoint, not a stage that ran out of its time)."""
    logger.info("$ %s", " ".join(args))
    process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="replace", start_new_session=True)
    tail: deque[str] = deque(maxlen=60)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line.rstrip())
            logger.info("%s", line.rstrip())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _stop(process)
        reader.join(timeout=5)
        raise CommandFailed(f"{' '.join(args[:4])}... ran out of its {timeout_s:g} s timeout and was stopped",
                            transient=retry_on_timeout) from None
    reader.join(timeout=5)
    return Outcome(code, "\n".join(tail))


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the command's process group (dvc and the stage it runs), SIGKILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def check(outcome: Outcome, what: str) -> None:
    """Raise CommandFailed (transient or not, from the output) unless the command succeeded."""
    if outcome.code != 0:
        raise CommandFailed(f"{what} failed with exit code {outcome.code}: {_reason(outcome.tail)}",
                            transient=bool(_TRANSIENT.search(outcome.tail)))


def _reason(output: str) -> str:
    """The line that says why: DVC's last ERROR line, else the first two lines of output; a busy lock says whose."""
    if _BUSY.search(output):  # still so after the flow's retries
        return ("another DVC command holds this workspace (a `dvc repro` or `dvc push` started by hand?); let it finish"
                " and run again, or give orchestrate.retries and retry_delay_s more room")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return errors[-1] if errors else " ".join(lines[:2]) or "no output"


def dvc(*args: str) -> list[str]:
    """The dvc command line of this interpreter's environment."""
    return [sys.executable, "-m", "dvc", *args]


def capture(args: list[str], cwd: Path, what: str, env: dict[str, str] | None = None, timeout_s: float = 120.0) -> str:
    """stdout of a short command; CommandFailed naming `what` and its last error line if it fails."""
    try:
        result = subprocess.run(args, cwd=cwd, env=env or subprocess_env(), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"{what} did not finish within {timeout_s:g} s", transient=True) from None
    if result.returncode != 0:
        raise CommandFailed(f"{what} failed: {_reason(result.stderr or result.stdout)}",
                            transient=bool(_TRANSIENT.search(result.stderr + result.stdout)))
    return result.stdout


def _dag(workdir: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Nodes and edges of `dvc dag --dot`."""
    nodes: list[str] = []
    edges: list[tuple[str, str]] = []
    for line in capture(dvc("dag", "--dot"), workdir, "dvc dag").splitlines():
        line = line.strip()
        if match := _EDGE.match(line):
            edges.append((match["src"], match["dst"]))
        elif match := _NODE.match(line):
            nodes.append(match["name"])
    return nodes, edges


def stage_order(workdir: Path, targets: list[str] | None = None) -> list[str]:
    """The stages of dvc.yaml (or those `targets` need) in an order that runs every stage after its inputs."""
    return plan(workdir, targets, status=False).order


@dataclass(frozen=True)
class Plan:
    """The stages to run in DAG order, and those `dvc repro -s` must look at: the ones `dvc status` finds changed
    and every stage downstream of one (its inputs change only once they run). The rest are up to date."""

    order: list[str]
    stale: frozenset[str]


def plan(workdir: Path, targets: list[str] | None = None, status: bool = True) -> Plan:
    """The Plan of a run: nodes and edges from `dvc dag --dot` (with targets, the stages any of them needs, in the
    whole DAG's order; ties keep DVC's order), the changed ones from one `dvc status --json` run beside it (without
    `status`, every stage counts as changed)."""
    with ThreadPoolExecutor(1) as beside:
        changes = beside.submit(_changed, workdir) if status else None
        nodes, edges = _dag(workdir)
        changed = changes.result() if changes else None
    if targets:
        unknown = [target for target in targets if target not in nodes]
        if unknown:
            raise InvalidInput(f"no stage {', '.join(map(repr, unknown))} in dvc.yaml; its stages: {', '.join(sorted(nodes))}")
        wanted = set(targets)
        for _ in nodes:  # grow to a fixed point: what the wanted stages need
            wanted |= {src for src, dst in edges if dst in wanted}
        nodes = [node for node in nodes if node in wanted]
        edges = [(src, dst) for src, dst in edges if src in wanted and dst in wanted]
    order = topological(nodes, edges)
    stale = set(order)
    if changed is not None:
        stale &= changed
        for stage in order:  # in DAG order, so a stage's sources are settled before it
            if any(src in stale for src, dst in edges if dst == stage):
                stale.add(stage)
    return Plan(order, frozenset(stale))


def _changed(workdir: Path) -> set[str] | None:
    """The stages `dvc status --json` finds changed; None when it cannot tell (a busy workspace, say: then `dvc
    repro -s` of each stage judges, and retries)."""
    try:
        return set(json.loads(capture(dvc("status", "--json"), workdir, "dvc status") or "{}"))
    except CommandFailed as exc:
        log.warning("%s; every stage goes through dvc repro", exc)
        return None


def topological(nodes: list[str], edges: list[tuple[str, str]]) -> list[str]:
    """Kahn's algorithm; among ready stages the one listed first goes first. A cycle is an error."""
    waiting = {node: {src for src, dst in edges if dst == node} for node in nodes}
    order: list[str] = []
    while waiting:
        ready = [node for node in nodes if node in waiting and not waiting[node]]
        if not ready:
            raise InvalidInput(f"dvc.yaml has a dependency cycle among {sorted(waiting)}")
        order.append(ready[0])
        del waiting[ready[0]]
        for sources in waiting.values():
            sources.discard(ready[0])
    return order


def configure_remote(workdir: Path, url: str, settings: S3Settings) -> str | None:
    """Point DVC's default remote at `url` in .dvc/config.local (never git-tracked); None if there is none at all.

    With `url` empty the repository's own default remote (if any) stays in charge.
    Only the URL, endpoint, region and timeouts (whole seconds, as dvc-s3 takes them) are written: credentials stay
    in the environment.
    """
    if not url:
        try:
            return capture(dvc("remote", "default"), workdir, "dvc remote default").strip() or None
        except CommandFailed:
            return None
    if "://" not in url:
        url = str((workdir / url).resolve())  # DVC would read a relative path against .dvc/
    capture(dvc("remote", "add", "--local", "--force", "--default", REMOTE, url), workdir, "dvc remote add")
    if url.startswith("s3://"):
        for option, value in (("endpointurl", settings.endpoint_url), ("region", settings.region),
                              ("connect_timeout", str(math.ceil(settings.connect_timeout_s))),
                              ("read_timeout", str(math.ceil(settings.read_timeout_s)))):
            if value:
                capture(dvc("remote", "modify", "--local", REMOTE, option, value), workdir, "dvc remote modify")
    return REMOTE


def metrics(workdir: Path, timeout_s: float = 120.0) -> dict[str, float]:
    """Numeric metrics of the workspace, `file:key.path` -> value, from the files dvc.yaml declares."""
    try:
        shown = json.loads(capture(dvc("metrics", "show", "--json"), workdir, "dvc metrics show", timeout_s=timeout_s) or "{}")
    except CommandFailed as exc:
        log.warning("%s; the metrics table stays empty", exc)
        return {}
    flat: dict[str, float] = {}
    for revision in shown.values():
        for path, entry in (revision.get("data") or {}).items():
            for key, value in flatten_metrics(entry.get("data") or {}).items():
                flat[f"{path}:{key}"] = value
    return flat
