"""Every benchmark against its peer, in one run: `make bench` (or `python -m bench.suite`), then `python -m bench.report`.

Groups, in the order they run (each prints its rows as they come):

  unet          our UNet against diffusers' UNet2DModel / UNet2DConditionModel of the same config and weights:
                training step (forward, backward, AdamW) and inference, at two tiny sizes and cin-ldm8 at a quarter
                width; the training step's FLOP/s over this machine's matmul peak
  autoencoder   encode and decode against diffusers' AutoencoderKL and VQModel
  sampling      DDIM, PLMS, DPM-Solver++(2M) against diffusers' schedulers on the same UNet
  quality       each sampler at 5, 10, 20, 50 steps against DDIM-200 on the workspace's trained model (models/)
  degradation   BSR degradation against the bsrgan package, 256 px
  loading       shards against a folder of PNGs; the latent cache against encoding on the fly
  pipeline      no-op `dvc repro`, the Prefect flow's overhead, `ldm --help`, cache_latents' peak RSS at 1x and 4x
  compile       (--compile) the tiny-cond UNet rows with both models under torch.compile (minutes on a CPU)
  gpu           (a CUDA device) unet, autoencoder and sampling in bf16 with SDPA and torch.compile, and the paper's
                Tab. 18 throughput beside its figures

The rows go to bench/results.json with the machine, the versions, the threads and the date; groups that did not
run are listed there with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from bench.common import RESULTS, NotReady, Row, machine

GROUPS = ("unet", "autoencoder", "sampling", "quality", "degradation", "loading", "pipeline", "compile", "gpu")


def _print(row: Row) -> None:
    peer = "" if row.peer is None else f"  {row.peer_name}: {row.peer:.4g}"
    ratio = "" if row.ratio is None else f"  {row.ratio_means} {row.ratio:.2f}x"
    met = "" if row.goal is None else f"  [{row.goal}: {'met' if row.met else 'MISSED'}]"
    print(f"{row.group:<14} {row.name:<62} {row.ours:10.4g} {row.unit}{peer}{ratio}{met}", flush=True)


def _groups(args: argparse.Namespace) -> dict[str, Callable[[], list[Row]]]:
    from bench import data, models, pipeline, sampling
    from bench.common import ROOT

    cpu = models.Place(torch.device("cpu"), bf16=False)
    groups: dict[str, Callable[[], list[Row]]] = {
        "unet": lambda: models.unet_rows(cpu, args.repeats),
        "autoencoder": lambda: models.autoencoder_rows(cpu, args.repeats),
        "sampling": lambda: sampling.speed_rows(cpu, args.repeats),
        "quality": lambda: sampling.quality_rows(ROOT / "models", args.quality_samples, args.quality_samples),
        "degradation": lambda: data.degradation_rows(args.degradation_crops),
        "loading": lambda: data.loading_rows(args.repeats) + data.latent_cache_rows(args.repeats),
        "pipeline": lambda: pipeline.orchestration_rows(args.pipeline_repeats) + pipeline.rss_rows(),
        "compile": lambda: models.unet_rows(cpu, args.repeats, compile_=True, configs=models.COMPILED),
    }
    if torch.cuda.is_available():
        gpu = models.Place(torch.device("cuda"), bf16=True)

        def on_gpu() -> list[Row]:
            rows = (models.unet_rows(gpu, args.repeats) + models.unet_rows(gpu, args.repeats, compile_=True)
                    + models.autoencoder_rows(gpu, args.repeats) + sampling.speed_rows(gpu, args.repeats, batch=32)
                    + sampling.paper_throughput_rows(gpu))
            return [dataclasses.replace(row, device=f"{torch.cuda.get_device_name(0)}, bf16") for row in rows]
        groups["gpu"] = on_gpu
    return groups


def _not_run(args: argparse.Namespace) -> dict[str, str]:
    """Groups asked for that will not run, with the reason."""
    reasons = {}
    if "compile" in args.only and not args.compile:
        reasons["compile"] = "torch.compile rows not asked for (pass --compile; compiling takes minutes on a CPU)"
    if "gpu" in args.only and not torch.cuda.is_available():
        reasons["gpu"] = "no CUDA device here (torch.cuda.is_available() is False): the bf16 / SDPA / compile rows and" \
                         " the Tab. 18 throughput need one"
    return reasons


def merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`old` with the groups of `new` replaced; each later run keeps its machine and settings under "merged"."""
    ran = set(new["seconds"])
    keep = [row for row in old["rows"] if row.get("suite_group") not in ran]
    return {**old, "rows": keep + new["rows"], "seconds": {**old["seconds"], **new["seconds"]},
            "merged": [*old.get("merged", []), {"groups": sorted(ran), "machine": new["machine"],
                                                "settings": new["settings"]}]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS), metavar="GROUP",
                        help=f"groups to run (default: all): {', '.join(GROUPS)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per side after one warm-up (median)")
    parser.add_argument("--pipeline-repeats", type=int, default=2, help="repeats of the pipeline commands")
    parser.add_argument("--quality-samples", type=int, default=16, help="samples per sampler and step count")
    parser.add_argument("--degradation-crops", type=int, default=24, help="256 px crops degraded by each side")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads")
    parser.add_argument("--compile", action="store_true", help="also the UNet rows under torch.compile")
    parser.add_argument("--out", default=str(RESULTS), help="the results JSON (default: %(default)s)")
    parser.add_argument("--merge", action="store_true",
                        help="replace only the groups run in an existing --out, keep its other rows (and its machine)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.pipeline_repeats < 1:
        parser.error("--repeats and --pipeline-repeats must be at least 1")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the training stages do on the CPU
    skipped = _not_run(args)
    groups = _groups(args)
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    for name in [g for g in GROUPS if g in args.only and g not in skipped]:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            made = groups[name]()
        except NotReady as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            return 2
        seconds[name] = round(time.perf_counter() - start, 1)
        for row in made:
            _print(row)
        rows += [dataclasses.replace(row, suite_group=name) for row in made]
    for name, reason in skipped.items():
        print(f"== {name}: not run: {reason}", flush=True)
    settings = {k: v for k, v in vars(args).items() if k != "out"}  # where the file lies is no setting of the run
    results: dict[str, Any] = {"machine": machine(args.threads), "settings": settings, "seconds": seconds,
                               "rows": [row.to_dict() for row in rows],
                               "not_run": [{"group": k, "reason": v} for k, v in skipped.items()]}
    if args.merge and os.path.exists(args.out):
        results = merged(json.loads(open(args.out).read()), results)
    tmp = f"{args.out}.tmp"
    with open(tmp, "w") as handle:
        json.dump(results, handle, indent=1)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({len(rows)} rows in {sum(seconds.values()):.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
