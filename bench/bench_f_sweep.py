"""The f-sweep of Sec. 4.1 on the CPU: one DVC experiment per first-stage factor f, one table and one plot.

    .venv/bin/python bench/bench_f_sweep.py                 # f = 4, 8, 16 with the tiny autoencoders, ~20 min on 2 cores
    .venv/bin/python bench/bench_f_sweep.py --f 4 8 --ae-steps 200 --ldm-steps 100

Each f runs the whole pipeline as `dvc exp run --temp -n fsweep-f<f>` (the workspace is
left as it is; `dvc exp show` lists the runs, `dvc exp apply fsweep-f8` brings one back)
with `autoencoder.preset=kl-f<f>-tiny`; the class-conditional `tiny-cond` LDM follows
that first stage (its latent channels and size, `ldm params show --origin`). The same
data, seeds and budgets go to every f. Evaluation scores 32 samples with the seeded
`random-conv` stand-in feature extractor (the Inception weights cannot be fetched
here): its FIDs compare the f's of one run with each other and nothing else.

Writes bench/results/f_sweep.{json,md,png}: per f the latent shape, the autoencoder's
val PSNR, the LDM's training throughput (samples/s), its sampling speed (samples/s,
DDIM steps as params.yaml) and the stand-in FID.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

RESULTS = Path(__file__).parent / "results"


def _experiment(f: int, args: argparse.Namespace) -> str:
    """Run one experiment; its name comes back."""
    name = f"fsweep-f{f}"
    subprocess.run(["dvc", "exp", "remove", name], capture_output=True)  # a previous sweep's run of the same name
    sets = {"autoencoder.preset": f"kl-f{f}-tiny", "train_autoencoder.steps": args.ae_steps,
            "train_ldm.steps": args.ldm_steps, "train_sr.steps": args.sr_steps,
            "evaluate.samples": args.samples, "evaluate.feature_extractor": "random-conv",
            "evaluate.metrics": "[fid]", "evaluate.sr_samples": 8}
    command = ["dvc", "exp", "run", "--temp", "-n", name]
    listed = yaml.safe_load(Path("params.yaml").read_text())
    for key, value in sets.items():
        command += ["-S", f"{'' if _listed(listed, key) else '+'}{key}={value}"]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return name


def _listed(params: dict, dotted: str) -> bool:
    """Whether params.yaml lists the key (`dvc exp run -S` adds an unlisted one only as `+key=value`)."""
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _metrics(names: list[str]) -> dict[str, dict]:
    """Each experiment's metrics files, from `dvc exp show --json`."""
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json", "--all-commits"], check=True, capture_output=True,
                                      text=True).stdout)
    found = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                if rev.get("name") in names:
                    found[rev["name"]] = {k: v["data"] for k, v in rev["data"]["metrics"].items()}
    return found


def _row(f: int, m: dict) -> dict:
    ae, ldm, ev = m["metrics/autoencoder.json"], m["metrics/ldm.json"], m["metrics/evaluate.json"]
    from ldm.autoencoder.presets import preset_config

    batch = ldm["lineage"]["params"]["train_ldm"]["batch_size"]
    side = ae["lineage"]["params"]["data"]["resolution"] // f
    return {"f": f, "autoencoder": ae["preset"], "latent": f"{side}x{side}x{preset_config(ae['preset']).embed_dim}",
            "ae_val_psnr_db": round(ae["psnr"], 2),
            "ldm_parameters": ldm["parameters"],
            "train_samples_per_s": round(ldm["train"]["batches"] * batch / ldm["train"]["seconds"], 1),
            "sampling_samples_per_s": ev["ldm"]["sampling_samples_per_s"],
            "fid_stand_in": round(ev["ldm"]["fid"], 2) if "fid" in ev["ldm"] else None}


PANELS = (("fid_stand_in", "FID, random-conv stand-in (lower: better)"), ("train_samples_per_s", "training samples/s"),
          ("sampling_samples_per_s", "sampling samples/s"))


def _write(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "f_sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
    (out / "f_sweep.md").write_text("\n".join(lines) + "\n")
    _plot(rows, out / "f_sweep.png")
    print("\n".join(lines))


def _plot(rows: list[dict], path: Path, w: int = 300, h: int = 240) -> None:
    """One titled bar panel per measure, a bar per f, its value written above it."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (w * len(PANELS), h + 30), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 6), "CPU f-sweep (Sec. 4.1): tiny-cond on kl-f<f>-tiny latents", fill="black")
    for p, (key, title) in enumerate(PANELS):
        x0, values = p * w, [r[key] or 0.0 for r in rows]
        draw.text((x0 + 10, 30), title, fill="black")
        top, bar = max(values) or 1.0, (w - 40) // len(rows)
        for i, (row, value) in enumerate(zip(rows, values)):
            left, height = x0 + 20 + i * bar, int((h - 80) * value / top)
            draw.rectangle([left + 8, h - height, left + bar - 8, h], fill=(70, 110, 180))
            draw.text((left + 10, h - height - 14), f"{value:g}", fill="black")
            draw.text((left + 10, h + 6), f"f={row['f']}", fill="black")
    image.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--f", type=int, nargs="+", default=[4, 8, 16], choices=[4, 8, 16])
    parser.add_argument("--ae-steps", type=int, default=200, help="autoencoder batches (default: %(default)s)")
    parser.add_argument("--ldm-steps", type=int, default=200, help="LDM optimizer steps (default: %(default)s)")
    parser.add_argument("--sr-steps", type=int, default=20, help="train_sr steps; SR is not compared here")
    parser.add_argument("--samples", type=int, default=32, help="samples scored per f (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    names = {f: _experiment(f, args) for f in args.f}
    found = _metrics(list(names.values()))
    missing = [name for name in names.values() if name not in found]
    if missing:
        print(f"error: `dvc exp show` lists no metrics for {', '.join(missing)}", file=sys.stderr)
        return 1
    _write([_row(f, found[name]) for f, name in names.items()], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
