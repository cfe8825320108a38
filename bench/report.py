"""bench/results.json -> BENCHMARKS.md (the table) and bench/charts.png (the ratios; quality against steps).

    python -m bench.report [--results bench/results.json] [--out BENCHMARKS.md] [--charts bench/charts.png]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, Row
from bench.findings import FINDINGS

LEGEND = ("Ratio: a speed-up (our rate over the peer's, or the peer's time over ours: above 1 we are faster), except"
          " where the row says otherwise: a cost (our time over a floor we cannot beat), a growth (the larger input's"
          " figure over the smaller's), a fraction of the machine's peak, or for sample quality the FID of DDIM at as"
          " many steps over the sampler's (above 1 closer to the DDIM-200 reference).")


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _ratio(row: Row) -> str:
    if row.ratio is None:
        return "–"
    if row.ratio_means == "fraction":
        return f"{100 * row.ratio:.0f}% of peak"
    return f"{row.ratio:.2f}x" + ("" if row.ratio_means in ("speed-up", "quality") else f" ({row.ratio_means})")


def _goal(row: Row) -> str:
    if row.goal is None:
        return ""
    figure = {"ratio": "ratio", "ours": "ours", "difference": "ours − peer"}[row.goal.figure]
    bound = f"{row.goal.bound:g}" + (f" {row.unit}" if row.goal.figure != "ratio" else "")
    verdict = "**met**" if row.met else "**missed**"
    return f"{figure} {row.goal.op} {bound}: {verdict}"


def table(rows: list[Row]) -> list[str]:
    lines = ["| row | ours | peer | peer's figure | ratio | goal | notes |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.name} | {_number(row.ours)} {row.unit} | {row.peer_name} | {_number(row.peer)} | {_ratio(row)} |"
                     f" {_goal(row)} | {row.note} |")
    return lines


def _machine(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in m["versions"].items() if version)
    return [f"- Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads; CUDA: {m['cuda'] or 'none'}",
            f"- Python {m['python']} on {m['platform']}", f"- {versions}",
            f"- Run {m['date']} at revision {m['git_revision']}; group seconds: "
            + ", ".join(f"{k} {v:.0f}" for k, v in results["seconds"].items())] + [
            f"- Re-run later ({item['machine']['date']}, revision {item['machine']['git_revision']}, same machine"
            f" kind: {item['machine']['cpu']}): {', '.join(item['groups'])}" for item in results.get("merged", [])]


def render(results: dict[str, Any], charts: str) -> str:
    rows = [Row.from_dict(row) for row in results["rows"]]
    goals = [row for row in rows if row.goal is not None]
    missed = [row for row in goals if not row.met]
    out = ["# Benchmarks", "",
           "Made by `make bench` (bench/suite.py writes bench/results.json, bench/report.py this page and the charts);",
           "every figure beside a peer measured in the same run on the same machine, the median of timed repeats after",
           "a warm-up. Ratios from one run only compare with each other: the cores are shared.", "",
           *_machine(results), "",
           LEGEND, "", f"Goals: {len(goals) - len(missed)} of {len(goals)} met.", "", f"![ratios and sample quality]({charts})", ""]
    by_group: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_group[f"{row.group} ({row.device})" if row.device != "cpu" else row.group].append(row)
    for group, members in by_group.items():
        out += [f"## {group}", "", *table(members), ""]
    if missed:
        out += ["## Goals missed: why, and what would close them", ""]
        by_finding: dict[str, list[Row]] = defaultdict(list)
        for row in missed:
            by_finding[row.group].append(row)
        for group, members in by_finding.items():
            rows_missed = "; ".join(f"{row.name} {_ratio(row)}" for row in members)
            out += [f"- **{group}** ({rows_missed}). {FINDINGS[group]}", ""]
    if results["not_run"]:
        out += ["## Not run", ""] + [f"- {item['group']}: {item['reason']}" for item in results["not_run"]] + [""]
    return "\n".join(out)


def charts(results: dict[str, Any], path: Path) -> None:
    """Left: the ratio of every speed-up row (1 = the peer; the goal marked); right: stand-in FID against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [Row.from_dict(row) for row in results["rows"]]
    bars = [row for row in rows if row.ratio_means == "speed-up" and row.ratio is not None]
    quality = [row for row in rows if row.ratio_means == "quality"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, max(5, 0.32 * len(bars) + 1.5)),
                                      gridspec_kw={"width_ratios": [1.5, 1]})
    labels = [f"{row.group}: {row.name}" + (f" ({row.device})" if row.device != "cpu" else "") for row in bars]
    colours = [{True: "tab:green", False: "tab:red", None: "tab:grey"}[row.met] for row in bars]
    left.barh(range(len(bars)), [row.ratio for row in bars], color=colours)
    for i, row in enumerate(bars):
        if row.goal is not None and row.goal.figure == "ratio":
            left.plot([row.goal.bound] * 2, [i - 0.4, i + 0.4], color="black", linewidth=1)
    left.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    left.set_yticks(range(len(bars)), labels, fontsize=8)
    left.invert_yaxis()
    left.set_xscale("log")
    left.set_xlabel("speed-up over the peer (log; dashed: parity; black ticks: goals; green met, red missed, grey no goal)")
    left.set_title("Ours against the peer, same run")
    by_sampler: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in quality:
        by_sampler[row.name.rsplit(",", 1)[0]].append((row.extra["steps"], row.ours))
    for sampler, points in by_sampler.items():
        steps, fid = zip(*sorted(points))
        right.plot(steps, fid, marker="o", label=sampler)
    right.set_xscale("log")
    right.minorticks_off()
    steps_run = sorted({row.extra["steps"] for row in quality})
    right.set_xticks(steps_run, [str(n) for n in steps_run])
    right.set_xlabel("sampler steps (log)")
    right.set_ylabel(quality[0].unit if quality else "FID")
    right.set_title("Sample quality against steps (vs DDIM-200)")
    if quality:
        right.legend()
    else:
        right.text(0.5, 0.5, "quality group not run", ha="center", transform=right.transAxes)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--charts", type=Path, default=ROOT / "bench" / "charts.png")
    args = parser.parse_args(argv)
    if not args.results.is_file():
        print(f"error: {args.results} does not exist; run `make bench` (or `python -m bench.suite`) first", file=sys.stderr)
        return 2
    results = json.loads(args.results.read_text())
    charts(results, args.charts)
    link = os.path.relpath(args.charts, args.out.parent)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(render(results, link))
    os.replace(tmp, args.out)
    print(f"wrote {args.out} and {args.charts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
